r"""Step sizes in their three shapes, and the canonical ``(K|1, N|1)`` table behind them.

A user gives one of:

- a scalar $s$ (the paper);
- one value per step, shape ``(K,)`` (the paper leaves this to future work);
- one value per latent block, a dict ``{name: s}`` (or ``{name: (K,) tensor}`` for both).

Internally this is a table of shape ``(K or 1, N or 1)`` for N latent blocks, expanded to
``(K, D)`` (or ``(K, 1)``) for the rollout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from shortinfer._checks import ArgumentError, ArgumentTypeError
from shortinfer._latents import LatentLayout

__all__ = [
    "StepSize",
    "canonical_step_size",
    "delta_of",
    "describe_step_size",
    "expand_step_size",
    "public_step_size",
]

StepSize = float | Sequence[float] | Tensor | Mapping[str, float | Tensor]

_EXPECTED = (
    "a positive float, a tensor of shape (num_steps,) with one value per step, or (for dict "
    "latents) a dict mapping each latent block to a float or a (num_steps,) tensor"
)


def _as_column(value: object, num_steps: int, *, name: str) -> Tensor:
    try:
        tensor = torch.as_tensor(value, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as err:
        raise ArgumentTypeError(f"{name} must be {_EXPECTED}; received {value!r}.") from err
    if tensor.dim() == 0:
        tensor = tensor.reshape(1)
    elif tensor.dim() != 1 or tensor.shape[0] != num_steps:
        raise ArgumentError(
            f"{name} has shape {tuple(tensor.shape)}; expected () or ({num_steps},) for "
            f"num_steps={num_steps}. Give {_EXPECTED}."
        )
    if not bool(torch.isfinite(tensor).all()) or bool((tensor <= 0).any()):
        raise ArgumentError(
            f"{name} must be finite and > 0; received {tensor.tolist()}. Typical step sizes "
            "run from 1e-4 (stiff posteriors) to 0.05; try step_size=0.01, or tune_step_size()."
        )
    return tensor


def canonical_step_size(step_size: StepSize, num_steps: int, layout: LatentLayout) -> Tensor:
    r"""Validate a user step size and return its table, float64 on CPU.

    Arguments:
        step_size: See the module docstring.
        num_steps: K.
        layout: The latent layout, for block names.

    Returns:
        A tensor with shape ``(K or 1, N or 1)``.
    """
    if isinstance(step_size, Mapping):
        if not layout.is_dict:
            raise ArgumentTypeError(
                f"step_size is a dict with keys {sorted(step_size)}, but the latent is a single "
                f"tensor of shape {layout.describe()}. Per-block step sizes need a dict "
                "latent_shape; otherwise give " + _EXPECTED + "."
            )
        if set(step_size) != set(layout.names):
            raise ArgumentError(
                f"step_size has keys {sorted(step_size)}; expected exactly the latent blocks "
                f"{layout.names}."
            )
        columns = [
            _as_column(step_size[name], num_steps, name=f"step_size[{name!r}]")
            for name in layout.names
        ]
        length = max(c.shape[0] for c in columns)
        return torch.stack([c.expand(length) for c in columns], dim=1)
    if isinstance(step_size, (bool, str)) or not isinstance(
        step_size, (int, float, Tensor, Sequence)
    ):
        raise ArgumentTypeError(f"step_size must be {_EXPECTED}; received {step_size!r}.")
    return _as_column(step_size, num_steps, name="step_size").unsqueeze(1)


def expand_step_size(table: Tensor, num_steps: int, layout: LatentLayout) -> Tensor:
    r"""Expand a ``(K|1, N|1)`` table to the rollout's per-coordinate ``(K, D)`` or ``(K, 1)``."""
    table = table.expand(num_steps, table.shape[1])
    if table.shape[1] == 1:
        return table
    return table[:, layout.block_index(table.device)]


def public_step_size(table: Tensor, layout: LatentLayout) -> float | Tensor | dict[str, object]:
    """The user-facing form of a table: float, ``(K,)`` tensor, or dict per block."""
    table = table.detach()
    if table.shape[1] == 1:
        column = table[:, 0]
        return float(column[0]) if column.shape[0] == 1 else column.clone()
    return {
        name: (float(table[0, i]) if table.shape[0] == 1 else table[:, i].clone())
        for i, name in enumerate(layout.names)
    }


def delta_of(step_size: object) -> object:
    r"""$\delta = \sqrt{2s}$ of a step size given as a float, a list/tensor or a dict of those.

    Examples:
        >>> delta_of(0.00125), delta_of({"z1": [0.02, 0.005]})
        (0.05, {'z1': [0.2, 0.1]})
    """
    if isinstance(step_size, Mapping):
        return {key: delta_of(value) for key, value in step_size.items()}
    if isinstance(step_size, Tensor):
        step_size = step_size.tolist()
    if isinstance(step_size, (list, tuple)):
        return [delta_of(value) for value in step_size]
    return float(f"{(2 * float(step_size)) ** 0.5:.6g}")  # type: ignore[arg-type]


def describe_step_size(step_size: object) -> str:
    r"""``"s (delta = ...)"``: a step size with its $\delta = \sqrt{2s}$, for logs and reports.

    Examples:
        >>> describe_step_size(0.002)
        '0.002 (delta 0.0632)'
    """
    import json

    def plain(value: object) -> object:
        if isinstance(value, Tensor):
            return float(value) if value.numel() == 1 and value.dim() == 0 else value.tolist()
        if isinstance(value, Mapping):
            return {str(key): plain(item) for key, item in value.items()}
        return value

    step_size = plain(step_size)
    if isinstance(step_size, (int, float)):
        return f"{float(step_size):.4g} (delta {(2 * float(step_size)) ** 0.5:.3g})"
    return f"{json.dumps(step_size)} (delta {json.dumps(delta_of(step_size))})"
