r"""Validation at the public boundary, shared by every entry point.

Each check raises with a message that names the argument, shows what was received, says what
was expected, and suggests a fix.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "ChainDivergenceError",
    "LOG_JOINT_DOCS",
    "LogJointError",
    "check_finite_observations",
    "check_num_mixture",
    "check_num_steps",
    "find_divergence",
    "probe_log_joint",
    "translate_func_errors",
]

LOG_JOINT_DOCS = "docs/log_joint.md (the log_joint contract)"


class LogJointError(ValueError):
    """``log_joint`` broke its contract: wrong shape, non-finite, or unusable under torch.func."""


class ChainDivergenceError(FloatingPointError):
    """The short-run chain produced non-finite latents."""


def check_num_steps(num_steps: object) -> int:
    """Return ``num_steps`` as an int, or raise if it is not an integer >= 1."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int):
        raise TypeError(
            f"num_steps must be an int; received {num_steps!r} ({type(num_steps).__name__}). "
            "The paper uses num_steps=25."
        )
    if num_steps < 1:
        raise ValueError(
            f"num_steps must be >= 1; received {num_steps}. The paper uses num_steps=25."
        )
    return num_steps


def check_num_mixture(num_mixture: object) -> int:
    """Return ``num_mixture`` (semi-implicit mixture size) as an int, or raise if not >= 1."""
    if isinstance(num_mixture, bool) or not isinstance(num_mixture, int) or num_mixture < 1:
        from shortinfer.bounds import DEFAULT_NUM_MIXTURE  # here: bounds imports this module

        raise ValueError(
            f"num_mixture must be an int >= 1 (the most other chains of an example in each "
            f"chain's semi-implicit mixture, M = min(num_mixture, num_samples - 1)); received "
            f"{num_mixture!r} ({type(num_mixture).__name__}). Pass a positive int, e.g. the "
            f"default {DEFAULT_NUM_MIXTURE}: larger M tightens the 'semi_implicit' and "
            "'sandwich' objectives and costs O(num_samples * M) kernel evaluations per example."
        )
    return num_mixture


def check_finite_observations(leaves: list[Tensor]) -> None:
    """Raise if any observed tensor holds NaN or infinity."""
    for i, leaf in enumerate(leaves):
        if leaf.is_floating_point() and not bool(torch.isfinite(leaf).all()):
            bad = int((~torch.isfinite(leaf)).sum())
            where = "x" if len(leaves) == 1 else f"x[{i}]"
            raise ValueError(
                f"{where} contains {bad} non-finite value(s) (NaN or inf) out of "
                f"{leaf.numel()}. Observations must be finite; to leave pixels out, set them to "
                "any finite value and pass a mask to the likelihood instead."
            )


def probe_log_joint(
    log_joint_flat: Callable[[Tensor], Tensor], z_flat: Tensor, batch_size: int
) -> None:
    r"""Call ``log_joint`` once and check its output shape, finiteness and dependence on z.

    Arguments:
        log_joint_flat: ``log_joint`` with ``x`` bound, on flat latents ``(B, D)``.
        z_flat: A prior draw, with shape ``(B, D)``.
        batch_size: B.
    """
    z = z_flat.detach().requires_grad_(True)
    with torch.enable_grad():
        try:
            value = log_joint_flat(z)
        except Exception as err:
            raise LogJointError(
                f"log_joint(x, z) raised {type(err).__name__}: {err}. It is called with x as "
                f"given and z shaped like the latent, batch first. See {LOG_JOINT_DOCS}."
            ) from err
        if not isinstance(value, Tensor):
            raise LogJointError(
                f"log_joint must return a tensor of shape ({batch_size},); received "
                f"{type(value).__name__}. Return log p(x, z) per example, summed over event "
                "dimensions."
            )
        if value.shape != (batch_size,):
            raise LogJointError(
                f"log_joint returned shape {tuple(value.shape)}; expected ({batch_size},), one "
                "log p(x, z) per example. Sum over the event dimensions, e.g. "
                "`.flatten(1).sum(-1)`, and do not average over the batch."
            )
        if not bool(torch.isfinite(value).all()):
            raise LogJointError(
                f"log_joint returned non-finite values {value.detach().cpu().tolist()} at a "
                "draw from the prior. Check the model for log(0) or overflow."
            )
        if not value.requires_grad:
            raise LogJointError(
                "log_joint's output does not depend on z (it carries no gradient). Build the "
                "result from z with differentiable torch operations, and do not detach z or "
                "call .item()/.numpy() on it."
            )
        (gradient,) = torch.autograd.grad(value.sum(), z, allow_unused=True)
    if gradient is None:
        raise LogJointError(
            "log_joint's output does not depend on z: its gradient with respect to z is None. "
            "The Langevin chain needs d log p(x, z) / dz."
        )
    if not bool(torch.isfinite(gradient).all()):
        raise LogJointError(
            "the gradient of log_joint with respect to z is non-finite at a draw from the "
            "prior. Check the model for operations whose derivative blows up (sqrt(0), abs)."
        )


@contextlib.contextmanager
def translate_func_errors() -> Iterator[None]:
    """Re-raise torch.func failures inside ``log_joint`` with a pointer to the contract."""
    try:
        yield
    except (RuntimeError, NotImplementedError) as err:
        message = str(err)
        hints = {
            ".item()": "do not call .item() or convert z to Python numbers",
            "data-dependent": "replace data-dependent `if` on tensors with torch.where",
            "in-place": "avoid in-place writes (x += ..., x[i] = ...) to captured tensors",
            "randomness": "draw random numbers outside log_joint",
        }
        found = [hint for key, hint in hints.items() if key in message]
        hint = "; ".join(found) if found else "see the list of restrictions"
        raise LogJointError(
            f"log_joint failed under torch.func (used for the exact Jacobian): {message}\n"
            f"Fix: {hint}. See {LOG_JOINT_DOCS}."
        ) from err


def find_divergence(
    step: Callable[[int, Tensor], Tensor], z0: Tensor, num_steps: int
) -> tuple[int, int]:
    """Replay a chain whose output is non-finite; return (first bad step, examples affected)."""
    z = z0
    for k in range(num_steps):
        z = step(k, z)
        bad = ~torch.isfinite(z).reshape(z.shape[0], -1).all(-1)
        if bool(bad.any()):
            return k + 1, int(bad.sum())
    return num_steps, 0


def describe(value: Any) -> str:
    """Describe a value for an error message: shape and dtype for tensors, repr otherwise."""
    if isinstance(value, Tensor):
        return f"tensor with shape {tuple(value.shape)} and dtype {value.dtype}"
    return repr(value)
