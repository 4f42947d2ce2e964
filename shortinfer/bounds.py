"""Deprecated: the entropy objectives moved to `shortinfer.objectives`.

Every name still works and warns once where it is used: ``entropy_bound(objective, ...)`` is
``EntropyEstimator(objective, log_det=method, ...)(...)``, ``EntropyBound`` is
``ObjectiveName`` and ``MIXTURE_BOUNDS`` is ``MIXTURE_OBJECTIVES``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from shortinfer import objectives

#: Nothing new is exported from here: every name is a deprecated alias (see the module docstring).
__all__: list[str] = []

_RENAMED = {
    "EntropyBound": "ObjectiveName",
    "MIXTURE_BOUNDS": "MIXTURE_OBJECTIVES",
    "DEFAULT_NUM_MIXTURE": "DEFAULT_NUM_MIXTURE",
    "SANDWICH_MARGIN": "SANDWICH_MARGIN",
    "SemiImplicitBounds": "SemiImplicitBounds",
    "semi_implicit_bounds": "semi_implicit_bounds",
}


def _entropy_bound(
    objective: str,
    log_joint: Callable[[Tensor], Tensor],
    z0: Tensor,
    noise: Tensor,
    step_sizes: Tensor,
    prior_log_prob: Callable[[Tensor], Tensor],
    *,
    method: Any = "exact",
    mode: Any = "reverse",
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
    num_examples: int | None = None,
    num_mixture: int = objectives.DEFAULT_NUM_MIXTURE,
) -> tuple[Tensor, Tensor]:
    estimator = objectives.EntropyEstimator(objective, method, mode, chunk_size, num_mixture)
    return estimator(
        log_joint,
        z0,
        noise,
        step_sizes,
        prior_log_prob,
        num_examples=num_examples,
        generator=generator,
    )


def __getattr__(name: str) -> Any:
    if name == "entropy_bound":
        replacement, value = (
            "EntropyEstimator(objective, log_det=method, ...)(...)",
            _entropy_bound,
        )
    elif name in _RENAMED:
        replacement = _RENAMED[name]
        value = getattr(objectives, replacement)
    else:
        raise AttributeError(f"module 'shortinfer.bounds' has no attribute {name!r}")
    warnings.warn(
        f"shortinfer.bounds.{name} is deprecated; use shortinfer.objectives.{replacement}.",
        DeprecationWarning,
        stacklevel=2,
    )
    return value
