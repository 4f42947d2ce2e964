r"""CelebA (aligned and cropped faces), read from a local copy.

The expected layout is torchvision's::

    ROOT/celeba/img_align_celeba/000001.jpg ... 202599.jpg     (178×218, W×H)
    ROOT/celeba/list_eval_partition.txt                        (optional: "000001.jpg 0")

Pillow is an optional dependency: ``pip install "shortinfer[bench]"``.

**Layout.** ``root`` may be torchvision's root (holding ``celeba/img_align_celeba/``), the
``celeba`` folder (holding ``img_align_celeba/``), or a bare folder of images (not
searched recursively). ``list_eval_partition.txt`` is looked for beside and inside the image
folder; each line is ``<file name> <code>`` with 0 = train, 1 = valid, 2 = test.

**Split without a partition file.** Images are sorted by file name and cut at the official
fractions: the first ``floor(N · 162770 / 202599)`` are train, those up to
``floor(N · 182637 / 202599)`` valid, the rest test. The official partition is contiguous in
file-name order, so for the full 202,599-image folder this rule gives exactly the official
split.

**Preprocessing** (torchvision's ``CenterCrop(crop)`` then ``Resize(image_size)``): decode
with Pillow as RGB, cut the centered ``crop``×``crop`` square (``crop="none"``: no crop),
then resize with Pillow's ``BILINEAR`` filter (antialiased when shrinking) to cover
``image_size`` keeping the aspect ratio, and center-crop to it; scale by
$u / 127.5 - 1$. The default 140×140 crop keeps the face and drops most background;
it is a crop widely used for 64×64 CelebA in latent-variable and autoencoder work (e.g.
Ghosh et al. 2020, "From Variational to Deterministic Autoencoders",
https://arxiv.org/abs/1903.12436). ``"148"`` is a slightly looser crop also in use.

**Subset.** ``subset=40000`` keeps the first 40,000 images of the split in file-name order:
the size of the CelebA training subset the short-run inference authors used.

References:
    Deep Learning Face Attributes in the Wild. Ziwei Liu, Ping Luo, Xiaogang Wang, Xiaoou Tang,
    2015. https://arxiv.org/abs/1411.7766
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, TypeGuard

import numpy as np

from shortinfer._checks import (
    ArgumentError,
    ArgumentTypeError,
    MissingFileError,
    NotAFolderError,
)
from shortinfer.data._arguments import (
    check_choice,
    check_image_size,
    check_num_workers,
    check_path,
)
from shortinfer.data._image_data import ImageData, to_image_data
from shortinfer.data._images import decode_images, list_image_files
from shortinfer.data._npy_cache import cached_arrays, file_fingerprint, files_fingerprint

__all__ = ["CELEBA_SPLITS", "load_celeba"]

#: Valid ``split`` values; the partition file codes them as 0 (train), 1 (valid), 2 (test).
CELEBA_SPLITS = ("train", "valid", "test", "all")
_SPLIT_CODES = {"train": 0, "valid": 1, "test": 2}

# The official partition (list_eval_partition.txt) is contiguous in file-name order:
# 000001-162770 train, 162771-182637 valid, 182638-202599 test. A folder without the file is
# split at the same fractions of its sorted file list, which reproduces the official split
# exactly when all 202,599 images are present.
_OFFICIAL_TOTAL = 202_599
_OFFICIAL_TRAIN_END = 162_770
_OFFICIAL_VALID_END = 182_637

_CROPS = {"none": None, "140": 140, "148": 148}
_PARTITION_NAME = "list_eval_partition.txt"


def _locate(root: Path) -> tuple[Path, Path | None]:
    r"""(image folder, partition file or None) for the three accepted layouts."""
    if not root.exists():
        raise MissingFileError(
            f"CelebA root {str(root)!r} does not exist; pass root= the directory that holds "
            "celeba/img_align_celeba/ (torchvision's layout)"
        )
    if not root.is_dir():
        raise NotAFolderError(f"CelebA root {str(root)!r} is a file, not a directory")
    image_dir = root  # a bare folder of images
    for nested in (root / "celeba" / "img_align_celeba", root / "img_align_celeba"):
        if nested.is_dir():
            image_dir = nested
            break
    for candidate in (image_dir.parent / _PARTITION_NAME, image_dir / _PARTITION_NAME):
        if candidate.is_file():
            return image_dir, candidate
    return image_dir, None


def _read_partition(path: Path, image_dir: Path) -> list[tuple[str, int]]:
    entries = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise ArgumentError(
                    f"{path}, line {number}: expected '<file name> <0|1|2>' (0 train, 1 valid, "
                    f"2 test), got {line.rstrip()!r}"
                )
            entries.append((fields[0], int(fields[1])))
    if not entries:
        raise ArgumentError(f"partition file {path} lists no images")
    return entries


def _split_by_rule(names: list[str]) -> list[tuple[str, int]]:
    r"""The fixed rule for folders without a partition file (see `load_celeba`)."""
    total = len(names)
    train_end = total * _OFFICIAL_TRAIN_END // _OFFICIAL_TOTAL
    valid_end = total * _OFFICIAL_VALID_END // _OFFICIAL_TOTAL
    return [(n, 0 if i < train_end else 1 if i < valid_end else 2) for i, n in enumerate(names)]


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_subset(subset: object) -> None:
    if subset is None:
        return
    if not _is_int(subset):
        raise ArgumentTypeError(
            f"subset must be None or an int, got {subset!r}; e.g. subset=40000"
        )
    if subset <= 0:
        raise ArgumentError(f"subset must be positive, got {subset}; e.g. subset=40000")


def _split_files(
    root: Path, split: str, subset: int | None
) -> tuple[Path, Path | None, list[Path]]:
    """(image folder, partition file or None, the split's image files in name order)."""
    image_dir, partition = _locate(root)
    if partition is not None:
        entries = _read_partition(partition, image_dir)
    else:
        files = list_image_files(image_dir, recursive=False, what="CelebA image folder")
        if not files:
            raise MissingFileError(
                f"no CelebA images under {str(root)!r}: expected "
                "celeba/img_align_celeba/*.jpg (torchvision's layout) or a folder of images"
            )
        entries = _split_by_rule([p.name for p in files])
    names = sorted(n for n, code in entries if split == "all" or code == _SPLIT_CODES[split])
    if subset is not None:
        if subset > len(names):
            raise ArgumentError(
                f"subset={subset} but split {split!r} has only {len(names)} images under "
                f"{str(image_dir)!r}; pass a smaller subset, or subset=None for all of them"
            )
        names = names[:subset]
    if not names:
        raise ArgumentError(
            f"split {split!r} of the CelebA images under {str(image_dir)!r} is empty; "
            f"choose another split from {', '.join(CELEBA_SPLITS)}"
        )
    paths = [image_dir / name for name in names]
    missing = [path.name for path in paths if not path.is_file()]
    if missing:
        raise MissingFileError(
            f"{len(missing)} image(s) of split {split!r} listed in {partition} are missing from "
            f"{image_dir} (first: {missing[0]}); re-extract img_align_celeba, or remove the "
            "partition file to split the images that are present by the file-name rule"
        )
    return image_dir, partition, paths


def load_celeba(
    root: str | os.PathLike[str],
    *,
    split: Literal["train", "valid", "test", "all"] = "train",
    image_size: int | tuple[int, int] = 64,
    crop: Literal["none", "140", "148", 140, 148] = "140",
    subset: int | None = None,
    num_workers: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> ImageData:
    r"""Load CelebA faces, center-cropped and resized, as one tensor in [-1, 1].

    The layout, the split rule, the preprocessing and ``subset`` are described in
    `shortinfer.data._celeba` (the module); the decoded images are cached (`shortinfer.data`).

    Arguments:
        root: The CelebA root (see the module).
        split: One of `CELEBA_SPLITS`.
        image_size: Output size, an int ``s`` (s×s, usually 32 or 64) or ``(H, W)``.
        crop: ``"140"`` (default), ``"148"`` or ``"none"``; the ints 140 and 148 also work.
        subset: If given, keep only the first ``subset`` images of the split (sorted by name).
        num_workers: Decoding processes (``None``: automatic; see `shortinfer.data`).
        cache_dir: The ``.npy`` cache folder (``None``: the shared one; see `shortinfer.data`).
        use_cache: If false, neither read nor write the cache.

    Returns:
        `shortinfer.data.ImageData`: float32 images (N, 3, H, W) in [-1, 1], ``labels=None``.

    Raises:
        FileNotFoundError: If ``root`` is missing, holds no images, or the partition file lists
            images that are missing.
        NotADirectoryError: If ``root`` is a file.
        ValueError: If the partition file is malformed, an image is undecodable or smaller than
            the crop, ``subset`` exceeds the split, or an option is invalid.
        ImportError: If Pillow is not installed.

    Examples:
        A bare folder of eight 178×218 images (no partition file: 6 train, 1 valid, 1 test):

        >>> import tempfile
        >>> from PIL import Image
        >>> with tempfile.TemporaryDirectory() as root:
        ...     for index in range(1, 9):
        ...         face = Image.new("RGB", (178, 218), (index * 30, 90, 160))
        ...         face.save(f"{root}/{index:06d}.jpg")
        ...     data = load_celeba(root, split="train", image_size=32, use_cache=False)
        >>> data.images.shape
        torch.Size([6, 3, 32, 32])
        >>> bool(data.images.min() >= -1.0 and data.images.max() <= 1.0)
        True
    """
    root_path = check_path("root", root)
    check_choice("split", split, CELEBA_SPLITS)
    size = check_image_size(image_size)
    if size is None:
        raise ArgumentError("image_size must be given for CelebA, e.g. image_size=64 or 32")
    crop_name = check_choice("crop", str(crop) if _is_int(crop) else crop, tuple(_CROPS))
    _check_subset(subset)
    workers = check_num_workers(num_workers)
    image_dir, partition, paths = _split_files(root_path, split, subset)

    arrays = cached_arrays(
        dataset="celeba",
        tag=f"{split}-{size[0]}x{size[1]}",
        options={
            "split": split,
            "image_size": size,
            "crop": crop_name,
            "subset": subset,
            "files": files_fingerprint(paths, image_dir),
            "partition": None if partition is None else file_fingerprint(partition),
        },
        names=("images",),
        build=lambda: {"images": _decode(paths, _CROPS[crop_name], size, workers)},
        cache_dir=cache_dir,
        use_cache=use_cache,
    )
    return to_image_data(arrays["images"], None)


def _decode(
    paths: list[Path], crop: int | None, size: tuple[int, int], workers: int | None
) -> np.ndarray:
    images, _ = decode_images(
        paths, mode="RGB", crop=crop, size=size, skip_corrupt=False, num_workers=workers
    )
    return images
