r"""Learning methods other than short-run inference, pluggable into `shortinfer.train.Trainer`.

`shortinfer.train.Trainer` runs Algorithm 1 of the paper (short-run inference, then a step
on θ) by default. The baselines of the paper's tables train the *same* generator under the
same data order, schedules, checkpoints and logs, with another loss, through a
`TrainingMethod`:

* `LadderVAEMethod`: ascend the Ladder-VAE's ELBO (Sønderby et al. 2016) with a linear KL
  warm-up $\beta_t = \min(1, t / (fT))$; the encoder is trained jointly.
* `PersistentChainsMethod`: alternating back-propagation (Han et al. 2017): every training
  example keeps a latent, moved by $K$ Langevin steps whenever the example is in the batch,
  then $-\frac1m \sum_i \log p_\theta(x_i, z_i)$ is descended.

A method returns the loss of one batch; the trainer checks it is finite, steps the optimiser,
and stores ``method.state_dict()`` in the checkpoint (tensors and plain values only, so
checkpoints stay ``weights_only``-loadable).

References:
    Ladder Variational Autoencoders (Sønderby, Raiko, Maaløe, Sønderby, Winther, 2016),
    https://arxiv.org/abs/1602.02282

    Alternating Back-Propagation for Generator Network (Han, Lu, Zhu, Wu, 2017),
    https://arxiv.org/abs/1606.08571
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, cast, runtime_checkable

import torch
from torch import Tensor, nn

from shortinfer._checks import ArgumentError, ArgumentTypeError
from shortinfer._latents import LatentLayout
from shortinfer.langevin import autograd_score, rollout

__all__ = ["LadderVAEMethod", "PersistentChainsMethod", "TrainingMethod"]


@runtime_checkable
class TrainingMethod(Protocol):
    r"""What `shortinfer.train.Trainer` needs of a learning method besides short-run inference.

    Attributes:
        name: A short label recorded in checkpoints and metrics (e.g. ``"ladder_vae"``).

    Examples:
        >>> isinstance(LadderVAEMethod(), TrainingMethod)
        True
    """

    name: str

    def loss(
        self, model: nn.Module, x: Tensor, rows: Tensor, iteration: int, num_iterations: int
    ) -> Tensor:
        """The scalar loss of batch ``x`` (rows ``rows`` of the training data) at ``iteration``."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The method's own state (tensors and plain values)."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore `state_dict`."""
        ...


class LadderVAEMethod:
    r"""Train a `shortinfer.models.LadderVAE` by its ELBO with a linear KL warm-up.

    $$
    \mathcal{L}_t = -\frac1B \sum_b \Big[\log \mathcal{N}\big(x_b; g(\epsilon_b), \sigma^2
    I\big) - \beta_t \sum_l \mathrm{KL}_l\Big], \qquad
    \beta_t = \min\Big(1, \frac{t}{\max(1, f T)}\Big)
    $$

    Arguments:
        kl_warmup_fraction: $f$, the fraction of the run over which $\beta$ rises from 0
            to 1 (0: $\beta = 1$ throughout).

    Examples:
        >>> from shortinfer.models import LadderVAE, MultiLayerGenerator
        >>> vae = LadderVAE(MultiLayerGenerator(image_size=28, channels=1, latent_sizes=(2,),
        ...                                     num_filters=2))
        >>> method = LadderVAEMethod(kl_warmup_fraction=0.1)
        >>> method.kl_weight(5, 100), method.kl_weight(50, 100)
        (0.5, 1.0)
        >>> method.loss(vae, torch.zeros(3, 1, 28, 28), torch.arange(3), 0, 100).shape
        torch.Size([])
    """

    name = "ladder_vae"

    def __init__(self, *, kl_warmup_fraction: float = 0.1) -> None:
        if not 0 <= kl_warmup_fraction <= 1:
            raise ArgumentError(
                f"kl_warmup_fraction must be in [0, 1]; received {kl_warmup_fraction!r}."
            )
        self.kl_warmup_fraction = float(kl_warmup_fraction)

    def kl_weight(self, iteration: int, num_iterations: int) -> float:
        r"""$\beta_t$ at ``iteration`` of ``num_iterations``."""
        if self.kl_warmup_fraction <= 0:
            return 1.0
        span = max(1.0, self.kl_warmup_fraction * num_iterations)
        return float(min(1.0, iteration / span))

    def loss(
        self, model: nn.Module, x: Tensor, rows: Tensor, iteration: int, num_iterations: int
    ) -> Tensor:
        """The warmed-up negative ELBO of ``x`` (``rows`` is unused)."""
        loss = getattr(model, "loss", None)
        if not callable(loss):
            raise ArgumentTypeError(
                f"LadderVAEMethod trains a shortinfer.models.LadderVAE; received "
                f"{type(model).__name__}, which has no loss(x, beta=...)."
            )
        return cast(Tensor, loss(x, beta=self.kl_weight(iteration, num_iterations)))

    def state_dict(self) -> dict[str, Any]:
        """No state beyond the model's."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Nothing to restore."""


class PersistentChainsMethod:
    r"""Alternating back-propagation: one persistent latent per training example.

    When example $i$ is in the batch, its latent $z_i$ (initialised from $\mathcal{N}(0, I)$)
    takes $K$ Langevin steps $z \leftarrow z + s\nabla_z \log p_\theta(x_i, z) + \sqrt{2s}
    \,\epsilon$ and is stored back; then θ descends
    $-\frac1m \sum_i \log p_\theta(x_i, z_i)$. A chain that turns non-finite keeps its old
    value (and the loss uses it), so one bad step cannot poison the store.

    Arguments:
        num_examples: N, the number of training examples (one chain each).
        latent_shape: The model's per-example latent shape (or dict of block shapes).
        num_steps: K (40 in Han et al.'s code).
        step_size: $s$; Han et al. write $\delta = 0.3$, i.e. $s = \delta^2/2 = 0.045$.
        seed: Seed of the chains' initial values and noise.

    Examples:
        >>> from shortinfer.models import MultiLayerGenerator
        >>> model = MultiLayerGenerator(image_size=28, channels=1, latent_sizes=(2,),
        ...                             num_filters=2)
        >>> method = PersistentChainsMethod(10, model.latent_shapes, num_steps=3)
        >>> method.chains.shape
        torch.Size([10, 2])
        >>> method.loss(model, torch.zeros(4, 1, 28, 28), torch.arange(4), 0, 5).shape
        torch.Size([])
    """

    name = "abp"

    def __init__(
        self,
        num_examples: int,
        latent_shape: Any,
        *,
        num_steps: int = 40,
        step_size: float = 0.045,
        seed: int = 0,
    ) -> None:
        self.layout = LatentLayout(latent_shape)
        self.num_steps = int(num_steps)
        self.step_size = float(step_size)
        self.seed = int(seed)
        generator = torch.Generator().manual_seed(seed)
        self.chains = torch.randn(num_examples, self.layout.dim, generator=generator)
        self._generator = generator

    def loss(
        self, model: nn.Module, x: Tensor, rows: Tensor, iteration: int, num_iterations: int
    ) -> Tensor:
        """Move the batch's chains by K Langevin steps, then the negative mean log-joint."""
        log_joint = cast(Callable[[Tensor, Any], Tensor], model.log_joint)
        unflatten = self.layout.unflatten
        rows_cpu = rows.cpu()
        z0 = self.chains[rows_cpu].to(x.device, x.dtype)
        noise = torch.randn(self.num_steps, *z0.shape, generator=self._generator)
        steps = torch.full((self.num_steps, 1), self.step_size, dtype=x.dtype, device=x.device)
        from shortinfer.train._trainer import frozen_parameters  # trainer imports this module

        with frozen_parameters(model):
            score = autograd_score(lambda z: log_joint(x, unflatten(z)))
            z = rollout(score, z0, noise.to(x.device, x.dtype), steps).detach()
        finite = torch.isfinite(z).all(-1, keepdim=True)
        z = torch.where(finite, z, z0)
        self.chains[rows_cpu] = z.cpu().to(self.chains.dtype)
        return -log_joint(x, unflatten(z)).mean()

    def state_dict(self) -> dict[str, Any]:
        """The chains and the noise generator's state."""
        return {"chains": self.chains.clone(), "generator": self._generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the chains and the noise stream."""
        chains = state["chains"]
        if tuple(chains.shape) != tuple(self.chains.shape):
            raise ArgumentError(
                f"saved chains have shape {tuple(chains.shape)}; this run has "
                f"{tuple(self.chains.shape)} (another data set size or latent shape)."
            )
        self.chains = chains.clone()
        self._generator.set_state(state["generator"])
