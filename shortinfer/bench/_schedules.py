r"""Schedules and atomic file writes shared by the benchmark trainers.

These mirror Appendix 7.1 of the paper. They are private: once `shortinfer.train` ships
its own schedule and checkpoint helpers, the benchmark should call those instead.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "atomic_save",
    "atomic_write_json",
    "atomic_write_text",
    "kl_weight",
    "learning_rate",
    "sigma_at",
]


def learning_rate(iteration: int, num_iterations: int, rates: Sequence[float]) -> float:
    r"""Step-wise decayed learning rate, the phases scaled to the run length.

    Phase $j = \lfloor t \cdot J / T \rfloor$ (of $J$ = ``len(rates)``) uses
    ``rates[j]``; with the paper's rates and $T = 3 \times 10^5$ this is
    $10^{-4}, 5 \cdot 10^{-5}, 10^{-5}$ for each $10^5$ updates.

    Examples:
        >>> [learning_rate(t, 300, (1e-4, 5e-5, 1e-5)) for t in (0, 99, 100, 299)]
        [0.0001, 0.0001, 5e-05, 1e-05]
    """
    phase = min(len(rates) - 1, iteration * len(rates) // max(num_iterations, 1))
    return float(rates[phase])


def sigma_at(
    iteration: int, num_iterations: int, start: float, end: float, fraction: float
) -> float:
    r"""Likelihood $\sigma$ annealed linearly from ``start`` to ``end``.

    The paper anneals $\sigma$ "gradually" to 0.15; here linearly over the first
    ``fraction`` of the run, then constant.

    Examples:
        >>> [round(sigma_at(t, 100, 0.3, 0.15, 0.5), 3) for t in (0, 25, 50, 99)]
        [0.3, 0.225, 0.15, 0.15]
    """
    span = max(1.0, fraction * num_iterations)
    progress = min(1.0, iteration / span)
    return float(start + (end - start) * progress)


def kl_weight(iteration: int, num_iterations: int, fraction: float) -> float:
    r"""Ladder-VAE's KL warm-up weight $\beta$, linear from 0 to 1.

    Examples:
        >>> [kl_weight(t, 100, 0.1) for t in (0, 5, 10, 50)]
        [0.0, 0.5, 1.0, 1.0]
    """
    if fraction <= 0:
        return 1.0
    return float(min(1.0, iteration / max(1.0, fraction * num_iterations)))


def _atomic(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    _atomic(Path(path), lambda name: torch.save(obj, name))


def atomic_write_text(text: str, path: str | os.PathLike[str]) -> None:
    """Write ``text`` to ``path`` atomically (temporary file plus rename)."""
    _atomic(Path(path), lambda name: Path(name).write_text(text, encoding="utf-8"))


def atomic_write_json(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", path)
