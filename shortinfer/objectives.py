r"""Entropy objectives for the short-run posterior: one function per estimate, and a registry.

Every objective returns, per chain, an estimate $\hat H$ of the entropy of the chain's
output $z_K$; the ELBO is $\mathbb{E}_q[\log p(x, z_K)] + \hat H$ and the step-size
objective $J(s)$ is its negative mean over examples. Write one step as
$z_{k+1} = y_k + \sqrt{2 s_k} \odot \epsilon_k$ with the drift
$y_k = f_k(z_k) = z_k + s_k \odot \nabla_z \log p(x, z_k)$ and
$J_k = \partial f_k / \partial z_k$.

| name | function | what it is |
|---|---|---|
| ``"conditional"`` | `conditional_lower_bound` | $H(z_K \mid \epsilon)$ (the paper's) |
| ``"epi"`` | `entropy_power_lower_bound` | entropy-power inequality per step |
| ``"semi_implicit"`` | `semi_implicit_lower_bound` | SIVI mixture over the chains |
| ``"linearized"`` | `linearized_estimate` | local linearisation; **not a bound** |
| ``"sandwich"`` | `sandwich_estimate` | clipped linearisation; **not a bound** |

The first three are lower bounds on $H(z_K)$ (``"epi"`` up to a Jensen gap).

`OBJECTIVES` maps each name to its `Objective` record (function, bound direction,
whether it mixes chains); `EntropyEstimator` binds an objective with its options
(log-determinant method, Jacobian mode, chunk size, mixture size) once, validated, and is
what `shortinfer.ShortRunPosterior` and `shortinfer.train.StepSizeTuning` hold.

A lower bound on the entropy makes the objective an upper bound on
$\mathrm{KL}(q_s \| p(z \mid x)) - \log p(x)$. The paper's ``"conditional"`` bound leaves
out exactly the entropy the injected noise adds, $I(z_K; \epsilon)$, which grows with $s$,
so its minimiser is biased towards small step sizes. The library's default for tuning is
``"linearized"`` (`shortinfer.tuning.DEFAULT_OBJECTIVE`); the study behind the choice,
with cost and accuracy of every objective, is in ``docs/objectives.md``.

References:
    Learning Multi-layer Latent Variable Model via Variational Optimization of Short Run MCMC
    for Approximate Inference (Nijkamp, Pang, Han, Zhou, Zhu, Wu, 2020),
    https://arxiv.org/abs/1912.01909

    Early Stopping is Nonparametric Variational Inference (Maclaurin, Duvenaud, Adams, 2016),
    https://arxiv.org/abs/1504.01344

    Semi-Implicit Variational Inference (Yin, Zhou, 2018), https://arxiv.org/abs/1805.11183

    Importance Weighted Hierarchical Variational Inference (Sobolev, Vetrov, 2019),
    https://arxiv.org/abs/1905.03290
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, NamedTuple, cast, get_args

import torch
from torch import Tensor

from shortinfer._checks import DEFAULT_NUM_MIXTURE as _DEFAULT_NUM_MIXTURE
from shortinfer._checks import (
    ArgumentError,
    check_choice,
    check_int,
    check_mode,
    check_num_mixture,
    translate_func_errors,
)
from shortinfer.entropy import JacobianMode, LogDetMethod, estimate_log_det, jacobian
from shortinfer.langevin import functional_score, rollout
from shortinfer.tuning import DEFAULT_OBJECTIVE

__all__ = [
    "DEFAULT_NUM_MIXTURE",
    "MIXTURE_OBJECTIVES",
    "OBJECTIVES",
    "SANDWICH_MARGIN",
    "EntropyEstimator",
    "Objective",
    "ObjectiveName",
    "SemiImplicitBounds",
    "conditional_lower_bound",
    "entropy_power_lower_bound",
    "linearized_estimate",
    "sandwich_estimate",
    "semi_implicit_bounds",
    "semi_implicit_lower_bound",
]

ObjectiveName = Literal["conditional", "epi", "semi_implicit", "linearized", "sandwich"]
"""The names of the entropy objectives, the keys of `OBJECTIVES`."""

_LOG_4_PI_E = math.log(4 * math.pi * math.e)  # e^{2H/D} of N(0, 2sI) is 4·pi·e·s

DEFAULT_NUM_MIXTURE: int = _DEFAULT_NUM_MIXTURE
r"""Default $M$: at most this many other chains of an example enter a chain's mixture.

The semi-implicit lower bound gains at most $\log(M + 1)$ nats over the last step's noise
entropy, so larger $M$ is tighter; the mixture costs $O(S M B D)$, which in 2-D is
the dominant cost. ``docs/objectives.md`` shows the trade-off measured.
"""

SANDWICH_MARGIN: float = 2.0
r"""Standard errors by which ``"sandwich"`` widens the semi-implicit interval before clipping.

The linearized estimate is moved only when a semi-implicit bound contradicts it beyond Monte
Carlo error (about a 2.3% one-sided false-alarm rate per bound for Gaussian errors); clipping
on noise alone would swap exact linear-Gaussian estimates for noisy bounds
(``docs/objectives.md``).
"""


class SemiImplicitBounds(NamedTuple):
    r"""The two semi-implicit entropy estimates of `semi_implicit_bounds`.

    Attributes:
        z_k: The chains' output $z_K$, with shape ``(N, D)``.
        lower: $\hat H^-$, whose expectation is a lower bound on $H(z_K)$,
            with shape ``(N,)``.
        upper: $\hat H^+$, whose expectation is an upper bound on $H(z_K)$,
            with shape ``(N,)``.
    """

    z_k: Tensor
    lower: Tensor
    upper: Tensor


# -- the objectives ----------------------------------------------------------------------------


def conditional_lower_bound(
    log_joint: Callable[[Tensor], Tensor],
    z0: Tensor,
    noise: Tensor,
    step_sizes: Tensor,
    prior_log_prob: Callable[[Tensor], Tensor],
    estimator: EntropyEstimator,
    num_examples: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    r"""The paper's entropy bound, equations (13) and (17) with the noise held fixed.


    $$
    \hat H = -\log p(z_0) + \log\Big\lvert\det \frac{\partial z_K}{\partial z_0}\Big\rvert,
    \qquad \mathbb{E}[\hat H] = H(z_K \mid \epsilon) \le H(z_K).
    $$

    A **lower bound** on the entropy.

    Arguments and return value as `EntropyEstimator.__call__`: flat latents ``(N, D)``,
    noise ``(K, N, D)``, step sizes ``(K, D)`` or ``(K, 1)``; returns ``(z_K, entropy)`` with
    shapes ``(N, D)`` and ``(N,)``.

    Examples:
        >>> log_joint = lambda z: -0.5 * z.square().sum(-1)
        >>> prior = lambda z: -0.5 * z.square().sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
        >>> z0, noise, steps = torch.randn(8, 3), torch.randn(4, 8, 3), torch.full((4, 1), 0.1)
        >>> _, h = conditional_lower_bound(log_joint, z0, noise, steps, prior,
        ...                                EntropyEstimator("conditional"), num_examples=8)
        >>> h.shape
        torch.Size([8])
    """
    z_k, log_det = estimate_log_det(
        log_joint,
        z0,
        noise,
        step_sizes,
        method=estimator.log_det,
        mode=estimator.mode,
        chunk_size=estimator.chunk_size,
        generator=generator,
    )
    return z_k, log_det - prior_log_prob(z0)


def entropy_power_lower_bound(
    log_joint: Callable[[Tensor], Tensor],
    z0: Tensor,
    noise: Tensor,
    step_sizes: Tensor,
    prior_log_prob: Callable[[Tensor], Tensor],
    estimator: EntropyEstimator,
    num_examples: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    r"""The entropy-power inequality at every step, as in Maclaurin et al. (2016).

    For the independent $y_k$ and $\sqrt{2 s_k}\epsilon_k$,
    $e^{2H(z_{k+1})/D} \ge e^{2H(y_k)/D} + 4\pi e\,\bar s_k$, and
    $H(y_k) = H(z_k) + \mathbb{E}\,\ell_k$ when $f_k$ is injective (guaranteed when
    $s_k \operatorname{Lip}(\nabla \log p) < 1$). The right side increases with
    $H(z_k)$, so the recursion

    $$
    h_0 = H(p), \qquad
    h_{k+1} = \tfrac D2 \log\big(e^{2(h_k + \mathbb{E}\,\ell_k)/D} + 4\pi e\,\bar s_k\big)
    $$

    gives $H(z_K \mid \epsilon) \le h_K \le H(z_K)$. The estimator takes $H(p)$ as
    the mean of $-\log p(z_0)$ over all rows (every row's $z_0$ is a prior draw) and
    $\mathbb{E}\,\ell_k$ as the mean of $\ell_k(z_k)$ over the $S$ chains of
    the example; every chain of an example gets the same value. The recursion is convex in
    these means, so $\mathbb{E}[\hat H] \ge h_K$ by Jensen: the estimate is a **lower
    bound only up to that gap**, which shrinks as $1/S$ (and vanishes for affine chains,
    whose $\ell_k$ is constant, as the batch grows). Outside the injective regime (large
    $s$ on a curved posterior) it can exceed $H(z_K)$.

    Arguments and return value as `EntropyEstimator.__call__`: flat latents ``(N, D)``,
    noise ``(K, N, D)``, step sizes ``(K, D)`` or ``(K, 1)``; returns ``(z_K, entropy)`` with
    shapes ``(N, D)`` and ``(N,)``.

    Examples:
        >>> log_joint = lambda z: -0.5 * z.square().sum(-1)
        >>> prior = lambda z: -0.5 * z.square().sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
        >>> z0, noise, steps = torch.randn(8, 3), torch.randn(4, 8, 3), torch.full((4, 1), 0.1)
        >>> _, h = entropy_power_lower_bound(log_joint, z0, noise, steps, prior,
        ...                                  EntropyEstimator("epi"), num_examples=2)
        >>> h.shape
        torch.Size([8])
    """
    dim = z0.shape[-1]
    # H(p) from every row: z0 is a prior draw whatever example the row belongs to.
    entropy = (-prior_log_prob(z0)).mean().expand(num_examples)
    z = z0
    for k in range(noise.shape[0]):
        # A one-step rollout's Jacobian is J_k, and its output is z_{k+1} on the same noise.
        z, jac = jacobian(
            log_joint,
            z,
            noise[k : k + 1],
            step_sizes[k : k + 1],
            mode=estimator.mode,
            chunk_size=estimator.chunk_size,
        )
        log_det = _example_mean(torch.linalg.slogdet(jac).logabsdet, num_examples)
        drift = entropy + log_det  # H(f_k(z_k)) = H(z_k) + E l_k
        noise_power = _log_noise_power(step_sizes[k], dim).expand_as(drift)
        entropy = 0.5 * dim * torch.logaddexp(2 * drift / dim, noise_power)
    return z, _broadcast(entropy, z0.shape[0])


def semi_implicit_lower_bound(
    log_joint: Callable[[Tensor], Tensor],
    z0: Tensor,
    noise: Tensor,
    step_sizes: Tensor,
    prior_log_prob: Callable[[Tensor], Tensor],
    estimator: EntropyEstimator,
    num_examples: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    r"""The semi-implicit (SIVI) lower bound of Yin & Zhou (2018) and Sobolev & Vetrov (2019).

    The lower estimate of `semi_implicit_bounds`, mixing the last step's Gaussian over
    $M = \min(\text{num\_mixture}, S - 1)$ other chains of the example. A **lower
    bound** for every $M$, without Jensen gap; non-decreasing in $M$ and tight as
    $M \to \infty$. Its gap to
    $H(z_K)$ is at least $I(z_K; z_{K-1}) - \log(M + 1)$, so it needs $M$
    of order $e^{I(z_K; z_{K-1})}$: fine in 2-D, hopeless in 16-D.

    Arguments and return value as `EntropyEstimator.__call__`: flat latents ``(N, D)``,
    noise ``(K, N, D)``, step sizes ``(K, D)`` or ``(K, 1)``; returns ``(z_K, entropy)`` with
    shapes ``(N, D)`` and ``(N,)``.

    Examples:
        >>> log_joint = lambda z: -0.5 * z.square().sum(-1)
        >>> prior = lambda z: -0.5 * z.square().sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
        >>> z0, noise, steps = torch.randn(8, 3), torch.randn(4, 8, 3), torch.full((4, 1), 0.1)
        >>> _, h = semi_implicit_lower_bound(log_joint, z0, noise, steps, prior,
        ...                                  EntropyEstimator("semi_implicit"), num_examples=2)
        >>> h.shape
        torch.Size([8])
    """
    bounds = semi_implicit_bounds(
        log_joint,
        z0,
        noise,
        step_sizes,
        num_examples=num_examples,
        num_mixture=estimator.num_mixture,
    )
    return bounds.z_k, bounds.lower


def linearized_estimate(
    log_joint: Callable[[Tensor], Tensor],
    z0: Tensor,
    noise: Tensor,
    step_sizes: Tensor,
    prior_log_prob: Callable[[Tensor], Tensor],
    estimator: EntropyEstimator,
    num_examples: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    r"""The chain rule of entropy on the chain's local linearisation (the library's default).

    The chain rule $H(z_K) = H(z_0) + H(z_K \mid z_0) - H(z_0 \mid z_K)$
    with both conditional entropies taken from the chain's linearisation around its own path.
    With $J = \partial z_K/\partial z_0$, $G_k = \partial z_K / \partial\epsilon_k$
    (both from one reverse-mode Jacobian of $(z_0, \epsilon) \mapsto z_K$), the noise's
    covariance in $z_K$, $C = \sum_k G_k G_k^\top$, and
    $\Lambda_0 = -\nabla^2 \log p(z_0)$ ($I$ for the standard normal prior),

    $$
    \hat H = -\log p(z_0) + \tfrac12 \log\det C
    + \tfrac12 \log\det\big(\Lambda_0 + J^\top C^{-1} J\big)
    = -\log p(z_0) + \log\lvert\det J\rvert
    + \tfrac12\log\det\big(I + \Lambda_0 J^{-1} C J^{-\top}\big):
    $$

    the conditional estimate plus the mutual information $I(z_K; \epsilon)$ of the
    linearised (Gaussian-channel) chain. $\mathbb{E}[\hat H] = H(z_K)$ exactly when the
    chain is affine and the prior Gaussian (e.g.
    `shortinfer.models.LinearGaussian`); **not a bound** otherwise. On
    curved posteriors at large $s$ (locally expanding steps, $s \lambda > 2$ for
    some Hessian eigenvalue $\lambda$) it overestimates the entropy.

    For ``mode="forward"`` the Jacobian pushes $(K + 1) D$ tangents, not $D$.

    Arguments and return value as `EntropyEstimator.__call__`: flat latents ``(N, D)``,
    noise ``(K, N, D)``, step sizes ``(K, D)`` or ``(K, 1)``; returns ``(z_K, entropy)`` with
    shapes ``(N, D)`` and ``(N,)``.

    Examples:
        >>> log_joint = lambda z: -0.5 * z.square().sum(-1)
        >>> prior = lambda z: -0.5 * z.square().sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
        >>> z0, noise, steps = torch.randn(8, 3), torch.randn(4, 8, 3), torch.full((4, 1), 0.1)
        >>> _, h = linearized_estimate(log_joint, z0, noise, steps, prior,
        ...                            EntropyEstimator("linearized"), num_examples=8)
        >>> h.shape
        torch.Size([8])
    """
    z_k, entropy, _ = _linearized(
        log_joint, z0, noise, step_sizes, prior_log_prob, estimator.mode, estimator.chunk_size
    )
    return z_k, entropy


def sandwich_estimate(
    log_joint: Callable[[Tensor], Tensor],
    z0: Tensor,
    noise: Tensor,
    step_sizes: Tensor,
    prior_log_prob: Callable[[Tensor], Tensor],
    estimator: EntropyEstimator,
    num_examples: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    r"""The linearized estimate, clipped where a semi-implicit bound contradicts it.

    The linearized estimate, moved only where a semi-implicit
    bound contradicts it beyond Monte Carlo error. With $\bar{\cdot}_b$ the mean over
    example $b$'s chains, $\mathrm{se}_b$ its standard error,
    $c =$ `SANDWICH_MARGIN`, $\tilde H^{\mathrm{lin}}$ the linearized
    estimate with $-\log p(z_0)$ replaced by its mean over all rows (the same quantity
    for every example; its per-chain noise would otherwise decide the clip), and
    $\sigma^\pm_b = \sqrt{(\mathrm{se}^\pm_b)^2 + (\mathrm{se}^{\mathrm{lin}}_b)^2}$ the
    standard error of the difference between a bound's mean and the linearized mean,

    $$
    \hat H_i = \tilde H^{\mathrm{lin}}_i
    + \operatorname{clip}\big(\bar H^{\mathrm{lin}}_b,\
    \bar H^-_b - c\,\sigma^-_b,\ \bar H^+_b + c\,\sigma^+_b\big)
    - \bar H^{\mathrm{lin}}_b,
    \qquad \bar H^{\mathrm{lin}}_b = \overline{\tilde H^{\mathrm{lin}}}_b.
    $$

    Since $\mathbb{E}\bar H^-_b \le H(z_K) \le \mathbb{E}\bar H^+_b$, the clip can only
    move the estimate towards $H(z_K)$, up to Monte Carlo error: the linearisation
    supplies accuracy in high dimension, the semi-implicit bounds catch its failures where they
    are tight (low dimension; large $s$ on curved posteriors). **Not a bound**; exact in
    expectation where ``"linearized"`` is. Cost: the linearized Jacobian plus $S M$
    kernel evaluations per example. In low dimension with many chains,
    ``"semi_implicit"`` alone selects better: its objective's per-chain terms
    $\log p(x, z_K) + \hat H^-$ nearly cancel, so it is far less noisy.

    Arguments and return value as `EntropyEstimator.__call__`: flat latents ``(N, D)``,
    noise ``(K, N, D)``, step sizes ``(K, D)`` or ``(K, 1)``; returns ``(z_K, entropy)`` with
    shapes ``(N, D)`` and ``(N,)``.

    Examples:
        >>> log_joint = lambda z: -0.5 * z.square().sum(-1)
        >>> prior = lambda z: -0.5 * z.square().sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
        >>> z0, noise, steps = torch.randn(8, 3), torch.randn(4, 8, 3), torch.full((4, 1), 0.1)
        >>> _, h = sandwich_estimate(log_joint, z0, noise, steps, prior,
        ...                          EntropyEstimator("sandwich"), num_examples=2)
        >>> h.shape
        torch.Size([8])
    """
    count = z0.shape[0]
    examples = num_examples
    z_k, linear, drift = _linearized(
        log_joint, z0, noise, step_sizes, prior_log_prob, estimator.mode, estimator.chunk_size
    )
    lower, upper = _kernel_bounds(z_k, drift, step_sizes[-1], examples, estimator.num_mixture)
    # Compare with the prior's entropy pooled over all rows: -log p(z0) is the same
    # quantity for every example, and its per-chain noise would otherwise decide the clip.
    prior_entropy = -prior_log_prob(z0)
    linear = linear - prior_entropy + prior_entropy.mean()
    mean_linear = _example_mean(linear, examples)
    # Monte Carlo variance of the linearized mean: its chains' spread and the pooled H(p).
    var_linear = _standard_error(linear, examples).square() + prior_entropy.var() / count
    margin_low = (_standard_error(lower, examples).square() + var_linear).sqrt()
    margin_high = (_standard_error(upper, examples).square() + var_linear).sqrt()
    low = _example_mean(lower, examples) - SANDWICH_MARGIN * margin_low
    high = _example_mean(upper, examples) + SANDWICH_MARGIN * margin_high
    projected = torch.minimum(torch.maximum(mean_linear, low), high)
    return z_k, linear + _broadcast(projected - mean_linear, count)


# -- the registry ------------------------------------------------------------------------------


class Objective(NamedTuple):
    r"""One entropy objective of `OBJECTIVES`.

    Attributes:
        name: Its name, e.g. ``"linearized"``.
        estimate: The function, with the signature of `conditional_lower_bound`.
        bound: ``"lower"`` if $\mathbb{E}\hat H \le H(z_K)$ (the ELBO is then a lower
            bound on $\log p(x)$), ``"none"`` if it is an estimate, not a bound.
        mixes_chains: Whether it mixes over the other chains of each example (it then
            needs at least two chains per example).
        pools_start_entropy: Whether it pools $-\log q_0(z_0)$ over all rows, which needs a
            start distribution shared by all examples.

    Examples:
        >>> OBJECTIVES["linearized"].bound, OBJECTIVES["semi_implicit"].mixes_chains
        ('none', True)
    """

    name: str
    estimate: Callable[..., tuple[Tensor, Tensor]]
    bound: Literal["lower", "none"]
    mixes_chains: bool = False
    pools_start_entropy: bool = False


OBJECTIVES: Mapping[str, Objective] = MappingProxyType(
    {
        "conditional": Objective("conditional", conditional_lower_bound, "lower"),
        "epi": Objective("epi", entropy_power_lower_bound, "lower", pools_start_entropy=True),
        "semi_implicit": Objective(
            "semi_implicit", semi_implicit_lower_bound, "lower", mixes_chains=True
        ),
        "linearized": Objective("linearized", linearized_estimate, "none"),
        "sandwich": Objective(
            "sandwich", sandwich_estimate, "none", mixes_chains=True, pools_start_entropy=True
        ),
    }
)
"""Every entropy objective by name (read-only); the keys are `ObjectiveName`'s values."""

MIXTURE_OBJECTIVES: tuple[str, ...] = tuple(n for n, o in OBJECTIVES.items() if o.mixes_chains)
"""Objectives that mix over the other chains of each example; they need ``num_samples >= 2``."""

_LOG_DET_METHODS: tuple[str, ...] = get_args(LogDetMethod)


@dataclass(frozen=True)
class EntropyEstimator:
    r"""An entropy objective bound with its options, validated once.

    Calling it estimates, per chain, the entropy of the short-run output $z_K$; see
    `OBJECTIVES` for what each objective computes and whether it is a bound.

    Attributes:
        objective: A name of `OBJECTIVES` (default `shortinfer.tuning.DEFAULT_OBJECTIVE`,
            ``"linearized"``).
        log_det: The log-determinant estimator of ``"conditional"``
            (`shortinfer.entropy.estimate_log_det`: ``"exact"``, ``"per_step_exact"``,
            ``"stochastic"`` or ``"auto"``).
        mode: Jacobian mode, ``"reverse"`` (vjp rows) or ``"forward"`` (jvp columns).
        chunk_size: Jacobian rows or columns pushed at once (``None``: all).
        num_mixture: $M$, the most other chains of an example in each chain's mixture for
            ``"semi_implicit"`` and ``"sandwich"``, used as $\min(M, S - 1)$.

    Raises:
        ValueError: For an unknown objective, log-determinant method or mode, a
            ``chunk_size`` that is not a positive int or ``None``, or a ``num_mixture`` that
            is not an int $\ge 1$.

    Examples:
        >>> estimator = EntropyEstimator("conditional", log_det="stochastic")
        >>> estimator.is_lower_bound, estimator.needs_chains
        (True, 1)
        >>> EntropyEstimator("sandwich").needs_chains
        2
    """

    objective: str = DEFAULT_OBJECTIVE
    log_det: LogDetMethod = "exact"
    mode: JacobianMode = "reverse"
    chunk_size: int | None = None
    num_mixture: int = DEFAULT_NUM_MIXTURE

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ArgumentError(
                f"objective must be one of {list(OBJECTIVES)}; received {self.objective!r}. "
                "'linearized' is the library's default, 'conditional' the paper's; "
                "docs/objectives.md compares them."
            )
        check_choice("log_det", self.log_det, _LOG_DET_METHODS)
        check_mode(self.mode)
        if self.chunk_size is not None:
            check_int("chunk_size", self.chunk_size, 1, what=" or None")
        check_num_mixture(self.num_mixture)

    @property
    def is_lower_bound(self) -> bool:
        """Whether the estimate's expectation is a lower bound on $H(z_K)$."""
        return OBJECTIVES[self.objective].bound == "lower"

    @property
    def needs_chains(self) -> int:
        """The fewest chains per example the objective accepts."""
        return 2 if OBJECTIVES[self.objective].mixes_chains else 1

    def __call__(
        self,
        log_joint: Callable[[Tensor], Tensor],
        z0: Tensor,
        noise: Tensor,
        step_sizes: Tensor,
        prior_log_prob: Callable[[Tensor], Tensor],
        *,
        num_examples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        r"""Per-chain entropy estimate of the short-run output $z_K$.

        Rows are chains. Row $i$ belongs to example $i \bmod B$ with $B$ =
        ``num_examples`` (the layout of `shortinfer.ShortRunPosterior.draw_noise`), so each
        example has $S = N / B$ chains. Every estimate is differentiable with respect to
        ``step_sizes`` (and model parameters), so gradient tuning works with any objective.

        Arguments:
            log_joint: Maps flat latents ``(N, D)`` to $\log p(x, z)$ with shape ``(N,)``,
                row $i$ with its own ``x``; rows must be independent and the function
                traceable by ``torch.func``.
            z0: Initial flat latents $z_0 \sim p(z)$, with shape ``(N, D)``.
            noise: Injected noise $\epsilon$, with shape ``(K, N, D)``.
            step_sizes: Step-size table, with shape ``(K, D)`` or ``(K, 1)``; may require
                grad.
            prior_log_prob: $\log p(z_0)$ on flat latents ``(N, D) -> (N,)``.
            num_examples: $B$, the number of distinct examples; must divide $N$.
                ``None`` means every row is its own example ($S = 1$).
            generator: Randomness for stochastic log-determinant estimators.

        Returns:
            ``(z_K, entropy)`` with shapes ``(N, D)`` and ``(N,)``.

        Raises:
            ValueError: For a ``num_examples`` that does not divide $N$, or fewer than
                `needs_chains` chains per example.

        Examples:
            >>> log_joint = lambda z: -0.5 * z.square().sum(-1)
            >>> prior = lambda z: -0.5 * z.square().sum(-1) - 1.5 * math.log(2 * math.pi)
            >>> z0, noise, steps = torch.randn(8, 3), torch.randn(4, 8, 3), torch.full((4, 1), 0.1)
            >>> for name in OBJECTIVES:
            ...     estimate = EntropyEstimator(name)
            ...     _, h = estimate(log_joint, z0, noise, steps, prior, num_examples=2)
            ...     print(name, tuple(h.shape))
            conditional (8,)
            epi (8,)
            semi_implicit (8,)
            linearized (8,)
            sandwich (8,)
        """
        count = z0.shape[0]
        examples = _check_num_examples(num_examples, count)
        if self.needs_chains > 1:
            _check_chains_per_example(count, examples, self.objective)
        estimate = OBJECTIVES[self.objective].estimate
        return cast(
            "tuple[Tensor, Tensor]",
            estimate(log_joint, z0, noise, step_sizes, prior_log_prob, self, examples, generator),
        )


# -- shared pieces -----------------------------------------------------------------------------


def semi_implicit_bounds(
    log_joint: Callable[[Tensor], Tensor],
    z0: Tensor,
    noise: Tensor,
    step_sizes: Tensor,
    *,
    num_examples: int | None = None,
    num_mixture: int = DEFAULT_NUM_MIXTURE,
) -> SemiImplicitBounds:
    r"""Semi-implicit lower and upper estimates of $H(z_K)$ from the chains of each example.

    Given $z_{K-1}$, the last step makes $z_K$ Gaussian,
    $\mathcal{N}(y_{K-1}, 2 s_{K-1} I)$, so $q(z_K)$ is a mixture of these Gaussians
    over $q(z_{K-1})$, and the example's chains are independent draws of the mixing
    variable. With $\kappa(z, y) = \mathcal{N}(z; y, \operatorname{diag}(2 s_{K-1}))$,
    chain $i$'s own drift $y_i$ and the drifts $y_j$ of
    $M = \min(\text{num\_mixture}, S - 1)$ other chains $j \in \mathcal{M}_i$ of its
    example (the next $M$ in the example's order, cyclically),

    $$
    \hat H^-_i = -\log \frac{1}{M + 1}\Big(\kappa(z_{K,i}, y_i)
    + \sum_{j \in \mathcal{M}_i} \kappa(z_{K,i}, y_j)\Big),
    \qquad
    \hat H^+_i = -\log \frac{1}{M}\sum_{j \in \mathcal{M}_i} \kappa(z_{K,i}, y_j).
    $$

    **Directions.** $\mathbb{E}[\hat H^-] \le H(z_K) \le \mathbb{E}[\hat H^+]$ for every
    $M \ge 1$. The upper one is Jensen's inequality, since the $y_j$ are
    independent of $z_{K,i}$ and $\mathbb{E}\,\kappa(z, y_j) = q(z)$; the lower one
    is the semi-implicit bound of Yin & Zhou (2018), equivalently
    $H(z_K \mid z_{K-1})$ plus the InfoNCE lower bound on $I(z_K; z_{K-1})$. Both
    converge to $H(z_K)$ as $M \to \infty$, the lower one monotonically in
    expectation; the lower one is at most $\log(M + 1)$ above
    $H(z_K \mid z_{K-1})$, so it needs $M \gtrsim e^{I(z_K; z_{K-1})}$ chains,
    which grows exponentially with $D$ at small $s$.

    **Cost.** The example's chains are already run, so the extra work is $S M$ kernel
    evaluations per example; no Jacobian.

    Arguments:
        log_joint: Maps flat latents ``(N, D)`` to $\log p(x, z)$ with shape ``(N,)``.
        z0: Initial flat latents, with shape ``(N, D)``; row $i$ belongs to example
            $i \bmod B$.
        noise: Injected noise, with shape ``(K, N, D)``.
        step_sizes: Step-size table, with shape ``(K, D)`` or ``(K, 1)``; may require grad.
        num_examples: $B$, dividing $N$ with $S = N / B \ge 2$; ``None``
            means one row per example, which is refused.
        num_mixture: The most other chains per mixture; see `DEFAULT_NUM_MIXTURE`.

    Returns:
        A `SemiImplicitBounds` ``(z_k, lower, upper)``.

    Raises:
        ValueError: If ``num_examples`` does not divide $N$ or leaves fewer than two
            chains per example, or if ``num_mixture < 1``.

    Examples:
        >>> log_joint = lambda z: -0.5 * z.square().sum(-1)   # affine chain, Gaussian z_K
        >>> g = torch.Generator().manual_seed(0)
        >>> z0, noise = torch.randn(4000, 1, generator=g), torch.randn(3, 4000, 1, generator=g)
        >>> bounds = semi_implicit_bounds(log_joint, z0, noise, torch.full((3, 1), 0.5),
        ...                               num_examples=1)
        >>> variance = 0.5**6 + (4 / 3) * (1 - 0.5**6)   # (1-s)^{2K} + v_inf (1 - (1-s)^{2K})
        >>> true = 0.5 * math.log(2 * math.pi * math.e * variance)
        >>> [round(float(h), 2) for h in (bounds.lower.mean(), true, bounds.upper.mean())]
        [1.57, 1.56, 1.57]
    """
    count = z0.shape[0]
    examples = _check_num_examples(num_examples, count)
    _check_chains_per_example(count, examples, "semi_implicit")
    num_mixture = check_num_mixture(num_mixture)
    drift = _drift_before_last(log_joint, z0, noise, step_sizes)
    z_k = drift + torch.sqrt(2 * step_sizes[-1]) * noise[-1]
    lower, upper = _kernel_bounds(z_k, drift, step_sizes[-1], examples, num_mixture)
    return SemiImplicitBounds(z_k, lower, upper)


def _check_num_examples(num_examples: int | None, count: int) -> int:
    if num_examples is None:
        return count
    num_examples = check_int("num_examples", num_examples, 1, what=" or None")
    if count % num_examples != 0:
        raise ArgumentError(
            f"num_examples must be a positive divisor of the number of chains {count} (row i "
            f"belongs to example i % num_examples); received {num_examples}."
        )
    return num_examples


def _check_chains_per_example(count: int, examples: int, objective: str) -> None:
    if count // examples < 2:
        raise ArgumentError(
            f"objective {objective!r} mixes over the other chains of each example, so it needs "
            f"at least 2 chains per example; received {count} chain(s) for {examples} "
            "example(s). Pass num_examples (with ShortRunPosterior: num_samples >= 2; more "
            "chains tighten the bound)."
        )


def _example_mean(values: Tensor, examples: int) -> Tensor:
    """Mean over the chains of each example: ``(S·B,) -> (B,)``."""
    return values.reshape(-1, examples).mean(0)


def _standard_error(values: Tensor, examples: int) -> Tensor:
    """Standard error of each example's mean, from its chains' spread: ``(S·B,) -> (B,)``."""
    per_chain = values.reshape(-1, examples)
    return per_chain.std(0) / math.sqrt(per_chain.shape[0])


def _broadcast(per_example: Tensor, count: int) -> Tensor:
    """Repeat per-example values ``(B,)`` for every chain: ``(B,) -> (S·B,)``."""
    return per_example.repeat(count // per_example.shape[0])


def _log_noise_power(step_size: Tensor, dim: int) -> Tensor:
    r"""$2H(\sqrt{2s}\,\epsilon)/D = \log(4\pi e) + \frac1D\sum_d \log s_d$, a scalar."""
    return _LOG_4_PI_E + torch.log(step_size).expand(dim).mean()


def _drift_before_last(
    log_joint: Callable[[Tensor], Tensor], z0: Tensor, noise: Tensor, step_sizes: Tensor
) -> Tensor:
    r"""The last step's drift $y_{K-1} = z_{K-1} + s_{K-1} \nabla \log p(x, z_{K-1})$."""
    score = functional_score(log_joint)
    with translate_func_errors():
        z = rollout(score, z0, noise[:-1], step_sizes[:-1])
        return z + step_sizes[-1] * score(z)


def _kernel_bounds(
    z_k: Tensor, drift: Tensor, last_step: Tensor, examples: int, num_mixture: int
) -> tuple[Tensor, Tensor]:
    r"""Lower and upper semi-implicit estimates ``(N,)``; see `semi_implicit_bounds`."""
    count, dim = z_k.shape
    chains = count // examples
    mixture = min(num_mixture, chains - 1)
    scale = torch.sqrt(2 * last_step).expand(dim)  # kernel standard deviations
    # Coordinates first, (D, B, S): the sum over D runs over the outer axis, which vectorises
    # (a sum over a short last axis does not), and the mixture sums run over the last axis.
    z_dbs = (z_k / scale).T.reshape(dim, chains, examples).transpose(1, 2).contiguous()
    y_dbs = (drift / scale).T.reshape(dim, chains, examples).transpose(1, 2).contiguous()
    normaliser = torch.log(scale).sum() + 0.5 * dim * math.log(2 * math.pi)
    own = -0.5 * (z_dbs - y_dbs).square().sum(0) - normaliser  # (B, S)
    # Chain i mixes over chains i+1, ..., i+M of its example (cyclically): independent draws
    # of z_{K-1}, at O(S·M) cost per example instead of O(S^2).
    offsets = torch.arange(1, mixture + 1, device=z_k.device)
    columns = (torch.arange(chains, device=z_k.device)[:, None] + offsets) % chains  # (S, M)
    squared = (z_dbs.unsqueeze(-1) - y_dbs[:, :, columns]).square().sum(0)  # (B, S, M)
    others = -0.5 * squared - normaliser
    lower = -(
        torch.logsumexp(torch.cat([own.unsqueeze(-1), others], -1), -1) - math.log(mixture + 1)
    )
    upper = -(torch.logsumexp(others, -1) - math.log(mixture))
    return lower.T.reshape(count), upper.T.reshape(count)


def _linearized(
    log_joint: Callable[[Tensor], Tensor],
    z0: Tensor,
    noise: Tensor,
    step_sizes: Tensor,
    prior_log_prob: Callable[[Tensor], Tensor],
    mode: JacobianMode,
    chunk_size: int | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(z_K, linearized entropy, last drift y_{K-1})``, shapes ``(N, D), (N,), (N, D)``."""
    count, dim = z0.shape
    num_steps = noise.shape[0]
    score = functional_score(log_joint)

    def run(start: Tensor, eps: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        # The noise goes in as K separate tensors: differentiating noise[k] of one (K, N, D)
        # tensor would materialise a full-size gradient per step (K times the work).
        z, drift = start, start
        for k, eps_k in enumerate(eps):
            drift = z + step_sizes[k] * score(z)
            z = drift + torch.sqrt(2 * step_sizes[k]) * eps_k
        return z, drift

    steps_noise = tuple(noise.unbind(0))
    with translate_func_errors():
        if mode == "reverse":
            z_k, vjp_fn, drift = cast(
                "tuple[Tensor, Callable, Tensor]",
                torch.func.vjp(run, z0, steps_noise, has_aux=True),
            )
            basis = torch.eye(dim, dtype=z0.dtype, device=z0.device)
            basis = basis.unsqueeze(1).expand(dim, count, dim)  # e_i placed in every row
            d_z0, d_noise = torch.func.vmap(vjp_fn, chunk_size=chunk_size)(basis)
            jac = d_z0.transpose(0, 1)  # (N, D_i, D_j) = dz_K,i / dz_0,j
            # (N, D_i, K·D_j): row i of [dz_K/d eps_0, ..., dz_K/d eps_{K-1}]
            noise_jac = torch.stack(d_noise, 2).transpose(0, 1).reshape(count, dim, -1)
        elif mode == "forward":
            # Tangents over the joint input (z0, noise): D for z0, then K·D for the noise.
            size = dim * (num_steps + 1)
            tangents = torch.eye(size, dtype=z0.dtype, device=z0.device).unsqueeze(1)
            tangents = tangents.expand(size, count, size)
            t_z0 = tangents[..., :dim]
            t_noise = tuple(tangents[..., dim * (k + 1) : dim * (k + 2)] for k in range(num_steps))

            def push(tz: Tensor, te: tuple[Tensor, ...]) -> tuple[Tensor, Tensor, Tensor]:
                return cast(
                    "tuple[Tensor, Tensor, Tensor]",
                    torch.func.jvp(run, (z0, steps_noise), (tz, te), has_aux=True),
                )

            outputs, columns, aux = torch.func.vmap(push, chunk_size=chunk_size)(t_z0, t_noise)
            z_k, drift = outputs[0], aux[0]
            columns = columns.permute(1, 2, 0)  # (N, D_i, (K + 1) D)
            jac, noise_jac = columns[..., :dim], columns[..., dim:]
        else:
            check_mode(mode)
        prior_precision = -_hessian_rows(prior_log_prob, z0)
    noise_cov = noise_jac @ noise_jac.transpose(-2, -1)  # C = sum_k G_k G_k^T
    log_dets = _gaussian_log_dets(noise_cov, jac, prior_precision)
    if not bool(torch.isfinite(log_dets).all()) and noise_cov.dtype != torch.float64:
        # C >= 2 s_{K-1} I is positive definite in exact arithmetic, but when the chain's
        # Jacobians grow large (a step size near divergence) float32 rounding of G G^T can
        # break that; redo those rows in float64.
        bad = ~torch.isfinite(log_dets)
        noise_jac_wide = noise_jac[bad].double()  # C = G G^T formed again in float64
        wide = _gaussian_log_dets(
            noise_jac_wide @ noise_jac_wide.transpose(-2, -1),
            jac[bad].double(),
            prior_precision[bad].double(),
        )
        log_dets = log_dets.masked_scatter(bad, wide.to(log_dets.dtype))
    # Rows still non-finite have diverged numerically: their NaN makes the objective non-finite,
    # which the grid search scores as inf and the gradient search reports.
    entropy = -prior_log_prob(z0) + 0.5 * log_dets
    return z_k, entropy, drift


def _gaussian_log_dets(noise_cov: Tensor, jac: Tensor, prior_precision: Tensor) -> Tensor:
    r"""$\log\det C + \log\det(P_0 + J^\top C^{-1} J)$ per row, NaN where $C$ is not
    numerically positive definite. Shapes ``(N, D, D)`` in, ``(N,)`` out."""
    chol, info = torch.linalg.cholesky_ex(noise_cov)
    failed = info > 0
    if bool(failed.any()):
        # Keep the failed rows out of the arithmetic (and its gradient), then mark them NaN.
        eye = torch.eye(chol.shape[-1], dtype=chol.dtype, device=chol.device)
        chol = torch.where(failed[:, None, None], eye, chol)
    whitened = torch.linalg.solve_triangular(chol, jac, upper=False)  # L^{-1} J
    log_det_noise = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    precision_z0 = prior_precision + whitened.transpose(-2, -1) @ whitened  # of z_0 given z_K
    log_det_precision = torch.linalg.slogdet(precision_z0).logabsdet
    total = log_det_noise + log_det_precision
    return torch.where(failed, torch.full_like(total, float("nan")), total)


def _hessian_rows(function: Callable[[Tensor], Tensor], z: Tensor) -> Tensor:
    r"""Per-row Hessians $\nabla^2 f(z_n)$ ``(N, D, D)`` of a row-wise ``(N, D) -> (N,)``."""
    count, dim = z.shape
    gradient = torch.func.grad(lambda v: function(v).sum())
    vjp_fn = torch.func.vjp(gradient, z)[1]
    basis = torch.eye(dim, dtype=z.dtype, device=z.device).unsqueeze(1).expand(dim, count, dim)
    return torch.func.vmap(vjp_fn)(basis)[0].transpose(0, 1)
