r"""Loaders for local image datasets, returning float32 tensors in [-1, 1].

Every loader returns `ImageData` ``(images, labels)`` with images of shape
(N, C, H, W), scaled from uint8 ``u`` as ``u / 127.5 - 1``, and caches its preprocessed
arrays as ``.npy`` files. Nothing here downloads anything: loaders read local paths.

Arguments shared by the loaders:

- ``num_workers`` (the image-file loaders): decoding processes; ``0`` decodes in this
  process, ``None`` picks 0 for fewer than 512 images and otherwise one per CPU core (at most
  8). Workers are started with ``fork`` on Linux and ``spawn`` elsewhere (there, call the
  loader from under ``if __name__ == "__main__":``).
- ``cache_dir``: where the preprocessed ``.npy`` arrays are cached; ``None`` means
  ``$SHORTINFER_CACHE`` or ``~/.cache/shortinfer``, the folder the FID weights also use. An
  entry is keyed by the options and by every source file's name, size and modification time,
  so a changed file is read again.
- ``use_cache``: if false, neither read nor write the cache.
"""

from shortinfer.data._celeba import CELEBA_SPLITS, load_celeba
from shortinfer.data._folder import load_image_folder
from shortinfer.data._image_data import ImageData
from shortinfer.data._mnist import (
    MNIST5K_INSTALL_HINT,
    find_mnist5k_csv,
    load_fashion_mnist,
    load_mnist,
    load_mnist5k,
    read_idx,
)
from shortinfer.data._registry import DATASETS, load_dataset
from shortinfer.data._svhn import SVHN_SPLITS, load_svhn

__all__ = [
    "CELEBA_SPLITS",
    "DATASETS",
    "MNIST5K_INSTALL_HINT",
    "SVHN_SPLITS",
    "ImageData",
    "find_mnist5k_csv",
    "load_celeba",
    "load_dataset",
    "load_fashion_mnist",
    "load_image_folder",
    "load_mnist",
    "load_mnist5k",
    "load_svhn",
    "read_idx",
]
