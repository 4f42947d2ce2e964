r"""The multi-layer top-down generator of the paper (Appendix 7.2, Table 4).

The model has $L$ stochastic layers, top layer $z_L$ and bottom layer $z_1$,
and the image $x = z_0$:

$$
z_L \sim \mathcal{N}(0, I_{d_L}), \qquad
z_l = \mu_l(h_{l+1}) + \sigma_l(h_{l+1}) \otimes \epsilon_l, \quad
\epsilon_l \sim \mathcal{N}(0, I_{d_l}), \quad l = L-1, \dots, 1,

x \mid z \sim \mathcal{N}\big(g(z), \sigma^2 I\big), \qquad
g(z) = \tanh\big(o_0(h_1)\big),
$$

where $h_{l+1} = d_l(p_l(z_{l+1})) + h_{l+2}$ is the residual stream of deterministic
features ($h_{L+1} = 0$; ``z_{l+1,d}`` in Table 4), $p_l$ is a projection,
$d_l$ a residual convolution block, $\mu_l, \sigma_l$ heads and $o_0$ the output
layer.

Inference runs over the standard-normal noises $\epsilon = (\epsilon_L, \dots,
\epsilon_1)$ with $\epsilon_L := z_L$, as in the authors' code: all of them have an
$\mathcal{N}(0, I)$ prior, so the log joint is

$$
\log p(x, \epsilon) = \sum_{l=1}^{L} \log \mathcal{N}(\epsilon_l; 0, I_{d_l})
+ \log \mathcal{N}\big(x; g(\epsilon), \sigma^2 I\big).
$$

References:
    Learning Multi-layer Latent Variable Model via Variational Optimization of Short Run MCMC
    for Approximate Inference (Nijkamp, Pang, Han, Zhou, Zhu and Wu, 2020),
    https://arxiv.org/abs/1912.01909
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from shortinfer._checks import ArgumentError, ArgumentTypeError
from shortinfer.likelihoods import gaussian_log_likelihood, standard_normal_log_prob
from shortinfer.models._layers import Head, Projection, ResidualBlock, is_int, positive_scale

__all__ = ["IMAGE_SIZES", "MultiLayerGenerator", "latent_sizes_for"]

#: Image sizes with a documented layout; each is 4 times the projection's spatial size.
IMAGE_SIZES = (28, 32, 64)
_CHANNELS = (1, 3)


def latent_sizes_for(num_layers: int, bottom_size: int) -> tuple[int, ...]:
    r"""Latent sizes $(d_L, \dots, d_1)$ that halve from the bottom layer up.

    $d_l = \max(1, d_1 / 2^{l-1})$, so ``bottom_size=128`` with three layers gives
    Table 4's ``(32, 64, 128)``. The paper states sizes only for L = 3; this rule extends them
    to other L. ``shortinfer train --num-layers`` and the benchmark presets both use it.

    Arguments:
        num_layers: L, at least 1.
        bottom_size: $d_1$, the size of the layer closest to the image.

    Returns:
        The sizes from the top layer down, a tuple of length L.

    Raises:
        ValueError: If ``num_layers`` or ``bottom_size`` is not positive.

    Examples:
        >>> latent_sizes_for(3, 128)
        (32, 64, 128)
        >>> latent_sizes_for(5, 32)
        (2, 4, 8, 16, 32)
    """
    if num_layers < 1 or bottom_size < 1:
        raise ArgumentError(
            f"num_layers and bottom_size must be positive; received num_layers={num_layers}, "
            f"bottom_size={bottom_size}."
        )
    return tuple(max(1, bottom_size >> (layer - 1)) for layer in range(num_layers, 0, -1))


class MultiLayerGenerator(nn.Module):
    r"""Multi-layer top-down generator $p(x, \epsilon)$ of the paper (Table 4).

    Architecture, for images of size $H = W \in \{28, 32, 64\}$ and $n_f$ filters
    (stage $l$ runs from the top, $l = L - 1$, down to $l = 0$):

    1. $z_L = \epsilon_L$, shape ``(N, d_L)``.
    2. Projection $p_l(z_{l+1})$: ``Linear(d_{l+1}, n_f * H/4 * W/4)``, reshape to
       ``(N, n_f, H/4, W/4)``, GELU, then ``ConvTranspose2d(n_f, n_f, 4, stride=2, padding=1)``
       to ``(N, n_f, H/2, W/2)``: 14x14 for 28px, 16x16 for 32px (as in Table 4), 32x32 for
       64px.
    3. Residual stream $h_{l+1} = d_l(p_l(z_{l+1})) + h_{l+2}$ with
       $d_l(u) = u + \mathrm{conv}(\mathrm{GELU}(\mathrm{conv}(\mathrm{GELU}(u))))$
       (two 3x3 convs) and $h_{L+1} = 0$.
    4. For $l \ge 1$: $z_l = \mu_l(h_{l+1}) + \sigma_l(h_{l+1}) \otimes
       \epsilon_l$, where each of $\mu_l$ and $\sigma_l$ is a
       ``Conv2d(n_f, n_f, 4, stride=2, padding=1)``, GELU and ``Linear(n_f * H/4 * W/4,
       d_l)``, and $\sigma_l = \mathrm{softplus}(\cdot) + 10^{-3}$ is positive.
    5. $g(z) = \tanh(o_0(h_1))$ with
       $o_0 = $ ``ConvTranspose2d(n_f, C, 4, stride=2, padding=1)``, shape
       ``(N, C, H, W)`` in $[-1, 1]$.

    No normalisation layers are used, so every example is computed independently of the others
    in its batch and the model is safe under ``torch.func`` transforms (``grad``, ``vmap``,
    ``jacrev``, ``jvp``).

    **Latent convention.** A latent is a dict of the standard-normal noises,
    ``z = {"zL": eps_L, ..., "z1": eps_1}`` with ``z["z{l}"]`` of shape ``(*batch, d_l)``.
    Keys are ordered from the top layer down, the same order as ``latent_sizes`` and
    `latent_shapes`, which fixes the order of a flattened latent. The value under
    ``"z{l}"`` is the noise $\epsilon_l$, not the layer value $z_l$ (they coincide
    for the top layer); every entry has an $\mathcal{N}(0, I)$ prior.

    Arguments:
        image_size: Height and width of the images, one of 28, 32 or 64.
        channels: Number of image channels, 1 (grey) or 3 (colour).
        latent_sizes: Latent dimensions from the top layer down, $(d_L, \dots, d_1)$;
            $L$ is its length. Table 4 uses ``(32, 64, 128)``; an $L = 5$ model is
            e.g. ``(64, 64, 64, 96, 128)``; ``(128,)`` gives a single-layer generator.
        num_filters: Number of feature channels $n_f$.
        sigma: Standard deviation $\sigma$ of the Gaussian observation noise. A plain
            float attribute: a trainer anneals it by assigning ``model.sigma = 0.15``
            (Appendix 7.1 anneals it to 0.15). It is not a parameter or buffer, so it is not in
            ``state_dict()``; it is in `config`.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If ``image_size``, ``channels``, ``latent_sizes``, ``num_filters`` or
            ``sigma`` is out of range.

    Examples:
        >>> model = MultiLayerGenerator(image_size=32, channels=3, latent_sizes=(8, 16),
        ...                             num_filters=8)
        >>> model.latent_shapes
        {'z2': (8,), 'z1': (16,)}
        >>> z = model.sample_latents(4)
        >>> model.decode(z).shape
        torch.Size([4, 3, 32, 32])
        >>> x = model.sample_images(4)
        >>> model.log_joint(x, z).shape
        torch.Size([4])

    References:
        Learning Multi-layer Latent Variable Model via Variational Optimization of Short Run
        MCMC for Approximate Inference (Nijkamp, Pang, Han, Zhou, Zhu and Wu, 2020),
        https://arxiv.org/abs/1912.01909
    """

    def __init__(
        self,
        *,
        image_size: int = 32,
        channels: int = 3,
        latent_sizes: Sequence[int] = (32, 64, 128),
        num_filters: int = 64,
        sigma: float = 0.3,
    ) -> None:
        super().__init__()
        if not is_int(image_size) or image_size not in IMAGE_SIZES:
            raise ArgumentError(
                f"image_size must be one of {IMAGE_SIZES}; received {image_size!r}. Resize the "
                "images to 28, 32 or 64 pixels (the layout uses H/4 x W/4 projections)."
            )
        if not is_int(channels) or channels not in _CHANNELS:
            raise ArgumentError(f"channels must be 1 (grey) or 3 (colour); received {channels!r}.")
        if isinstance(latent_sizes, (str, bytes)) or not isinstance(latent_sizes, Sequence):
            raise ArgumentTypeError(
                f"latent_sizes must be a sequence of ints from the top layer down; received "
                f"{latent_sizes!r} ({type(latent_sizes).__name__}). Pass e.g. (32, 64, 128)."
            )
        if len(latent_sizes) == 0:
            raise ArgumentError(
                "latent_sizes is empty; give at least one latent layer, e.g. latent_sizes=(128,) "
                "for a single-layer generator or (32, 64, 128) for Table 4."
            )
        for index, size in enumerate(latent_sizes):
            if not is_int(size):
                raise ArgumentTypeError(
                    f"latent_sizes[{index}] must be an int; received {size!r} "
                    f"({type(size).__name__}). Pass e.g. latent_sizes=(32, 64, 128)."
                )
            if size <= 0:
                raise ArgumentError(
                    f"latent_sizes[{index}] must be positive; received {size} in "
                    f"latent_sizes={tuple(latent_sizes)}."
                )
        if not is_int(num_filters):
            raise ArgumentTypeError(
                f"num_filters must be an int; received {num_filters!r} "
                f"({type(num_filters).__name__}). The paper uses num_filters=64."
            )
        if num_filters <= 0:
            raise ArgumentError(
                f"num_filters must be positive; received {num_filters}. The paper uses 64."
            )
        self.image_size = image_size
        self.channels = channels
        self.latent_sizes = tuple(int(s) for s in latent_sizes)
        self.num_filters = num_filters
        self.sigma = sigma  # validated by the property setter

        base_size = image_size // 4
        feature_size = image_size // 2
        sizes = self.latent_sizes
        num_layers = len(sizes)
        # Stage k (0 = top) projects layer L - k and, for k < L - 1, emits layer L - k - 1.
        self.projections = nn.ModuleList(
            [Projection(size, num_filters, base_size) for size in sizes]
        )
        self.blocks = nn.ModuleList([ResidualBlock(num_filters) for _ in sizes])
        self.mean_heads = nn.ModuleList(
            [Head(num_filters, feature_size, size) for size in sizes[1:]]
        )
        self.scale_heads = nn.ModuleList(
            [Head(num_filters, feature_size, size) for size in sizes[1:]]
        )
        self.output = nn.ConvTranspose2d(num_filters, channels, 4, stride=2, padding=1)
        self._names = tuple(f"z{num_layers - k}" for k in range(num_layers))

    # ------------------------------------------------------------------ configuration

    @property
    def sigma(self) -> float:
        r"""Observation noise standard deviation $\sigma$ (a positive float, settable)."""
        return self._sigma

    @sigma.setter
    def sigma(self, value: float) -> None:
        if isinstance(value, Tensor):
            if value.numel() != 1:
                raise ArgumentError(
                    f"sigma must be a positive scalar; received a tensor with shape "
                    f"{tuple(value.shape)}. Pass a float such as 0.3."
                )
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ArgumentTypeError(
                f"sigma must be a positive float; received {value!r} ({type(value).__name__})."
            )
        if not (math.isfinite(value) and value > 0):
            raise ArgumentError(
                f"sigma must be a positive finite float; received {value!r}. The paper starts "
                "at 0.3 and anneals to 0.15."
            )
        self._sigma = float(value)

    @property
    def num_layers(self) -> int:
        """Number of stochastic layers $L$."""
        return len(self.latent_sizes)

    @property
    def latent_shapes(self) -> dict[str, tuple[int, ...]]:
        r"""Per-example shape of each latent block, ordered from the top layer down.

        Returns:
            ``{"zL": (d_L,), ..., "z1": (d_1,)}``; the order fixes the flat latent order.

        Examples:
            >>> MultiLayerGenerator(latent_sizes=(32, 64, 128), num_filters=4).latent_shapes
            {'z3': (32,), 'z2': (64,), 'z1': (128,)}
        """
        return {name: (size,) for name, size in zip(self._names, self.latent_sizes, strict=True)}

    @property
    def config(self) -> dict[str, Any]:
        r"""Constructor arguments as plain JSON-serialisable types.

        ``MultiLayerGenerator.from_config(model.config)`` builds an identically shaped model
        (load the weights with ``load_state_dict``). ``sigma`` is the current value, so an
        annealed model is reproduced; it is not part of the architecture and
        `check_config` ignores it.

        Returns:
            A dict with keys ``image_size``, ``channels``, ``latent_sizes`` (a list),
            ``num_filters`` and ``sigma``.

        Examples:
            >>> MultiLayerGenerator(image_size=28, channels=1, latent_sizes=(16,),
            ...                     num_filters=4).config
            {'image_size': 28, 'channels': 1, 'latent_sizes': [16], 'num_filters': 4, 'sigma': 0.3}
        """
        return {
            "image_size": self.image_size,
            "channels": self.channels,
            "latent_sizes": list(self.latent_sizes),
            "num_filters": self.num_filters,
            "sigma": self.sigma,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MultiLayerGenerator:
        r"""Build a generator from a dict produced by `config`.

        Arguments:
            config: The configuration dict; missing keys take the constructor defaults.

        Returns:
            A freshly initialised `MultiLayerGenerator`.

        Raises:
            TypeError: If ``config`` is not a mapping.
            ValueError: If ``config`` has unknown keys or invalid values.

        Examples:
            >>> model = MultiLayerGenerator(latent_sizes=(8, 16), num_filters=4)
            >>> MultiLayerGenerator.from_config(model.config).config == model.config
            True
        """
        if not isinstance(config, Mapping):
            raise ArgumentTypeError(
                f"config must be a dict such as model.config; received {type(config).__name__}."
            )
        known = {"image_size", "channels", "latent_sizes", "num_filters", "sigma"}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ArgumentError(
                f"config has unknown keys {unknown}; expected a subset of {sorted(known)}. "
                "Was it written by a different model class?"
            )
        return cls(**dict(config))

    def check_config(self, config: Mapping[str, Any]) -> None:
        r"""Raise if ``config`` describes a different architecture than this model.

        Use it when loading a checkpoint: ``sigma`` is ignored (it is annealed during
        training), every other key must match.

        Arguments:
            config: A dict produced by `config`, e.g. stored in a checkpoint.

        Raises:
            ValueError: Naming each mismatched key with both values.

        Examples:
            >>> model = MultiLayerGenerator(latent_sizes=(8, 16), num_filters=4)
            >>> model.check_config({**model.config, "sigma": 0.15})  # passes
        """
        if not isinstance(config, Mapping):
            raise ArgumentTypeError(
                f"config must be a dict such as model.config; received {type(config).__name__}."
            )
        own = self.config
        mismatched = []
        for key in sorted(set(own) | set(config)):
            if key == "sigma":
                continue
            theirs = config.get(key, "<missing>")
            if isinstance(theirs, tuple):
                theirs = list(theirs)
            if theirs != own.get(key, "<missing>"):
                mismatched.append(f"{key}: checkpoint {theirs!r} vs model {own.get(key)!r}")
        if mismatched:
            raise ArgumentError(
                "configuration mismatch: " + "; ".join(mismatched) + ". Build the model with "
                "MultiLayerGenerator.from_config(config) before loading these weights."
            )

    def extra_repr(self) -> str:
        return (
            f"image_size={self.image_size}, channels={self.channels}, "
            f"latent_sizes={self.latent_sizes}, num_filters={self.num_filters}, "
            f"sigma={self.sigma}"
        )

    # ------------------------------------------------------------------ validation helpers

    def _parameter_dtype(self) -> torch.dtype:
        return self.output.weight.dtype

    def _check_latents(self, z: object) -> torch.Size:
        """Validate a latent dict and return its common batch shape."""
        if not isinstance(z, Mapping):
            raise ArgumentTypeError(
                f"z must be a dict of latent tensors with keys {list(self._names)}; received "
                f"{type(z).__name__}. Use model.sample_latents(batch_size) for an example."
            )
        if set(z) != set(self._names):
            raise ArgumentError(
                f"z must have exactly the keys {list(self._names)} (top layer first); received "
                f"{list(z)}. Use model.latent_shapes for the expected keys and shapes."
            )
        batch_shape = None
        dtype = self._parameter_dtype()
        for name, size in zip(self._names, self.latent_sizes, strict=True):
            value = z[name]
            if not isinstance(value, Tensor):
                raise ArgumentTypeError(
                    f"z[{name!r}] must be a tensor; received {type(value).__name__}."
                )
            if value.dim() < 1 or value.shape[-1] != size:
                raise ArgumentError(
                    f"z[{name!r}] must have shape (B, {size}); received {tuple(value.shape)}. "
                    f"Expected shapes: {self.latent_shapes} after the batch dimension."
                )
            if value.dtype != dtype:
                raise ArgumentTypeError(
                    f"z[{name!r}] has dtype {value.dtype} but the model's parameters are "
                    f"{dtype}; cast the latents with .to({dtype}) or the model with .to(...)."
                )
            if batch_shape is None:
                batch_shape = value.shape[:-1]
            elif value.shape[:-1] != batch_shape:
                raise ArgumentError(
                    f"all latent blocks must share the batch shape; z[{self._names[0]!r}] has "
                    f"batch shape {tuple(batch_shape)} but z[{name!r}] has "
                    f"{tuple(value.shape[:-1])}."
                )
        return torch.Size(batch_shape if batch_shape is not None else ())

    def _check_images(self, x: object) -> None:
        expected = (self.channels, self.image_size, self.image_size)
        if not isinstance(x, Tensor):
            raise ArgumentTypeError(
                f"x must be a tensor with shape (B, C, H, W) = (B, {expected[0]}, {expected[1]}, "
                f"{expected[2]}); received {type(x).__name__}."
            )
        if x.dim() < 3 or tuple(x.shape[-3:]) != expected:
            raise ArgumentError(
                f"x must have shape (B, C, H, W) = (B, {expected[0]}, {expected[1]}, "
                f"{expected[2]}); received {tuple(x.shape)}. Images are channels-first, scaled "
                "to [-1, 1]; add a batch dimension with x[None] for a single image."
            )

    # ------------------------------------------------------------------ the model

    def _top_down(
        self, first: Tensor, choose_noise: Callable[[int, Tensor, Tensor], Tensor]
    ) -> Tensor:
        r"""Run the top-down pass on flat ``(N, d_L)`` inputs and return ``g`` as ``(N, C, H, W)``.

        ``choose_noise(k, mean, scale)`` returns $\epsilon$ for stage ``k + 1`` (layer
        ``L - k - 1``) given the prior mean and scale, each with shape ``(N, d)``; the Ladder-VAE
        uses this hook to draw from its posterior.
        """
        stream = self.blocks[0](self.projections[0](first))
        for k in range(1, self.num_layers):
            mean = self.mean_heads[k - 1](stream)
            scale = positive_scale(self.scale_heads[k - 1](stream))
            z_layer = mean + scale * choose_noise(k - 1, mean, scale)
            stream = self.blocks[k](self.projections[k](z_layer)) + stream
        return torch.tanh(self.output(stream))

    def decode(self, z: Mapping[str, Tensor]) -> Tensor:
        r"""The image mean $g(z)$, a deterministic function of the noises.

        Arguments:
            z: Latent dict ``{"zL": ..., "z1": ...}`` with ``z["z{l}"]`` of shape
                ``(*batch, d_l)``; ``*batch`` is e.g. ``(B,)`` or ``(S, B)`` and must be the same
                for every key.

        Returns:
            The mean image in $[-1, 1]$, with shape ``(*batch, C, H, W)``.

        Raises:
            TypeError: If ``z`` is not a dict of tensors of the model's dtype.
            ValueError: If keys or shapes do not match `latent_shapes`.

        Examples:
            >>> model = MultiLayerGenerator(image_size=28, channels=1, latent_sizes=(4, 8),
            ...                             num_filters=4)
            >>> model.decode(model.sample_latents(2)).shape
            torch.Size([2, 1, 28, 28])
        """
        batch_shape = self._check_latents(z)
        flat = {name: z[name].reshape(-1, z[name].shape[-1]) for name in self._names}
        noises = [flat[name] for name in self._names[1:]]
        image = self._top_down(flat[self._names[0]], lambda k, mean, scale: noises[k])
        return image.reshape(*batch_shape, *image.shape[1:])

    def forward(self, z: Mapping[str, Tensor]) -> Tensor:
        r"""Same as `decode`: the image mean $g(z)$ with shape ``(*batch, C, H, W)``.

        Arguments:
            z: Latent dict with ``z["z{l}"]`` of shape ``(*batch, d_l)``.

        Returns:
            The mean image with shape ``(*batch, C, H, W)``.

        Examples:
            >>> model = MultiLayerGenerator(latent_sizes=(4,), num_filters=4)
            >>> model(model.sample_latents(3)).shape
            torch.Size([3, 3, 32, 32])
        """
        return self.decode(z)

    def log_joint(
        self, x: Tensor, z: Mapping[str, Tensor], *, mask: Tensor | None = None
    ) -> Tensor:
        r"""Log joint density of images and noises, one value per example, in nats.

        $$
        \log p(x, \epsilon) = \sum_{l=1}^{L} \log \mathcal{N}(\epsilon_l; 0, I_{d_l})
        + \sum_j m_j \log \mathcal{N}\big(x_j; g_j(\epsilon), \sigma^2\big)
        $$

        with $\sigma$ = ``self.sigma`` and $m$ the mask (all ones without one);
        normalising constants are included. Example ``b`` depends only on ``x[b]`` and
        ``z[key][b]``, so per-example gradients and Jacobians can be taken over the batch.

        Arguments:
            x: Images in $[-1, 1]$ with shape ``(B, C, H, W)`` (any leading batch shape
                broadcasting with the latents' is accepted, e.g. ``(S, B, C, H, W)``).
            z: Latent dict with ``z["z{l}"]`` of shape ``(B, d_l)``, or ``(S, B, d_l)`` for
                ``S`` samples per image.
            mask: Optional tensor broadcastable to ``x``, 1 where a pixel is observed and 0
                where it is missing (inpainting); missing pixels drop out of the likelihood.

        Returns:
            The log joint with shape ``(B,)`` (or ``(S, B)``).

        Raises:
            TypeError: If ``x`` or ``z`` is not a tensor / dict of tensors.
            ValueError: If ``x`` is not shaped ``(B, C, H, W)`` for this model, if ``z`` does not
                match `latent_shapes`, or if ``mask`` does not broadcast to ``x``.

        Examples:
            >>> model = MultiLayerGenerator(latent_sizes=(4, 8), num_filters=4)
            >>> z = model.sample_latents(2)
            >>> x = torch.zeros(2, 3, 32, 32)
            >>> model.log_joint(x, z).shape
            torch.Size([2])
        """
        self._check_images(x)
        batch_shape = self._check_latents(z)
        try:
            torch.broadcast_shapes(x.shape[:-3], batch_shape)
        except RuntimeError as err:
            raise ArgumentError(
                f"x with batch shape {tuple(x.shape[:-3])} does not match the latents' batch "
                f"shape {tuple(batch_shape)}; pass one latent row per image (z[key] of shape "
                "(B, d) for x of shape (B, C, H, W))."
            ) from err
        mean = self.decode(z)
        log_prior = sum(standard_normal_log_prob(z[name]) for name in self._names)
        log_likelihood = gaussian_log_likelihood(x, mean, self.sigma, mask=mask, event_dims=3)
        return log_prior + log_likelihood

    # ------------------------------------------------------------------ sampling

    def sample_latents(
        self, batch_size: int, *, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        r"""Draw noises from the prior, $\epsilon_l \sim \mathcal{N}(0, I_{d_l})$.

        Arguments:
            batch_size: Number of examples B.
            generator: Optional ``torch.Generator`` for reproducible draws.

        Returns:
            Latent dict with ``z["z{l}"]`` of shape ``(B, d_l)``, on the model's device and dtype.

        Raises:
            ValueError: If ``batch_size`` is not a positive int.

        Examples:
            >>> model = MultiLayerGenerator(latent_sizes=(4, 8), num_filters=4)
            >>> {k: tuple(v.shape) for k, v in model.sample_latents(5).items()}
            {'z2': (5, 4), 'z1': (5, 8)}
        """
        if not is_int(batch_size) or batch_size < 1:
            raise ArgumentError(f"batch_size must be a positive int; received {batch_size!r}.")
        weight = self.output.weight
        return {
            name: torch.randn(
                batch_size, size, generator=generator, device=weight.device, dtype=weight.dtype
            )
            for name, size in zip(self._names, self.latent_sizes, strict=True)
        }

    def sample_images(
        self, batch_size: int, *, generator: torch.Generator | None = None
    ) -> Tensor:
        r"""Draw images from the model, returning the means $g(\epsilon)$ of prior draws.

        The pixel noise $\sigma$ is not added (as for the paper's synthesised images).
        Wrap the call in ``torch.no_grad()`` when gradients are not needed.

        Arguments:
            batch_size: Number of images B.
            generator: Optional ``torch.Generator`` for reproducible draws.

        Returns:
            Images in $[-1, 1]$ with shape ``(B, C, H, W)``.

        Examples:
            >>> model = MultiLayerGenerator(image_size=64, latent_sizes=(4, 8), num_filters=4)
            >>> model.sample_images(2).shape
            torch.Size([2, 3, 64, 64])
        """
        return self.decode(self.sample_latents(batch_size, generator=generator))
