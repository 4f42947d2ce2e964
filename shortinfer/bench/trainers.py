r"""The three learners of the benchmark, one training step each, under one budget.

All methods train the same `shortinfer.models.MultiLayerGenerator` with Adam, the same
step-wise learning-rate decay, the same $\sigma$ annealing (except ABP, whose
$\sigma = 0.3$ is fixed as in Appendix 7.3) and the same number of updates:

* ``"short_run"`` (Algorithm 1 of the paper): draw $z_K \sim q_s(z \mid x)$ with K
  Langevin steps from the prior, then ascend $\frac1B\sum_b \log p_\theta(x_b, z_{K,b})$;
  every $T_s$ updates re-tune s by grid search on the paper's objective (20).
* ``"ladder_vae"``: ascend the Ladder-VAE's ELBO (Sønderby et al. 2016), with a linear KL
  warm-up; the encoder is trained jointly with the generator.
* ``"abp"``: alternating back-propagation with persistent chains (Han et al. 2017): each
  training image keeps its latent, which is moved by 40 Langevin steps of size
  $s = \delta^2/2$ with $\delta = 0.3$ whenever the image is in the batch.

Losses are in nats per image, so Adam sees the same scale for every method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from shortinfer._checks import ChainDivergenceError
from shortinfer.bench.presets import Preset, latent_sizes_for
from shortinfer.langevin import autograd_score, rollout, step_size_from_delta
from shortinfer.models import LadderVAE, MultiLayerGenerator
from shortinfer.posterior import ShortRunPosterior, short_run

__all__ = ["METHODS", "Method", "TrainState", "build_model", "generator_of", "train_step"]

Method = Literal["short_run", "ladder_vae", "abp"]
METHODS: tuple[str, ...] = ("short_run", "ladder_vae", "abp")


@dataclass
class TrainState:
    r"""Everything a cell needs to continue training: saved whole in its checkpoint.

    Attributes:
        model: The generator (short-run, ABP) or the `LadderVAE` around it.
        optimizer: Adam over ``model.parameters()``.
        iteration: Updates done so far.
        step_size: The current Langevin step size s (short-run and ABP).
        chains: ABP's persistent latents, shape ``(N, D)``; ``None`` for other methods.
        elapsed: Training seconds so far, summed over resumptions.
        history: Step-size tuning events ``{"iteration", "step_size"}``.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    iteration: int = 0
    step_size: float = 0.05
    chains: Tensor | None = None
    elapsed: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)

    def state_dict(self) -> dict[str, Any]:
        """A dict for ``torch.save``; see `load_state_dict`."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "iteration": self.iteration,
            "step_size": self.step_size,
            "chains": self.chains,
            "elapsed": self.elapsed,
            "history": self.history,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from `state_dict`, including the global random-number state."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.iteration = int(state["iteration"])
        self.step_size = float(state["step_size"])
        self.chains = state["chains"]
        self.elapsed = float(state["elapsed"])
        self.history = list(state["history"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])


def generator_of(model: nn.Module) -> MultiLayerGenerator:
    """The `MultiLayerGenerator` inside ``model`` (itself, or a Ladder-VAE's)."""
    return model.generator if isinstance(model, LadderVAE) else model  # type: ignore[return-value]


def build_model(
    method: str,
    num_layers: int,
    preset: Preset,
    *,
    image_size: int,
    channels: int,
    num_train: int,
    device: torch.device | str = "cpu",
) -> TrainState:
    r"""A fresh model and optimizer for one cell.

    Arguments:
        method: ``"short_run"``, ``"ladder_vae"`` or ``"abp"``.
        num_layers: L.
        preset: The run's budget and sizes.
        image_size: 28, 32 or 64.
        channels: 1 or 3.
        num_train: Number of training images (ABP keeps one chain per image).
        device: Where to train.

    Returns:
        A `TrainState` at iteration 0.

    Examples:
        >>> from shortinfer.bench.presets import get_preset
        >>> state = build_model("ladder_vae", 1, get_preset("smoke"), image_size=28,
        ...                     channels=1, num_train=10)
        >>> type(state.model).__name__, state.iteration
        ('LadderVAE', 0)
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; received {method!r}.")
    generator = MultiLayerGenerator(
        image_size=image_size,
        channels=channels,
        latent_sizes=latent_sizes_for(num_layers, preset.bottom_latent_size),
        num_filters=preset.num_filters,
        sigma=preset.abp_sigma if method == "abp" else preset.sigma_start,
    )
    model: nn.Module = LadderVAE(generator) if method == "ladder_vae" else generator
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=preset.learning_rates[0])
    state = TrainState(model=model, optimizer=optimizer, step_size=preset.step_size)
    if method == "abp":
        dim = sum(generator.latent_sizes)
        state.chains = torch.randn(num_train, dim, device=device)
        state.step_size = float(step_size_from_delta(preset.abp_delta))
    return state


def _unflatten(generator: MultiLayerGenerator, z: Tensor) -> dict[str, Tensor]:
    names = list(generator.latent_shapes)
    pieces = torch.split(z, [generator.latent_shapes[name][0] for name in names], dim=-1)
    return dict(zip(names, pieces, strict=True))


def short_run_posterior(
    generator: MultiLayerGenerator, x: Tensor, num_steps: int, step_size: float
) -> ShortRunPosterior:
    r"""The short-run posterior $q_s(z \mid x)$ of ``generator`` (inputs not re-validated)."""
    return short_run(
        generator.log_joint,
        x,
        latent_shape=generator.latent_shapes,
        num_steps=num_steps,
        step_size=step_size,
        validate=False,
    )


def short_run_sample(
    generator: MultiLayerGenerator, x: Tensor, num_steps: int, step_size: float
) -> tuple[dict[str, Tensor], float]:
    r"""Draw $z_K \sim q_s(z \mid x)$, halving s until the chain stays finite.

    Returns:
        The latent dict (detached, each ``(B, d_l)``) and the step size that worked.
    """
    for _ in range(10):
        try:
            z = short_run_posterior(generator, x, num_steps, step_size).sample()
            assert isinstance(z, dict)  # the generator's latents are a dict of blocks
            return {name: value.detach() for name, value in z.items()}, step_size
        except ChainDivergenceError:
            step_size /= 2
    raise ChainDivergenceError(
        f"the short-run chain diverged even at step_size={step_size:.3g}; the model is broken "
        "(check the learning rate)."
    )


def tune(
    generator: MultiLayerGenerator,
    x: Tensor,
    num_steps: int,
    step_size: float,
    grid: tuple[float, ...],
) -> float:
    """Grid-search s on images ``x`` with the paper's objective (20); keep s on failure."""
    posterior = short_run_posterior(generator, x, num_steps, step_size)
    try:
        return float(posterior.tune_step_size("grid", grid=list(grid)).step_size)  # type: ignore[arg-type]
    except ChainDivergenceError:
        return step_size


def train_step(
    state: TrainState,
    method: str,
    x: Tensor,
    indices: Tensor,
    preset: Preset,
    *,
    num_steps: int,
) -> dict[str, float]:
    r"""One parameter update of ``method`` on the batch ``x`` (in place on ``state``).

    Arguments:
        state: The cell's state; ``iteration`` is incremented.
        method: ``"short_run"``, ``"ladder_vae"`` or ``"abp"``.
        x: Training images in $[-1, 1]$, with shape ``(B, C, H, W)``.
        indices: Their positions in the training set, shape ``(B,)`` (ABP's chains).
        preset: The run's schedules.
        num_steps: K for short-run inference.

    Returns:
        Loggable numbers: ``loss`` (nats per image), ``lr``, ``sigma``, ``step_size``.
    """
    t = state.iteration
    lr = preset.learning_rate_at(t)
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    generator = generator_of(state.model)
    if method != "abp":
        generator.sigma = preset.sigma_at(t)
    if method == "short_run":
        if preset.tune_every and t % preset.tune_every == 0:
            state.step_size = tune(
                generator,
                x[: preset.tune_batch],
                num_steps,
                state.step_size,
                preset.tune_grid,
            )
            state.history.append({"iteration": t, "step_size": state.step_size})
        z, state.step_size = short_run_sample(generator, x, num_steps, state.step_size)
        loss = -generator.log_joint(x, z).mean()
    elif isinstance(state.model, LadderVAE):
        loss = state.model.loss(x, beta=preset.kl_weight_at(t))
    else:
        assert state.chains is not None
        z0 = state.chains[indices]
        noise = torch.randn(preset.abp_num_steps, *z0.shape, device=z0.device, dtype=z0.dtype)
        steps = torch.full((preset.abp_num_steps, 1), state.step_size, device=z0.device)
        score = autograd_score(lambda z: generator.log_joint(x, _unflatten(generator, z)))
        z_flat = rollout(score, z0, noise, steps).detach()
        if not bool(torch.isfinite(z_flat).all()):
            z_flat = z0  # keep the old chains rather than poison the store
        state.chains[indices] = z_flat
        loss = -generator.log_joint(x, _unflatten(generator, z_flat)).mean()
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    state.optimizer.step()
    state.iteration += 1
    value = float(loss.detach())
    if not math.isfinite(value):
        raise FloatingPointError(
            f"{method} loss became {value} at iteration {t}; lower the learning rates."
        )
    return {"loss": value, "lr": lr, "sigma": generator.sigma, "step_size": state.step_size}
