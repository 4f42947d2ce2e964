"""Tests for shortinfer.data._svhn: the official {train,test}_32x32.mat layout."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from shortinfer.data import _svhn as svhn_module
from shortinfer.data import load_svhn

scipy_io = pytest.importorskip("scipy.io")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHORTINFER_CACHE", str(tmp_path / "cache"))


def _svhn_arrays(count: int) -> tuple[np.ndarray, np.ndarray]:
    pixels = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3, count), dtype=np.uint8)
    pixels[0, 0, 0, 0], pixels[1, 2, 0, 1] = 0, 255
    labels = (np.arange(count) % 10 + 1).reshape(count, 1).astype(np.uint8)  # 1..10
    return pixels, labels


@pytest.fixture
def svhn_root(tmp_path: Path) -> Path:
    root = tmp_path / "svhn"
    root.mkdir()
    pixels, labels = _svhn_arrays(12)
    scipy_io.savemat(root / "train_32x32.mat", {"X": pixels, "y": labels})
    scipy_io.savemat(root / "test_32x32.mat", {"X": pixels[..., :3], "y": labels[:3]})
    return root


def test_round_trip_transpose_and_label_ten_is_zero(svhn_root: Path) -> None:
    data = load_svhn(svhn_root)
    pixels, labels = _svhn_arrays(12)
    assert data.images.shape == (12, 3, 32, 32)
    assert data.images.dtype == torch.float32
    assert data.images[0, 0, 0, 0].item() == -1.0
    assert data.images[1, 0, 1, 2].item() == 1.0  # X[h=1, w=2, c=0, n=1]
    expected = torch.from_numpy(pixels).permute(3, 2, 0, 1).float() / 127.5 - 1.0
    torch.testing.assert_close(data.images, expected, atol=0, rtol=0)
    assert data.labels is not None and data.labels.dtype == torch.int64
    assert data.labels.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]
    assert load_svhn(svhn_root, split="test").images.shape == (3, 3, 32, 32)


def test_resize_and_cache_hit(svhn_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_svhn(svhn_root, image_size=16)
    assert first.images.shape == (12, 3, 16, 16)

    def broken(path: Path) -> None:
        raise AssertionError(f"decoder called for {path}; the cache was not used")

    monkeypatch.setattr(svhn_module, "_read_svhn_mat", broken)
    second = load_svhn(svhn_root, image_size=16)
    torch.testing.assert_close(first.images, second.images, atol=0, rtol=0)
    assert second.labels is not None and first.labels is not None
    assert second.labels.tolist() == first.labels.tolist()


def test_missing_and_malformed_files(tmp_path: Path, svhn_root: Path) -> None:
    with pytest.raises(FileNotFoundError, match="SVHN root .* is not a directory"):
        load_svhn(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="extra_32x32.mat does not exist"):
        load_svhn(svhn_root, split="extra")
    (svhn_root / "train_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(20))
    with pytest.raises(ValueError, match="could not read .*train_32x32.mat as a MATLAB file"):
        load_svhn(svhn_root, use_cache=False)
    scipy_io.savemat(svhn_root / "train_32x32.mat", {"images": np.zeros(3)})
    with pytest.raises(ValueError, match="lacks the variables 'X' and 'y'"):
        load_svhn(svhn_root, use_cache=False)
    scipy_io.savemat(
        svhn_root / "train_32x32.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": [[1]]}
    )
    with pytest.raises(ValueError, match=r"y has shape \(1, 1\), expected \(2, 1\)"):
        load_svhn(svhn_root, use_cache=False)
    scipy_io.savemat(
        svhn_root / "train_32x32.mat", {"X": np.zeros((32, 32, 2), np.uint8), "y": [[1]]}
    )
    with pytest.raises(ValueError, match=r"X has shape \(32, 32, 2\), expected \(32, 32, 3, N\)"):
        load_svhn(svhn_root, use_cache=False)
    scipy_io.savemat(
        svhn_root / "train_32x32.mat", {"X": np.zeros((32, 32, 3, 1), np.uint8), "y": [[11]]}
    )
    with pytest.raises(ValueError, match="labels 1-10"):
        load_svhn(svhn_root, use_cache=False)


def test_float_pixels_that_are_integers_are_accepted(tmp_path: Path) -> None:
    pixels = np.full((32, 32, 3, 1), 255.0)
    scipy_io.savemat(tmp_path / "test_32x32.mat", {"X": pixels, "y": np.array([[10.0]])})
    data = load_svhn(tmp_path, split="test")
    assert torch.all(data.images == 1.0)
    assert data.labels is not None and data.labels.tolist() == [0]


def test_missing_scipy_names_the_extra(svhn_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    with pytest.raises(ImportError, match=r'pip install "shortinfer\[bench\]"'):
        load_svhn(svhn_root, use_cache=False)
