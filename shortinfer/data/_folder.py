r"""A plain directory of images (searched recursively), decoded with Pillow.

Files ending in ``.png``, ``.jpg``, ``.jpeg``, ``.bmp`` or ``.webp`` (any case) are taken,
except hidden files and folders (names starting with ``.``), in order of their path
relative to ``root``. Each is decoded with Pillow and converted to ``mode`` (``"RGB"``: 3
channels, alpha dropped; ``"L"``: 1 channel, ITU-R 601-2 luma). With ``image_size`` = (H, W)
an image is resized with Pillow's ``BILINEAR`` filter (antialiased when shrinking), keeping
its aspect ratio, so that it just covers H×W, then center-cropped to H×W — torchvision's
``Resize(s)`` then ``CenterCrop(s)`` for an int ``s``. Pixels are scaled by
$u / 127.5 - 1$ to [-1, 1].

A file Pillow cannot decode raises ``ValueError`` naming it; with ``skip_corrupt=True`` such
files are left out and one ``UserWarning`` reports how many (and the first few names). The
decoded arrays are cached as ``.npy``, keyed by the options and by each file's path, size
and modification time, so a second call with the same folder reads the cache.

Pillow is an optional dependency, imported only when images are decoded:
``pip install "shortinfer[bench]"`` installs it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Literal

import numpy as np

from shortinfer._checks import ArgumentTypeError, MissingFileError
from shortinfer.data._arguments import (
    check_choice,
    check_image_size,
    check_num_workers,
    check_path,
)
from shortinfer.data._image_data import ImageData, to_image_data
from shortinfer.data._images import IMAGE_EXTENSIONS, decode_images, list_image_files
from shortinfer.data._npy_cache import cached_arrays, files_fingerprint

__all__ = ["load_image_folder"]


def load_image_folder(
    root: str | os.PathLike[str],
    *,
    image_size: int | tuple[int, int] | None = None,
    mode: Literal["RGB", "L"] = "RGB",
    skip_corrupt: bool = False,
    num_workers: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> ImageData:
    r"""Load every image under ``root`` (recursively) as one tensor.

    Which files are taken, how they are decoded and resized, and what happens to corrupt
    ones is described in `shortinfer.data._folder` (the module).

    Arguments:
        root: Directory of images.
        image_size: ``None`` requires all images to share one size; an int ``s`` (for s×s) or
            ``(H, W)`` resizes and crops as above.
        mode: ``"RGB"`` or ``"L"`` (grayscale).
        skip_corrupt: Skip undecodable files with a warning instead of raising.
        num_workers: Decoding processes (``None``: automatic; see `shortinfer.data`).
        cache_dir: The ``.npy`` cache folder (``None``: the shared one; see `shortinfer.data`).
        use_cache: If false, neither read nor write the cache.

    Returns:
        `shortinfer.data.ImageData` with images float32 (N, C, H, W) in [-1, 1]
        (C = 3 for ``"RGB"``, 1 for ``"L"``) and ``labels=None``.

    Raises:
        FileNotFoundError: If ``root`` does not exist or holds no image files.
        NotADirectoryError: If ``root`` is a file.
        PermissionError: If ``root`` or a folder under it cannot be read.
        ValueError: If a file cannot be decoded (without ``skip_corrupt``), if every file is
            corrupt, images differ in size without ``image_size``, or an option is invalid.
        ImportError: If Pillow is not installed.

    Examples:
        >>> import tempfile
        >>> from PIL import Image
        >>> with tempfile.TemporaryDirectory() as root:
        ...     Image.new("RGB", (40, 30), (255, 0, 0)).save(f"{root}/a.png")
        ...     Image.new("RGB", (30, 40), (0, 0, 255)).save(f"{root}/b.jpg", quality=100)
        ...     data = load_image_folder(root, image_size=16, use_cache=False)
        >>> data.images.shape, data.labels
        (torch.Size([2, 3, 16, 16]), None)
        >>> data.images[0, :, 0, 0].tolist()
        [1.0, -1.0, -1.0]
    """
    root_path = check_path("root", root)
    size = check_image_size(image_size)
    check_choice("mode", mode, ("RGB", "L"))
    if not isinstance(skip_corrupt, bool):
        raise ArgumentTypeError(f"skip_corrupt must be a bool, got {skip_corrupt!r}")
    workers = check_num_workers(num_workers)
    paths = _image_files(root_path)

    arrays = _decode_cached(
        paths,
        root_path,
        size=size,
        mode=mode,
        skip_corrupt=skip_corrupt,
        workers=workers,
        cache_dir=cache_dir,
        use_cache=use_cache,
    )
    skipped = [str(name) for name in arrays["skipped"].reshape(-1)]
    if skipped:
        shown = ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        warnings.warn(
            f"skipped {len(skipped)} corrupt image file(s) of {len(paths)} under "
            f"{str(root_path)!r}: {shown}",
            UserWarning,
            stacklevel=2,
        )
    return to_image_data(arrays["images"], None)


def _image_files(root: Path) -> list[Path]:
    paths = list_image_files(root, recursive=True)
    if not paths:
        raise MissingFileError(
            f"image folder {str(root)!r} (searched recursively) holds no files ending in "
            f"{', '.join(IMAGE_EXTENSIONS)}; pass root= the folder that contains the images"
        )
    return paths


def _decode_cached(
    paths: list[Path],
    root: Path,
    *,
    size: tuple[int, int] | None,
    mode: str,
    skip_corrupt: bool,
    workers: int | None,
    cache_dir: str | os.PathLike[str] | None,
    use_cache: bool,
) -> dict[str, np.ndarray]:
    """The decoded images and the skipped files' names, from the cache or decoded now."""

    def build() -> dict[str, np.ndarray]:
        images, skipped = decode_images(
            paths, mode=mode, crop=None, size=size, skip_corrupt=skip_corrupt, num_workers=workers
        )
        relative = [os.path.relpath(p, root) for p in skipped]
        # A fixed-width unicode array (never an object array) so it loads without pickle.
        return {"images": images, "skipped": np.array(relative, dtype=np.str_)}

    options = {
        "image_size": size,
        "mode": mode,
        "skip_corrupt": skip_corrupt,
        # 2: 16-bit grayscale rescaled instead of clipped; older caches are rebuilt.
        "decoder": 2,
        "files": files_fingerprint(paths, root),
    }
    return cached_arrays(
        dataset="folder",
        tag=mode,
        options=options,
        names=("images", "skipped"),
        build=build,
        cache_dir=cache_dir,
        use_cache=use_cache,
    )
