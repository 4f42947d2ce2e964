r"""The log-determinant of the short-run map's Jacobian, and the entropy it gives.

With the injected noise :math:`\epsilon` held fixed, :math:`z_K = F(z_0, \epsilon)` is a
deterministic, (locally) invertible map, so by change of variables (equation (13) of the paper)

.. math::
    \log q(z_K \mid \epsilon) = \log p(z_0) - \log\left|\det \frac{\partial F}{\partial z_0}\right|.

The per-example entropy estimate is :math:`-\log q(z_K \mid \epsilon)`. It conditions on the
noise, so its expectation :math:`H(z_K \mid \epsilon)` is a *lower* bound on the marginal
entropy :math:`H(z_K)`, and the step-size objective built on it is an *upper* bound on
:math:`\mathrm{KL}(q_s \,\|\, p(z \mid x)) - \log p(x)`.

The Jacobian is block-diagonal over the batch (examples are independent), so row :math:`j` of
every example's Jacobian comes from **one** vector-Jacobian product of the batched map with the
cotangent :math:`e_j` placed in every example. ``torch.func.vmap`` runs the :math:`D` products at
once (optionally in chunks), which is the "batched vjp under vmap" of ``jacrev``; forward mode
(``jvp``, as in ``jacfwd``) gives columns instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from shortinfer._checks import translate_func_errors
from shortinfer.langevin import functional_score, rollout

__all__ = ["estimate_log_det", "jacobian", "log_abs_det_jacobian"]

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
    r"""Per-example Jacobians :math:`J_b = \partial z_{K,b} / \partial z_{0,b}` of the rollout.

    Arguments:
        log_joint: Maps flat latents ``(B, D)`` to :math:`\log p(x, z)` with shape ``(B,)``;
            examples must be independent of each other.
        z0: Initial flat latents :math:`z_0`, with shape ``(B, D)``.
        noise: Injected noise :math:`\epsilon`, with shape ``(K, B, D)``.
        step_sizes: Step-size table, with shape ``(K, D)`` or ``(K, 1)``. It may require grad,
            in which case the result is differentiable with respect to it.
        mode: ``"reverse"`` builds rows with vector-Jacobian products (``jacrev``);
            ``"forward"`` builds columns with Jacobian-vector products (``jacfwd``).
        chunk_size: Number of basis vectors pushed through the map at once (``None``: all
            :math:`D`). Smaller chunks trade speed for memory.

    Returns:
        ``(z_K, J)``: the rollout's output with shape ``(B, D)`` and the Jacobians with shape
        ``(B, D, D)``, where ``J[b, i, j]`` is :math:`\partial z_{K,b,i} / \partial z_{0,b,j}`.

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

    basis = torch.eye(dim, dtype=z0.dtype, device=z0.device)
    basis = basis.unsqueeze(1).expand(dim, batch, dim)  # e_j placed in every example
    with translate_func_errors():
        if mode == "reverse":
            z_k, vjp_fn = torch.func.vjp(run, z0)
            rows = torch.func.vmap(vjp_fn, chunk_size=chunk_size)(basis)[0]  # (D, B, D): j, b, :
            jac = rows.transpose(0, 1)
        elif mode == "forward":

            def push(tangent: Tensor) -> tuple[Tensor, Tensor]:
                return torch.func.jvp(run, (z0,), (tangent,))

            outputs, columns = torch.func.vmap(push, chunk_size=chunk_size)(basis)
            z_k = outputs[0]
            jac = columns.permute(1, 2, 0)  # (D_j, B, D_i) -> (B, D_i, D_j)
        else:
            raise ValueError(f"mode must be 'reverse' or 'forward'; received {mode!r}.")
    return z_k, jac


def log_abs_det_jacobian(
    log_joint: Callable[[Tensor], Tensor],
    z0: Tensor,
    noise: Tensor,
    step_sizes: Tensor,
    *,
    mode: JacobianMode = "reverse",
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Exact :math:`\log\lvert\det \partial z_K / \partial z_0\rvert` for each example.

    The Jacobian comes from :func:`jacobian`; its log-determinant from an LU factorisation
    (``torch.linalg.slogdet``), which is differentiable.

    Arguments:
        log_joint: Maps flat latents ``(B, D)`` to :math:`\log p(x, z)` with shape ``(B,)``.
        z0: Initial flat latents, with shape ``(B, D)``.
        noise: Injected noise, with shape ``(K, B, D)``.
        step_sizes: Step-size table, with shape ``(K, D)`` or ``(K, 1)``.
        mode: ``"reverse"`` or ``"forward"``, see :func:`jacobian`.
        chunk_size: See :func:`jacobian`.

    Returns:
        ``(z_K, log_det)`` with shapes ``(B, D)`` and ``(B,)``.

    Examples:
        >>> log_joint = lambda z: -0.5 * z.square().sum(-1)
        >>> z0, noise = torch.randn(2, 3), torch.randn(4, 2, 3)
        >>> _, log_det = log_abs_det_jacobian(log_joint, z0, noise, torch.full((4, 1), 0.1))
        >>> torch.allclose(log_det, torch.full((2,), 3 * 4 * torch.log(torch.tensor(0.9))))
        True
    """
    z_k, jac = jacobian(log_joint, z0, noise, step_sizes, mode=mode, chunk_size=chunk_size)
    return z_k, torch.linalg.slogdet(jac).logabsdet


LogDetMethod = Literal["exact"]


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
) -> tuple[Tensor, Tensor]:
    r"""Estimate :math:`\log\lvert\det \partial z_K / \partial z_0\rvert` with a chosen method.

    Arguments:
        log_joint: Maps flat latents ``(B, D)`` to :math:`\log p(x, z)` with shape ``(B,)``.
        z0: Initial flat latents, with shape ``(B, D)``.
        noise: Injected noise, with shape ``(K, B, D)``.
        step_sizes: Step-size table, with shape ``(K, D)`` or ``(K, 1)``.
        method: ``"exact"``: :func:`log_abs_det_jacobian`.
        mode: Jacobian mode for the exact method, see :func:`jacobian`.
        chunk_size: See :func:`jacobian`.
        generator: Randomness for stochastic methods.

    Returns:
        ``(z_K, log_det)`` with shapes ``(B, D)`` and ``(B,)``.

    Examples:
        >>> log_joint = lambda z: -0.5 * z.square().sum(-1)
        >>> z0, noise = torch.randn(2, 3), torch.randn(4, 2, 3)
        >>> _, log_det = estimate_log_det(log_joint, z0, noise, torch.full((4, 1), 0.1))
        >>> log_det.shape
        torch.Size([2])
    """
    del generator  # used by stochastic estimators
    if method == "exact":
        return log_abs_det_jacobian(
            log_joint, z0, noise, step_sizes, mode=mode, chunk_size=chunk_size
        )
    raise ValueError(f"method must be one of ['exact']; received {method!r}.")
