r"""Learning-rate and observation-noise schedules of the paper's training runs (Appendix 7.1).

Both are pure functions of the iteration $t$ and the run length $T$, so a resumed
run recomputes them instead of storing them:

- **Learning rate.** The paper trains for $T = 3 \times 10^5$ Adam updates with the
  learning rate decaying step-wise $10^{-4} \to 5 \times 10^{-5} \to 10^{-5}$ "for each
  $10^5$ iterations". `step_decay_learning_rate` scales that to any run length:
  ``base · factors[i]`` on the $i$-th of ``len(factors)`` equal parts of the run, so the
  default boundaries sit at $T/3$ and $2T/3$ with factors ``(1, 0.5, 0.1)``.
- **Observation noise** $\sigma$. The paper says only that $\sigma$ "is gradually
  annealed to 0.15". `annealed_sigma` chooses a linear ramp from ``start`` (0.3, the
  value used for the ABP baseline in Appendix 7.3 and the generator's default) to ``end``
  (0.15) over the first ``anneal_fraction`` (one half) of the run, then holds ``end``.

The thin `LearningRateSchedule` and `SigmaSchedule` bind the hyperparameters and
are what `shortinfer.train.Trainer` accepts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from shortinfer._checks import ArgumentError, ArgumentTypeError, check_int

__all__ = [
    "PAPER_LEARNING_RATE_FACTORS",
    "PAPER_NUM_ITERATIONS",
    "LearningRateSchedule",
    "SigmaSchedule",
    "annealed_sigma",
    "step_decay_learning_rate",
]

#: The paper's step-wise decay 1e-4, 5e-5, 1e-5 (Appendix 7.1), as factors of the base rate.
PAPER_LEARNING_RATE_FACTORS: tuple[float, ...] = (1.0, 0.5, 0.1)

#: The paper's training length T = 3e5 Adam updates (Appendix 7.1).
PAPER_NUM_ITERATIONS = 300_000


def _check_iteration(iteration: object, num_iterations: object) -> tuple[int, int]:
    num_iterations = check_int("num_iterations", num_iterations, 1)
    return check_int("iteration", iteration, 0), num_iterations


def _check_positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(f"{name} must be a positive float; received {value!r}.")
    if not (math.isfinite(value) and value > 0):
        raise ArgumentError(f"{name} must be a positive finite float; received {value!r}.")
    return float(value)


def step_decay_learning_rate(
    iteration: int,
    num_iterations: int,
    *,
    base: float = 1e-4,
    factors: Sequence[float] = PAPER_LEARNING_RATE_FACTORS,
) -> float:
    r"""The paper's step-wise learning-rate decay, scaled to a run of ``num_iterations``.

    With $n$ = ``len(factors)`` equal phases,

    $$
    \eta_t = \eta_0 \cdot f_{i(t)}, \qquad
    i(t) = \min\big(\lfloor n t / T \rfloor,\ n - 1\big),
    $$

    so the defaults give $10^{-4}$ for $t < T/3$, $5 \times 10^{-5}$ for
    $T/3 \le t < 2T/3$ and $10^{-5}$ after (Appendix 7.1 with $T = 3 \times
    10^5$).

    Arguments:
        iteration: $t$, the 0-based iteration about to run.
        num_iterations: $T$, the length of the run.
        base: $\eta_0$, the learning rate of the first phase.
        factors: $f$, one multiplier per phase (positive).

    Returns:
        The learning rate $\eta_t$.

    Raises:
        ValueError: If ``iteration < 0``, ``num_iterations < 1``, ``base <= 0`` or a factor is
            not positive.

    Examples:
        >>> [step_decay_learning_rate(t, 300) for t in (0, 99, 100, 200, 299)]
        [0.0001, 0.0001, 5e-05, 1e-05, 1e-05]
    """
    iteration, num_iterations = _check_iteration(iteration, num_iterations)
    base = _check_positive("base", base)
    factors = tuple(factors)
    if not factors:
        raise ArgumentError("factors is empty; give at least one factor, e.g. (1.0, 0.5, 0.1).")
    for index, factor in enumerate(factors):
        _check_positive(f"factors[{index}]", factor)
    phase = min(len(factors) * iteration // num_iterations, len(factors) - 1)
    # Multiplying 1e-4 by 0.5 or 0.1 in floats gives 5e-05 and 1e-05 exactly as printed.
    return base * float(factors[phase])


def annealed_sigma(
    iteration: int,
    num_iterations: int,
    *,
    start: float = 0.3,
    end: float = 0.15,
    anneal_fraction: float = 0.5,
) -> float:
    r"""Observation noise $\sigma_t$, linearly annealed from ``start`` to ``end``.

    $$
    \sigma_t = \sigma_\text{start} + (\sigma_\text{end} - \sigma_\text{start})
    \min\Big(1, \frac{t}{\lfloor a T \rfloor}\Big)
    $$

    with $a$ = ``anneal_fraction`` (``a = 0`` holds ``end`` from the start). The paper
    (Appendix 7.1) anneals $\sigma$ "gradually to 0.15" without giving the schedule; this
    linear ramp over the first half is our choice.

    Arguments:
        iteration: $t$, the 0-based iteration about to run.
        num_iterations: $T$, the length of the run.
        start: $\sigma$ at $t = 0$.
        end: $\sigma$ from $t = \lfloor a T \rfloor$ on.
        anneal_fraction: $a \in [0, 1]$, the part of the run spent annealing.

    Returns:
        $\sigma_t$.

    Raises:
        ValueError: If ``start`` or ``end`` is not positive, or ``anneal_fraction`` is outside
            ``[0, 1]``.

    Examples:
        >>> [round(annealed_sigma(t, 100), 4) for t in (0, 25, 50, 99)]
        [0.3, 0.225, 0.15, 0.15]
    """
    iteration, num_iterations = _check_iteration(iteration, num_iterations)
    start = _check_positive("start", start)
    end = _check_positive("end", end)
    if (
        isinstance(anneal_fraction, bool)
        or not isinstance(anneal_fraction, (int, float))
        or not (0.0 <= anneal_fraction <= 1.0)
    ):
        raise ArgumentError(
            f"anneal_fraction must be a float in [0, 1]; received {anneal_fraction!r}. "
            "Use 0.5 to anneal over the first half of the run."
        )
    length = math.floor(anneal_fraction * num_iterations)
    progress = 1.0 if length == 0 else min(1.0, iteration / length)
    return start + (end - start) * progress


class LearningRateSchedule(NamedTuple):
    r"""Step-wise learning-rate decay, see `step_decay_learning_rate`.

    Attributes:
        base: Learning rate of the first phase (the paper: $10^{-4}$).
        factors: Multipliers of the equal phases (the paper: ``(1, 0.5, 0.1)``).

    Examples:
        >>> schedule = LearningRateSchedule(base=1e-3)
        >>> schedule(0, 90), schedule(60, 90)
        (0.001, 0.0001)
    """

    base: float = 1e-4
    factors: tuple[float, ...] = PAPER_LEARNING_RATE_FACTORS

    def __call__(self, iteration: int, num_iterations: int) -> float:
        """The learning rate at ``iteration`` of a run of ``num_iterations``."""
        return step_decay_learning_rate(
            iteration, num_iterations, base=self.base, factors=self.factors
        )


class SigmaSchedule(NamedTuple):
    r"""Linear annealing of the observation noise $\sigma$, see `annealed_sigma`.

    Attributes:
        start: $\sigma$ at the first iteration.
        end: $\sigma$ after annealing (the paper: 0.15).
        anneal_fraction: The part of the run spent annealing.

    Examples:
        >>> round(SigmaSchedule(start=0.3, end=0.15, anneal_fraction=1.0)(50, 100), 4)
        0.225
    """

    start: float = 0.3
    end: float = 0.15
    anneal_fraction: float = 0.5

    def __call__(self, iteration: int, num_iterations: int) -> float:
        r"""$\sigma$ at ``iteration`` of a run of ``num_iterations``."""
        return annealed_sigma(
            iteration,
            num_iterations,
            start=self.start,
            end=self.end,
            anneal_fraction=self.anneal_fraction,
        )
