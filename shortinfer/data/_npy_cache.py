r"""The ``.npy`` cache of preprocessed arrays: keys, atomic writes, loading without pickle.

Entries live in the shared cache folder (`shortinfer._cache_dir.default_cache_dir`) unless a
loader is given ``cache_dir=``.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from shortinfer._atomic import atomic_write
from shortinfer._cache_dir import CACHE_ENV_VAR, default_cache_dir
from shortinfer._checks import ArgumentTypeError
from shortinfer.data._arguments import check_path
from shortinfer.data._image_data import ImageData, to_image_data
from shortinfer.data._images import resize_uint8

__all__ = [
    "CACHE_ENV_VAR",
    "CACHE_FORMAT_VERSION",
    "atomic_save_npy",
    "cache_key",
    "cached_arrays",
    "cached_split",
    "default_cache_dir",
    "file_fingerprint",
    "files_fingerprint",
    "resolve_cache_dir",
]

#: Bumped whenever the cached arrays' meaning changes, so that old cache files are not reused.
CACHE_FORMAT_VERSION = 1


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    r"""``cache_dir`` as a Path if given, else `default_cache_dir`."""
    if cache_dir is None:
        return default_cache_dir()
    return check_path("cache_dir", cache_dir)


def file_fingerprint(path: Path) -> list[object]:
    r"""Identify a source file by absolute path, size and modification time (ns)."""
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def files_fingerprint(paths: Iterable[Path], root: Path) -> str:
    r"""A sha256 over (path relative to ``root``, size, mtime) of many files, plus ``root``."""
    digest = hashlib.sha256(str(root.resolve()).encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"\0{path.relative_to(root).as_posix()}\0{stat.st_size}\0".encode())
        digest.update(str(stat.st_mtime_ns).encode())
    return digest.hexdigest()


def cache_key(options: Mapping[str, object]) -> str:
    r"""A short hex key for a mapping of JSON-serialisable preprocessing options."""
    payload = json.dumps(
        {"format": CACHE_FORMAT_VERSION, **options}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    r"""Write ``array`` to ``path`` in ``.npy`` format so that ``path`` is never partial.

    The array goes to a temporary file in the same directory, is flushed to disk, and is then
    renamed over ``path`` with `os.replace` (atomic on POSIX and Windows). If anything
    fails, the temporary file is removed and the exception propagates.

    Arguments:
        path: Destination file; its directory must exist.
        array: Any non-object numpy array.

    Raises:
        OSError: If writing or renaming fails (nothing is left behind).
    """
    atomic_write(path, lambda handle: np.save(handle, array, allow_pickle=False))


def _load_cached(paths: Mapping[str, Path]) -> dict[str, np.ndarray] | None:
    if not all(path.is_file() for path in paths.values()):
        return None
    arrays = {}
    try:
        for name, path in paths.items():
            arrays[name] = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        # Unreadable or damaged cache entry: rebuild it from the source.
        return None
    images = arrays.get("images")
    if images is None or images.dtype != np.uint8 or images.ndim != 4:
        return None
    labels = arrays.get("labels")
    if labels is not None and labels.shape != (images.shape[0],):
        return None
    return arrays


def cached_arrays(
    *,
    dataset: str,
    tag: str,
    options: Mapping[str, object],
    names: Sequence[str],
    build: Callable[[], Mapping[str, np.ndarray]],
    cache_dir: str | os.PathLike[str] | None,
    use_cache: bool,
) -> dict[str, np.ndarray]:
    r"""Return the arrays ``build()`` makes, reading/writing them as ``.npy`` files.

    Files are ``{cache_dir}/{dataset}-{tag}-{key}.{name}.npy`` with ``key =``
    `cache_key` ``(options)``. ``"images"`` is written last and so marks a complete entry.
    A cache that cannot be written produces a warning, not an error: the data is still returned.
    """
    if not isinstance(use_cache, bool):
        raise ArgumentTypeError(f"use_cache must be a bool, got {use_cache!r}")
    if not use_cache:
        return dict(build())
    directory = resolve_cache_dir(cache_dir)
    key = cache_key({"dataset": dataset, **options})
    paths = {name: directory / f"{dataset}-{tag}-{key}.{name}.npy" for name in names}
    hit = _load_cached(paths)
    if hit is not None:
        return hit
    arrays = dict(build())
    if sorted(arrays) != sorted(names):  # internal invariant, not user input
        raise RuntimeError(f"cache build returned {sorted(arrays)}, expected {sorted(names)}")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name in sorted(names, key=lambda n: n == "images"):
            atomic_save_npy(paths[name], arrays[name])
    except OSError as err:
        warnings.warn(
            f"could not write the {dataset} cache to {directory} ({err}); the data is returned "
            f"uncached. Pass cache_dir= a writable directory, set ${CACHE_ENV_VAR}, "
            "or pass use_cache=False to silence this",
            stacklevel=3,
        )
    return arrays


def cached_split(
    dataset: str,
    split: str,
    size: tuple[int, int] | None,
    sources: Mapping[str, object],
    read: Callable[[], tuple[np.ndarray, np.ndarray]],
    *,
    cache_dir: str | os.PathLike[str] | None,
    use_cache: bool,
) -> ImageData:
    r"""One labelled split: ``read()``'s images resized to ``size``, cached with the labels.

    The shared tail of the MNIST, Fashion-MNIST, MNIST-5k and SVHN loaders.

    Arguments:
        dataset: Cache file prefix and part of the key, e.g. ``"svhn"``.
        split: The split's name; part of the key and of the file name.
        size: Output ``(H, W)``, or ``None`` to keep the stored size.
        sources: Fingerprints of the files read (`file_fingerprint`), added to the key.
        read: Returns uint8 images ``(N, C, H, W)`` and labels ``(N,)``; called on a miss.
        cache_dir: Cache folder, or ``None`` for `default_cache_dir`.
        use_cache: If false, neither read nor write the cache.

    Returns:
        `ImageData` with images in [-1, 1] and int64 labels.
    """

    def build() -> dict[str, np.ndarray]:
        images, labels = read()
        return {"images": resize_uint8(images, size), "labels": labels}

    arrays = cached_arrays(
        dataset=dataset,
        tag=split,
        options={"split": split, "image_size": size, **sources},
        names=("images", "labels"),
        build=build,
        cache_dir=cache_dir,
        use_cache=use_cache,
    )
    return to_image_data(arrays["images"], arrays["labels"])
