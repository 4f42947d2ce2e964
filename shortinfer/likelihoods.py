r"""Common observation models, written so they compose into a ``log_joint(x, z)``.

Each function returns one log density per example, shape ``(*batch,)``, summing over the
event dimensions. They are pure tensor functions, safe under ``torch.func`` transforms.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution

from shortinfer._checks import ArgumentError, ArgumentTypeError

__all__ = ["gaussian_log_likelihood", "observation_log_prob", "standard_normal_log_prob"]

_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_likelihood(
    x: Tensor,
    mean: Tensor,
    sigma: float | Tensor,
    *,
    mask: Tensor | None = None,
    event_dims: int | None = None,
) -> Tensor:
    r"""Log density of $x \mid z \sim \mathcal{N}(\mu(z), \sigma^2 I)$, optionally masked.

    $$
    \log p(x \mid z) = \sum_j m_j \Big[-\frac{(x_j - \mu_j)^2}{2\sigma^2}
    - \log \sigma - \tfrac12 \log 2\pi\Big]
    $$

    where $m_j \in \{0, 1\}$ marks observed entries (all ones without a mask). With a
    mask, unobserved pixels drop out of the likelihood, which is how inpainting is expressed
    (Section 5.3 of the paper): short-run inference then fills them in from the prior.

    Arguments:
        x: Observations, with shape ``(*batch, *event)``.
        mean: The decoder's mean $\mu(z)$, broadcastable to ``x``; leading sample
            dimensions ``(S, B, ...)`` are allowed.
        sigma: Observation noise standard deviation, a positive float or a tensor
            broadcastable to ``x``.
        mask: Optional tensor broadcastable to ``x``, 1 where observed and 0 where missing.
        event_dims: How many trailing dimensions form one example. Defaults to
            ``x.dim() - 1`` (everything after the batch dimension).

    Returns:
        The log likelihood with shape ``broadcast(x, mean).shape[:-event_dims]``.

    Raises:
        ValueError: If ``sigma`` is not positive or ``mask`` does not broadcast to ``x``.

    Examples:
        >>> x = torch.zeros(2, 3)
        >>> gaussian_log_likelihood(x, torch.zeros(2, 3), 1.0).shape
        torch.Size([2])
        >>> mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
        >>> gaussian_log_likelihood(x, torch.ones(2, 3), 1.0, mask=mask)
        tensor([-2.8379, -1.4189])
    """
    _check_sigma(sigma)
    if event_dims is None:
        event_dims = x.dim() - 1
    residual = (x - mean) / sigma
    if not isinstance(sigma, Tensor):
        # torch.full, not torch.as_tensor: the same value, and under torch.compile a changing
        # float sigma (annealed in training) stays a graph input instead of recompiling.
        sigma = torch.full((), sigma, dtype=residual.dtype, device=residual.device)
    log_sigma = torch.log(sigma.to(dtype=residual.dtype, device=residual.device))
    per_entry = -0.5 * residual.square() - log_sigma - 0.5 * _LOG_2PI
    if mask is not None:
        hint = "Pass a mask shaped like x (1 = observed)."
        per_entry = per_entry * broadcast_mask(
            mask, per_entry.shape, per_entry.dtype, "the observations'", hint
        )
    if event_dims == 0:
        return per_entry
    return per_entry.flatten(-event_dims).sum(-1)


def observation_log_prob(
    distribution: Distribution,
    x: Tensor,
    mask: Tensor | None = None,
    *,
    event_dims: int | None = None,
) -> Tensor:
    r"""Log density of $x$ under any ``torch.distributions`` observation model, masked.

    $$
    \log p(x \mid z) = \sum_j m_j \log p_\theta(x_j \mid z),
    $$

    where $p_\theta(\cdot \mid z)$ is ``distribution`` (built from the decoder's output, e.g.
    ``Bernoulli(logits=decoder(z))``), $j$ runs over the entries of one example that
    ``distribution.log_prob`` scores separately, and $m_j \in \{0, 1\}$ marks observed
    entries (all ones without a mask): missing entries drop out, as in inpainting.

    Arguments:
        distribution: The observation model, with ``batch_shape + event_shape`` broadcastable
            to ``x`` (leading sample dimensions ``(S, B, ...)`` are allowed).
        x: Observations, with shape ``(*batch, *event)``; integer-valued for discrete models
            (class indices for ``Categorical``, counts for ``Poisson``, 0/1 for ``Bernoulli``,
            which may be floats).
        mask: Optional tensor broadcastable to the shape of ``distribution.log_prob(x)``
            (``x``'s shape less the distribution's own event dimensions), 1 where observed.
        event_dims: How many trailing dimensions of ``x`` form one example. Defaults to
            ``x.dim() - 1`` (everything after the batch dimension).

    Returns:
        The log likelihood with shape ``log_prob.shape[:-n]``, where ``n`` = ``event_dims``
        less the distribution's own event dimensions: ``(B,)`` for ``x`` of shape
        ``(B, ...)``, ``(S, B)`` for a decoder run on ``(S, B, D)`` latents.

    Raises:
        ValueError: If ``event_dims`` is smaller than the distribution's event dimensions, or
            ``mask`` does not broadcast.

    Examples:
        >>> from torch.distributions import Bernoulli, Categorical, Poisson
        >>> decoder = torch.nn.Linear(2, 6)
        >>> z = torch.zeros(4, 2)  # (B, D)
        >>> binary = torch.ones(4, 6)  # (B, P) pixels in {0, 1}
        >>> observation_log_prob(Bernoulli(logits=decoder(z)), binary).shape
        torch.Size([4])
        >>> half = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])  # observe the first 3 pixels
        >>> observation_log_prob(Bernoulli(logits=torch.zeros(4, 6)), binary, mask=half)
        tensor([-2.0794, -2.0794, -2.0794, -2.0794])
        >>> counts = torch.tensor([[0.0, 1.0, 3.0]])  # (B, P) Poisson counts
        >>> observation_log_prob(Poisson(rate=torch.ones(1, 3)), counts)
        tensor([-4.7918])
        >>> labels = torch.tensor([[0, 2], [1, 1]])  # (B, P) classes out of 3
        >>> observation_log_prob(Categorical(logits=torch.zeros(2, 2, 3)), labels)
        tensor([-2.1972, -2.1972])

        Inside a ``log_joint``:

        >>> def log_joint(x, z):
        ...     return standard_normal_log_prob(z) + observation_log_prob(
        ...         Bernoulli(logits=decoder(z)), x
        ...     )
        >>> log_joint(binary, z).shape
        torch.Size([4])
    """
    own = len(distribution.event_shape)
    summed = (x.dim() - 1 if event_dims is None else event_dims) - own
    if summed < 0:
        raise ValueError(
            f"event_dims={summed + own} is smaller than the distribution's own event dimensions "
            f"(event_shape {tuple(distribution.event_shape)}). Pass event_dims >= {own}: the "
            "number of trailing dimensions of x that form one example."
        )
    per_entry = _masked(distribution.log_prob(x), mask, distribution)
    if summed == 0:
        return per_entry
    return per_entry.flatten(-summed).sum(-1)


def _masked(per_entry: Tensor, mask: Tensor | None, distribution: Distribution) -> Tensor:
    if mask is None:
        return per_entry
    hint = (
        "Pass a mask shaped like x without the distribution's event dimensions "
        f"(event_shape {tuple(distribution.event_shape)}), 1 = observed."
    )
    return per_entry * broadcast_mask(
        mask, per_entry.shape, per_entry.dtype, "the per-entry log-probabilities'", hint
    )


def _check_sigma(sigma: float | Tensor) -> None:
    bad: object = None
    if isinstance(sigma, Tensor):
        # Checked where that costs no device sync (on the CPU, outside vmap); elsewhere a
        # sigma <= 0 makes log_joint NaN or -inf, which the posterior's probe and chain refuse.
        if sigma.device.type == "cpu" and sigma.is_floating_point():
            try:
                if not bool((sigma > 0).all()):
                    bad = sigma.detach().reshape(-1)[:8].tolist()
            except RuntimeError:  # a batched tensor under vmap: data-dependent, left to the chain
                return
    elif isinstance(sigma, bool) or not isinstance(sigma, (int, float)):
        raise ArgumentTypeError(
            f"sigma must be a positive float or a tensor; received {sigma!r} "
            f"({type(sigma).__name__}). Pass the observation noise standard deviation, e.g. "
            "sigma=0.3."
        )
    elif not sigma > 0 or sigma != sigma or sigma == float("inf"):
        bad = sigma
    if bad is not None:
        raise ArgumentError(
            f"sigma must be positive and finite; received {bad!r}. Pass the observation noise "
            "standard deviation, e.g. sigma=0.3 (a tensor sigma must be > 0 everywhere)."
        )


def broadcast_mask(
    mask: Tensor, shape: torch.Size, dtype: torch.dtype, what: str, hint: str
) -> Tensor:
    r"""``mask`` as ``dtype``, broadcast to ``shape``, or a readable ``ValueError``.

    Shared by `gaussian_log_likelihood`, `observation_log_prob` and
    `shortinfer.metrics.reconstruction_mse`.

    Arguments:
        mask: Weights, 1 where an entry counts.
        shape: The shape the mask must broadcast to.
        dtype: The dtype to return it in.
        what: Whose shape, for the message, e.g. ``"x's"``.
        hint: The sentence of the message that says what to pass instead.

    Returns:
        A (possibly expanded, read-only) tensor with ``shape`` and ``dtype``.

    Examples:
        >>> broadcast_mask(torch.ones(3), torch.Size([2, 3]), torch.float32, "x's", "").shape
        torch.Size([2, 3])
        >>> broadcast_mask(torch.ones(2), torch.Size([2, 3]), torch.float32, "x's", "Fix it.")
        Traceback (most recent call last):
        ...
        shortinfer._checks.ArgumentError: mask with shape (2,) does not broadcast to x's shape ...
    """
    try:
        return torch.broadcast_to(mask.to(dtype), shape)
    except RuntimeError as err:
        raise ArgumentError(
            f"mask with shape {tuple(mask.shape)} does not broadcast to {what} shape "
            f"{tuple(shape)}. {hint}"
        ) from err


def standard_normal_log_prob(z: Tensor, *, event_dims: int = 1) -> Tensor:
    r"""Log density of $z \sim \mathcal{N}(0, I)$, summed over the event dimensions.

    $$
    \log \mathcal{N}(z; 0, I) = -\tfrac12 \lVert z \rVert^2 - \tfrac{D}{2} \log 2\pi
    $$

    Arguments:
        z: Latent values with shape ``(*batch, *event)``.
        event_dims: How many trailing dimensions form one latent vector.

    Returns:
        The log density with shape ``(*batch,)``.

    Examples:
        >>> standard_normal_log_prob(torch.zeros(4, 2))
        tensor([-1.8379, -1.8379, -1.8379, -1.8379])
    """
    per_entry = -0.5 * z.square() - 0.5 * _LOG_2PI
    if event_dims == 0:
        return per_entry
    return per_entry.flatten(-event_dims).sum(-1)
