r"""Pure short-run Langevin dynamics: one step, and the K-step rollout with explicit noise.

The short-run chain of Nijkamp et al. (2020), equation (10), is

$$
z_0 \sim p(z), \qquad
z_{k+1} = z_k + s_k \odot \nabla_z \log p(x, z_k) + \sqrt{2 s_k} \odot \epsilon_k,
\qquad \epsilon_k \sim \mathcal{N}(0, I),
$$

for $k = 0, \dots, K-1$. With the noise $\epsilon = (\epsilon_0, \dots, \epsilon_{K-1})$
passed in as an argument, the rollout $z_K = F(z_0, \epsilon)$ is a deterministic function
of $z_0$, which is what makes its Jacobian, and hence the entropy, computable.

**Step-size parameterisation.** The paper writes $s \nabla + \sqrt{2s}\,\epsilon$. The
authors' reference code writes $\tfrac{\delta^2}{2} \nabla + \delta\, \epsilon$. The two are
the same update with $s = \delta^2 / 2$, i.e. $\delta = \sqrt{2 s}$; see
`step_size_from_delta` and `delta_from_step_size`.

All functions here work on flat latents of shape ``(B, D)`` and a step-size table of shape
``(K, D)`` (or anything broadcastable to it, such as ``(K, 1)``).

References:
    Learning Multi-layer Latent Variable Model via Variational Optimization of Short Run MCMC
    for Approximate Inference (Nijkamp, Pang, Han, Zhou, Zhu, Wu, 2020),
    https://arxiv.org/abs/1912.01909
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "ScoreFn",
    "autograd_score",
    "delta_from_step_size",
    "functional_score",
    "langevin_step",
    "max_curvature",
    "rollout",
    "step_size_from_delta",
]

ScoreFn = Callable[[Tensor], Tensor]
r"""A function $z \mapsto \nabla_z \log p(x, z)$ on flat latents ``(B, D) -> (B, D)``."""


def step_size_from_delta(delta: float | Tensor) -> float | Tensor:
    r"""Convert the reference code's $\delta$ to the paper's step size $s = \delta^2/2$.

    The update $z + \tfrac{\delta^2}{2}\nabla + \delta\epsilon$ equals
    $z + s\nabla + \sqrt{2s}\,\epsilon$ exactly when $s = \delta^2 / 2$.

    Arguments:
        delta: The reference code's Langevin step $\delta > 0$.

    Returns:
        The step size $s$, same type as ``delta``.

    Examples:
        >>> step_size_from_delta(0.3)
        0.045
    """
    return delta * delta / 2


def delta_from_step_size(step_size: float | Tensor) -> float | Tensor:
    r"""Convert the paper's step size $s$ to the reference code's $\delta = \sqrt{2s}$.

    Arguments:
        step_size: The paper's step size $s > 0$.

    Returns:
        $\delta = \sqrt{2 s}$, same type as ``step_size``.

    Examples:
        >>> round(delta_from_step_size(0.045), 12)
        0.3
    """
    return (2 * step_size) ** 0.5


def autograd_score(
    log_joint: Callable[[Tensor], Tensor], *, create_graph: bool = False
) -> ScoreFn:
    r"""The score $\nabla_z \log p(x, z)$ computed with ``torch.autograd.grad``.

    This is the fast path for plain sampling outside ``torch.func`` transforms. Examples are
    independent, so the gradient of $\sum_b \log p(x_b, z_b)$ is the per-example score.

    Arguments:
        log_joint: Maps flat latents ``(B, D)`` to log densities ``(B,)``, with ``x`` bound.
        create_graph: Keep the graph of the score, so that the rollout can be differentiated
            (with respect to the step size or model parameters).

    Returns:
        A `ScoreFn`.

    Examples:
        >>> score = autograd_score(lambda z: -0.5 * z.square().sum(-1))
        >>> score(torch.ones(2, 3))
        tensor([[-1., -1., -1.],
                [-1., -1., -1.]])
    """

    def score(z: Tensor) -> Tensor:
        with torch.enable_grad():
            # Without create_graph each step starts from a detached leaf, so the chain never
            # holds more than one step's graph; with it, z stays attached to its history.
            if not (create_graph and z.requires_grad):
                z = z.detach().requires_grad_(True)
            (gradient,) = torch.autograd.grad(log_joint(z).sum(), z, create_graph=create_graph)
        return gradient

    return score


def functional_score(log_joint: Callable[[Tensor], Tensor]) -> ScoreFn:
    r"""The score $\nabla_z \log p(x, z)$ computed with ``torch.func.grad``.

    Use this inside ``torch.func`` transforms (``vmap``, ``jacrev``, ``jvp``), where
    ``torch.autograd.grad`` must not be used.

    Arguments:
        log_joint: Maps flat latents ``(B, D)`` to log densities ``(B,)``, with ``x`` bound.

    Returns:
        A `ScoreFn`.

    Examples:
        >>> score = functional_score(lambda z: -0.5 * z.square().sum(-1))
        >>> score(torch.ones(1, 2))
        tensor([[-1., -1.]])
    """
    return torch.func.grad(lambda z: log_joint(z).sum())


def langevin_step(score: ScoreFn, z: Tensor, noise: Tensor, step_size: Tensor) -> Tensor:
    r"""One Langevin step $z + s \odot \nabla_z \log p(x, z) + \sqrt{2s} \odot \epsilon$.

    Arguments:
        score: The score function, see `ScoreFn`.
        z: Current flat latents, with shape ``(B, D)``.
        noise: Standard normal $\epsilon$, with shape ``(B, D)``.
        step_size: $s$, positive, broadcastable to ``(B, D)`` (e.g. ``()`` or ``(D,)``).

    Returns:
        The next latents, with shape ``(B, D)``.

    Examples:
        >>> score = autograd_score(lambda z: -0.5 * z.square().sum(-1))
        >>> langevin_step(score, torch.ones(1, 2), torch.zeros(1, 2), torch.tensor(0.5))
        tensor([[0.5000, 0.5000]])
    """
    return z + step_size * score(z) + torch.sqrt(2 * step_size) * noise


def rollout(
    score: ScoreFn,
    z0: Tensor,
    noise: Tensor,
    step_sizes: Tensor,
    *,
    trajectory: bool = False,
) -> Tensor:
    r"""The K-step short-run map $z_K = F(z_0, \epsilon)$ with the noise given.

    $$
    z_{k+1} = z_k + s_k \odot \nabla_z \log p(x, z_k) + \sqrt{2 s_k} \odot \epsilon_k,
    \qquad k = 0, \dots, K - 1
    $$

    Arguments:
        score: The score function, see `ScoreFn`.
        z0: Initial flat latents $z_0$, with shape ``(B, D)``.
        noise: The injected noise $\epsilon$, with shape ``(K, B, D)``.
        step_sizes: Per-step step sizes $s_k$, with shape ``(K, D)`` or ``(K, 1)``.
        trajectory: Return every state instead of the last.

    Returns:
        $z_K$ with shape ``(B, D)``, or the whole trajectory
        $(z_0, \dots, z_K)$ with shape ``(K + 1, B, D)`` when ``trajectory=True``.

    Examples:
        >>> score = autograd_score(lambda z: -0.5 * z.square().sum(-1))
        >>> z0, noise = torch.ones(1, 2), torch.zeros(3, 1, 2)
        >>> rollout(score, z0, noise, torch.full((3, 1), 0.5))
        tensor([[0.1250, 0.1250]])
    """
    z = z0
    states = [z0] if trajectory else None
    for k in range(noise.shape[0]):
        z = langevin_step(score, z, noise[k], step_sizes[k])
        if states is not None:
            states.append(z)
    return torch.stack(states) if states is not None else z


def max_curvature(
    log_joint: Callable[[Tensor], Tensor], z: Tensor, *, num_iterations: int = 20
) -> Tensor:
    r"""Per-chain estimate of the largest curvature $\lambda_{\max}$ of $-\log p(x, z)$ at ``z``.

    Power iteration on the Hessian $H = -\nabla_z^2 \log p(x, z)$ with Hessian-vector
    products (examples are independent, so one product of $\sum_b \log p(x_b, z_b)$ gives
    every chain's own):

    $$
    v_{t+1} = \frac{H v_t}{\lVert H v_t \rVert}, \qquad
    \hat\lambda = \lvert v_T^\top H v_T \rvert .
    $$

    It converges to the eigenvalue of largest magnitude (from below in expectation), which
    bounds the stable Langevin step: on a quadratic with curvature $\lambda$ the step
    $z + s\nabla\log p + \sqrt{2s}\,\epsilon$ contracts iff $s\lambda < 2$.

    Arguments:
        log_joint: Maps flat latents ``(N, D)`` to log densities ``(N,)``, with ``x`` bound.
        z: Where to measure, flat latents with shape ``(N, D)``.
        num_iterations: Power iterations T (one Hessian-vector product each).

    Returns:
        $\hat\lambda_{\max}$ per chain, with shape ``(N,)``, detached.

    Examples:
        >>> precision = torch.tensor([1.0, 100.0])
        >>> log_joint = lambda z: -0.5 * (precision * z.square()).sum(-1)
        >>> max_curvature(log_joint, torch.zeros(3, 2))
        tensor([100., 100., 100.])
    """
    z = z.detach()
    generator = torch.Generator(device=z.device).manual_seed(0)
    v = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
    v = v / v.norm(dim=-1, keepdim=True)
    leaf = z.requires_grad_(True)
    with torch.enable_grad():
        (gradient,) = torch.autograd.grad(log_joint(leaf).sum(), leaf, create_graph=True)
    curvature = z.new_zeros(z.shape[0])
    if not gradient.requires_grad:  # log p is linear in z: no curvature
        return curvature
    for _ in range(num_iterations):
        (product,) = torch.autograd.grad(gradient, leaf, grad_outputs=v, retain_graph=True)
        product = -product.detach()  # H v with H = -Hessian of log p
        curvature = (v * product).sum(-1).abs()
        norm = product.norm(dim=-1, keepdim=True)
        v = torch.where(norm > 0, product / norm.clamp_min(torch.finfo(z.dtype).tiny), v)
    return curvature.detach()
