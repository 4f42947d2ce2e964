r"""The result type of every dataset loader and the uint8 → ``[-1, 1]`` pixel scaling."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from shortinfer._checks import ArgumentTypeError

__all__ = ["ImageData", "to_image_data", "uint8_to_float"]


class ImageData(NamedTuple):
    r"""Images and, where the format has them, labels, as returned by every loader.

    Pixel values are scaled from uint8 $u \in \{0, \dots, 255\}$ to
    $x = u / 127.5 - 1 \in [-1, 1]$, so 0 maps to -1.0 and 255 to 1.0 exactly.

    Arguments:
        images: float32 tensor with shape (N, C, H, W), values in [-1, 1].
        labels: int64 tensor with shape (N,), or ``None`` for unlabeled formats (image folders,
            CelebA).

    Examples:
        >>> data = ImageData(torch.zeros(2, 1, 28, 28), torch.tensor([3, 7]))
        >>> images, labels = data
        >>> images.shape, labels.tolist()
        (torch.Size([2, 1, 28, 28]), [3, 7])
    """

    images: Tensor
    labels: Tensor | None


def uint8_to_float(array: np.ndarray) -> Tensor:
    r"""Convert uint8 pixels to a float32 tensor in [-1, 1] via $u / 127.5 - 1$.

    Arguments:
        array: uint8 array of any shape, e.g. (N, C, H, W).

    Returns:
        A float32 tensor with the same shape as ``array``.

    Examples:
        >>> uint8_to_float(np.array([0, 255], dtype=np.uint8)).tolist()
        [-1.0, 1.0]
    """
    if array.dtype != np.uint8:
        raise ArgumentTypeError(f"expected a uint8 array, got dtype {array.dtype}")
    # The division by 127.5 and subtraction of 1 are exact for 0 and 255 in float32.
    return torch.from_numpy(np.ascontiguousarray(array)).to(torch.float32).div_(127.5).sub_(1.0)


def to_image_data(images: np.ndarray, labels: np.ndarray | None) -> ImageData:
    r"""Build `ImageData` from cached uint8 images (N, C, H, W) and labels (N,)."""
    label_tensor = None
    if labels is not None:
        label_tensor = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))
    return ImageData(uint8_to_float(images), label_tensor)
