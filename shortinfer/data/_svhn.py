r"""SVHN (Street View House Numbers, cropped 32×32 digits) from the official ``.mat`` files.

The files ``train_32x32.mat``, ``test_32x32.mat`` and ``extra_32x32.mat`` are MATLAB v5 files
holding ``X``, uint8 with shape (32, 32, 3, N), and ``y``, with shape (N, 1), where the label
10 stands for the digit 0. They are read with ``scipy.io.loadmat``; scipy is an optional
dependency (``pip install "shortinfer[bench]"``), imported only when a file is read.

References:
    Reading Digits in Natural Images with Unsupervised Feature Learning. Yuval Netzer, Tao
    Wang, Adam Coates, Alessandro Bissacco, Bo Wu, Andrew Y. Ng, 2011. NIPS Workshop on Deep
    Learning and Unsupervised Feature Learning.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from shortinfer._checks import ArgumentError, MissingDependencyError, MissingFileError
from shortinfer.data._arguments import check_choice, check_image_size, check_path
from shortinfer.data._image_data import ImageData
from shortinfer.data._npy_cache import cached_split, file_fingerprint

__all__ = ["SVHN_SPLITS", "load_svhn"]

#: Valid ``split`` values, each read from ``{split}_32x32.mat``.
SVHN_SPLITS = ("train", "test", "extra")


def _require_loadmat() -> Any:
    try:
        from scipy.io import loadmat
    except ImportError as err:
        raise MissingDependencyError(
            "reading SVHN .mat files needs scipy, which is not installed; "
            'pip install "shortinfer[bench]" (or: pip install scipy)'
        ) from err
    return loadmat


def _read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    loadmat = _require_loadmat()
    try:
        contents = loadmat(path, variable_names=("X", "y"))
    except NotImplementedError as err:  # scipy's answer to MATLAB v7.3 (HDF5) files
        raise ArgumentError(
            f"{path} is a MATLAB v7.3 (HDF5) file, which scipy.io.loadmat cannot read; the "
            "official SVHN files are v5: use those, or re-save with savemat(..., format='5')"
        ) from err
    except Exception as err:  # noqa: BLE001 - scipy raises many types for a damaged file
        raise ArgumentError(
            f"could not read {path} as a MATLAB file ({type(err).__name__}: {err}); it is "
            "probably truncated or corrupt: download it again"
        ) from err
    if "X" not in contents or "y" not in contents:
        raise ArgumentError(
            f"{path} lacks the variables 'X' and 'y' (found: "
            f"{sorted(k for k in contents if not k.startswith('__'))}); is it an SVHN file?"
        )
    pixels, labels = np.asarray(contents["X"]), np.asarray(contents["y"])
    if pixels.ndim != 4 or pixels.shape[2] != 3:
        raise ArgumentError(
            f"{path}: X has shape {pixels.shape}, expected (32, 32, 3, N) (height, width, "
            "channel, image)"
        )
    count = pixels.shape[3]
    if labels.shape not in ((count, 1), (count,)):
        raise ArgumentError(
            f"{path}: y has shape {labels.shape}, expected ({count}, 1) to match X"
        )
    if pixels.dtype != np.uint8:
        if not np.issubdtype(pixels.dtype, np.number) or not np.all(
            (pixels >= 0) & (pixels <= 255) & (pixels == np.round(pixels))
        ):
            raise ArgumentError(f"{path}: X must hold integers 0-255, got dtype {pixels.dtype}")
        pixels = pixels.astype(np.uint8)
    labels = labels.reshape(-1)
    if not np.all(np.isin(labels, np.arange(11))):
        raise ArgumentError(f"{path}: y must hold digit labels 1-10 (10 meaning 0)")
    labels = labels.astype(np.int64)
    labels[labels == 10] = 0
    # (H, W, C, N) -> (N, C, H, W)
    return np.ascontiguousarray(pixels.transpose(3, 2, 0, 1)), labels


def load_svhn(
    root: str | os.PathLike[str],
    *,
    split: Literal["train", "test", "extra"] = "train",
    image_size: int | tuple[int, int] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> ImageData:
    r"""Load SVHN from ``root/{split}_32x32.mat``.

    ``X`` (32, 32, 3, N) is transposed to (N, 3, 32, 32) and scaled by $u / 127.5 - 1$;
    labels ``y`` (N, 1) are flattened and 10 is mapped to 0, so labels are the digits 0-9.

    Arguments:
        root: Directory holding ``train_32x32.mat`` / ``test_32x32.mat`` / ``extra_32x32.mat``.
        split: ``"train"`` (73,257 images), ``"test"`` (26,032) or ``"extra"`` (531,131).
        image_size: ``None`` keeps 32×32; an int ``s`` or ``(H, W)`` resizes with bilinear
            interpolation (antialiased when shrinking) to cover H×W, then center-crops.
        cache_dir: The ``.npy`` cache folder (``None``: the shared one; see `shortinfer.data`).
        use_cache: If false, neither read nor write the cache.

    Returns:
        `shortinfer.data.ImageData` with images float32 (N, 3, H, W) in [-1, 1] and
        labels int64 (N,) in 0-9.

    Raises:
        FileNotFoundError: If ``root`` or the split's file is missing.
        ValueError: If the file is not a readable MATLAB v5 file, lacks ``X``/``y``, or they
            have the wrong shapes or values; or if an option is invalid.
        ImportError: If scipy is not installed.

    Examples:
        >>> import tempfile
        >>> from scipy.io import savemat
        >>> pixels = np.zeros((32, 32, 3, 2), dtype=np.uint8)
        >>> pixels[..., 1] = 255
        >>> with tempfile.TemporaryDirectory() as root:
        ...     savemat(f"{root}/test_32x32.mat", {"X": pixels, "y": np.array([[10], [3]])})
        ...     data = load_svhn(root, split="test", use_cache=False)
        >>> data.images.shape, data.labels.tolist()
        (torch.Size([2, 3, 32, 32]), [0, 3])
        >>> data.images[:, 0, 0, 0].tolist()
        [-1.0, 1.0]
    """
    root_path = check_path("root", root)
    check_choice("split", split, SVHN_SPLITS)
    size = check_image_size(image_size)
    if not root_path.is_dir():
        raise MissingFileError(
            f"SVHN root {str(root_path)!r} is not a directory; pass root= the folder that holds "
            "train_32x32.mat and test_32x32.mat"
        )
    mat_path = root_path / f"{split}_32x32.mat"
    if not mat_path.is_file():
        raise MissingFileError(
            f"{mat_path} does not exist; SVHN split {split!r} is read from {split}_32x32.mat "
            "(the official 'cropped digits' file), so put it in root"
        )

    sources = {"source": file_fingerprint(mat_path)}
    read = functools.partial(_read_svhn_mat, mat_path)
    return cached_split(
        "svhn", split, size, sources, read, cache_dir=cache_dir, use_cache=use_cache
    )
