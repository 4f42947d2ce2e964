r"""Loaders for local image datasets, returning float32 tensors in [-1, 1].

Every loader returns `ImageData` ``(images, labels)`` with images of shape
(N, C, H, W), scaled from uint8 ``u`` as ``u / 127.5 - 1``, and caches its preprocessed
arrays as ``.npy`` files. Nothing here downloads anything: loaders read local paths.
"""

from shortinfer.data._image_data import ImageData
from shortinfer.data.celeba import CELEBA_SPLITS, load_celeba
from shortinfer.data.folder import load_image_folder
from shortinfer.data.mnist import (
    MNIST5K_INSTALL_HINT,
    find_mnist5k_csv,
    load_fashion_mnist,
    load_mnist,
    load_mnist5k,
    read_idx,
)
from shortinfer.data.registry import DATASETS, load_dataset
from shortinfer.data.svhn import SVHN_SPLITS, load_svhn

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
