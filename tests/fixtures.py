"""Test fixtures that write small datasets in the real layouts (MNIST idx files, CelebA).

They were public in ``shortinfer.data`` once; they serve only the tests, so they live here.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from shortinfer._checks import ArgumentError, ArgumentTypeError, ExistingFileError
from shortinfer.data._arguments import check_path
from shortinfer.data._celeba import _PARTITION_NAME, _split_by_rule
from shortinfer.data._images import require_pillow
from shortinfer.data._mnist import _IDX_DTYPES

__all__ = ["make_synthetic_celeba", "write_idx"]

# The size of an img_align_celeba image (W, H).
_CELEBA_WIDTH, _CELEBA_HEIGHT = 178, 218


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    r"""Write ``array`` as an idx file (gzip-compressed if ``path`` ends in ``.gz``).

    The inverse of `shortinfer.data.read_idx`: for small MNIST-layout fixtures. The element
    type is taken from ``array.dtype`` (uint8, int8, int16, int32, float32 or float64).

    Arguments:
        path: Destination file, e.g. ``train-images-idx3-ubyte.gz``.
        array: Array with 1 to 255 dimensions, e.g. uint8 (N, 28, 28) images or (N,) labels.

    Returns:
        ``path`` as a `pathlib.Path`.

    Raises:
        TypeError: If ``array`` is not a numpy array of a supported dtype.
        ValueError: If ``array`` has no dimensions or more than 255.

    Examples:
        >>> import tempfile
        >>> from shortinfer.data import read_idx
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = write_idx(Path(tmp) / "x-idx2-ubyte.gz", np.eye(2, dtype=np.uint8))
        ...     read_idx(path).tolist()
        [[1, 0], [0, 1]]
    """
    target = check_path("path", path)
    if not isinstance(array, np.ndarray):
        raise ArgumentTypeError(f"array must be a numpy.ndarray, got {type(array).__name__}")
    codes = {dtype.newbyteorder("="): code for code, dtype in _IDX_DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ArgumentTypeError(
            f"array has dtype {array.dtype}, which idx cannot store; convert it to one of "
            "uint8, int8, int16, int32, float32, float64"
        )
    if not 1 <= array.ndim <= 255:
        raise ArgumentError(f"array must have 1 to 255 dimensions, got shape {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=_IDX_DTYPES[code]).tobytes()
    if target.suffix == ".gz":
        payload = gzip.compress(payload)
    target.write_bytes(payload)
    return target


def make_synthetic_celeba(
    root: str | os.PathLike[str],
    *,
    num_images: int = 16,
    seed: int = 0,
    partition_file: bool = True,
) -> Path:
    r"""Write a small fake CelebA in torchvision's layout, for tests and smoke benchmarks.

    Creates ``root/celeba/img_align_celeba/000001.jpg ...`` — 178×218 (W×H) RGB JPEGs of smooth
    random colour fields (a 9×11 grid of random colours upsampled bicubically), like the real
    aligned faces in size and format but not in content — and, with ``partition_file``,
    ``root/celeba/list_eval_partition.txt`` assigning them to train/valid/test at the official
    fractions (see `shortinfer.data.load_celeba`). The same ``seed`` gives the same files.

    Arguments:
        root: Directory to write into (created if missing).
        num_images: How many images to write, >= 1.
        seed: Seed of the numpy random generator for the pixel values.
        partition_file: Whether to write ``list_eval_partition.txt``.

    Returns:
        ``root`` as a `pathlib.Path`, ready for `shortinfer.data.load_celeba`.

    Raises:
        FileExistsError: If ``root/celeba/img_align_celeba`` already holds ``.jpg`` files (so a
            real dataset is never overwritten).
        ValueError: If ``num_images`` < 1.
        ImportError: If Pillow is not installed.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     root = make_synthetic_celeba(tmp, num_images=4, seed=1)
        ...     sorted(p.name for p in (root / "celeba" / "img_align_celeba").iterdir())
        ['000001.jpg', '000002.jpg', '000003.jpg', '000004.jpg']
    """
    root_path = check_path("root", root)
    if isinstance(num_images, bool) or not isinstance(num_images, int):
        raise ArgumentTypeError(f"num_images must be an int, got {num_images!r}")
    if num_images < 1:
        raise ArgumentError(f"num_images must be >= 1, got {num_images}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ArgumentTypeError(f"seed must be an int, got {seed!r}")
    image_module = require_pillow()
    image_dir = root_path / "celeba" / "img_align_celeba"
    if image_dir.is_dir() and any(image_dir.glob("*.jpg")):
        raise ExistingFileError(
            f"{image_dir} already holds .jpg files; make_synthetic_celeba never overwrites "
            "images: pass an empty directory as root"
        )
    image_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = [f"{index:06d}.jpg" for index in range(1, num_images + 1)]
    resample = getattr(image_module, "Resampling", image_module).BICUBIC
    for name in names:
        coarse = rng.integers(0, 256, size=(11, 9, 3), dtype=np.uint8)
        image = image_module.fromarray(coarse).resize(
            (_CELEBA_WIDTH, _CELEBA_HEIGHT), resample=resample
        )
        image.save(image_dir / name, format="JPEG", quality=90)
    if partition_file:
        lines = [f"{name} {code}\n" for name, code in _split_by_rule(names)]
        (root_path / "celeba" / _PARTITION_NAME).write_text("".join(lines), encoding="utf-8")
    return root_path
