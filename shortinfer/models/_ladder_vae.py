r"""The Ladder-VAE baseline of the paper's Table 1, built on `MultiLayerGenerator`.

Sønderby et al. (2016) pair a top-down generative model with a bottom-up deterministic
encoder. For every layer the encoder gives Gaussian parameters $(\hat\mu_l,
\hat\sigma_l)$ from the image alone, and the top-down pass combines them with the generator's
conditional prior $\mathcal{N}(\mu_l, \sigma_l^2)$ by precision weighting:

$$
\sigma_{q,l}^2 = \frac{1}{\hat\sigma_l^{-2} + \sigma_l^{-2}}, \qquad
\mu_{q,l} = \frac{\hat\mu_l \hat\sigma_l^{-2} + \mu_l \sigma_l^{-2}}
{\hat\sigma_l^{-2} + \sigma_l^{-2}}, \qquad l < L,
$$

and $q(z_L \mid x) = \mathcal{N}(\hat\mu_L, \hat\sigma_L^2)$ for the top layer.

The generator is parameterised by standard-normal noises, $z_l = \mu_l + \sigma_l
\epsilon_l$, and so is this posterior: given the layers above, the affine change of variables
$\epsilon_l = (z_l - \mu_l) / \sigma_l$ turns $q(z_l \mid z_{>l}, x)$ into

$$
q(\epsilon_l \mid \epsilon_{>l}, x) = \mathcal{N}(m_l, s_l^2), \qquad
m_l = \frac{\sigma_l (\hat\mu_l - \mu_l)}{\sigma_l^2 + \hat\sigma_l^2}, \qquad
s_l = \frac{\hat\sigma_l}{\sqrt{\sigma_l^2 + \hat\sigma_l^2}},
$$

($m_L = \hat\mu_L$, $s_L = \hat\sigma_L$), and the conditional prior into
$\mathcal{N}(0, I)$. The KL divergence is invariant under this change of variables, so
each layer's term is the closed form

$$
\mathrm{KL}_l = \mathrm{KL}\big(\mathcal{N}(m_l, s_l^2) \,\|\, \mathcal{N}(0, I)\big)
= \tfrac12 \sum_i \big(m_{l,i}^2 + s_{l,i}^2 - 1 - 2 \log s_{l,i}\big),
$$

and the ELBO, estimated with reparameterised samples $\epsilon \sim q$ (which fix the
conditioning layers of every $\mathrm{KL}_l$), is

$$
\mathrm{ELBO}(x) = \mathbb{E}_{q(\epsilon \mid x)}\Big[\log \mathcal{N}\big(x; g(\epsilon),
\sigma^2 I\big) - \sum_{l=1}^{L} \mathrm{KL}_l\Big]
= \mathbb{E}_q\big[\log p(x, \epsilon) - \log q(\epsilon \mid x)\big] \le \log p(x).
$$

It is the same bound, with the same likelihood and $\sigma$, as the short-run ELBO of
`MultiLayerGenerator.log_joint`, so the two are directly comparable. With $L = 1$
the model is the plain VAE of the paper's Table 2.

References:
    Ladder Variational Autoencoders (Sønderby, Raiko, Maaløe, Sønderby and Winther, 2016),
    https://arxiv.org/abs/1602.02282
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from shortinfer._checks import ArgumentError, ArgumentTypeError
from shortinfer.likelihoods import gaussian_log_likelihood
from shortinfer.models._generator import MultiLayerGenerator
from shortinfer.models._layers import Head, ResidualBlock, is_int, positive_scale

__all__ = ["LadderPosteriorSample", "LadderVAE"]

_LOG_2PI = math.log(2.0 * math.pi)


class LadderPosteriorSample(NamedTuple):
    r"""A reparameterised draw from the Ladder-VAE posterior $q(\epsilon \mid x)$.

    Attributes:
        z: Latent dict in the generator's convention (noises $\epsilon_l$), with
            ``z["z{l}"]`` of shape ``(*sample, B, d_l)``.
        log_q: $\log q(\epsilon \mid x)$ in noise coordinates, shape ``(*sample, B)``.
        kl: Per-layer analytic $\mathrm{KL}_l$ given the sampled layers above, a dict
            with the same keys as ``z`` and values of shape ``(*sample, B)``.
        mean: The decoded image mean $g(\epsilon)$, shape ``(*sample, B, C, H, W)``.

    Examples:
        >>> from shortinfer.models import LadderVAE, MultiLayerGenerator
        >>> generator = MultiLayerGenerator(image_size=28, channels=1, latent_sizes=(2, 3),
        ...                                 num_filters=4)
        >>> draw = LadderVAE(generator).sample_posterior(torch.zeros(4, 1, 28, 28))
        >>> sorted(draw.z), draw.log_q.shape, draw.mean.shape
        (['z1', 'z2'], torch.Size([4]), torch.Size([4, 1, 28, 28]))
        >>> sum(draw.kl.values()).shape  # the ELBO's KL term, one value per image
        torch.Size([4])
    """

    z: dict[str, Tensor]
    log_q: Tensor
    kl: dict[str, Tensor]
    mean: Tensor


class _BottomUp(nn.Module):
    r"""Bottom-up deterministic encoder mirroring the generator.

    ``Conv2d(C, n_e, 4, stride=2, padding=1)`` (the mirror of $o_0$) maps ``(N, C, H, W)``
    to ``(N, n_e, H/2, W/2)``; then for $l = 1, \dots, L$ a residual block
    $a_l = b_l(a_{l-1})$ and two heads (conv2d + linear, as in the generator) give
    $\hat\mu_l$ and $\hat\sigma_l = \mathrm{softplus}(\cdot) + 10^{-3}$, each
    ``(N, d_l)``.
    """

    def __init__(
        self, channels: int, image_size: int, latent_sizes: tuple[int, ...], num_filters: int
    ) -> None:
        super().__init__()
        feature_size = image_size // 2
        bottom_up_sizes = latent_sizes[::-1]  # layer 1 first
        self.input = nn.Conv2d(channels, num_filters, 4, stride=2, padding=1)
        self.blocks = nn.ModuleList([ResidualBlock(num_filters) for _ in bottom_up_sizes])
        self.mean_heads = nn.ModuleList(
            [Head(num_filters, feature_size, size) for size in bottom_up_sizes]
        )
        self.scale_heads = nn.ModuleList(
            [Head(num_filters, feature_size, size) for size in bottom_up_sizes]
        )

    def forward(self, x: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Return ``[(mu_hat_l, sigma_hat_l) for l = 1..L]``, bottom layer first, each (N, d_l)."""
        features = self.input(x)
        parameters = []
        for block, mean_head, scale_head in zip(
            self.blocks, self.mean_heads, self.scale_heads, strict=True
        ):
            features = block(features)
            parameters.append((mean_head(features), positive_scale(scale_head(features))))
        return parameters


def _kl_to_standard_normal(mean: Tensor, log_scale: Tensor) -> Tensor:
    r"""$\mathrm{KL}(\mathcal{N}(m, s^2) \| \mathcal{N}(0, I))$ summed over the last dim."""
    return 0.5 * (mean.square() + torch.exp(2.0 * log_scale) - 1.0 - 2.0 * log_scale).sum(-1)


class LadderVAE(nn.Module):
    r"""Ladder variational autoencoder (Sønderby et al., 2016) on a `MultiLayerGenerator`.

    The generator is used as is (composition); this module adds a bottom-up encoder and
    computes the precision-weighted posterior in the generator's noise coordinates
    $\epsilon_l$ (see the module docstring for the formulas). The per-example ELBO is

    $$
    \mathrm{ELBO}(x) = \mathbb{E}_{q(\epsilon \mid x)}\Big[\log \mathcal{N}\big(x;
    g(\epsilon), \sigma^2 I\big) - \sum_{l=1}^{L} \mathrm{KL}_l\Big],
    $$

    with $\sigma$ = ``generator.sigma`` and all normalising constants, in nats.

    Arguments:
        generator: The top-down model $p(x, \epsilon)$; its parameters are trained
            jointly with the encoder and appear in this module's ``state_dict`` under
            ``generator.``.
        num_filters: Channels $n_e$ of the bottom-up encoder; defaults to the
            generator's ``num_filters``.

    Raises:
        TypeError: If ``generator`` is not a `MultiLayerGenerator` or ``num_filters``
            is not an int.
        ValueError: If ``num_filters`` is not positive.

    Examples:
        >>> generator = MultiLayerGenerator(image_size=28, channels=1, latent_sizes=(4, 8),
        ...                                 num_filters=8)
        >>> vae = LadderVAE(generator)
        >>> x = torch.rand(3, 1, 28, 28) * 2 - 1
        >>> vae.elbo(x).shape
        torch.Size([3])
        >>> vae.loss(x, beta=0.5).shape
        torch.Size([])
        >>> generator.decode(vae.encode(x)).shape
        torch.Size([3, 1, 28, 28])

    References:
        Ladder Variational Autoencoders (Sønderby, Raiko, Maaløe, Sønderby and Winther, 2016),
        https://arxiv.org/abs/1602.02282
    """

    def __init__(self, generator: MultiLayerGenerator, *, num_filters: int | None = None) -> None:
        super().__init__()
        if not isinstance(generator, MultiLayerGenerator):
            raise ArgumentTypeError(
                f"generator must be a MultiLayerGenerator; received {type(generator).__name__}. "
                "Build one with MultiLayerGenerator(image_size=..., latent_sizes=...)."
            )
        if num_filters is None:
            num_filters = generator.num_filters
        if not is_int(num_filters):
            raise ArgumentTypeError(
                f"num_filters must be an int or None; received {num_filters!r} "
                f"({type(num_filters).__name__})."
            )
        if num_filters <= 0:
            raise ArgumentError(f"num_filters must be positive; received {num_filters}.")
        self.generator = generator
        self.num_filters = num_filters
        self.encoder = _BottomUp(
            generator.channels, generator.image_size, generator.latent_sizes, num_filters
        )
        # Keep the encoder on the generator's device and dtype, so LadderVAE(generator) works
        # for a generator that was already moved.
        self.encoder.to(generator.output.weight)

    # ------------------------------------------------------------------ configuration

    @property
    def sigma(self) -> float:
        r"""The generator's observation noise $\sigma$ (read and set through the VAE, so that
        `shortinfer.train.Trainer` anneals it like the generator's own).

        Examples:
            >>> vae = LadderVAE(MultiLayerGenerator(latent_sizes=(4,), num_filters=4, sigma=0.3))
            >>> vae.sigma = 0.2
            >>> vae.generator.sigma
            0.2
        """
        return self.generator.sigma

    @sigma.setter
    def sigma(self, value: float) -> None:
        self.generator.sigma = value

    @property
    def config(self) -> dict[str, Any]:
        r"""Constructor arguments as plain JSON-serialisable types.

        Returns:
            ``{"generator": generator.config, "num_filters": n_e}``.

        Examples:
            >>> vae = LadderVAE(MultiLayerGenerator(latent_sizes=(4,), num_filters=4))
            >>> vae.config["num_filters"], vae.config["generator"]["latent_sizes"]
            (4, [4])
        """
        return {"generator": self.generator.config, "num_filters": self.num_filters}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LadderVAE:
        r"""Build a freshly initialised Ladder-VAE (and its generator) from `config`.

        Arguments:
            config: A dict produced by `config`.

        Returns:
            A new `LadderVAE`.

        Raises:
            TypeError: If ``config`` is not a mapping.
            ValueError: If ``config`` lacks ``"generator"`` or has unknown keys.

        Examples:
            >>> vae = LadderVAE(MultiLayerGenerator(latent_sizes=(4, 8), num_filters=4))
            >>> LadderVAE.from_config(vae.config).config == vae.config
            True
        """
        if not isinstance(config, Mapping):
            raise ArgumentTypeError(
                f"config must be a dict such as vae.config; received {type(config).__name__}."
            )
        known = {"generator", "num_filters"}
        unknown = sorted(set(config) - known)
        if unknown or "generator" not in config:
            raise ArgumentError(
                f"config must have the key 'generator' and optionally 'num_filters'; received "
                f"keys {sorted(config)}. Was it written by a different model class?"
            )
        generator = MultiLayerGenerator.from_config(config["generator"])
        return cls(generator, num_filters=config.get("num_filters"))

    def check_config(self, config: Mapping[str, Any]) -> None:
        r"""Raise if ``config`` describes a different architecture (``sigma`` is ignored).

        Arguments:
            config: A dict produced by `config`, e.g. stored in a checkpoint.

        Raises:
            ValueError: Naming the mismatched keys.

        Examples:
            >>> vae = LadderVAE(MultiLayerGenerator(latent_sizes=(4,), num_filters=4))
            >>> vae.check_config(vae.config)  # passes
        """
        if not isinstance(config, Mapping):
            raise ArgumentTypeError(
                f"config must be a dict such as vae.config; received {type(config).__name__}."
            )
        if config.get("num_filters") != self.num_filters:
            raise ArgumentError(
                f"configuration mismatch: num_filters: checkpoint {config.get('num_filters')!r} "
                f"vs model {self.num_filters!r}. Build the model with "
                "LadderVAE.from_config(config) before loading these weights."
            )
        self.generator.check_config(config.get("generator", {}))

    # ------------------------------------------------------------------ inference

    def _check_inputs(self, x: Tensor, num_samples: object) -> None:
        self.generator._check_images(x)
        if x.dim() != 4:
            raise ArgumentError(
                f"x must have shape (B, C, H, W); received {tuple(x.shape)}. Add a batch "
                "dimension with x[None] for a single image."
            )
        dtype = self.generator.output.weight.dtype
        if x.dtype != dtype:
            raise ArgumentTypeError(
                f"x has dtype {x.dtype} but the model's parameters are {dtype}; cast with "
                f"x.to({dtype})."
            )
        if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
            raise ArgumentError(f"num_samples must be a positive int; received {num_samples!r}.")

    def _posterior(
        self, x: Tensor, num_samples: int, sample_noise: bool, generator: torch.Generator | None
    ) -> LadderPosteriorSample:
        """Top-down posterior pass; flat results have S * B rows, sample index outermost."""
        gen_model = self.generator
        batch_size = x.shape[0]
        names = gen_model._names  # top layer first
        bottom_up = self.encoder(x)[::-1]  # top layer first, to match names
        # Draw every noise before the pass, so the pass is a deterministic function of it.
        shapes = [(num_samples, batch_size, size) for size in gen_model.latent_sizes]
        if sample_noise:
            noises = [
                torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)
                for shape in shapes
            ]
        else:
            noises = [torch.zeros(shape, device=x.device, dtype=x.dtype) for shape in shapes]

        def tile(t: Tensor) -> Tensor:  # (B, d) -> (S * B, d)
            return t.unsqueeze(0).expand(num_samples, *t.shape).reshape(-1, t.shape[-1])

        means, log_scales, samples = [], [], []

        def record(mean: Tensor, log_scale: Tensor, index: int) -> Tensor:
            noise = noises[index].reshape(-1, mean.shape[-1])
            sample = mean + torch.exp(log_scale) * noise
            means.append(mean)
            log_scales.append(log_scale)
            samples.append(sample)
            return sample

        mean_hat, scale_hat = bottom_up[0]
        top = record(tile(mean_hat), torch.log(tile(scale_hat)), 0)

        def choose_noise(k: int, prior_mean: Tensor, prior_scale: Tensor) -> Tensor:
            mean_hat, scale_hat = (tile(t) for t in bottom_up[k + 1])
            total_variance = prior_scale.square() + scale_hat.square()
            mean = prior_scale * (mean_hat - prior_mean) / total_variance
            log_scale = torch.log(scale_hat) - 0.5 * torch.log(total_variance)
            return record(mean, log_scale, k + 1)

        image = gen_model._top_down(top, choose_noise)
        sample_shape = (num_samples, batch_size)
        z = {name: s.reshape(*sample_shape, -1) for name, s in zip(names, samples, strict=True)}
        kl = {
            name: _kl_to_standard_normal(m, ls).reshape(sample_shape)
            for name, m, ls in zip(names, means, log_scales, strict=True)
        }
        terms = [
            (-0.5 * n.square() - ls.reshape(n.shape) - 0.5 * _LOG_2PI).sum(-1)
            for n, ls in zip(noises, log_scales, strict=True)
        ]
        log_q = sum(terms[1:], terms[0])  # a Tensor: the model has at least one layer
        return LadderPosteriorSample(
            z=z, log_q=log_q, kl=kl, mean=image.reshape(*sample_shape, *image.shape[1:])
        )

    def sample_posterior(
        self,
        x: Tensor,
        *,
        num_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> LadderPosteriorSample:
        r"""Draw reparameterised samples $\epsilon \sim q(\epsilon \mid x)$.

        Layer by layer from the top, $\epsilon_l = m_l + s_l \xi_l$ with
        $\xi_l \sim \mathcal{N}(0, I)$, where $(m_l, s_l)$ depend on the sampled
        layers above. Gradients flow to both the encoder and the generator.

        Arguments:
            x: Images in $[-1, 1]$ with shape ``(B, C, H, W)``.
            num_samples: Number S of samples per image. ``None`` (default) draws one and
                returns tensors without the sample dimension.
            generator: Optional ``torch.Generator`` for the noises $\xi$ (not the
                model: that is ``self.generator``).

        Returns:
            A `LadderPosteriorSample` whose ``z`` values have shape ``(B, d_l)``, or
            ``(S, B, d_l)`` when ``num_samples`` is given.

        Raises:
            TypeError: If ``x`` is not a tensor of the model's dtype.
            ValueError: If ``x`` has the wrong shape or ``num_samples`` is not positive.

        Examples:
            >>> vae = LadderVAE(MultiLayerGenerator(latent_sizes=(4, 8), num_filters=4))
            >>> draw = vae.sample_posterior(torch.zeros(2, 3, 32, 32), num_samples=5)
            >>> draw.z["z1"].shape, draw.log_q.shape, draw.kl["z2"].shape
            (torch.Size([5, 2, 8]), torch.Size([5, 2]), torch.Size([5, 2]))
        """
        self._check_inputs(x, 1 if num_samples is None else num_samples)
        draw = self._posterior(x, 1 if num_samples is None else num_samples, True, generator)
        if num_samples is None:
            return LadderPosteriorSample(
                z={k: v[0] for k, v in draw.z.items()},
                log_q=draw.log_q[0],
                kl={k: v[0] for k, v in draw.kl.items()},
                mean=draw.mean[0],
            )
        return draw

    def _elbo_samples(
        self, x: Tensor, *, beta: float, num_samples: int, generator: torch.Generator | None
    ) -> Tensor:
        draw = self._posterior(x, num_samples, True, generator)
        log_likelihood = gaussian_log_likelihood(x, draw.mean, self.generator.sigma, event_dims=3)
        return log_likelihood - beta * sum(draw.kl.values())  # (S, B)

    def elbo(
        self, x: Tensor, *, num_samples: int = 1, generator: torch.Generator | None = None
    ) -> Tensor:
        r"""Per-example evidence lower bound in nats, averaged over ``num_samples`` draws.

        $$
        \widehat{\mathrm{ELBO}}(x) = \frac{1}{S} \sum_{s=1}^{S} \Big[\log \mathcal{N}
        \big(x; g(\epsilon^{(s)}), \sigma^2 I\big)
        - \sum_{l=1}^{L} \mathrm{KL}_l(\epsilon^{(s)}_{>l})\Big],
        \qquad \epsilon^{(s)} \sim q(\epsilon \mid x),
        $$

        an unbiased estimate of $\mathbb{E}_q[\log p(x, \epsilon) - \log q(\epsilon
        \mid x)]$ with $\sigma$ = ``generator.sigma``.

        Arguments:
            x: Images in $[-1, 1]$ with shape ``(B, C, H, W)``.
            num_samples: Number S of posterior samples per image.
            generator: Optional ``torch.Generator`` for the posterior noises.

        Returns:
            The ELBO estimate with shape ``(B,)``.

        Raises:
            TypeError: If ``x`` is not a tensor of the model's dtype.
            ValueError: If ``x`` has the wrong shape or ``num_samples`` is not positive.

        Examples:
            >>> vae = LadderVAE(MultiLayerGenerator(latent_sizes=(4,), num_filters=4))
            >>> vae.elbo(torch.zeros(2, 3, 32, 32), num_samples=3).shape
            torch.Size([2])
        """
        self._check_inputs(x, num_samples)
        return self._elbo_samples(x, beta=1.0, num_samples=num_samples, generator=generator).mean(
            0
        )

    def loss(
        self,
        x: Tensor,
        *,
        beta: float = 1.0,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        r"""Training loss: the negative mean ELBO with the KL terms scaled by ``beta``.

        $$
        \mathcal{L} = -\frac{1}{B} \sum_b \frac{1}{S} \sum_s \Big[\log \mathcal{N}
        \big(x_b; g(\epsilon^{(s)}_b), \sigma^2 I\big)
        - \beta \sum_l \mathrm{KL}_l\Big]
        $$

        Sønderby et al. warm up $\beta$ linearly from 0 to 1 over the first epochs; the
        trainer owns that schedule and passes the current value. ``beta=1`` is the plain
        negative ELBO.

        Arguments:
            x: Images in $[-1, 1]$ with shape ``(B, C, H, W)``.
            beta: KL weight $\beta \ge 0$.
            num_samples: Number S of posterior samples per image.
            generator: Optional ``torch.Generator`` for the posterior noises.

        Returns:
            A scalar tensor (shape ``()``).

        Raises:
            ValueError: If ``beta`` is negative or not finite, or as `elbo`.

        Examples:
            >>> vae = LadderVAE(MultiLayerGenerator(latent_sizes=(4,), num_filters=4))
            >>> vae.loss(torch.zeros(2, 3, 32, 32), beta=0.1).shape
            torch.Size([])
        """
        if isinstance(beta, bool) or not isinstance(beta, (int, float)):
            raise ArgumentTypeError(
                f"beta must be a float; received {beta!r} ({type(beta).__name__})."
            )
        if not (math.isfinite(beta) and beta >= 0):
            raise ArgumentError(
                f"beta must be a finite float >= 0; received {beta!r}. Use 1.0 for the plain "
                "ELBO, or a warm-up value in [0, 1]."
            )
        self._check_inputs(x, num_samples)
        values = self._elbo_samples(
            x, beta=float(beta), num_samples=num_samples, generator=generator
        )
        return -values.mean()

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        r"""Posterior mean noises, in the generator's latent convention.

        Top-down, every layer takes its conditional posterior mean $\epsilon_l = m_l$
        given the mean values of the layers above (all $\xi_l = 0$).

        Arguments:
            x: Images in $[-1, 1]$ with shape ``(B, C, H, W)``.

        Returns:
            Latent dict with ``z["z{l}"]`` of shape ``(B, d_l)``, so that
            ``generator.decode(encode(x))`` is `reconstruct`.

        Examples:
            >>> vae = LadderVAE(MultiLayerGenerator(latent_sizes=(4, 8), num_filters=4))
            >>> {k: tuple(v.shape) for k, v in vae.encode(torch.zeros(2, 3, 32, 32)).items()}
            {'z2': (2, 4), 'z1': (2, 8)}
        """
        self._check_inputs(x, 1)
        draw = self._posterior(x, 1, False, None)
        return {name: value[0] for name, value in draw.z.items()}

    def reconstruct(self, x: Tensor) -> Tensor:
        r"""Reconstruction $g(\bar\epsilon)$ from the posterior mean noises.

        Arguments:
            x: Images in $[-1, 1]$ with shape ``(B, C, H, W)``.

        Returns:
            The reconstruction with shape ``(B, C, H, W)``.

        Examples:
            >>> vae = LadderVAE(MultiLayerGenerator(latent_sizes=(4,), num_filters=4))
            >>> vae.reconstruct(torch.zeros(2, 3, 32, 32)).shape
            torch.Size([2, 3, 32, 32])
        """
        self._check_inputs(x, 1)
        return self._posterior(x, 1, False, None).mean[0]

    def forward(self, x: Tensor) -> Tensor:
        r"""Same as `elbo` with one sample: the per-example ELBO, shape ``(B,)``.

        Arguments:
            x: Images in $[-1, 1]$ with shape ``(B, C, H, W)``.

        Returns:
            The ELBO estimate with shape ``(B,)``.
        """
        return self.elbo(x)
