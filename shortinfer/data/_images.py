r"""Image preprocessing shared by the loaders: geometry, listing and decoding image files.

The "resize to cover, then center-crop" geometry serves both the array path (torch) and the
image path (Pillow). Pillow is imported lazily, inside the functions that need it, so that
``import shortinfer.data`` works with only torch and numpy installed; decoding runs in worker
processes for large folders.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import multiprocessing
import os
import sys
import warnings
from collections.abc import Generator, Sequence
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from shortinfer._checks import (
    AccessError,
    ArgumentError,
    MissingDependencyError,
    MissingFileError,
    NotAFolderError,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "center_crop_box",
    "cover_size",
    "decode_images",
    "list_image_files",
    "require_pillow",
    "resize_uint8",
]

#: File extensions (lower case) that the folder and CelebA loaders treat as images.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

# Below this many images, decoding in the calling process beats starting worker processes.
_MIN_IMAGES_FOR_WORKERS = 512
# Images per task sent to a worker: large enough to amortise inter-process overhead, small
# enough that the first error surfaces quickly.
_MAX_CHUNK = 256
_PILLOW_HINT = 'pip install "shortinfer[bench]" (or: pip install Pillow)'


def require_pillow() -> Any:
    r"""Import and return ``PIL.Image``, or raise ``ImportError`` naming the extra to install."""
    try:
        from PIL import Image
    except ImportError as err:
        raise MissingDependencyError(
            f"decoding image files needs Pillow, which is not installed; {_PILLOW_HINT}"
        ) from err
    return Image


def cover_size(width: int, height: int, target: tuple[int, int]) -> tuple[int, int]:
    r"""The (width, height) to resize to so the image covers ``target`` = (H, W).

    The aspect ratio is kept; the binding side becomes exactly the target side and the other
    side is ``floor(target_side * other / binding)``, clipped below at its target. For square
    targets this is torchvision's ``Resize(s)`` rule (short side to ``s``).
    """
    target_h, target_w = target
    if target_w * height >= target_h * width:  # width is the binding side
        return target_w, max(target_h, target_w * height // width)
    return max(target_w, target_h * width // height), target_h


def center_crop_box(width: int, height: int, crop_w: int, crop_h: int) -> tuple[int, int]:
    r"""(left, top) of a centered ``crop_w``×``crop_h`` crop, rounded as torchvision does."""
    return int(round((width - crop_w) / 2.0)), int(round((height - crop_h) / 2.0))


def resize_uint8(images: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    r"""Resize uint8 images (N, C, h, w) to (N, C, H, W) by cover-resize and center crop.

    Interpolation is bilinear (half-pixel centers, ``align_corners=False``) with antialiasing
    when shrinking (``torch.nn.functional.interpolate(..., antialias=True)``, which follows
    Pillow's ``BILINEAR`` filter); results are rounded to the nearest integer and clipped to
    [0, 255], as Pillow does. Images already of the target size are returned unchanged.
    """
    if size is None or images.shape[2:] == size:
        return images
    count, channels, height, width = images.shape
    new_w, new_h = cover_size(width, height, size)
    left, top = center_crop_box(new_w, new_h, size[1], size[0])
    out = np.empty((count, channels, *size), dtype=np.uint8)
    step = 4096  # bounds the float32 working memory
    for start in range(0, count, step):
        chunk = torch.from_numpy(np.ascontiguousarray(images[start : start + step]))
        resized = torch.nn.functional.interpolate(
            chunk.to(torch.float32),
            size=(new_h, new_w),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
        resized = resized[:, :, top : top + size[0], left : left + size[1]]
        out[start : start + step] = resized.round_().clamp_(0, 255).to(torch.uint8).numpy()
    return out


def list_image_files(root: Path, *, recursive: bool, what: str = "image folder") -> list[Path]:
    r"""Image files under ``root`` sorted by relative POSIX path; hidden names are ignored.

    Raises:
        FileNotFoundError: If ``root`` does not exist.
        NotADirectoryError: If ``root`` is not a directory.
        PermissionError: If ``root`` or a subdirectory cannot be read.
    """
    if not root.exists():
        raise MissingFileError(
            f"{what} {str(root)!r} does not exist; pass root= an existing directory of images"
        )
    if not root.is_dir():
        raise NotAFolderError(
            f"{what} {str(root)!r} is a file, not a directory; pass the folder that holds it"
        )

    def on_error(err: OSError) -> None:
        raise AccessError(
            f"cannot read directory {err.filename!r} under {what} {str(root)!r} "
            f"({err.strerror}); check its permissions"
        ) from err

    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error):
        if recursive:
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        else:
            dirnames[:] = []
        for filename in filenames:
            if filename.startswith("."):
                continue  # e.g. macOS "._x.jpg" resource forks, which are not images
            if os.path.splitext(filename)[1].lower() in IMAGE_EXTENSIONS:
                found.append(Path(dirpath) / filename)
    found.sort(key=lambda p: p.relative_to(root).as_posix())
    return found


class _DecodeTask(NamedTuple):
    paths: tuple[str, ...]
    mode: str
    crop: int | None
    size: tuple[int, int] | None


def _to_8_bit(handle: Any, image_module: Any) -> Any:
    r"""Rescale a 16-bit grayscale image to 8 bits, $u_8 = \mathrm{round}(u_{16} / 257)$.

    Pillow opens 16-bit grayscale PNGs in mode ``"I;16"`` (or ``"I"``), and its
    ``convert("L")`` clips every value above 255 to white instead of rescaling; 65535 / 257 =
    255 maps full scale to full scale. (16-bit colour PNGs already open as 8-bit ``"RGB"``.)
    """
    if handle.mode.startswith("I;16") or (handle.mode == "I" and handle.format == "PNG"):
        array = np.asarray(handle).astype(np.float64)
        return image_module.fromarray(np.rint(array / 257.0).clip(0, 255).astype(np.uint8))
    return handle


def _decode_one(path: str, *, mode: str, crop: int | None, size: tuple[int, int] | None) -> Any:
    r"""Decode one file to a uint8 (H, W, C) array, or return an error string if corrupt."""
    image_module = require_pillow()
    try:
        with image_module.open(path) as handle:
            image = _to_8_bit(handle, image_module).convert(mode)  # forces a full decode
    except Exception as err:  # noqa: BLE001 - any decoder failure means "this file is unusable"
        return f"{type(err).__name__}: {err}"
    width, height = image.size
    if crop is not None:
        if width < crop or height < crop:
            raise ArgumentError(
                f"image {path} is {width}×{height} (W×H), smaller than the {crop}×{crop} center "
                "crop; pass crop='none' or use larger images"
            )
        left, top = center_crop_box(width, height, crop, crop)
        image = image.crop((left, top, left + crop, top + crop))
        width = height = crop
    if size is not None and (height, width) != size:
        new_w, new_h = cover_size(width, height, size)
        resample = getattr(image_module, "Resampling", image_module).BILINEAR
        if (new_w, new_h) != (width, height):
            image = image.resize((new_w, new_h), resample=resample)
        left, top = center_crop_box(new_w, new_h, size[1], size[0])
        image = image.crop((left, top, left + size[1], top + size[0]))
    array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def _decode_chunk(task: _DecodeTask) -> list[Any]:
    return [_decode_one(p, mode=task.mode, crop=task.crop, size=task.size) for p in task.paths]


def _auto_workers(count: int) -> int:
    if count < _MIN_IMAGES_FOR_WORKERS:
        return 0
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return 0 if cores <= 1 else min(cores, 8)


def _pool_context() -> BaseContext:
    # fork is what torch's DataLoader uses on Linux: workers start in milliseconds instead of
    # re-importing torch (seconds), and they only run Pillow and numpy, never torch.
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _iter_decoded(tasks: list[_DecodeTask], num_workers: int) -> Generator[list[Any], None, None]:
    if num_workers == 0:
        for task in tasks:
            yield _decode_chunk(task)
        return
    executor = concurrent.futures.ProcessPoolExecutor(
        max_workers=num_workers, mp_context=_pool_context()
    )
    try:
        with warnings.catch_warnings():
            # Python >= 3.12 warns that fork() in a multi-threaded process may deadlock; the
            # children here do not touch torch's thread pools (see _pool_context). map()
            # submits every task, so the workers are started inside this block.
            warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
            results = executor.map(_decode_chunk, tasks)
        yield from results
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


class _Stack:
    r"""Collects decoded images in order into one preallocated (N, C, H, W) uint8 array."""

    def __init__(self, total: int, *, skip_corrupt: bool) -> None:
        self.total, self.skip_corrupt = total, skip_corrupt
        self.out: np.ndarray | None = None
        self.first_path = ""
        self.skipped: list[str] = []
        self.count = 0  # images stored
        self.seen = 0  # files processed, stored or skipped

    def add(self, path: str, result: np.ndarray | str) -> None:
        self.seen += 1
        if isinstance(result, str):
            if not self.skip_corrupt:
                raise ArgumentError(
                    f"could not decode image {path} ({result}); delete or replace the file, "
                    "or pass skip_corrupt=True to skip unreadable images"
                )
            self.skipped.append(path)
            return
        if self.out is None:
            height, width, channels = result.shape
            self.out = np.empty((self.total, channels, height, width), dtype=np.uint8)
            self.first_path = path
        elif result.shape[:2] != self.out.shape[2:]:
            raise ArgumentError(
                f"image {path} is {result.shape[1]}×{result.shape[0]} (W×H) but the first image "
                f"{self.first_path} is {self.out.shape[3]}×{self.out.shape[2]}; all images must "
                "share one size, so pass image_size= (e.g. image_size=64) to resize them"
            )
        self.out[self.count] = result.transpose(2, 0, 1)
        self.count += 1


def decode_images(
    paths: Sequence[Path],
    *,
    mode: str,
    crop: int | None,
    size: tuple[int, int] | None,
    skip_corrupt: bool,
    num_workers: int | None,
) -> tuple[np.ndarray, list[str]]:
    r"""Decode image files to one uint8 array (N, C, H, W), in order, with optional workers.

    Each file is opened with Pillow and converted to ``mode``; if ``crop`` is set a centered
    ``crop``×``crop`` square is cut; if ``size`` = (H, W) is set the image is resized with
    Pillow's ``BILINEAR`` filter (antialiased when shrinking) so that it covers H×W with its
    aspect ratio kept (`cover_size`), then center-cropped to H×W.

    Returns:
        The images and the list of skipped (corrupt) paths.

    Raises:
        ValueError: If a file cannot be decoded and ``skip_corrupt`` is false, if every file is
            corrupt, or if, without ``size``, an image's size differs from the first image's.
    """
    image_module = require_pillow()
    del image_module  # imported here so a missing Pillow fails before workers start
    workers = _auto_workers(len(paths)) if num_workers is None else num_workers
    workers = min(workers, max(1, len(paths)))
    chunk = max(1, min(_MAX_CHUNK, math.ceil(len(paths) / max(1, 4 * workers))))
    names = [str(p) for p in paths]
    tasks = [
        _DecodeTask(tuple(names[i : i + chunk]), mode, crop, size)
        for i in range(0, len(names), chunk)
    ]
    stack = _Stack(len(names), skip_corrupt=skip_corrupt)
    with contextlib.closing(_iter_decoded(tasks, workers)) as chunks:
        for results in chunks:
            for result in results:
                stack.add(names[stack.seen], result)
    out, count, skipped = stack.out, stack.count, stack.skipped
    if out is None:
        raise ArgumentError(
            f"none of the {len(names)} image files could be decoded (first: {names[0]}); "
            "check that they are valid png/jpg/jpeg/bmp/webp files"
        )
    if count < len(out):
        out = out[:count].copy()
    return out, skipped
