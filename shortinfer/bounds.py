r"""Entropy bounds for the short-run posterior, which define the step-size objectives.

Every bound returns, per chain, an estimate :math:`\hat H` whose expectation bounds the entropy
of :math:`z_K`; the ELBO is :math:`\mathbb{E}_q[\log p(x, z_K)] + \hat H` and the step-size
objective is its negative mean over examples.

- ``"conditional"`` (the paper, equation (17) conditioned on the noise):
  :math:`\hat H = -\log p(z_0) + \log\lvert\det \partial z_K/\partial z_0\rvert`, whose expectation
  :math:`H(z_K \mid \epsilon) \le H(z_K)`; the objective is an upper bound on
  :math:`\mathrm{KL}(q_s \| p(z \mid x)) - \log p(x)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from shortinfer.entropy import JacobianMode, LogDetMethod, estimate_log_det

__all__ = ["EntropyBound", "entropy_bound"]

EntropyBound = Literal["conditional"]


def entropy_bound(
    objective: EntropyBound,
    log_joint: Callable[[Tensor], Tensor],
    z0: Tensor,
    noise: Tensor,
    step_sizes: Tensor,
    prior_log_prob: Callable[[Tensor], Tensor],
    *,
    method: LogDetMethod = "exact",
    mode: JacobianMode = "reverse",
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Per-chain entropy estimate under the chosen bound.

    Arguments:
        objective: Which bound, see the module docstring.
        log_joint: Maps flat latents ``(B, D)`` to :math:`\log p(x, z)` with shape ``(B,)``.
        z0: Initial flat latents, with shape ``(B, D)``.
        noise: Injected noise, with shape ``(K, B, D)``.
        step_sizes: Step-size table, with shape ``(K, D)`` or ``(K, 1)``.
        prior_log_prob: :math:`\log p(z_0)` on flat latents ``(B, D) -> (B,)``.
        method: Log-determinant estimator, see :func:`shortinfer.entropy.estimate_log_det`.
        mode: Jacobian mode.
        chunk_size: Jacobian chunk size.
        generator: Randomness for stochastic estimators.

    Returns:
        ``(z_K, entropy)`` with shapes ``(B, D)`` and ``(B,)``.

    Example:
        >>> log_joint = lambda z: -0.5 * z.square().sum(-1)
        >>> prior = lambda z: -0.5 * z.square().sum(-1) - 0.5 * z.shape[-1] * 1.8379
        >>> z_k, h = entropy_bound("conditional", log_joint, torch.randn(2, 3),
        ...                        torch.randn(4, 2, 3), torch.full((4, 1), 0.1), prior)
        >>> h.shape
        torch.Size([2])
    """
    if objective == "conditional":
        z_k, log_det = estimate_log_det(
            log_joint, z0, noise, step_sizes, method=method, mode=mode,
            chunk_size=chunk_size, generator=generator,
        )
        return z_k, log_det - prior_log_prob(z0)
    raise ValueError(f"objective must be one of ['conditional']; received {objective!r}.")
