r"""The building blocks shared by the generator and the Ladder-VAE's inference network.

Shapes use N for the batch, ``n_f`` for the number of filters and S for a spatial side.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

#: Lower bound added to every softplus scale so that log-scales (used by the Ladder-VAE's
#: precision weighting and KL) stay finite. A numerical choice, not from the paper.
MIN_SCALE = 1e-3


def is_int(value: object) -> bool:
    """Whether ``value`` is an int (and not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


class Projection(nn.Module):
    r"""The projection $p_l$: a linear layer, GELU, then a stride-2 transposed conv.

    Maps a latent with shape ``(N, d)`` to features with shape ``(N, n_f, H/2, W/2)``. The linear
    layer produces ``(N, n_f, H/4, W/4)`` and the transposed conv (kernel 4, stride 2, padding
    1) doubles the spatial size.
    """

    def __init__(self, latent_size: int, num_filters: int, base_size: int) -> None:
        super().__init__()
        self.num_filters = num_filters
        self.base_size = base_size
        self.linear = nn.Linear(latent_size, num_filters * base_size * base_size)
        self.deconv = nn.ConvTranspose2d(num_filters, num_filters, 4, stride=2, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        features = self.linear(z).reshape(-1, self.num_filters, self.base_size, self.base_size)
        return self.deconv(F.gelu(features))


class ResidualBlock(nn.Module):
    r"""The deterministic block $d_l$: two 3x3 convs with GELU and a skip connection.

    $$
    d(h) = h + \mathrm{conv}_2\big(\mathrm{GELU}(\mathrm{conv}_1(\mathrm{GELU}(h)))\big)
    $$

    (pre-activation ordering, so the residual stream itself stays linear). Shape-preserving:
    ``(N, n_f, S, S)`` in and out.
    """

    def __init__(self, num_filters: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_filters, num_filters, 3, padding=1)
        self.conv2 = nn.Conv2d(num_filters, num_filters, 3, padding=1)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.conv2(F.gelu(self.conv1(F.gelu(h))))


class Head(nn.Module):
    r"""One of the heads $\mu_l$ or $\sigma_l$: a conv2d and a linear layer.

    A stride-2 conv (kernel 4, padding 1) halves ``(N, n_f, S, S)`` to ``(N, n_f, S/2, S/2)``,
    then GELU, flatten and a linear layer give ``(N, d)``.
    """

    def __init__(self, num_filters: int, feature_size: int, latent_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(num_filters, num_filters, 4, stride=2, padding=1)
        self.linear = nn.Linear(num_filters * (feature_size // 2) ** 2, latent_size)

    def forward(self, h: Tensor) -> Tensor:
        return self.linear(F.gelu(self.conv(h)).flatten(1))


def positive_scale(raw: Tensor) -> Tensor:
    """Map an unconstrained output to a positive scale, ``softplus(raw) + 1e-3``."""
    return F.softplus(raw) + MIN_SCALE
