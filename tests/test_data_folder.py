"""Tests for shortinfer.data._folder: a recursive directory of images decoded with Pillow."""

from __future__ import annotations

import errno
import functools
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from shortinfer.data import _images, load_image_folder

from ._data_helpers import assert_second_load_reads_the_cache

Image = pytest.importorskip("PIL.Image")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHORTINFER_CACHE", str(tmp_path / "cache"))


def _pixels(seed: int, height: int = 8, width: int = 8) -> np.ndarray:
    array = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    array[0, 0] = (0, 255, 0)
    return array


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".hidden").mkdir()
    Image.fromarray(_pixels(0)).save(root / "b.png")
    Image.fromarray(_pixels(1)).save(root / "sub" / "a.PNG")
    Image.fromarray(_pixels(2)).save(root / "sub" / "deeper" / "c.bmp")
    Image.fromarray(_pixels(3)).save(root / "sub" / "d.jpg", quality=95)
    Image.fromarray(_pixels(4)).save(root / ".hidden" / "e.png")
    Image.fromarray(_pixels(5)).save(root / "._f.png")
    (root / "notes.txt").write_text("not an image")
    return root


def _as_float(array_hwc: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array_hwc).permute(2, 0, 1).to(torch.float32) / 127.5 - 1.0


def test_loads_recursively_in_path_order_with_exact_values(folder: Path) -> None:
    data = load_image_folder(folder)
    # b.png, sub/a.PNG, sub/d.jpg, sub/deeper/c.bmp; hidden files/folders and .txt ignored.
    assert data.images.shape == (4, 3, 8, 8)
    assert data.labels is None
    assert data.images.dtype == torch.float32
    torch.testing.assert_close(data.images[0], _as_float(_pixels(0)), atol=0, rtol=0)
    torch.testing.assert_close(data.images[1], _as_float(_pixels(1)), atol=0, rtol=0)
    torch.testing.assert_close(data.images[3], _as_float(_pixels(2)), atol=0, rtol=0)
    assert data.images[0, :, 0, 0].tolist() == [-1.0, 1.0, -1.0]
    # JPEG is lossy: compare with what Pillow itself decodes.
    with Image.open(folder / "sub" / "d.jpg") as handle:
        decoded = np.array(handle.convert("RGB"))
    torch.testing.assert_close(data.images[2], _as_float(decoded), atol=0, rtol=0)


def test_grayscale_mode(folder: Path) -> None:
    data = load_image_folder(folder, mode="L")
    assert data.images.shape == (4, 1, 8, 8)
    expected = np.array(Image.fromarray(_pixels(0)).convert("L"))
    torch.testing.assert_close(
        data.images[0, 0], torch.from_numpy(expected).float() / 127.5 - 1.0, atol=0, rtol=0
    )


def test_resize_and_center_crop(tmp_path: Path) -> None:
    root = tmp_path / "wide"
    root.mkdir()
    # 40x20 (WxH): white columns 8-31, black at the sides.
    array = np.zeros((20, 40, 3), dtype=np.uint8)
    array[:, 8:32] = 255
    Image.fromarray(array).save(root / "x.png")
    data = load_image_folder(root, image_size=10)
    # Resize to 20x10 (cover), then crop the central 10x10 (from source columns 10-29; the
    # 2x bilinear filter reaches one column further each side): entirely white.
    assert data.images.shape == (1, 3, 10, 10)
    assert torch.all(data.images == 1.0)
    assert load_image_folder(root, image_size=(4, 12)).images.shape == (1, 3, 4, 12)


def test_mixed_sizes_need_image_size(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    root.mkdir()
    Image.fromarray(_pixels(0, 8, 8)).save(root / "a.png")
    Image.fromarray(_pixels(1, 6, 9)).save(root / "b.png")
    message = r"b\.png is 9×6 \(W×H\) but the first image .*pass image_size="
    with pytest.raises(ValueError, match=message):
        load_image_folder(root)
    assert load_image_folder(root, image_size=8).images.shape == (2, 3, 8, 8)


def _add_corrupt(root: Path) -> Path:
    bad = root / "sub" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    truncated = root / "cut.jpg"
    jpeg = (root / "sub" / "d.jpg").read_bytes()
    truncated.write_bytes(jpeg[: len(jpeg) // 2])
    return bad


def test_corrupt_image_error_names_the_file(folder: Path) -> None:
    _add_corrupt(folder)
    with pytest.raises(ValueError, match=r"could not decode image .*cut\.jpg .*skip_corrupt=True"):
        load_image_folder(folder)


def test_skip_corrupt_warns_with_the_count_also_from_cache(folder: Path) -> None:
    _add_corrupt(folder)
    with pytest.warns(UserWarning, match=r"skipped 2 corrupt image file\(s\) of 6 .*cut\.jpg"):
        data = load_image_folder(folder, skip_corrupt=True)
    assert data.images.shape == (4, 3, 8, 8)
    with pytest.warns(UserWarning, match="skipped 2 corrupt"):
        again = load_image_folder(folder, skip_corrupt=True)
    torch.testing.assert_close(data.images, again.images, atol=0, rtol=0)


def test_all_corrupt_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "bad"
    root.mkdir()
    (root / "x.png").write_bytes(b"nope")
    with pytest.raises(ValueError, match="none of the 1 image files could be decoded"):
        load_image_folder(root, skip_corrupt=True)


def test_second_load_hits_the_cache(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load = functools.partial(load_image_folder, folder, image_size=4, num_workers=0)
    assert_second_load_reads_the_cache(load, monkeypatch)
    # A new file changes the fingerprint, so the folder is decoded again.
    Image.fromarray(_pixels(9)).save(folder / "z.png")
    with pytest.raises(AssertionError, match="cache was not used"):
        load_image_folder(folder, image_size=4, num_workers=0)


def test_worker_processes_give_the_same_result(folder: Path) -> None:
    serial = load_image_folder(folder, image_size=6, num_workers=0, use_cache=False)
    parallel = load_image_folder(folder, image_size=6, num_workers=2, use_cache=False)
    torch.testing.assert_close(serial.images, parallel.images, atol=0, rtol=0)


def test_root_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="image folder .*missing' does not exist"):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "readme.txt").write_text("no images")
    with pytest.raises(FileNotFoundError, match=r"holds no files ending in \.png, \.jpg"):
        load_image_folder(tmp_path / "empty")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(NotADirectoryError, match="is a file, not a directory"):
        load_image_folder(tmp_path / "file.png")

    def unreadable_walk(top: str, onerror: object = None, **kwargs: object) -> object:
        err = PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(top))
        onerror(err)  # type: ignore[operator]
        return iter(())

    monkeypatch.setattr(_images.os, "walk", unreadable_walk)
    with pytest.raises(PermissionError, match="cannot read directory .*check its permissions"):
        load_image_folder(tmp_path / "empty")


def test_option_errors(folder: Path) -> None:
    with pytest.raises(ValueError, match="mode must be one of 'RGB', 'L', got 'RGBA'"):
        load_image_folder(folder, mode="RGBA")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="skip_corrupt must be a bool"):
        load_image_folder(folder, skip_corrupt="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_16_bit_grayscale_png_is_rescaled_not_clipped(tmp_path: Path, mode: str) -> None:
    root = tmp_path / "deep"
    root.mkdir()
    levels = np.array([[0, 257 * 64, 257 * 128, 65535]], dtype=np.uint16)
    Image.fromarray(levels).save(root / "g16.png")
    with Image.open(root / "g16.png") as image:
        assert image.mode.startswith("I")  # what Pillow makes of it
    data = load_image_folder(root, mode=mode)  # type: ignore[arg-type]
    expected = torch.tensor([0, 64, 128, 255], dtype=torch.float32) / 127.5 - 1.0
    channels = 1 if mode == "L" else 3
    assert data.images.shape == (1, channels, 1, 4)
    assert torch.equal(data.images[0, 0, 0], expected)
