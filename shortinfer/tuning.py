r"""Step-size search rules: pure functions of an objective :math:`J(s)`.

The paper (Section 4.3, equation (20)) picks :math:`s` by minimising

.. math::
    J(s) = \frac{1}{n}\sum_{i=1}^n \mathbb{E}_{q_s}\big[\log q_s(z_i \mid x_i)
        - \log p(x_i, z_i)\big],

an upper bound (up to :math:`\log p(x)`) on the average :math:`\mathrm{KL}(q_s \| p(z \mid x))`,
either by a grid search or by gradient descent through the K steps and the log-determinant.
These rules know nothing about models; :class:`~shortinfer.ShortRunPosterior` builds the
objective and calls them. Objectives are evaluated with common random numbers (the same
:math:`z_0` and :math:`\epsilon` for every candidate), so comparisons between candidates are not
swamped by Monte Carlo noise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "PAPER_GRID",
    "GradientSearchResult",
    "GridSearchResult",
    "gradient_search",
    "grid_search",
]

PAPER_GRID: tuple[float, ...] = tuple(round(0.01 * i, 2) for i in range(1, 16))
"""The paper's grid :math:`s \\in \\{0.01, 0.02, \\dots, 0.15\\}` (Section 5.5)."""


class GridSearchResult(NamedTuple):
    """Outcome of :func:`grid_search`.

    Attributes:
        step_size: The best candidate, a table with the candidates' shape.
        candidates: Every candidate, with shape ``(G, *table)``.
        objectives: :math:`J` at each candidate, with shape ``(G,)`` (``inf`` where the
            chain diverged).
    """

    step_size: Tensor
    candidates: Tensor
    objectives: Tensor


class GradientSearchResult(NamedTuple):
    """Outcome of :func:`gradient_search`.

    Attributes:
        step_size: The step-size table after the last iteration.
        step_sizes: The table at every iteration, with shape ``(T + 1, *table)``.
        objectives: :math:`J` at every iteration, with shape ``(T,)``.
    """

    step_size: Tensor
    step_sizes: Tensor
    objectives: Tensor


def grid_search(
    objective: Callable[[Tensor], Tensor],
    candidates: Tensor,
    *,
    all_reduce: Callable[[Tensor], Tensor] | None = None,
) -> GridSearchResult:
    r"""Evaluate :math:`J` at every candidate and return the minimiser.

    .. math:: s^\star = \arg\min_{s \in \mathcal{G}} J(s)

    A candidate at which :math:`J` is not finite (a diverging chain or a singular Jacobian)
    scores ``inf`` instead of stopping the search.

    Arguments:
        objective: Maps a step-size table to a scalar tensor :math:`J(s)`.
        candidates: The grid, with shape ``(G, *table)``.
        all_reduce: Maps this process's objectives ``(G,)`` to their mean over processes
            (data-parallel training), so that every process picks the same step size.

    Returns:
        A :class:`GridSearchResult`.

    Raises:
        FloatingPointError: If :math:`J` is non-finite at every candidate.

    Examples:
        >>> result = grid_search(lambda s: (s - 0.05).square().sum(), torch.tensor(PAPER_GRID))
        >>> round(float(result.step_size), 2)
        0.05
    """
    values = []
    for candidate in candidates:
        with torch.no_grad():
            try:
                value = float(objective(candidate))
            except FloatingPointError:
                value = float("inf")
        values.append(value if value == value else float("inf"))  # NaN counts as diverged
    objectives = torch.tensor(values, dtype=torch.float64)
    if all_reduce is not None:
        objectives = all_reduce(objectives)
    if not bool(torch.isfinite(objectives).any()):
        raise FloatingPointError(
            f"the step-size objective is non-finite at every grid point {candidates.tolist()}; "
            "the chain diverges everywhere. Try a grid of smaller step sizes."
        )
    best = int(torch.argmin(objectives))
    return GridSearchResult(candidates[best].clone(), candidates.clone(), objectives)


def gradient_search(
    objective: Callable[[Tensor], Tensor],
    initial: Tensor,
    *,
    num_iterations: int = 50,
    learning_rate: float = 0.05,
    bounds: tuple[float, float] = (1e-4, 10.0),
    all_reduce: Callable[[Tensor], Tensor] | None = None,
) -> GradientSearchResult:
    r"""Minimise :math:`J(s)` by Adam on :math:`\log s`, differentiating through the chain.

    Optimising :math:`u = \log s` keeps :math:`s > 0` without projection; the learning rate is
    thus a relative change of :math:`s` per iteration. :math:`s` is clamped to ``bounds``.

    .. math::
        u_{t+1} = u_t - \eta\,\mathrm{Adam}\big(\nabla_u J(e^{u_t})\big)

    Arguments:
        objective: Maps a step-size table (requiring grad) to a differentiable scalar tensor.
        initial: The starting table, positive, any shape (e.g. ``(1, 1)``, ``(K, 1)``,
            ``(1, N)``); its shape is kept.
        num_iterations: Number of Adam steps T.
        learning_rate: Adam's learning rate :math:`\eta` on :math:`\log s`.
        bounds: Lower and upper clamps for :math:`s`.
        all_reduce: Maps a local tensor to its mean over processes; applied to the gradient
            and the objective, so that data-parallel processes take identical steps.

    Returns:
        A :class:`GradientSearchResult`.

    Raises:
        FloatingPointError: If the objective or its gradient becomes non-finite.

    Examples:
        >>> result = gradient_search(
        ...     lambda s: (s - 0.05).square().sum(), torch.tensor([[0.1]]),
        ...     num_iterations=300, learning_rate=0.05)
        >>> round(float(result.step_size), 3)
        0.05
    """
    log_s = initial.detach().clone().log().requires_grad_(True)
    optimiser = torch.optim.Adam([log_s], lr=learning_rate)
    lower, upper = bounds
    tables = [initial.detach().clone()]
    values = []
    for iteration in range(num_iterations):
        optimiser.zero_grad()
        value = objective(log_s.exp())
        if not bool(torch.isfinite(value)):
            raise FloatingPointError(
                f"the step-size objective became {float(value)} at iteration {iteration} with "
                f"step size {log_s.exp().detach().tolist()}; lower the learning_rate or start "
                "from a smaller step size."
            )
        value.backward()
        if log_s.grad is None or not bool(torch.isfinite(log_s.grad).all()):
            raise FloatingPointError(
                f"the gradient of the step-size objective is non-finite at iteration "
                f"{iteration}; start from a smaller step size."
            )
        value = value.detach()
        if all_reduce is not None:
            log_s.grad = all_reduce(log_s.grad)
            value = all_reduce(value)
        optimiser.step()
        with torch.no_grad():
            log_s.clamp_(min=torch.log(torch.tensor(lower)), max=torch.log(torch.tensor(upper)))
        values.append(float(value))
        tables.append(log_s.detach().exp().clone())
    return GradientSearchResult(
        tables[-1], torch.stack(tables), torch.tensor(values, dtype=torch.float64)
    )
