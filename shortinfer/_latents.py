r"""The layout of a latent variable: one tensor, or a dict of named blocks, seen as a flat vector.

The engine works on flat latents of shape ``(B, D)`` so that Jacobians are plain ``(D, D)``
matrices, and hands ``log_joint`` the structured view the user declared.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from shortinfer._checks import ArgumentError, ArgumentTypeError

__all__ = ["LatentLayout", "Latent", "ShapeLike"]

ShapeLike = int | Sequence[int] | torch.Size
Latent = Tensor | dict[str, Tensor]


def _as_shape(shape: ShapeLike, *, name: str) -> torch.Size:
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    # Strings are sequences too ("12" would read as (1, 2)), and int() would truncate 2.7.
    if (
        isinstance(shape, (str, bytes))
        or not isinstance(shape, Sequence)
        or any(isinstance(s, bool) or not hasattr(type(s), "__index__") for s in shape)
    ):
        raise ArgumentTypeError(
            f"{name} must be an int or a sequence of ints; received {shape!r}. "
            "Pass e.g. latent_shape=(64,) or latent_shape={'z1': (32,), 'z2': (16,)}."
        )
    size = torch.Size(tuple(operator.index(s) for s in shape))
    if any(s <= 0 for s in size):
        raise ArgumentError(f"{name} must have positive sizes; received {tuple(size)}.")
    return size


class LatentLayout:
    r"""Maps between the user's latent structure and flat vectors of size $D$.

    Arguments:
        latent_shape: Per-example shape of a single latent tensor, or a dict mapping block names
            to per-example shapes (multi-layer latents). Dict order fixes the flat order.
    """

    def __init__(self, latent_shape: ShapeLike | Mapping[str, ShapeLike]) -> None:
        if isinstance(latent_shape, Mapping):
            if not latent_shape:
                raise ArgumentError(
                    "latent_shape is an empty dict; give at least one latent block."
                )
            self.shapes = {
                str(k): _as_shape(v, name=f"latent_shape[{k!r}]") for k, v in latent_shape.items()
            }
            self.is_dict = True
        else:
            self.shapes = {"z": _as_shape(latent_shape, name="latent_shape")}
            self.is_dict = False
        self.names = list(self.shapes)
        self.sizes = [math.prod(s) for s in self.shapes.values()]
        self.dim = sum(self.sizes)

    @property
    def num_blocks(self) -> int:
        """Number of latent blocks N (1 for a single tensor)."""
        return len(self.sizes)

    def block_index(self, device: torch.device | None = None) -> Tensor:
        """Block id of each flat coordinate, a long tensor with shape ``(D,)``."""
        sizes = torch.tensor(self.sizes, device=device)
        return torch.repeat_interleave(torch.arange(len(self.sizes), device=device), sizes)

    def unflatten(self, z_flat: Tensor) -> Latent:
        """View a flat ``(*batch, D)`` tensor as the user's structure ``(*batch, *shape)``."""
        batch = z_flat.shape[:-1]
        if not self.is_dict:
            return z_flat.reshape(*batch, *self.shapes["z"])
        pieces = torch.split(z_flat, self.sizes, dim=-1)
        return {
            name: piece.reshape(*batch, *shape)
            for (name, shape), piece in zip(self.shapes.items(), pieces, strict=True)
        }

    def flatten(self, z: Latent, *, batch_dims: int = 1) -> Tensor:
        """Flatten the user's structure with ``batch_dims`` leading dims to ``(*batch, D)``."""
        if not self.is_dict:
            if not isinstance(z, Tensor):
                raise ArgumentTypeError(f"expected a latent tensor; received {type(z).__name__}.")
            return z.reshape(*z.shape[:batch_dims], -1)
        if not isinstance(z, Mapping) or set(z) != set(self.names):
            received = sorted(z) if isinstance(z, Mapping) else type(z).__name__
            raise ArgumentError(
                f"expected a latent dict with keys {self.names}; received {received}."
            )
        return torch.cat(
            [z[name].reshape(*z[name].shape[:batch_dims], -1) for name in self.names], dim=-1
        )

    def describe(self) -> str:
        """A short human-readable description, for error messages and reprs."""
        if not self.is_dict:
            return str(tuple(self.shapes["z"]))
        return "{" + ", ".join(f"{k!r}: {tuple(v)}" for k, v in self.shapes.items()) + "}"
