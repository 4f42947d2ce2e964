r"""Constrained latents: run the chain in unconstrained space, hand the user constrained values.

A prior whose ``support`` is not the real line (a Gamma rate, a Beta probability, a Uniform
bound) is mapped to the real line per block with the bijection
$T = $ ``torch.distributions.biject_to(support)``, $z = T(u)$. The chain runs on $u$ with

$$
\log p(x, u) = \log p(x, T(u)) + \log\lvert\det \partial T / \partial u\rvert,
$$

and the change of variables makes the entropy that of the constrained $z_K = T(u_K)$:
$H(z_K) = H(u_K) + \mathbb{E}\log\lvert\det \partial T/\partial u(u_K)\rvert$.

Handled: every support that ``biject_to`` maps **element-wise** (domain and codomain event
dimension 0, bijective), also inside ``constraints.independent``: ``real``, ``positive``,
``nonnegative``, ``greater_than(a)``, ``greater_than_eq(a)``, ``less_than(b)``,
``interval(a, b)``, ``half_open_interval(a, b)``, ``unit_interval``. Supports that change the
dimension or couple coordinates (``simplex``, ``lower_cholesky``, ``corr_cholesky``,
``positive_definite``) and discrete supports are refused with a `ValueError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import torch
from torch import Tensor
from torch.distributions import Distribution, Transform, biject_to, constraints
from torch.distributions.transforms import ComposeTransform, IndependentTransform

from shortinfer._latents import LatentLayout

__all__ = ["LatentTransform", "support_transform"]

_HANDLED = (
    "real, positive, nonnegative, greater_than, greater_than_eq, less_than, interval, "
    "half_open_interval, unit_interval (also inside constraints.independent)"
)


def _support(dist: Distribution) -> constraints.Constraint | None:
    try:
        return dist.support
    except NotImplementedError:
        # A hand-written Distribution without `support`: treated as real, as before.
        return None


def support_transform(dist: Distribution, *, name: str) -> Transform | None:
    r"""The element-wise bijection $T$ from the real line onto ``dist.support``.

    Returns ``None`` for a real support (no transform), otherwise a transform with event
    dimension 0. Raises `ValueError` for a discrete support or one ``biject_to`` does not map
    element-wise.
    """
    support = _support(dist)
    if support is None:
        return None
    if support.is_discrete:
        raise ValueError(
            f"{name} has the discrete support {support}; short-run Langevin needs continuous "
            "latents. Marginalise the discrete variable inside log_joint, or relax it (e.g. "
            "torch.distributions.RelaxedBernoulli)."
        )
    try:
        transform = biject_to(support)
    except NotImplementedError as err:
        raise ValueError(
            f"{name} has the support {support}, which torch.distributions.biject_to cannot map "
            f"to the real line. Handled supports: {_HANDLED}. Reparameterise by hand: give a "
            "real-valued prior and apply the transform inside log_joint."
        ) from err
    while isinstance(transform, IndependentTransform):
        transform = transform.base_transform
    if isinstance(transform, ComposeTransform) and not transform.parts:
        return None  # biject_to(real) is the identity
    if not (
        transform.bijective
        and transform.domain.event_dim == 0
        and transform.codomain.event_dim == 0
    ):
        raise ValueError(
            f"{name} has the support {support}, whose bijection {type(transform).__name__} "
            f"is not element-wise (it couples coordinates or changes the dimension). Handled "
            f"supports: {_HANDLED}. Reparameterise by hand: give a real-valued latent (e.g. "
            "K - 1 logits for a simplex) and apply the transform inside log_joint."
        )
    return transform


class LatentTransform:
    r"""Per-block element-wise bijections $z = T(u)$ on flat latents ``(N, D)``.

    Arguments:
        layout: The latent layout.
        priors: The prior of each block (``None`` for the standard normal), whose support
            decides the block's transform.
    """

    def __init__(self, layout: LatentLayout, priors: Mapping[str, Distribution] | None) -> None:
        self.layout = layout
        self.transforms: dict[str, Transform | None] = {name: None for name in layout.names}
        if priors is not None:
            for block in layout.names:
                label = "prior" if not layout.is_dict else f"prior[{block!r}]"
                self.transforms[block] = support_transform(priors[block], name=label)
        self.is_identity = all(t is None for t in self.transforms.values())

    def describe(self) -> str:
        """Which blocks are transformed, for messages."""
        return ", ".join(
            f"{name}: {type(t).__name__}" for name, t in self.transforms.items() if t is not None
        )

    def _blocks(self, flat: Tensor) -> list[Tensor]:
        pieces = torch.split(flat, self.layout.sizes, dim=-1)
        return [
            piece.reshape(*flat.shape[:-1], *shape)
            for piece, shape in zip(pieces, self.layout.shapes.values(), strict=True)
        ]

    def _cat(self, blocks: Sequence[Tensor | None], batch: torch.Size) -> Tensor:
        # torch types `Transform.__call__` as possibly None; on a tensor it returns a tensor.
        return torch.cat([cast(Tensor, block).reshape(*batch, -1) for block in blocks], dim=-1)

    def forward(self, u: Tensor) -> Tensor:
        r"""$z = T(u)$ on flat latents ``(*batch, D)``."""
        if self.is_identity:
            return u
        blocks = self._blocks(u)
        out = [
            block if t is None else t(block)
            for block, t in zip(blocks, self.transforms.values(), strict=True)
        ]
        return self._cat(out, u.shape[:-1])

    def inverse(self, z: Tensor) -> Tensor:
        r"""$u = T^{-1}(z)$ on flat latents ``(*batch, D)``."""
        if self.is_identity:
            return z
        blocks = self._blocks(z)
        out = [
            block if t is None else t.inv(block)
            for block, t in zip(blocks, self.transforms.values(), strict=True)
        ]
        return self._cat(out, z.shape[:-1])

    def log_abs_det(self, u: Tensor) -> Tensor:
        r"""$\log\lvert\det \partial T/\partial u\rvert$ per row, shape ``(*batch,)``."""
        total = torch.zeros(u.shape[:-1], dtype=u.dtype, device=u.device)
        if self.is_identity:
            return total
        blocks = self._blocks(u)
        for block, t in zip(blocks, self.transforms.values(), strict=True):
            if t is not None:
                per_entry = t.log_abs_det_jacobian(block, t(block))
                per_entry = torch.broadcast_to(per_entry, block.shape)
                total = total + per_entry.reshape(*u.shape[:-1], -1).sum(-1)
        return total
