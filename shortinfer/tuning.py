r"""Step-size search rules: pure functions of an objective $J(s)$.

The paper (Section 4.3, equation (20)) picks $s$ by minimising

$$
J(s) = \frac{1}{n}\sum_{i=1}^n \mathbb{E}_{q_s}\big[\log q_s(z_i \mid x_i)
- \log p(x_i, z_i)\big],
$$

an upper bound (up to $\log p(x)$) on the average $\mathrm{KL}(q_s \| p(z \mid x))$,
either by a grid search or by gradient descent through the K steps and the log-determinant.
These rules know nothing about models; `shortinfer.ShortRunPosterior` builds the
objective and calls them. Objectives are evaluated with common random numbers (the same
$z_0$ and $\epsilon$ for every candidate), so comparisons between candidates are not
swamped by Monte Carlo noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from shortinfer._checks import ArgumentError, ChainDivergenceError, LogJointError

__all__ = [
    "DEFAULT_GRID",
    "DEFAULT_OBJECTIVE",
    "FORWARD_MAX_PARAMETERS",
    "FORWARD_MIN_ELEMENTS",
    "PAPER_DELTA_GRID",
    "PAPER_GRID",
    "STABILITY_GROWTH",
    "STABILITY_QUANTILE",
    "AdamState",
    "BracketState",
    "DerivativeMode",
    "GradientSearchResult",
    "GridSearchResult",
    "adam_init",
    "adam_update",
    "bracket_final",
    "common_random_numbers",
    "bracket_init",
    "bracket_update",
    "gradient_search",
    "grid_search",
    "default_derivative",
    "golden_section_search",
    "grid_edge",
    "objective_and_gradient",
    "stable_step_bound",
    "step_amplification",
]

DerivativeMode = Literal["auto", "forward", "reverse"]

FORWARD_MAX_PARAMETERS: int = 8
r"""Largest number of step-size parameters for which ``derivative="auto"`` uses forward mode.

Forward mode costs one ``torch.func.jvp`` of the whole objective per parameter and keeps no
graph, so its memory is that of a single evaluation; reverse mode costs one backward pass but
keeps every step's graph alive. A scalar step size or one per block (up to 8 blocks) runs
forward; a per-step table ($K = 25$ parameters) runs reverse. Measured in
``docs/performance.md`` ("Where the defaults come from").
"""

FORWARD_MIN_ELEMENTS: int = 8192
r"""Smallest chain, in latent coordinates times steps $K \cdot S B \cdot D$, for which
`default_derivative` prefers forward mode.

Below it the reverse graph is small and forward mode's fixed per-operation cost (some
backward formulas run as Python decompositions under ``jvp``) dominates; above it forward mode
costs about as much time as reverse and keeps no graph. Measured in ``docs/performance.md``
("Where the defaults come from").
"""


def default_derivative(num_parameters: int, num_elements: int) -> Literal["forward", "reverse"]:
    r"""How `shortinfer.ShortRunPosterior.tune_step_size` differentiates $J(s)$.

    $$
    \text{forward if } n \le n_{\max} \text{ and } K S B D \ge N_{\min},
    \text{ else reverse}
    $$

    with $n_{\max}$ = `FORWARD_MAX_PARAMETERS` and $N_{\min}$ =
    `FORWARD_MIN_ELEMENTS`.

    Arguments:
        num_parameters: $n$, the number of step-size parameters.
        num_elements: $K \cdot S B \cdot D$, the size of the chain's noise.

    Returns:
        ``"forward"`` or ``"reverse"``.

    Examples:
        >>> default_derivative(1, 25 * 64 * 128), default_derivative(25, 25 * 64 * 128)
        ('forward', 'reverse')
    """
    small = num_parameters <= FORWARD_MAX_PARAMETERS
    return "forward" if small and num_elements >= FORWARD_MIN_ELEMENTS else "reverse"


DEFAULT_OBJECTIVE = "linearized"
r"""The entropy estimate that defines the default step-size objective $J(s)$.

``"linearized"`` (`shortinfer.objectives.linearized_estimate`): the chain rule of entropy on
the chain's local linearisation, exact in expectation for affine chains, with one chain per
example and about the cost of the paper's ``"conditional"`` bound. The paper's bound leaves
out the entropy the injected noise adds, which grows with $s$, so its minimiser is biased
towards small step sizes. The study behind this choice (chosen step size and exact KL of
every objective, and held-out reconstruction when training) is in ``docs/objectives.md``;
the paper's objective stays available as ``objective="conditional"`` and is used by the
``paper`` preset.
"""

DEFAULT_GRID: tuple[float, ...] = tuple(float(f"{10 ** (-5 + k / 4):.3g}") for k in range(21))
r"""The default grid: 21 step sizes log-spaced from $10^{-5}$ to $1$, four per decade.

Real models need step sizes several decades apart: a stiff posterior (curvature
$\lambda_{\max}$ in the thousands) is best near $s = 2 \cdot 10^{-4}$, a soft one near
$s = 0.04$ (``docs/objectives.md``). Neighbouring candidates differ by a factor
$10^{1/4} pprox 1.78$. Candidates whose chain diverges are screened out by a cheap
rollout before their entropy is computed.
"""

PAPER_DELTA_GRID: tuple[float, ...] = tuple(round(0.01 * i, 2) for i in range(1, 16))
r"""The paper's grid $\{0.01, 0.02, \dots, 0.15\}$ (Section 5.5), in the units of the
authors' code, $\delta = \sqrt{2s}$ (their update is $z + \tfrac{\delta^2}{2}\nabla
+ \delta\epsilon$ with $\delta = 0.05$ fixed). See `PAPER_GRID` for the same grid as
step sizes."""

PAPER_GRID: tuple[float, ...] = tuple(float(f"{d * d / 2:.6g}") for d in PAPER_DELTA_GRID)
r"""The paper's grid as step sizes $s = \delta^2/2$ for $\delta \in$ `PAPER_DELTA_GRID`:
$5 \cdot 10^{-5}, 2 \cdot 10^{-4}, \dots, 0.01125$.

Read as $s$ directly, the paper's numbers 0.01 ... 0.15 would put the grid's floor at 8x
the authors' step ($s = 0.00125$, $\delta = 0.05$) and above the stability bound
$2/\lambda_{\max}$ of the paper's 5-layer generator; read as $\delta$ they bracket it.
``docs/benchmark.md`` gives the evidence."""

STABILITY_GROWTH: float = 100.0
r"""Largest amplification $|1 - s\hat\lambda_{\max}|^K$ the K steps may give the stiffest
direction of a chain (on most chains), for a tuned step size.

A Langevin step on a quadratic with curvature $\lambda$ contracts iff $s\lambda < 2$;
beyond, it multiplies that direction by $|1 - s\lambda| > 1$, and the linearised entropy
credits the chain with $\log|1 - s\lambda|$ per step for the expansion, so an entropy-based
objective can reward an oscillating chain. A short-run chain is not run to equilibrium: over
its K steps the credit is $K \log|1 - s\lambda|$, so bounding the amplification by $G$
bounds the credit by $\log G$ (4.6 nats per direction for $G = 100$). The largest accepted
$s\hat\lambda_{\max}$ is `stable_step_bound` ``(K)`` $= 1 + G^{1/K}$: 2.58 at $K = 10$,
2.20 at $K = 25$, 2.10 at $K = 50$, approaching the infinite-chain bound 2. With one step size
per step the check bounds the product of the expanding steps' factors instead
(`step_amplification`).
$\hat\lambda_{\max}$ is the largest curvature of $-\log p(x, z)$ found by power iteration at
the end point of each of many chains (`shortinfer.langevin.max_curvature`). Why not the bound 2
itself: ``docs/performance.md`` ("Where the defaults come from")."""


def stable_step_bound(num_steps: int, growth: float = STABILITY_GROWTH) -> float:
    r"""Largest $s\hat\lambda_{\max}$ for which K steps amplify a direction at most ``growth``.

    $$
    |1 - s\lambda|^K \le G \iff s\lambda \le 1 + G^{1/K} \quad (s\lambda \ge 2)
    $$

    Arguments:
        num_steps: K, the chain's number of steps (``>= 1``).
        growth: $G \ge 1$ (default `STABILITY_GROWTH`).

    Examples:
        >>> round(stable_step_bound(10), 3), round(stable_step_bound(25), 3)
        (2.585, 2.202)
        >>> stable_step_bound(25, growth=1.0)  # no growth at all: the infinite-chain bound
        2.0
    """
    if not (isinstance(num_steps, int) and num_steps >= 1):
        raise ArgumentError(f"num_steps must be an int >= 1; received {num_steps!r}.")
    if not growth >= 1:
        raise ArgumentError(f"growth must be >= 1; received {growth!r}.")
    return 1.0 + growth ** (1.0 / num_steps)


def step_amplification(step_sizes: Tensor, curvature: float) -> float:
    r"""How much K steps can stretch a direction of curvature $\lambda$, expansions only.

    $$
    A(s, \lambda) = \prod_{k=0}^{K-1} \max\big(1, \lvert 1 - s_k \lambda \rvert\big)
    $$

    A step multiplies that direction by $1 - s_k\lambda$ on a quadratic; only the expanding
    steps count, so a contracting step cannot excuse a later exploding one. For one step size
    $A = \max(1, |1 - s\lambda|)^K$, and $A \le G$ is $s\lambda \le$ `stable_step_bound`
    ``(K, G)``; for one step size per step it allows a few large steps where the bound on
    $\max_k s_k$ would refuse them. The stability check refuses a tuned step size with
    $A > G$ = `STABILITY_GROWTH` at the check chains' curvature.

    Arguments:
        step_sizes: $s_k$ with shape ``(K,)``, or ``(K, D)`` (the largest of each row is used).
        curvature: $\lambda \ge 0$.

    Returns:
        $A \ge 1$, a float.

    Examples:
        >>> step_amplification(torch.full((10,), 0.25), 12.0)  # |1 - 3|^10
        1024.0
        >>> step_amplification(torch.tensor([0.05, 0.5, 0.05]), 10.0)  # one step of 1 - 5
        4.0
    """
    per_step = step_sizes.detach().double().reshape(step_sizes.shape[0], -1).amax(dim=1)
    factors = (1.0 - per_step * curvature).abs().clamp_min(1.0)
    return float(factors.prod())


STABILITY_QUANTILE: float = 0.5
r"""The quantile of the check chains' $\hat\lambda_{\max}$ at which the K steps'
amplification (`step_amplification`) must stay within `STABILITY_GROWTH`: the median, so the
typical chain is stable.

For a Gaussian posterior every chain has the same curvature and this is the exact bound. For a
nonlinear model the curvature at the chains' end points is heavy-tailed, and a bound on every
chain (or on 90% of them) refuses step sizes that reconstruct well; chains that actually
diverge are caught by the rerun on more chains. The measurements behind the median are in
``docs/benchmark.md`` and ``docs/performance.md`` ("Where the defaults come from")."""


def grid_edge(candidates: Tensor, objectives: Tensor) -> str | None:
    r"""Whether the best finite candidate of a grid search lies on the grid's edge.

    The minimiser at the smallest candidate, or at the largest one, means the optimum may lie
    outside the grid. The largest *finite* candidate is not an edge when larger candidates
    diverged: the search did look beyond it.

    Arguments:
        candidates: The grid, with shape ``(G, ...)``, in increasing order.
        objectives: $J$ at each candidate, with shape ``(G,)`` (``inf`` for diverged).

    Returns:
        ``"lower"``, ``"upper"`` or ``None``.

    Examples:
        >>> grid = torch.tensor([0.01, 0.02, 0.04])
        >>> grid_edge(grid, torch.tensor([1.0, 2.0, 3.0]))
        'lower'
        >>> grid_edge(grid, torch.tensor([3.0, 2.0, float("inf")])) is None
        True
    """
    if objectives.numel() < 2:
        return None
    best = int(torch.argmin(objectives))
    if best == 0:
        return "lower"
    if best == objectives.numel() - 1:
        return "upper"
    return None


class GridSearchResult(NamedTuple):
    """Outcome of `grid_search`.

    Attributes:
        step_size: The best candidate, a table with the candidates' shape.
        candidates: Every candidate, with shape ``(G, *table)``.
        objectives: $J$ at each candidate, with shape ``(G,)`` (``inf`` where the
            chain diverged).
        dropped: One line per candidate scored ``inf`` on this process, saying why (the
            divergence message, or the error ``log_joint`` raised).
    """

    step_size: Tensor
    candidates: Tensor
    objectives: Tensor
    dropped: tuple[str, ...] = ()


class GradientSearchResult(NamedTuple):
    """Outcome of `gradient_search`.

    Attributes:
        step_size: The step-size table after the last iteration.
        step_sizes: The table at every iteration, with shape ``(T + 1, *table)``.
        objectives: $J$ at every iteration, with shape ``(T,)``.
    """

    step_size: Tensor
    step_sizes: Tensor
    objectives: Tensor


def grid_search(
    objective: Callable[[Tensor], Tensor],
    candidates: Tensor,
    *,
    all_reduce: Callable[[Tensor], Tensor] | None = None,
    strict: bool = True,
) -> GridSearchResult:
    r"""Evaluate $J$ at every candidate and return the minimiser.

    $$s^\star = \arg\min_{s \in \mathcal{G}} J(s)$$

    A candidate at which $J$ is not finite (a diverging chain or a singular Jacobian), or at
    which the objective raises a ``FloatingPointError`` or ``ValueError`` (e.g.
    ``torch.distributions`` refusing a NaN argument inside ``log_joint``), scores ``inf``
    instead of stopping the search; `GridSearchResult.dropped` says which and why.

    Arguments:
        objective: Maps a step-size table to a scalar tensor $J(s)$.
        candidates: The grid, with shape ``(G, *table)``.
        all_reduce: Maps this process's objectives ``(G,)`` to their mean over processes
            (data-parallel training), so that every process picks the same step size.
        strict: Raise when $J$ is non-finite at every candidate (else return them all
            ``inf``).

    Returns:
        A `GridSearchResult`.

    Raises:
        ChainDivergenceError: (a ``FloatingPointError``) If ``strict`` and $J$ is non-finite
            at every candidate; the message lists why.

    Examples:
        >>> grid = torch.tensor(PAPER_DELTA_GRID)
        >>> result = grid_search(lambda s: (s - 0.05).square().sum(), grid)
        >>> round(float(result.step_size), 2)
        0.05
    """
    values, dropped, errors = [], [], []
    for candidate in candidates:
        where = f"step size {candidate.reshape(-1).tolist()}"
        with torch.no_grad():
            try:
                value = float(objective(candidate))
            except (ArgumentError, LogJointError):  # a bad option or log_joint, not step size
                raise
            except (FloatingPointError, ValueError) as err:  # diverged, or log_joint refused
                errors.append(err)
                value = float("nan")
                # First line only: torch.distributions prints whole (wrapped) tensors.
                reason = (str(err).splitlines() or [""])[0][:300]
                dropped.append(f"{where}: {type(err).__name__}: {reason}")
            else:
                if not math.isfinite(value):
                    dropped.append(f"{where}: the objective is {value}")
        values.append(value if value == value else float("inf"))  # NaN counts as diverged
    objectives = torch.tensor(values, dtype=torch.float64)
    if all_reduce is not None:
        objectives = all_reduce(objectives)
    if strict and not bool(torch.isfinite(objectives).any()):
        reasons = "\n  ".join(dropped) or "(non-finite on another process)"
        raise ChainDivergenceError(
            f"the step-size objective is non-finite at every grid point {candidates.tolist()}; "
            f"the chain diverges everywhere. Try a grid of smaller step sizes. Why each "
            f"candidate was dropped:\n  {reasons}"
        ) from (errors[0] if errors else None)
    best = int(torch.argmin(objectives))
    return GridSearchResult(
        candidates[best].clone(), candidates.clone(), objectives, tuple(dropped)
    )


_INVERSE_GOLDEN = (5**0.5 - 1) / 2
_GOLDEN_FRACTION = 1 - _INVERSE_GOLDEN  # 0.382


def golden_section_search(
    objective: Callable[[float], float],
    lower: float,
    upper: float,
    *,
    num_iterations: int = 6,
) -> list[tuple[float, float]]:
    r"""Refine a bracketed minimum of $J(s)$ by golden-section search in $\log s$.

    With $a < b$ the bracket in $u = \log s$ and $\varphi = (\sqrt5 - 1)/2$, each
    iteration keeps the part of $[a, b]$ around the smaller of $J(e^{c})$, $J(e^{d})$ for
    $c = b - \varphi (b - a)$, $d = a + \varphi (b - a)$, reusing one of them: after $n$
    iterations the bracket is $\varphi^n$ of its width, at $n + 1$ evaluations. A
    non-finite value counts as $+\infty$.

    Arguments:
        objective: Maps a step size to the value $J(s)$ (a float; ``inf`` if diverged).
        lower: $e^a$, the left end of the bracket (a step size below the minimiser).
        upper: $e^b$, the right end.
        num_iterations: $n$.

    Returns:
        Every evaluation, a list of ``(step_size, value)``.

    Examples:
        >>> points = golden_section_search(lambda s: (math.log(s) - math.log(0.03)) ** 2,
        ...                                0.01, 0.1, num_iterations=12)
        >>> best = min(points, key=lambda point: point[1])[0]
        >>> round(best, 3)
        0.03
    """
    a, b = math.log(lower), math.log(upper)
    evaluations: list[tuple[float, float]] = []

    def value(u: float) -> float:
        result = float(objective(math.exp(u)))
        result = result if math.isfinite(result) else float("inf")
        evaluations.append((math.exp(u), result))
        return result

    c, d = b - _INVERSE_GOLDEN * (b - a), a + _INVERSE_GOLDEN * (b - a)
    value_c, value_d = value(c), value(d)
    for _ in range(num_iterations - 1):
        if value_c <= value_d:
            b, d, value_d = d, c, value_c
            c = b - _INVERSE_GOLDEN * (b - a)
            value_c = value(c)
        else:
            a, c, value_c = c, d, value_d
            d = a + _INVERSE_GOLDEN * (b - a)
            value_d = value(d)
    return evaluations


def common_random_numbers(
    generator: torch.Generator | None,
) -> Callable[[], torch.Generator]:
    r"""Generators that all replay one stream drawn from ``generator``: common random numbers.

    A search compares $J$ at many candidates; with a stochastic estimator inside $J$ (e.g.
    Hutchinson probes of a log-determinant) each candidate must see the same probes, or the
    comparison is swamped by their noise. One seed is drawn from ``generator`` (advancing it
    once); every call returns a fresh generator seeded with it, on ``generator``'s device.

    Arguments:
        generator: The stream to draw the seed from (``None``: torch's global one).

    Returns:
        A function with no arguments returning a new ``torch.Generator``.

    Examples:
        >>> replay = common_random_numbers(torch.Generator().manual_seed(0))
        >>> torch.equal(torch.randn(3, generator=replay()), torch.randn(3, generator=replay()))
        True
    """
    device = generator.device if generator is not None else torch.device("cpu")
    seed = int(torch.randint(2**62, (1,), generator=generator, device=device))
    return lambda: torch.Generator(device).manual_seed(seed)


class BracketState(NamedTuple):
    r"""State of the bracketing search over $\log s$ (`bracket_init`, `bracket_update`).

    A pure rule in the init/update/final style: the caller evaluates $J$ at ``proposal``
    and passes the value to `bracket_update`, until ``proposal`` is ``None``; `bracket_final`
    returns the best point. The rule never calls the objective, so the caller decides how
    to evaluate (screening, common random numbers, averaging over processes).

    Attributes:
        points: Every evaluation so far, ``(step size, J)`` in evaluation order (``inf`` for
            a diverged chain).
        proposal: The step size to evaluate next, or ``None`` when the search is over.
        factor: The ratio between neighbouring points of the bracketing phase.
        bounds: The smallest and largest step size the search may propose.
        refine: Interpolation steps left (counted down once the bracket is found).
        edge: ``"lower"`` or ``"upper"`` when the search stopped at a bound with the best
            point there (the optimum may lie beyond), else ``None``.
    """

    points: tuple[tuple[float, float], ...]
    proposal: float | None
    factor: float
    bounds: tuple[float, float]
    refine: int
    edge: str | None = None


def bracket_init(
    start: float,
    *,
    factor: float = 10**0.5,
    bounds: tuple[float, float] = (1e-6, 10.0),
    refine: int = 4,
) -> BracketState:
    r"""Start a bracketing search for the minimiser of $J(s)$ at the step size ``start``.

    **Bracketing.** From $u_0 = \log s_0$ the search walks in steps of
    $h = \log$ ``factor``: up while $J$ decreases, else down, until the best point $u^\star$
    has evaluated neighbours $u^\star \pm h$ that are both worse (or diverged). On a
    unimodal $J$ this costs $3 + |u^\star - u_0| / h$ evaluations; a warm start near the
    optimum (re-tuning during training) needs three.

    **Refinement.** Each of ``refine`` steps evaluates the vertex of the parabola through the
    best point and its two neighbours in $u$,

    $$
    u_{\text{new}} = b - \tfrac12\,\frac{(b - a)^2 (J_b - J_c) - (b - c)^2 (J_b - J_a)}
    {(b - a)(J_b - J_c) - (b - c)(J_b - J_a)},
    $$

    when it lies strictly inside $(a, c)$ and not next to $b$; otherwise (a diverged or very
    steep neighbour) a golden-section step, $b + 0.382\,(c - b)$ into the wider side.

    Arguments:
        start: $s_0 > 0$, e.g. the current step size (clamped into ``bounds``).
        factor: $e^h > 1$, the ratio between neighbouring bracketing points.
        bounds: ``(lower, upper)`` step sizes the search stays within.
        refine: Number of interpolation steps after bracketing.

    Returns:
        The initial `BracketState`; its ``proposal`` is ``start``.

    Raises:
        ValueError: For a non-positive ``start``, ``factor <= 1`` or bad ``bounds``.

    Examples:
        >>> state = bracket_init(1e-3)
        >>> while state.proposal is not None:  # J(s) = (log10 s + 2)^2, minimum at s = 0.01
        ...     state = bracket_update(state, (math.log10(state.proposal) + 2) ** 2)
        >>> step_size, value = bracket_final(state)
        >>> round(step_size, 4), len(state.points)
        (0.01, 4)
    """
    lower, upper = bounds
    if not (0 < lower < upper and math.isfinite(upper)):
        raise ArgumentError(
            f"bounds must be (lower, upper) with 0 < lower < upper < inf; received {bounds!r}."
        )
    if not (math.isfinite(start) and start > 0):
        raise ArgumentError(f"start must be a positive, finite step size; received {start!r}.")
    if not factor > 1:
        raise ArgumentError(f"factor must be > 1; received {factor!r}. Try factor=10**0.5.")
    return BracketState((), min(max(start, lower), upper), factor, (lower, upper), refine)


def bracket_update(state: BracketState, value: float) -> BracketState:
    """Record $J$ at ``state.proposal`` and choose the next proposal; see `bracket_init`.

    Arguments:
        state: The current `BracketState` (its ``proposal`` must not be ``None``).
        value: $J$ at ``state.proposal``; non-finite values count as diverged (``inf``).

    Returns:
        The next `BracketState`.

    Examples:
        >>> state = bracket_update(bracket_init(0.1), 1.0)
        >>> round(state.proposal, 4)  # first look upwards
        0.3162
    """
    if state.proposal is None:
        raise ArgumentError("the search is over (proposal is None); call bracket_final.")
    value = float(value)
    value = value if math.isfinite(value) else float("inf")
    points = (*state.points, (state.proposal, value))
    ordered = sorted(points)
    finite = [i for i, (_, v) in enumerate(ordered) if v < float("inf")]
    lower, upper = state.bounds
    if not finite:  # everything diverged so far: walk down
        if ordered[0][0] <= lower * (1 + 1e-9):
            return state._replace(points=points, proposal=None, edge="lower")
        return state._replace(points=points, proposal=max(ordered[0][0] / state.factor, lower))
    best = min(finite, key=lambda i: ordered[i][1])
    if best == len(ordered) - 1:  # best at the top: look further up, up to the bound
        if ordered[best][0] >= upper * (1 - 1e-9):
            return state._replace(points=points, proposal=None, edge="upper")
        return state._replace(points=points, proposal=min(ordered[best][0] * state.factor, upper))
    if best == 0:  # best at the bottom: look further down, down to the bound
        if ordered[best][0] <= lower * (1 + 1e-9):
            return state._replace(points=points, proposal=None, edge="lower")
        return state._replace(points=points, proposal=max(ordered[best][0] / state.factor, lower))
    # Bracketed: both neighbours are worse. Refine by parabolic interpolation.
    if state.refine <= 0:
        return state._replace(points=points, proposal=None)
    u_a, j_a = math.log(ordered[best - 1][0]), ordered[best - 1][1]
    u_b, j_b = math.log(ordered[best][0]), ordered[best][1]
    u_c, j_c = math.log(ordered[best + 1][0]), ordered[best + 1][1]
    vertex = None
    if math.isfinite(j_a) and math.isfinite(j_c):
        p, q = (u_b - u_a) * (j_b - j_c), (u_b - u_c) * (j_b - j_a)
        if p != q:
            vertex = u_b - 0.5 * ((u_b - u_a) * p - (u_b - u_c) * q) / (p - q)
    # Accept the vertex only strictly inside the bracket and not on the best point; otherwise
    # (a diverged or very steep neighbour) take a golden-section step into the wider side.
    wide = max(u_b - u_a, u_c - u_b)
    if vertex is not None and abs(vertex - u_b) < 0.01 * math.log(state.factor):
        return state._replace(points=points, proposal=None)  # converged on the best point
    if vertex is None or not (u_a < vertex < u_c) or abs(vertex - u_b) < 0.05 * wide:
        if u_c - u_b >= u_b - u_a:
            vertex = u_b + _GOLDEN_FRACTION * (u_c - u_b)
        else:
            vertex = u_b - _GOLDEN_FRACTION * (u_b - u_a)
    if min(abs(vertex - math.log(s)) for s, _ in points) < 0.01 * math.log(state.factor):
        return state._replace(points=points, proposal=None)
    return state._replace(points=points, proposal=math.exp(vertex), refine=state.refine - 1)


def bracket_final(state: BracketState) -> tuple[float, float]:
    """The best evaluated point ``(step size, J)`` of a bracketing search.

    Raises:
        ChainDivergenceError: If every evaluation diverged.

    Examples:
        >>> state = bracket_update(bracket_update(bracket_init(0.1), 2.0), 1.0)
        >>> step_size, value = bracket_final(state)
        >>> round(step_size, 4), value
        (0.3162, 1.0)
    """
    finite = [point for point in state.points if point[1] < float("inf")]
    if not finite:
        tried = ", ".join(f"{s:.3g}" for s, _ in state.points)
        raise ChainDivergenceError(
            f"the step-size objective is non-finite at every step size tried ({tried}); the "
            "chain diverges down to the search's lower bound. Check that log_joint's gradient "
            "is bounded, or pass a smaller lower bound."
        )
    return min(finite, key=lambda point: point[1])


def objective_and_gradient(
    objective: Callable[[Tensor], Tensor],
    log_step_size: Tensor,
    *,
    derivative: Literal["forward", "reverse"] = "reverse",
) -> tuple[Tensor, Tensor]:
    r"""$J(e^u)$ and $\nabla_u J(e^u)$ for a table of log step sizes $u$.

    - ``"reverse"``: one backward pass (``torch.autograd.grad``; only $u$ receives a
      gradient, model parameters are left untouched). Memory holds the whole graph.
    - ``"forward"``: one ``torch.func.jvp`` per entry of $u$ with tangent $e_i$,
      $\partial_i J = \frac{d}{dt} J(e^{u + t e_i})\big|_{t=0}$, run under
      ``torch.no_grad`` so no graph is kept: memory is that of one evaluation, time is about
      $(1 + c)$ evaluations per entry.

    Arguments:
        objective: Maps a step-size table to a scalar tensor; it must be traceable by
            ``torch.func.jvp`` for ``"forward"`` (the posterior's objectives are).
        log_step_size: $u$, any shape.
        derivative: ``"forward"`` or ``"reverse"``.

    Returns:
        ``(value, gradient)``: the detached scalar $J$ and $\nabla_u J$ with the
        shape of ``log_step_size``.

    Examples:
        >>> f = lambda s: (s - 0.05).square().sum()
        >>> u = torch.tensor([[0.1]]).log()
        >>> _, forward = objective_and_gradient(f, u, derivative="forward")
        >>> _, reverse = objective_and_gradient(f, u, derivative="reverse")
        >>> torch.allclose(forward, reverse)
        True
    """
    primal = log_step_size.detach()
    if derivative == "reverse":
        with torch.enable_grad():
            leaf = primal.clone().requires_grad_(True)
            value = objective(leaf.exp())
            (gradient,) = torch.autograd.grad(value, leaf)
        return value.detach(), gradient
    if derivative == "forward":
        gradient = torch.zeros_like(primal)
        value = primal.new_zeros(())
        for index in range(primal.numel()):
            tangent = torch.zeros_like(primal).reshape(-1)
            tangent[index] = 1
            with torch.no_grad():
                value, slope, *_ = torch.func.jvp(
                    lambda u: objective(u.exp()), (primal,), (tangent.reshape(primal.shape),)
                )
            gradient.reshape(-1)[index] = slope
        return value.detach(), gradient
    raise ArgumentError(f"derivative must be 'forward' or 'reverse'; received {derivative!r}.")


class AdamState(NamedTuple):
    r"""State of Adam on $u = \log s$ (`adam_init`, `adam_update`).

    Attributes:
        log_step_size: $u_t$, the current log step-size table.
        first_moment: $m_t$, the running mean of gradients, shaped like $u$.
        second_moment: $v_t$, the running mean of squared gradients, shaped like $u$.
        count: $t$, the number of updates so far.
    """

    log_step_size: Tensor
    first_moment: Tensor
    second_moment: Tensor
    count: int


def adam_init(initial: Tensor) -> AdamState:
    r"""Start Adam on $u = \log s$ at the positive step-size table ``initial`` (any shape).

    Raises:
        ValueError: If an entry of ``initial`` is not positive and finite.

    Examples:
        >>> state = adam_init(torch.tensor([[0.1]]))
        >>> state.log_step_size.exp(), state.count
        (tensor([[0.1000]]), 0)
    """
    if not bool(((initial > 0) & torch.isfinite(initial)).all()):
        raise ArgumentError(
            f"the initial step size must be positive and finite; received {initial.tolist()}."
        )
    log_step_size = initial.detach().log()
    zeros = torch.zeros_like(log_step_size)
    return AdamState(log_step_size, zeros, zeros.clone(), 0)


def adam_update(
    state: AdamState,
    gradient: Tensor,
    *,
    learning_rate: float,
    bounds: tuple[float, float] = (1e-4, 10.0),
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> AdamState:
    r"""One Adam step on $u = \log s$ with the gradient $g = \nabla_u J(e^u)$, clamped.

    $$
    m_t = \beta_1 m_{t-1} + (1 - \beta_1) g, \quad
    v_t = \beta_2 v_{t-1} + (1 - \beta_2) g^2, \quad
    u_t = \operatorname{clamp}\Big(u_{t-1} - \eta\,
    \frac{m_t / (1 - \beta_1^t)}{\sqrt{v_t / (1 - \beta_2^t)} + \epsilon},\;
    \log s_{\min}, \log s_{\max}\Big),
    $$

    the update of ``torch.optim.Adam`` (Kingma and Ba, 2015) followed by a clamp of $s$ to
    ``bounds``. A pure function: it evaluates nothing and changes nothing in place.

    Arguments:
        state: The current `AdamState`.
        gradient: $g$, shaped like ``state.log_step_size``.
        learning_rate: $\eta$, a relative change of $s$ per step.
        bounds: $(s_{\min}, s_{\max})$.
        betas: $(\beta_1, \beta_2)$.
        eps: $\epsilon$.

    Returns:
        The next `AdamState`.

    Examples:
        >>> state = adam_init(torch.tensor([[0.1]]))
        >>> state = adam_update(state, torch.tensor([[1.0]]), learning_rate=0.5)
        >>> round(float(state.log_step_size.exp()), 4)  # e^(log 0.1 - 0.5)
        0.0607
    """
    beta1, beta2 = betas
    count = state.count + 1
    first = beta1 * state.first_moment + (1 - beta1) * gradient
    second = beta2 * state.second_moment + (1 - beta2) * gradient.square()
    step = (first / (1 - beta1**count)) / ((second / (1 - beta2**count)).sqrt() + eps)
    lower, upper = bounds
    log_step_size = (state.log_step_size - learning_rate * step).clamp(
        math.log(lower), math.log(upper)
    )
    return AdamState(log_step_size, first, second, count)


def _agree_across_processes(
    all_reduce: Callable[[Tensor], Tensor],
    value: Tensor,
    gradient: Tensor,
    failure: FloatingPointError | None,
    where: str,
) -> tuple[Tensor, Tensor, FloatingPointError | None]:
    """Average ``(value, gradient)`` over processes; fail on all of them if one failed.

    One collective carries a 0/1 "failed here" flag, the objective and the gradient. A
    process that raised alone would leave the others waiting in the next collective; a failed
    process sends zeros besides its flag, so its non-finite values cannot reach the others'
    means.
    """
    ok = failure is None
    packed = torch.cat(
        [
            gradient.new_full((1,), float(not ok)),
            value.detach().reshape(1).to(gradient.dtype) if ok else gradient.new_zeros(1),
            gradient.reshape(-1) if ok else torch.zeros_like(gradient).reshape(-1),
        ]
    )
    reduced = all_reduce(packed)
    if ok and float(reduced[0]) > 0:
        failure = FloatingPointError(
            f"the step-size objective or its gradient became non-finite on another process "
            f"at {where}; every process stops here. Lower the learning_rate or start from a "
            "smaller step size."
        )
    return reduced[1], reduced[2:].reshape(gradient.shape), failure


def gradient_search(
    objective: Callable[[Tensor], Tensor],
    initial: Tensor,
    *,
    num_iterations: int = 50,
    learning_rate: float = 0.05,
    bounds: tuple[float, float] = (1e-4, 10.0),
    all_reduce: Callable[[Tensor], Tensor] | None = None,
    derivative: DerivativeMode = "auto",
    num_elements: int | None = None,
) -> GradientSearchResult:
    r"""Minimise $J(s)$ by Adam on $\log s$, differentiating through the chain.

    Optimising $u = \log s$ keeps $s > 0$ without projection; the learning rate is
    thus a relative change of $s$ per iteration. $s$ is clamped to ``bounds``.

    $$
    u_{t+1} = u_t - \eta\,\mathrm{Adam}\big(\nabla_u J(e^{u_t})\big)
    $$

    A loop over the pure rule `adam_init` / `adam_update` that keeps the history. The
    gradient comes from `objective_and_gradient`: forward mode (one ``jvp`` per parameter,
    no stored graph) or reverse mode (one backward pass, every step's graph stored).
    ``"auto"`` decides by `default_derivative` from the number of parameters and
    ``num_elements``.

    Arguments:
        objective: Maps a step-size table (requiring grad) to a differentiable scalar tensor.
        initial: The starting table, positive, any shape (e.g. ``(1, 1)``, ``(K, 1)``,
            ``(1, N)``); its shape is kept.
        num_iterations: Number of Adam steps T.
        learning_rate: Adam's learning rate $\eta$ on $\log s$.
        bounds: Lower and upper clamps for $s$.
        all_reduce: Maps a local tensor to its mean over processes; applied once per
            iteration to the gradient and the objective, so that data-parallel processes take
            identical steps, packed with a 0/1 flag of "non-finite here", so that when one
            process's objective or gradient is non-finite (or its objective raises a
            ``FloatingPointError``, e.g. a diverging chain), **all** processes raise at the
            same iteration instead of the others waiting forever in the next collective.
        derivative: ``"auto"``, ``"forward"`` or ``"reverse"``.
        num_elements: $K \cdot S B \cdot D$, the size of the chain's noise, for ``"auto"``
            (``None``: large, so only the number of parameters decides).

    Returns:
        A `GradientSearchResult`.

    Raises:
        FloatingPointError: If the objective or its gradient becomes non-finite (on any
            process, with ``all_reduce``).
        ValueError: For an unknown ``derivative``.

    Examples:
        >>> result = gradient_search(
        ...     lambda s: (s - 0.05).square().sum(), torch.tensor([[0.1]]),
        ...     num_iterations=300, learning_rate=0.05)
        >>> round(float(result.step_size), 3)
        0.05
    """
    if derivative == "auto":
        elements = FORWARD_MIN_ELEMENTS if num_elements is None else num_elements
        derivative = default_derivative(initial.numel(), elements)
    if derivative not in ("forward", "reverse"):
        raise ArgumentError(
            f"derivative must be 'auto', 'forward' or 'reverse'; received {derivative!r}."
        )
    state = adam_init(initial)
    tables = [initial.detach().clone()]
    values = []
    for iteration in range(num_iterations):
        log_s = state.log_step_size
        where = f"iteration {iteration} (step size {log_s.exp().tolist()})"
        failure: FloatingPointError | None = None
        try:
            value, gradient = objective_and_gradient(objective, log_s, derivative=derivative)
        except FloatingPointError as err:  # e.g. a diverging chain (ChainDivergenceError)
            if all_reduce is None:
                raise
            failure = err
            value, gradient = log_s.new_full((), float("nan")), torch.zeros_like(log_s)
        if failure is None and not bool(torch.isfinite(value)):
            failure = FloatingPointError(
                f"the step-size objective became {float(value)} at {where}; lower the "
                "learning_rate or start from a smaller step size."
            )
        if failure is None and not bool(torch.isfinite(gradient).all()):
            failure = FloatingPointError(
                f"the gradient of the step-size objective is non-finite at {where}; start "
                "from a smaller step size."
            )
        if all_reduce is not None:
            value, gradient, failure = _agree_across_processes(
                all_reduce, value, gradient, failure, where
            )
        if failure is not None:
            raise failure
        state = adam_update(state, gradient, learning_rate=learning_rate, bounds=bounds)
        values.append(float(value))
        tables.append(state.log_step_size.exp())
    return GradientSearchResult(
        tables[-1], torch.stack(tables), torch.tensor(values, dtype=torch.float64)
    )
