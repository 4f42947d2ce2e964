r"""Per-pixel reconstruction error on the $[-1, 1]$ pixel scale."""

from __future__ import annotations

import torch
from torch import Tensor

from shortinfer._checks import ArgumentError, ArgumentTypeError
from shortinfer.likelihoods import broadcast_mask

__all__ = ["reconstruction_mse"]


def reconstruction_mse(x: Tensor, x_hat: Tensor, *, mask: Tensor | None = None) -> Tensor:
    r"""Mean squared error per pixel, one value per example.

    For example $b$ with entries $j$ (channels × height × width) and a mask
    $m_{bj} \in \{0, 1\}$ (all ones without ``mask``),

    $$
    \mathrm{MSE}_b = \frac{\sum_j m_{bj} (x_{bj} - \hat{x}_{bj})^2}{\sum_j m_{bj}}.
    $$

    Pixels are on the $[-1, 1]$ scale, so a value on the $[0, 1]$ scale is
    $\mathrm{MSE}_b / 4$. The figure reported for a data set is the mean over examples,
    $\frac{1}{B} \sum_b \mathrm{MSE}_b$, i.e. ``reconstruction_mse(x, x_hat).mean()``;
    with a mask each example counts equally however many pixels it has. To score inpainting
    on the missing region, pass ``mask = 1 - observed``.

    Arguments:
        x: Data, with shape ``(B, *event)``, e.g. ``(B, C, H, W)``.
        x_hat: Reconstructions, with shape ``(B, *event)`` or ``(S, B, *event)`` for ``S``
            reconstructions per example (e.g. from posterior samples).
        mask: Optional weights, 1 where a pixel counts and 0 where it does not, broadcastable
            to ``x`` (e.g. ``(B, 1, H, W)`` to share a mask across channels).

    Returns:
        The error per example, with shape ``(B,)``, or ``(S, B)`` when ``x_hat`` has a leading
        sample dimension.

    Raises:
        ValueError: If the shapes do not fit, ``mask`` does not broadcast to ``x``, or some
            example has no pixel with nonzero mask.
        TypeError: If ``x`` or ``x_hat`` is not floating point.

    Examples:
        >>> x = torch.zeros(2, 1, 2, 2)
        >>> x_hat = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]], [[[2.0, 0.0], [0.0, 0.0]]]])
        >>> reconstruction_mse(x, x_hat)
        tensor([1., 1.])
        >>> reconstruction_mse(x, x_hat, mask=torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
        tensor([1., 4.])
    """
    for name, value in (("x", x), ("x_hat", x_hat)):
        if not value.is_floating_point():
            raise ArgumentTypeError(
                f"{name} must be floating point on the [-1, 1] scale; received dtype "
                f"{value.dtype}. Convert 8-bit pixels with {name}.float() / 127.5 - 1."
            )
    if x.dim() < 2:
        raise ArgumentError(
            f"x must have shape (B, *event) with at least one event dimension; received shape "
            f"{tuple(x.shape)}. Add the batch dimension with x.unsqueeze(0)."
        )
    if (
        x_hat.dim() not in (x.dim(), x.dim() + 1)
        or x_hat.shape[x_hat.dim() - x.dim() :] != x.shape
    ):
        raise ArgumentError(
            f"x_hat must have the shape of x, {tuple(x.shape)}, optionally with one leading "
            f"sample dimension; received {tuple(x_hat.shape)}. Reshape reconstructions to "
            "(B, *event) or (S, B, *event)."
        )
    event_dims = tuple(range(-(x.dim() - 1), 0))
    squared = (x_hat - x).square()
    if mask is None:
        return squared.mean(dim=event_dims)
    hint = "Pass a mask shaped like x or (B, 1, H, W)."
    weights = broadcast_mask(mask, x.shape, squared.dtype, "x's", hint)
    counts = weights.sum(dim=event_dims)
    empty = torch.nonzero(counts <= 0).flatten()
    if empty.numel():
        raise ArgumentError(
            f"mask selects no pixels for examples {empty.tolist()}; the error over an empty "
            "set is undefined. Drop those examples or check the mask (1 = pixel counts)."
        )
    return (squared * weights).sum(dim=event_dims) / counts
