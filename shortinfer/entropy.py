r"""The log-determinant of the short-run map's Jacobian, and the entropy it gives.

With the injected noise $\epsilon$ held fixed, $z_K = F(z_0, \epsilon)$ is a
deterministic, (locally) invertible map, so by change of variables (equation (13) of the paper)

$$
\log q(z_K \mid \epsilon)
= \log p(z_0) - \log\left|\det \frac{\partial F}{\partial z_0}\right|.
$$

The per-example entropy estimate is $-\log q(z_K \mid \epsilon)$. It conditions on the
noise, so its expectation $H(z_K \mid \epsilon)$ is a *lower* bound on the marginal
entropy $H(z_K)$, and the step-size objective built on it is an *upper* bound on
$\mathrm{KL}(q_s \,\|\, p(z \mid x)) - \log p(x)$.

The Jacobian is block-diagonal over the batch (examples are independent), so row $j$ of
every example's Jacobian comes from **one** vector-Jacobian product of the batched map with the
cotangent $e_j$ placed in every example. ``torch.func.vmap`` runs the $D$ products at
once (optionally in chunks), which is the "batched vjp under vmap" of ``jacrev``; forward mode
(``jvp``, as in ``jacfwd``) gives columns instead.

**Estimators** (`estimate_log_det`). Step $k$ has Jacobian
$I + S_k H_k$, with $S_k = \operatorname{diag}(s_k)$ and
$H_k = \nabla_z^2 \log p(x, z_k)$ (the injected noise does not depend on $z_0$), so

$$
\log\left|\det \frac{\partial z_K}{\partial z_0}\right|
= \sum_{k=0}^{K-1} \log\lvert\det(I + S_k H_k)\rvert.
$$

- ``"exact"``: the $D \times D$ Jacobian of the whole chain (`jacobian`), then LU. Where
  that product is too ill-conditioned for LU in the working precision (or its log-det is
  $-\infty$ although the chain is finite), it falls back to ``"per_step_exact"``
  (`log_abs_det_jacobian`, `EXACT_MAX_ROUNDING`).
- ``"per_step_exact"``: the sum above with each $H_k$ built from $D$ Hessian-vector
  products at $z_k$ (`per_step_log_abs_det`); exact, same arithmetic cost as
  ``"exact"``, but only one step's work is alive at a time.
- ``"stochastic"``: each term replaced by a truncated series with Hutchinson probes
  (`stochastic_log_det`); cost independent of $D$, biased by the truncation.
- ``"auto"``: ``"per_step_exact"`` up to `AUTO_EXACT_MAX_DIM` latent coordinates,
  ``"stochastic"`` beyond (`auto_log_det_method`).

Costs, bias and variance of each are measured in ``benchmarks/README.md`` and summarised in
``docs/performance.md``.

References:
    Learning Multi-layer Latent Variable Model via Variational Optimization of Short Run MCMC
    for Approximate Inference (Nijkamp, Pang, Han, Zhou, Zhu, Wu, 2020),
    https://arxiv.org/abs/1912.01909

    Early Stopping is Nonparametric Variational Inference (Maclaurin, Duvenaud, Adams, 2016),
    https://arxiv.org/abs/1504.01344

    A Stochastic Estimator of the Trace of the Influence Matrix for Laplacian Smoothing
    Splines (Hutchinson, 1989), https://doi.org/10.1080/03610918908812806
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from shortinfer._checks import ArgumentError, check_int, check_mode, translate_func_errors
from shortinfer.langevin import ScoreFn, functional_score, langevin_step, rollout

__all__ = [
    "AUTO_EXACT_MAX_DIM",
    "DEFAULT_NUM_PROBES",
    "DEFAULT_ORDER",
    "EXACT_MAX_ROUNDING",
    "JacobianMode",
    "LogDetMethod",
    "auto_log_det_method",
    "estimate_log_det",
    "jacobian",
    "log_abs_det_jacobian",
    "per_step_log_abs_det",
    "stochastic_log_det",
]

JacobianMode = Literal["reverse", "forward"]


def jacobian(
    log_joint: Callable[[Tensor], Tensor],
    z0: Tensor,
    noise: Tensor,
    step_sizes: Tensor,
    *,
    mode: JacobianMode = "reverse",
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Per-example Jacobians $J_b = \partial z_{K,b} / \partial z_{0,b}$ of the rollout.

    Arguments:
        log_joint: Maps flat latents ``(B, D)`` to $\log p(x, z)$ with shape ``(B,)``;
            examples must be independent of each other.
        z0: Initial flat latents $z_0$, with shape ``(B, D)``.
        noise: Injected noise $\epsilon$, with shape ``(K, B, D)``.
        step_sizes: Step-size table, with shape ``(K, D)`` or ``(K, 1)``. It may require grad,
            in which case the result is differentiable with respect to it.
        mode: ``"reverse"`` builds rows with vector-Jacobian products (``jacrev``);
            ``"forward"`` builds columns with Jacobian-vector products (``jacfwd``).
        chunk_size: Number of basis vectors pushed through the map at once (``None``: all
            $D$). Smaller chunks trade speed for memory.

    Returns:
        ``(z_K, J)``: the rollout's output with shape ``(B, D)`` and the Jacobians with shape
        ``(B, D, D)``, where ``J[b, i, j]`` is $\partial z_{K,b,i} / \partial z_{0,b,j}$.

    Examples:
        >>> log_joint = lambda z: -0.5 * z.square().sum(-1)   # A = I, so J = (1 - s)^K I
        >>> z0, noise = torch.randn(2, 3), torch.randn(4, 2, 3)
        >>> _, J = jacobian(log_joint, z0, noise, torch.full((4, 1), 0.1))
        >>> torch.allclose(J, 0.9**4 * torch.eye(3).expand(2, 3, 3))
        True
    """
    score = functional_score(log_joint)
    batch, dim = z0.shape

    def run(z: Tensor) -> Tensor:
        return rollout(score, z, noise, step_sizes)

    check_mode(mode)
    basis = _basis(batch, dim, z0)
    with translate_func_errors():
        if mode == "reverse":
            z_k, vjp_fn, *_ = torch.func.vjp(run, z0)
            rows = torch.func.vmap(vjp_fn, chunk_size=chunk_size)(basis)[0]  # (D, B, D): j, b, :
            jac = rows.transpose(0, 1)
        else:  # "forward" (check_mode refused anything else)

            def push(tangent: Tensor) -> tuple[Tensor, Tensor]:
                output, column, *_ = torch.func.jvp(run, (z0,), (tangent,))
                return output, column

            outputs, columns = torch.func.vmap(push, chunk_size=chunk_size)(basis)
            z_k = outputs[0]
            jac = columns.permute(1, 2, 0)  # (D_j, B, D_i) -> (B, D_i, D_j)
    return z_k, jac


EXACT_MAX_ROUNDING: float = 1e-4
r"""Largest $\kappa(J)\,\varepsilon$ at which `log_abs_det_jacobian` trusts the chain's LU.

Here $\kappa(J) = \sigma_{\max}(J) / \sigma_{\min}(J)$ is the condition number of the
whole chain's Jacobian $J = \partial z_K / \partial z_0$ and $\varepsilon$ the machine
epsilon of its dtype. $J$ is a product of $K$ steps, so strongly contracting steps
($\lvert 1 - s\lambda\rvert \ll 1$ for a Hessian eigenvalue $\lambda$) push its smallest
singular values below the rounding of its largest: computing $J$ and factorising it then
loses $\log\lvert\det J\rvert$ by about $c\,\kappa\varepsilon$ nats, or returns
$-\infty$; chains at or above the threshold ($\kappa \ge 10^{-4} / \varepsilon$) fall back to
`per_step_log_abs_det`, whose factors $I + S_k H_k$ are each well conditioned. The
measurements behind the value are in ``docs/performance.md`` ("Where the defaults come
from").
"""


def log_abs_det_jacobian(
    log_joint: Callable[[Tensor], Tensor],
    z0: Tensor,
    noise: Tensor,
    step_sizes: Tensor,
    *,
    mode: JacobianMode = "reverse",
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Exact $\log\lvert\det \partial z_K / \partial z_0\rvert$ for each example.

    The Jacobian comes from `jacobian`; its log-determinant from an LU factorisation
    (``torch.linalg.slogdet``), which is differentiable.

    **Fallback.** The whole chain's Jacobian can be too ill-conditioned for that LU: on the
    2-D tanh decoder of ``docs/objectives.md`` at $s \ge 0.02$ it returns $-\infty$ for
    a few percent of chains and is off by up to 30 nats for others, while the per-step sum
    $\sum_k \log\lvert\det(I + S_k H_k)\rvert$ is accurate. So when, for some example whose
    chain is finite, the log-det is not finite, the Jacobian is not finite, or its condition
    number $\kappa$ has $\kappa\varepsilon \ge$ `EXACT_MAX_ROUNDING` ($\varepsilon$ the
    dtype's machine epsilon), the result for **the whole batch** is
    `per_step_log_abs_det`'s: the same quantity, exact, from the same $z_0$ and noise.

    - The whole batch, not only the affected examples: ``log_joint`` binds one ``x`` per row,
      so the per-step rollout cannot run on a subset of rows, and once it has run on all of
      them its values are at least as accurate everywhere. The full Jacobian's graph is then
      dropped, so its singular rows put no NaN into the derivative in $s$.
    - The check costs one batched ``svdvals`` of the $D \times D$ Jacobians (no graph); the
      fallback costs a second pass of $K D$ Hessian-vector products, so ``"exact"`` then takes
      about twice as long. ``method="per_step_exact"`` (which ``"auto"`` uses up to
      `AUTO_EXACT_MAX_DIM`) gives the same values at the cost of one pass, always.
    - Chains that diverged keep their non-finite log-det (they are not "affected": the error
      is the chain's, and callers report it as a divergence).

    Arguments:
        log_joint: Maps flat latents ``(B, D)`` to $\log p(x, z)$ with shape ``(B,)``.
        z0: Initial flat latents, with shape ``(B, D)``.
        noise: Injected noise, with shape ``(K, B, D)``.
        step_sizes: Step-size table, with shape ``(K, D)`` or ``(K, 1)``.
        mode: ``"reverse"`` or ``"forward"``, see `jacobian`.
        chunk_size: See `jacobian`.

    Returns:
        ``(z_K, log_det)`` with shapes ``(B, D)`` and ``(B,)``.

    Examples:
        >>> log_joint = lambda z: -0.5 * z.square().sum(-1)
        >>> z0, noise = torch.randn(2, 3), torch.randn(4, 2, 3)
        >>> _, log_det = log_abs_det_jacobian(log_joint, z0, noise, torch.full((4, 1), 0.1))
        >>> torch.allclose(log_det, torch.full((2,), 3 * 4 * torch.log(torch.tensor(0.9))))
        True

        A chain that contracts one coordinate by $2^{-10}$ per step: the full Jacobian's
        entry $2^{-200}$ is below float32's range (its LU gives $-\infty$, or a subnormal's
        log near $-97$), while every per-step factor is representable.

        >>> stiff = lambda z: -0.5 * (z.square() * torch.tensor([1.0, 1023.0])).sum(-1)
        >>> z0, noise = torch.randn(2, 2), torch.randn(20, 2, 2)
        >>> steps = torch.full((20, 1), 2**-10)
        >>> per_step = torch.tensor([1 - 2**-10, 2**-10]).log().sum()   # log|det(I + sH)|
        >>> _, jac = jacobian(stiff, z0, noise, steps)
        >>> torch.allclose(torch.linalg.slogdet(jac).logabsdet, 20 * per_step.expand(2))
        False
        >>> _, log_det = log_abs_det_jacobian(stiff, z0, noise, steps)
        >>> torch.allclose(log_det, 20 * per_step.expand(2))
        True
    """
    z_k, jac = jacobian(log_joint, z0, noise, step_sizes, mode=mode, chunk_size=chunk_size)
    log_det = torch.linalg.slogdet(jac).logabsdet
    if bool(_unreliable_log_det(z_k, jac, log_det).any()):
        return per_step_log_abs_det(
            log_joint, z0, noise, step_sizes, mode=mode, chunk_size=chunk_size
        )
    return z_k, log_det


def _unreliable_log_det(z_k: Tensor, jac: Tensor, log_det: Tensor) -> Tensor:
    r"""Rows ``(B,)`` with a finite chain whose LU log-det is lost to rounding or non-finite."""
    z_k, jac, log_det = z_k.detach(), jac.detach(), log_det.detach()
    with torch.no_grad():
        finite_chain = torch.isfinite(z_k).flatten(1).all(-1)
        finite_jac = torch.isfinite(jac).flatten(1).all(-1)
        eye = torch.eye(jac.shape[-1], dtype=jac.dtype, device=jac.device)
        singular = torch.linalg.svdvals(torch.where(finite_jac[:, None, None], jac, eye))
        # kappa * eps >= EXACT_MAX_ROUNDING, written without dividing by sigma_min (maybe 0)
        ratio = torch.finfo(jac.dtype).eps / EXACT_MAX_ROUNDING
        ill_conditioned = singular[:, -1] <= ratio * singular[:, 0]
        lost = ~torch.isfinite(log_det) | ~finite_jac | ill_conditioned
        return finite_chain & lost


LogDetMethod = Literal["exact", "per_step_exact", "stochastic", "auto"]
_METHODS: tuple[str, ...] = ("exact", "per_step_exact", "stochastic", "auto")

AUTO_EXACT_MAX_DIM: int = 64
r"""Largest latent dimension $D$ for which ``method="auto"`` computes the log-det exactly.

Above it, ``"auto"`` uses ``"stochastic"``. The exact methods cost $K D$ Hessian-vector
products, the stochastic one $K \lceil J/2 \rceil P$ (2 per step by default), so their
ratio grows linearly in $D$; below the threshold the exact log-det, which carries neither bias
nor variance, is worth its cost. Measured in ``docs/performance.md`` ("Where the defaults
come from").
"""

DEFAULT_ORDER: int = 4
r"""Default truncation order $J$ of the stochastic estimator's series.

Orders $2m - 1$ and $2m$ share a Hessian-vector product, so $J = 4$ costs
two products per probe and step. The truncation bias grows with $s \lambda_{\max}(-H)$: raise
the order when that approaches 1. Bias against the exact log-det: ``docs/performance.md``
("Where the defaults come from").
"""

DEFAULT_NUM_PROBES: int = 1
r"""Default number of Hutchinson probes per step for the stochastic estimator.

Objectives average the estimator's noise over examples; $P$ probes divide its variance by
$P$ at $P$ times the cost. Its measured size: ``docs/performance.md`` ("Where the defaults
come from").
"""


def _basis(batch: int, dim: int, like: Tensor) -> Tensor:
    """The basis vectors $e_j$ placed in every example, with shape ``(D, B, D)``."""
    eye = torch.eye(dim, dtype=like.dtype, device=like.device)
    return eye.unsqueeze(1).expand(dim, batch, dim)


def _score_and_hessian(
    score: ScoreFn, z: Tensor, basis: Tensor, mode: JacobianMode, chunk_size: int | None
) -> tuple[Tensor, Tensor]:
    r"""The score $\nabla \log p$ at ``z`` ``(B, D)`` and the Hessians ``(B, D, D)``."""
    if mode == "reverse":
        # One primal pass; its backward graph is reused by every row (reverse-over-reverse).
        gradient, vjp_fn, *_ = torch.func.vjp(score, z)
        rows = torch.func.vmap(vjp_fn, chunk_size=chunk_size)(basis)[0]  # (D_i, B, D_j)
        return gradient, rows.transpose(0, 1)

    def push(tangent: Tensor) -> tuple[Tensor, Tensor]:
        gradient, column, *_ = torch.func.jvp(score, (z,), (tangent,))  # forward-over-reverse
        return gradient, column

    # vmap cannot chunk an unbatched output (the primal score), so chunk by hand.
    unbatched_primal: tuple = (None, 0)
    pieces = [
        torch.func.vmap(push, out_dims=unbatched_primal)(part)
        for part in basis.split(chunk_size or basis.shape[0])
    ]
    columns = torch.cat([piece[1] for piece in pieces])  # (D_j, B, D_i)
    return pieces[0][0], columns.permute(1, 2, 0)


def _score_and_hvp(
    score: ScoreFn, z: Tensor, mode: JacobianMode
) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
    r"""The score at ``z`` and $v \mapsto H v$ for a stack of vectors ``(P, B, D)``."""
    if mode == "reverse":
        # One primal pass whose graph serves every product (reverse-over-reverse).
        gradient, vjp_fn, *_ = torch.func.vjp(score, z)
        return gradient, lambda vectors: torch.func.vmap(vjp_fn)(vectors)[0]

    def push(tangent: Tensor) -> Tensor:
        return torch.func.jvp(score, (z,), (tangent,))[1]  # forward-over-reverse

    return score(z), torch.func.vmap(push)


def per_step_log_abs_det(
    log_joint: Callable[[Tensor], Tensor],
    z0: Tensor,
    noise: Tensor,
    step_sizes: Tensor,
    *,
    mode: JacobianMode = "reverse",
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Exact log-determinant from the per-step factorisation of the chain's Jacobian.

    Step $k$ maps $z_k \mapsto z_k + S_k \nabla_z \log p(x, z_k) + \sqrt{2 S_k}
    \epsilon_k$ with Jacobian $I + S_k H_k$, where $S_k = \operatorname{diag}(s_k)$
    and $H_k = \nabla_z^2 \log p(x, z_k)$. The chain rule and
    $\det(AB) = \det A \det B$ give

    $$
    \log\left|\det \frac{\partial z_K}{\partial z_0}\right|
    = \sum_{k=0}^{K-1} \log\lvert\det(I + S_k H_k)\rvert,
    $$

    the same value as `log_abs_det_jacobian` (up to rounding). Each $H_k$ is built
    from $D$ Hessian-vector products at $z_k$ (with $e_j$ placed in every
    example, since examples are independent), so the arithmetic matches the full Jacobian's
    $K D$ products, but no product ever runs through more than one step. That bounds the
    memory of forward-mode derivatives in $s$ (``torch.func.jvp``) by one step's work.

    Arguments:
        log_joint: Maps flat latents ``(B, D)`` to $\log p(x, z)$ with shape ``(B,)``;
            examples must be independent of each other.
        z0: Initial flat latents $z_0$, with shape ``(B, D)``.
        noise: Injected noise $\epsilon$, with shape ``(K, B, D)``.
        step_sizes: Step-size table, with shape ``(K, D)`` or ``(K, 1)``; may require grad.
        mode: ``"reverse"`` builds Hessian rows with vector-Jacobian products of the score
            (one primal pass per step, reused); ``"forward"`` builds columns with
            Jacobian-vector products (forward-over-reverse).
        chunk_size: Number of basis vectors pushed at once (``None``: all $D$).

    Returns:
        ``(z_K, log_det)`` with shapes ``(B, D)`` and ``(B,)``. ``z_K`` equals
        `shortinfer.langevin.rollout`'s output for the same inputs.

    Raises:
        ValueError: For an unknown ``mode``.
        LogJointError: If ``log_joint`` cannot run under ``torch.func``.

    Examples:
        >>> log_joint = lambda z: -0.5 * z.square().sum(-1)   # H = -I: (1 - s)^{DK}
        >>> z0, noise = torch.randn(2, 3), torch.randn(4, 2, 3)
        >>> _, log_det = per_step_log_abs_det(log_joint, z0, noise, torch.full((4, 1), 0.1))
        >>> torch.allclose(log_det, 3 * 4 * torch.log(torch.tensor(0.9)).expand(2))
        True
    """
    check_mode(mode)
    score = functional_score(log_joint)
    batch, dim = z0.shape
    basis = _basis(batch, dim, z0)
    eye = torch.eye(dim, dtype=z0.dtype, device=z0.device)
    z = z0
    log_det = z0.new_zeros(batch)
    with translate_func_errors():
        for k in range(noise.shape[0]):
            step = step_sizes[k]
            gradient, hessian = _score_and_hessian(score, z, basis, mode, chunk_size)
            log_det = log_det + torch.linalg.slogdet(eye + step.unsqueeze(-1) * hessian).logabsdet
            z = langevin_step(lambda _, g=gradient: g, z, noise[k], step)
    return z, log_det


def _rademacher(shape: tuple[int, ...], generator: torch.Generator | None, like: Tensor) -> Tensor:
    device = generator.device if generator is not None else like.device
    signs = torch.randint(0, 2, shape, generator=generator, device=device)
    return (2 * signs - 1).to(dtype=like.dtype, device=like.device)


def stochastic_log_det(
    log_joint: Callable[[Tensor], Tensor],
    z0: Tensor,
    noise: Tensor,
    step_sizes: Tensor,
    *,
    order: int = DEFAULT_ORDER,
    num_probes: int = DEFAULT_NUM_PROBES,
    mode: JacobianMode = "reverse",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Truncated-series estimate of the log-determinant, at a cost independent of $D$.

    Each term of the per-step factorisation (`per_step_log_abs_det`) is expanded as

    $$
    \log\det(I + A_k) = \sum_{j=1}^{\infty} \frac{(-1)^{j+1}}{j} \operatorname{tr}(A_k^j),
    \qquad A_k = S_k^{1/2} H_k S_k^{1/2},
    $$

    ($A_k$ is similar to $S_k H_k$ and symmetric; the series converges when every
    eigenvalue of $A_k$ is in $(-1, 1]$, which holds near a mode for
    $s < 1/\lambda_{\max}(-H)$, where $H_k$ is negative definite). The series is
    cut after $J$ = ``order`` terms and each trace is estimated with $P$ =
    ``num_probes`` Rademacher probes $v$ (Hutchinson, $\mathbb{E}[v^\top M v] =
    \operatorname{tr} M$), using one probe for all orders:

    $$
    \widehat{\log\det} = \sum_{k=0}^{K-1} \frac1P \sum_{p=1}^{P} \sum_{j=1}^{J}
    \frac{(-1)^{j+1}}{j}\, u_{p,\lfloor j/2 \rfloor}^\top u_{p,\lceil j/2 \rceil},
    \qquad u_{p,0} = v_{p,k},\ u_{p,m+1} = A_k u_{p,m},
    $$

    since $u_{a}^\top u_{b} = v^\top A^{a+b} v$ for symmetric $A$. Orders
    $2m - 1$ and $2m$ share a product, so the cost is $\lceil J/2 \rceil P$
    Hessian-vector products per step (plus the score), whatever $D$.

    **Bias and variance.** The expectation over probes is exactly the truncated series
    $\sum_k \sum_{j \le J} (-1)^{j+1} \operatorname{tr}(A_k^j)/j$; near a mode
    ($A_k \preceq 0$) every dropped term is negative, so the estimate is biased *upwards*
    by $\sum_k \sum_i \sum_{j > J} |a_{k,i}|^j / j$ over the eigenvalues
    $a_{k,i}$, which is small when $s \lambda_{\max}(-H) \ll 1$. The variance of
    one probe's trace of a symmetric $M$ is $2(\lVert M\rVert_F^2 - \sum_i M_{ii}^2)$;
    it falls as $1/P$. The estimate is differentiable in $s$ (forward or reverse
    mode) through $S_k$ and the path $z_k$.

    Arguments:
        log_joint: Maps flat latents ``(B, D)`` to $\log p(x, z)$ with shape ``(B,)``;
            examples must be independent of each other.
        z0: Initial flat latents $z_0$, with shape ``(B, D)``.
        noise: Injected noise $\epsilon$, with shape ``(K, B, D)``.
        step_sizes: Step-size table, with shape ``(K, D)`` or ``(K, 1)``; may require grad.
        order: Truncation order $J \ge 1$ (default `DEFAULT_ORDER`).
        num_probes: Probes per step and example $P \ge 1$ (default
            `DEFAULT_NUM_PROBES`).
        mode: ``"reverse"``: one primal pass per step whose graph serves every product
            (reverse-over-reverse); ``"forward"``: Jacobian-vector products of the score
            (forward-over-reverse), recomputing the primal each time.
        generator: Draws the probes, all before the rollout, shape ``(K, P, B, D)``.

    Returns:
        ``(z_K, log_det)`` with shapes ``(B, D)`` and ``(B,)``; ``z_K`` equals
        `shortinfer.langevin.rollout`'s output.

    Raises:
        ValueError: For an unknown ``mode`` or a non-positive ``order`` or ``num_probes``.

    Examples:
        >>> log_joint = lambda z: -0.5 * z.square().sum(-1)   # A_k = -0.1 I, exact at J = inf
        >>> z0, noise = torch.randn(2, 3), torch.randn(4, 2, 3)
        >>> _, log_det = stochastic_log_det(log_joint, z0, noise, torch.full((4, 1), 0.1),
        ...                                 order=8, generator=torch.Generator().manual_seed(0))
        >>> torch.allclose(log_det, 3 * 4 * torch.log(torch.tensor(0.9)).expand(2), atol=1e-6)
        True
    """
    check_mode(mode)
    order = check_int("order", order, 1, hint="The series needs at least its first term; try 4.")
    num_probes = check_int("num_probes", num_probes, 1, hint="Use 1 or more Hutchinson probes.")
    score = functional_score(log_joint)
    num_steps = noise.shape[0]
    batch, dim = z0.shape
    probes = _rademacher((num_steps, num_probes, batch, dim), generator, z0)
    num_products = (order + 1) // 2
    z = z0
    log_det = z0.new_zeros(batch)
    with translate_func_errors():
        for k in range(num_steps):
            step = step_sizes[k]
            root = torch.sqrt(step)
            gradient, hvp = _score_and_hvp(score, z, mode)
            powers = [probes[k]]  # u_m = A^m v, each (P, B, D)
            for _ in range(num_products):
                powers.append(root * hvp(root * powers[-1]))
            series = z0.new_zeros(num_probes, batch)
            for j in range(1, order + 1):
                trace = (powers[j // 2] * powers[j - j // 2]).sum(-1)  # v^T A^j v, (P, B)
                series = series + ((-1) ** (j + 1) / j) * trace
            log_det = log_det + series.mean(0)
            z = langevin_step(lambda _, g=gradient: g, z, noise[k], step)
    return z, log_det


def auto_log_det_method(latent_dim: int) -> Literal["per_step_exact", "stochastic"]:
    r"""The estimator ``method="auto"`` uses for a latent dimension $D$.

    $$
    \text{auto}(D) = \begin{cases}
    \texttt{"per\_step\_exact"} & D \le D_{\max} \\
    \texttt{"stochastic"} & D > D_{\max}
    \end{cases}
    \qquad D_{\max} = \texttt{AUTO\_EXACT\_MAX\_DIM}
    $$

    Exact costs $K D$ Hessian-vector products, the stochastic estimator
    $K \lceil J/2 \rceil P$; see `AUTO_EXACT_MAX_DIM` for where the threshold
    comes from.

    Arguments:
        latent_dim: $D$, the number of latent coordinates per example.

    Returns:
        ``"per_step_exact"`` or ``"stochastic"``.

    Examples:
        >>> auto_log_det_method(16), auto_log_det_method(4096)
        ('per_step_exact', 'stochastic')
    """
    return "per_step_exact" if latent_dim <= AUTO_EXACT_MAX_DIM else "stochastic"


def estimate_log_det(
    log_joint: Callable[[Tensor], Tensor],
    z0: Tensor,
    noise: Tensor,
    step_sizes: Tensor,
    *,
    method: LogDetMethod = "exact",
    mode: JacobianMode = "reverse",
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
    order: int = DEFAULT_ORDER,
    num_probes: int = DEFAULT_NUM_PROBES,
) -> tuple[Tensor, Tensor]:
    r"""Estimate $\log\lvert\det \partial z_K / \partial z_0\rvert$ with a chosen method.

    Cost in Hessian-vector products (each about one backward pass of ``log_joint`` over the
    batch), memory of a forward-mode derivative in $s$, and bias:

    - ``"exact"``: $K D$ products; all $K$ steps' graph is kept for a reverse-mode
      derivative; unbiased. If the whole chain's Jacobian is too ill-conditioned for its LU
      (see `log_abs_det_jacobian`), the batch is recomputed with ``"per_step_exact"``: twice
      the products, the per-step values.
    - ``"per_step_exact"``: $K D$ products, one step alive at a time (forward-mode
      derivative in $s$: about one step's $D B$ products of memory); unbiased.
    - ``"stochastic"``: $K \lceil J/2 \rceil P$ products, independent of $D$;
      biased by the series truncation (upwards near a mode), variance $\propto 1/P$.
    - ``"auto"``: one of the above by `auto_log_det_method`.

    Arguments:
        log_joint: Maps flat latents ``(B, D)`` to $\log p(x, z)$ with shape ``(B,)``.
        z0: Initial flat latents, with shape ``(B, D)``.
        noise: Injected noise, with shape ``(K, B, D)``.
        step_sizes: Step-size table, with shape ``(K, D)`` or ``(K, 1)``.
        method: ``"exact"`` (`log_abs_det_jacobian`), ``"per_step_exact"``
            (`per_step_log_abs_det`), ``"stochastic"`` (`stochastic_log_det`) or
            ``"auto"`` (`auto_log_det_method` of $D$).
        mode: ``"reverse"`` or ``"forward"`` products, see each method.
        chunk_size: Basis vectors pushed at once by the exact methods (``None``: all).
        generator: Randomness for the stochastic method's probes.
        order: Series truncation $J$ of the stochastic method.
        num_probes: Probes $P$ of the stochastic method.

    Returns:
        ``(z_K, log_det)`` with shapes ``(B, D)`` and ``(B,)``.

    Raises:
        ValueError: For an unknown ``method`` or ``mode``.

    Examples:
        >>> log_joint = lambda z: -0.5 * z.square().sum(-1)
        >>> z0, noise = torch.randn(2, 3), torch.randn(4, 2, 3)
        >>> steps = torch.full((4, 1), 0.1)
        >>> _, exact = estimate_log_det(log_joint, z0, noise, steps)
        >>> _, per_step = estimate_log_det(log_joint, z0, noise, steps, method="per_step_exact")
        >>> torch.allclose(exact, per_step)
        True
    """
    if method == "auto":
        method = auto_log_det_method(z0.shape[-1])
    if method == "exact":
        return log_abs_det_jacobian(
            log_joint, z0, noise, step_sizes, mode=mode, chunk_size=chunk_size
        )
    if method == "per_step_exact":
        return per_step_log_abs_det(
            log_joint, z0, noise, step_sizes, mode=mode, chunk_size=chunk_size
        )
    if method == "stochastic":
        return stochastic_log_det(
            log_joint,
            z0,
            noise,
            step_sizes,
            order=order,
            num_probes=num_probes,
            mode=mode,
            generator=generator,
        )
    raise ArgumentError(
        f"method must be one of {list(_METHODS)}; received {method!r}. Use 'exact' for small "
        "latents, 'stochastic' for large ones, or 'auto' to choose by dimension."
    )
