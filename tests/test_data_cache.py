"""Tests for the loaders' private helpers: scaling, arguments, .npy cache, geometry."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from shortinfer.data import ImageData, _arguments, _image_data, _images, _npy_cache


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHORTINFER_CACHE", str(tmp_path / "env-cache"))


def test_uint8_to_float_is_exact_at_the_ends_and_follows_the_formula() -> None:
    values = np.arange(256, dtype=np.uint8)
    scaled = _image_data.uint8_to_float(values)
    assert scaled.dtype == torch.float32
    assert scaled[0].item() == -1.0
    assert scaled[255].item() == 1.0
    expected = torch.from_numpy(values.astype(np.float64) / 127.5 - 1.0)
    torch.testing.assert_close(scaled.double(), expected, atol=1e-7, rtol=0)


def test_uint8_to_float_rejects_other_dtypes() -> None:
    with pytest.raises(TypeError, match="expected a uint8 array, got dtype float32"):
        _image_data.uint8_to_float(np.zeros(3, dtype=np.float32))


def test_image_data_unpacks_into_images_and_labels() -> None:
    images, labels = ImageData(torch.zeros(1, 1, 2, 2), None)
    assert images.shape == (1, 1, 2, 2)
    assert labels is None


def test_default_cache_dir_uses_env_var_then_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHORTINFER_CACHE", str(tmp_path / "here"))
    assert _npy_cache.default_cache_dir() == tmp_path / "here"
    monkeypatch.setenv("SHORTINFER_CACHE", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _npy_cache.default_cache_dir() == tmp_path / "home" / ".cache" / "shortinfer"
    assert _npy_cache.resolve_cache_dir(tmp_path / "arg") == tmp_path / "arg"


def test_atomic_save_round_trips_without_pickle(tmp_path: Path) -> None:
    path = tmp_path / "a.npy"
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    _npy_cache.atomic_save_npy(path, array)
    np.testing.assert_array_equal(np.load(path, allow_pickle=False), array)
    assert os.listdir(tmp_path) == ["a.npy"]


def test_atomic_save_leaves_no_partial_file_when_writing_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.npy"
    _npy_cache.atomic_save_npy(path, np.array([1, 2, 3]))

    def failing_save(handle: object, array: np.ndarray, allow_pickle: bool) -> None:
        handle.write(b"\x93NUMPY partial")  # type: ignore[attr-defined]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_npy_cache.np, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        _npy_cache.atomic_save_npy(path, np.array([4, 5, 6]))
    monkeypatch.undo()
    # The old file is intact and no temporary file is left behind.
    assert os.listdir(tmp_path) == ["a.npy"]
    np.testing.assert_array_equal(np.load(path, allow_pickle=False), [1, 2, 3])


def _build_counter() -> tuple[list[int], Callable[[], dict[str, np.ndarray]]]:
    calls: list[int] = []

    def build() -> dict[str, np.ndarray]:
        calls.append(1)
        return {"images": np.ones((2, 1, 3, 3), np.uint8), "labels": np.array([4, 5])}

    return calls, build


def _toy_arrays(
    build: Callable[[], dict[str, np.ndarray]], cache_dir: Path | None
) -> dict[str, np.ndarray]:
    return _npy_cache.cached_arrays(
        dataset="toy",
        tag="t",
        options={},
        names=("images", "labels"),
        build=build,
        cache_dir=cache_dir,
        use_cache=True,
    )


def test_cached_arrays_builds_once_then_reads_the_cache(tmp_path: Path) -> None:
    calls, build = _build_counter()
    kwargs = dict(dataset="toy", tag="train", names=("images", "labels"), build=build)
    first = _npy_cache.cached_arrays(
        options={"a": 1}, cache_dir=tmp_path, use_cache=True, **kwargs
    )
    second = _npy_cache.cached_arrays(
        options={"a": 1}, cache_dir=tmp_path, use_cache=True, **kwargs
    )
    assert len(calls) == 1
    np.testing.assert_array_equal(first["images"], second["images"])
    np.testing.assert_array_equal(second["labels"], [4, 5])
    assert sorted(p.name.split(".")[-2] for p in tmp_path.iterdir()) == ["images", "labels"]
    # Different preprocessing options are a different cache entry.
    _npy_cache.cached_arrays(options={"a": 2}, cache_dir=tmp_path, use_cache=True, **kwargs)
    assert len(calls) == 2
    # use_cache=False always rebuilds.
    _npy_cache.cached_arrays(options={"a": 1}, cache_dir=tmp_path, use_cache=False, **kwargs)
    assert len(calls) == 3


def test_cached_arrays_uses_the_env_var_when_no_dir_is_given(tmp_path: Path) -> None:
    _, build = _build_counter()
    _toy_arrays(build, None)
    assert len(list((tmp_path / "env-cache").glob("toy-t-*.npy"))) == 2


def test_cached_arrays_rebuilds_an_incomplete_entry(tmp_path: Path) -> None:
    calls, build = _build_counter()
    _toy_arrays(build, tmp_path)
    next(tmp_path.glob("*.images.npy")).unlink()
    _toy_arrays(build, tmp_path)
    assert len(calls) == 2


def test_unwritable_cache_warns_and_still_returns_data(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    _, build = _build_counter()
    with pytest.warns(UserWarning, match="could not write the toy cache"):
        arrays = _toy_arrays(build, blocker / "sub")
    assert arrays["images"].shape == (2, 1, 3, 3)


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (0, ValueError, "must be positive"),
        ((32, -1), ValueError, "must be positive"),
        (True, TypeError, "int or a"),
        ("32", TypeError, "e.g. image_size=32"),
        ((32, 32, 3), TypeError, "e.g. image_size=32"),
        ((32.0, 32), TypeError, "entries must be ints"),
    ],
)
def test_check_image_size_rejects_bad_values(value: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        _arguments.check_image_size(value)


def test_check_image_size_normalises() -> None:
    assert _arguments.check_image_size(None) is None
    assert _arguments.check_image_size(32) == (32, 32)
    assert _arguments.check_image_size([24, 16]) == (24, 16)


def test_cover_size_matches_torchvision_resize_rule() -> None:
    # torchvision Resize(64) on a 178x218 (WxH) image: short side 64, long int(64*218/178)=78.
    assert _images.cover_size(178, 218, (64, 64)) == (64, 78)
    assert _images.cover_size(218, 178, (64, 64)) == (78, 64)
    assert _images.cover_size(140, 140, (32, 32)) == (32, 32)
    # Non-square target: the image must cover both sides.
    assert _images.cover_size(100, 100, (20, 40)) == (40, 40)
    # torchvision CenterCrop(140) offsets on 178x218: left 19, top 39.
    assert _images.center_crop_box(178, 218, 140, 140) == (19, 39)


def test_resize_uint8_shapes_constants_and_identity() -> None:
    images = np.full((3, 1, 28, 28), 200, dtype=np.uint8)
    assert _images.resize_uint8(images, None) is images
    assert _images.resize_uint8(images, (28, 28)) is images
    up = _images.resize_uint8(images, (32, 32))
    assert up.shape == (3, 1, 32, 32) and up.dtype == np.uint8
    assert np.all(up == 200)
    down = _images.resize_uint8(images, (7, 14))
    assert down.shape == (3, 1, 7, 14) and np.all(down == 200)


def test_resize_uint8_interpolates_bilinearly() -> None:
    # A left-black/right-white 2x2 image upsampled to 2x4: half-pixel centers give 0, 64, 191, 255.
    image = np.array([[[[0, 255], [0, 255]]]], dtype=np.uint8)
    out = _images.resize_uint8(image, (2, 4))
    assert out[0, 0, 0].tolist() == [0, 64, 191, 255]


def test_check_num_workers() -> None:
    assert _arguments.check_num_workers(None) is None
    assert _arguments.check_num_workers(2) == 2
    with pytest.raises(ValueError, match="num_workers must be >= 0, got -1"):
        _arguments.check_num_workers(-1)
    with pytest.raises(TypeError, match="num_workers must be None or an int"):
        _arguments.check_num_workers(1.5)


def test_require_pillow_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "PIL", None)
    with pytest.raises(ImportError, match=r"shortinfer\[bench\]"):
        _images.require_pillow()
