r"""Algorithm 1 of the paper: learning a latent-variable model with short-run inference.

Each iteration $t = 0, \dots, T - 1$ (Section 4.4, Algorithm 1):

1. draw a batch $\{x_i\}_{i=1}^m$;
2. draw $z_{i,0} \sim p(z)$;
3. run $K$ Langevin steps with step size $s$ to get $z_{i,K}$
   (`shortinfer.short_run`, `shortinfer.ShortRunPosterior.sample`);
4. take one Adam step on

   $$
   \mathcal{L}(\theta) = -\frac1m \sum_{i=1}^m \log p_\theta(x_i, z_{i,K}),
   \qquad z_{i,K} \text{ detached}
   $$

   (equation (21));
5. every $T_s$ iterations, re-tune $s$ on the current batch by minimising
   equation (20) (`shortinfer.ShortRunPosterior.tune_step_size`). Following Section
   4.4 ("(1) update s ... (2) update θ"), the tuning runs at the *start* of iterations
   $t \equiv 0 \pmod{T_s}$, so the first update already uses a tuned step size.

`train_step` is steps 2-4 as a plain function; `Trainer` adds batching, the
learning-rate and $\sigma$ schedules (`shortinfer.train._schedules`), step-size
tuning and its history, logging, checkpoints, resuming and data-parallel training.

The model can be the reference `shortinfer.models.MultiLayerGenerator` or any
``nn.Module`` with a method ``log_joint(x, z) -> (B,)`` and either an attribute
``latent_shapes`` (a dict of block name to per-example shape, or one shape) or an explicit
``latent_shape=`` argument. A model with a float attribute ``sigma`` gets it annealed; a
model with ``decode(z)`` gets the batch reconstruction error logged.

References:
    Learning Multi-layer Latent Variable Model via Variational Optimization of Short Run MCMC
    for Approximate Inference (Nijkamp, Pang, Han, Zhou, Zhu and Wu, 2020),
    https://arxiv.org/abs/1912.01909
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, NamedTuple, cast

import torch
from torch import Tensor, nn

from shortinfer._atomic import remove_stale_temporaries
from shortinfer._checks import (
    ArgumentError,
    ArgumentTypeError,
    ChainDivergenceError,
    ExistingFileError,
    ShortinferError,
    check_int,
)
from shortinfer._compile import CompileOption, check_compile
from shortinfer._lock import folder_lock
from shortinfer._step_size import delta_of, describe_step_size
from shortinfer._version import __version__
from shortinfer.objectives import EntropyEstimator
from shortinfer.posterior import short_run
from shortinfer.train._checkpoint import (
    CHECKPOINT_FORMAT,
    LATEST_NAME,
    CheckpointError,
    check_finite_weights,
    check_model_compatible,
    check_trainer_checkpoint,
    compare_settings,
    load_checkpoint,
    resolve_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from shortinfer.train._contract import (
    Decodes,
    HasConfig,
    HasSigma,
    LogJointModel,
    latent_shape_of,
)
from shortinfer.train._distributed import (
    LogJointModule,
    broadcast_from_main,
    derive_seed,
    get_rank,
    get_world_size,
    is_distributed,
    mean_all_reduce,
    shard_indices,
)
from shortinfer.train._methods import TrainingMethod
from shortinfer.train._schedules import LearningRateSchedule, SigmaSchedule

__all__ = [
    "METRICS_NAME",
    "StepOutput",
    "StepSizeRecord",
    "StepSizeTuning",
    "TrainResult",
    "Trainer",
    "TrainingDivergedError",
    "frozen_parameters",
    "train_step",
]

#: File name of the JSON-lines metrics log inside the output folder.
METRICS_NAME = "metrics.jsonl"

StepSizeValue = float | Tensor | dict[str, Any]
LatentShape = Sequence[int] | Mapping[str, Sequence[int]]


class TrainingDivergedError(ShortinferError, FloatingPointError):
    """The loss, a short-run chain or the parameters became non-finite; training stopped."""


@dataclass(frozen=True)
class StepSizeTuning:
    r"""How and how often `Trainer` re-tunes the step size (Algorithm 1, step 5).

    Validated once, when built; the entropy estimate and its options are one
    `shortinfer.objectives.EntropyEstimator`.

    Attributes:
        method: ``"bracket"``, ``"grid"`` or ``"gradient"`` (Adam on $\log s$ through the
            chain); ``None``: ``"grid"`` with a ``grid``, else ``"bracket"``; see
            `shortinfer.ShortRunPosterior.tune_step_size`.
        interval: $T_s$; tuning runs at iterations $0, T_s, 2T_s, \dots$.
        estimator: The entropy estimate defining the objective $J(s)$ and its options
            (default: `shortinfer.tuning.DEFAULT_OBJECTIVE` with the exact Jacobian; the
            paper's is ``EntropyEstimator("conditional")``).
        grid: Candidate step sizes for ``"grid"`` (``None``: the bracketing search, or
            `shortinfer.tuning.DEFAULT_GRID` with ``method="grid"``).
        batch_size: Tune on the first ``batch_size`` examples of the current batch (``None``:
            as `shortinfer.ShortRunPosterior.tune_step_size` chooses, a few hundred latent
            coordinates in all).
        num_samples: Chains per example in $J(s)$ (``None``: as ``tune_step_size``).
        num_iterations: Adam iterations for ``"gradient"``.
        learning_rate: Adam's learning rate on $\log s$ for ``"gradient"``.
        refine: Refinement steps after the search (``None``: ``tune_step_size``'s default;
            0: none).

    Raises:
        ValueError: For an unknown method, a non-positive interval, batch size or chain
            count, or a mixing objective with ``num_samples < 2``.

    Examples:
        >>> from shortinfer.objectives import EntropyEstimator
        >>> StepSizeTuning(method="grid", interval=50, grid=(0.02, 0.05, 0.1)).interval
        50
        >>> StepSizeTuning(estimator=EntropyEstimator("conditional")).estimator.objective
        'conditional'
    """

    method: Literal["bracket", "grid", "gradient"] | None = None
    interval: int = 100
    estimator: EntropyEstimator = field(default_factory=EntropyEstimator)
    grid: tuple[float, ...] | None = None
    batch_size: int | None = None
    num_samples: int | None = None
    num_iterations: int = 50
    learning_rate: float = 0.05
    refine: int | None = None

    def __post_init__(self) -> None:
        if self.method is not None and self.method not in ("bracket", "grid", "gradient"):
            raise ArgumentError(
                f"tuning.method must be 'bracket', 'grid' or 'gradient' (or None); received "
                f"{self.method!r}."
            )
        if not isinstance(self.estimator, EntropyEstimator):
            raise ArgumentTypeError(
                f"tuning.estimator must be an EntropyEstimator; received "
                f"{type(self.estimator).__name__}. Example: "
                "StepSizeTuning(estimator=EntropyEstimator('conditional'))."
            )
        _check_int("tuning.interval", self.interval, 1)
        for name in ("batch_size", "num_samples"):
            if getattr(self, name) is not None:
                _check_int(f"tuning.{name}", getattr(self, name), 1)
        if self.grid is not None:
            object.__setattr__(self, "grid", tuple(float(s) for s in self.grid))
        objective = self.estimator.objective
        if self.estimator.needs_chains > (self.num_samples or 2):
            raise ArgumentError(
                f"tuning.estimator.objective={objective!r} mixes over the other chains of each "
                f"example, so it needs tuning.num_samples >= 2; received {self.num_samples}. "
                f"Pass e.g. StepSizeTuning(estimator=EntropyEstimator({objective!r}), "
                "num_samples=8) (shortinfer train: --tune-samples 8)."
            )

    def as_dict(self) -> dict[str, Any]:
        """Plain values, as checkpoints and ``metrics.jsonl`` store them."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["estimator"] = {
            f.name: getattr(self.estimator, f.name) for f in fields(EntropyEstimator)
        }
        values["grid"] = list(self.grid) if self.grid is not None else None
        return values


class StepSizeRecord(NamedTuple):
    r"""One step-size update of a training run (the data of the paper's Fig. 6a/b).

    Attributes:
        iteration: Number of θ-updates completed when the step size was tuned.
        step_size: The tuned step size (a float, a list per step, or a dict per block).
        objective: $J(s)$ at the chosen step size (grid) or at the last iteration
            (gradient).

    Examples:
        >>> record = StepSizeRecord(iteration=100, step_size=0.03, objective=812.5)
        >>> iteration, step_size, objective = record  # a plain triple, as plots take it
        >>> record._asdict()
        {'iteration': 100, 'step_size': 0.03, 'objective': 812.5}
    """

    iteration: int
    step_size: Any
    objective: float


class StepOutput(NamedTuple):
    r"""Result of `train_step`.

    Attributes:
        loss: $-\frac1m\sum_i \log p_\theta(x_i, z_{i,K})$ before the update, a scalar
            tensor (averaged over processes when ``all_reduce`` is given).
        z: The detached short-run samples $z_K$ used for the update, with shape
            ``(B, *latent_shape)`` (a dict of such tensors for dict latents).

    Examples:
        >>> from shortinfer.models import MultiLayerGenerator
        >>> model = MultiLayerGenerator(image_size=28, channels=1, latent_sizes=(2,),
        ...                             num_filters=2)
        >>> optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        >>> out = train_step(model, optimizer, torch.zeros(4, 1, 28, 28),
        ...                  latent_shape=model.latent_shapes, num_steps=2, step_size=0.05)
        >>> out.loss.shape, {name: z.shape for name, z in out.z.items()}
        (torch.Size([]), {'z1': torch.Size([4, 2])})
    """

    loss: Tensor
    z: Any


class TrainResult(NamedTuple):
    r"""Summary of `Trainer.fit`.

    Attributes:
        iterations: Number of θ-updates completed ($T$ after a full run).
        step_size: The final step size.
        history: Every step-size update, a list of `StepSizeRecord`.
        final_loss: The loss of the last iteration (per example, in nats).
        wall_time: Seconds spent in this call of `Trainer.fit`.
        checkpoint: Path of the last checkpoint written, or ``None``.

    Examples:
        >>> from shortinfer.models import MultiLayerGenerator
        >>> model = MultiLayerGenerator(image_size=28, channels=1, latent_sizes=(2,),
        ...                             num_filters=2)
        >>> trainer = Trainer(model, torch.rand(8, 1, 28, 28) * 2 - 1, num_iterations=2,
        ...                   batch_size=4, num_steps=2, tuning=StepSizeTuning(grid=(0.02, 0.05)))
        >>> result = trainer.fit()
        >>> result.iterations, len(result.history), result.checkpoint  # no output_dir
        (2, 1, None)
        >>> result.step_size in (0.02, 0.05)
        True
    """

    iterations: int
    step_size: Any
    history: list[StepSizeRecord]
    final_loss: float
    wall_time: float
    checkpoint: Path | None


@contextlib.contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[None]:
    r"""Switch off ``requires_grad`` on every parameter of ``model`` for the ``with`` block.

    Short-run inference needs $\nabla_z \log p(x, z)$ only: freezing θ skips the
    parameter gradients inside the K Langevin steps and the tuning objective, and keeps
    those backward passes away from DistributedDataParallel's gradient hooks. The flags are
    restored on exit, even after an error.

    Arguments:
        model: Any module.

    Examples:
        >>> layer = torch.nn.Linear(2, 2)
        >>> with frozen_parameters(layer):
        ...     layer.weight.requires_grad
        False
        >>> layer.weight.requires_grad
        True
    """
    flags = [(parameter, parameter.requires_grad) for parameter in model.parameters()]
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    *,
    latent_shape: LatentShape,
    num_steps: int = 25,
    step_size: StepSizeValue = 0.05,
    generator: torch.Generator | None = None,
    update_module: Callable[[Tensor, Any], Tensor] | None = None,
    all_reduce: Callable[[Tensor], Tensor] | None = None,
    validate: bool = False,
    compile: CompileOption = False,
) -> StepOutput:
    r"""Steps 2-4 of Algorithm 1: short-run inference, then one optimiser step on θ.

    $$
    z_K = F_s(z_0, \epsilon; \theta) \ \text{(K Langevin steps, detached)}, \qquad
    \theta \leftarrow \mathrm{optimizer}\Big(\nabla_\theta
    -\tfrac1B \textstyle\sum_b \log p_\theta(x_b, z_{K,b})\Big)
    $$

    Arguments:
        model: A module with ``log_joint(x, z) -> (B,)``; inference calls it directly, with
            the parameters frozen (`frozen_parameters`).
        optimizer: The optimiser of ``model``'s parameters.
        x: The batch, with shape ``(B, *event)``.
        latent_shape: Per-example latent shape, or a dict of block name to shape.
        num_steps: K.
        step_size: s: a float, a ``(K,)`` tensor, or a dict per latent block.
        generator: Generator for $z_0$ and the Langevin noise.
        update_module: What computes $\log p_\theta(x, z)$ for the update (default
            ``model.log_joint``); the trainer passes a DistributedDataParallel-wrapped
            `shortinfer.train.LogJointModule` in data-parallel runs.
        all_reduce: Maps a local scalar to its mean over processes; used to agree on a
            non-finite loss before ``backward`` so that no process waits on the others.
        validate: Probe ``log_joint`` once (see `shortinfer.short_run`).
        compile: Run the chain through ``torch.compile`` (``True`` or a mode string), see
            `shortinfer.short_run`; the θ update stays eager.

    Returns:
        A `StepOutput`.

    Raises:
        TrainingDivergedError: If a chain diverges or the loss is not finite (on any
            process); the parameters are then left unchanged.

    Examples:
        >>> class Model(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.decoder = torch.nn.Linear(2, 4)
        ...     def log_joint(self, x, z):
        ...         return -0.5 * z.square().sum(-1) - 0.5 * (x - self.decoder(z)).square().sum(-1)
        >>> model = Model()
        >>> optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        >>> out = train_step(model, optimizer, torch.randn(8, 4), latent_shape=(2,),
        ...                  num_steps=5, step_size=0.1)
        >>> out.loss.shape, out.z.shape
        (torch.Size([]), torch.Size([8, 2]))
    """
    failure: Exception | None = None
    z: Any = None
    try:
        with frozen_parameters(model):
            posterior = short_run(
                _log_joint_of(model),
                x,
                latent_shape=latent_shape,
                num_steps=num_steps,
                step_size=step_size,
                generator=generator,
                validate=validate,
                compile=compile,
            )
            z = posterior.sample()
    except ChainDivergenceError as err:
        failure = err
    loss = None
    if failure is None:
        compute = update_module if update_module is not None else _log_joint_of(model)
        loss = -compute(x, z).mean()
        check = loss.detach().float().reshape(())
    else:
        check = torch.tensor(float("nan"), device=x.device)
    if all_reduce is not None:
        check = all_reduce(check)
    if loss is None or not bool(torch.isfinite(check)):
        reason = (
            f"the short-run chain diverged ({failure})"
            if failure is not None
            else (f"the loss is {float(check)}")
        )
        raise TrainingDivergedError(reason)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return StepOutput(check, z)


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """A JSON-friendly copy of a step size (float, tensor or dict) or other small value."""
    if isinstance(value, Tensor):
        return value.item() if value.numel() == 1 and value.dim() == 0 else value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _storable_step_size(value: StepSizeValue) -> Any:
    if isinstance(value, Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, Mapping):
        return {str(k): _storable_step_size(v) for k, v in value.items()}
    return float(value)


def _step_size_leaves(value: StepSizeValue) -> list[Tensor]:
    if isinstance(value, Mapping):
        return [leaf for key in sorted(value) for leaf in _step_size_leaves(value[key])]
    return [torch.as_tensor(value, dtype=torch.float64).reshape(-1)]


def _rebuild_step_size(value: StepSizeValue, flat: Tensor, offset: int = 0) -> tuple[Any, int]:
    if isinstance(value, Mapping):
        out = {}
        for key in sorted(value):
            out[key], offset = _rebuild_step_size(value[key], flat, offset)
        return {key: out[key] for key in value}, offset
    if isinstance(value, Tensor):
        count = value.numel()
        piece = flat[offset : offset + count].reshape(value.shape).to(value.dtype)
        return piece, offset + count
    return float(flat[offset]), offset + 1


def _broadcast_step_size(value: StepSizeValue) -> Any:
    """Rank 0's step size on every process (a no-op without a process group)."""
    if not is_distributed():
        return value
    flat = broadcast_from_main(torch.cat(_step_size_leaves(value)))
    return _rebuild_step_size(value, flat)[0]


def _describe_step_size(value: Any) -> str:
    return describe_step_size(_jsonable(value))


def _log_joint_of(model: nn.Module) -> Callable[..., Tensor]:
    """The model's ``log_joint``, typed by the contract (`LogJointModel`)."""
    return cast(LogJointModel, model).log_joint


def _model_sigma(model: nn.Module) -> float | None:
    """The model's float attribute ``sigma``; ``None`` if it has none or it is not a number."""
    sigma = model.sigma if isinstance(model, HasSigma) else None
    if isinstance(sigma, (int, float)) and not isinstance(sigma, bool):
        return float(sigma)
    return None


def _settable_sigma(model: nn.Module) -> bool:
    return _model_sigma(model) is not None


def _set_sigma(model: nn.Module, value: float) -> None:
    # torch annotates nn.Module.__setattr__'s value as ``Tensor | Module``, but it stores any
    # other value as a plain attribute; ``sigma`` is such a float attribute (_settable_sigma).
    model.sigma = value  # pyright: ignore[reportArgumentType]


def _check_int(name: str, value: object, minimum: int, hint: str = "") -> int:
    return check_int(name, value, minimum, hint=hint.strip())


class _Progress:
    """tqdm when installed, else a plain line every ~5% of the run, on stderr."""

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        self.total, self.enabled, self.bar = total, enabled, None
        self.every = max(1, total // 20)
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return
        self.bar = tqdm(total=total, initial=initial, desc="train", unit="it", file=sys.stderr)

    def update(self, iteration: int, postfix: Mapping[str, str]) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(1)
        elif iteration % self.every == 0 or iteration == self.total:
            details = " ".join(f"{k}={v}" for k, v in postfix.items())
            print(f"[train] {iteration}/{self.total} {details}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ------------------------------------------------------------------------------------------
# the trainer
# ------------------------------------------------------------------------------------------


class Trainer:
    r"""Train a latent-variable model by Algorithm 1 (short-run inference + Adam on θ).

    See the module docstring for the algorithm. Defaults follow the paper (Appendix 7.1):
    $K = 25$, Adam with the learning rate decaying step-wise ``1e-4, 5e-5, 1e-5`` at
    $T/3$ and $2T/3$ (`shortinfer.train.LearningRateSchedule`), and
    $\sigma$ annealed to 0.15 (`shortinfer.train.SigmaSchedule`: linear from 0.3
    over the first half of the run).

    **Outputs** (with ``output_dir``, written by rank 0 only):

    - ``latest.pt``: the checkpoint, replaced atomically every ``checkpoint_interval``
      iterations and at the end (format: `shortinfer.train._checkpoint`);
    - ``metrics.jsonl``: one JSON object per logged iteration with ``iteration`` (updates
      completed), ``loss`` ($-\frac1m\sum\log p(x, z_K)$, nats per example), ``mse``
      (per-pixel reconstruction error $\|x - g(z_K)\|^2$ of the batch, when the model
      has ``decode``), ``step_size``, ``lr``, ``sigma``, ``images_per_second`` (training
      throughput over all processes, tuning excluded), and on tuning iterations
      ``objective``, ``tune_seconds`` and, when the stability check refused candidates,
      ``tuning_rejected`` (``[step_size, reason]`` pairs, also in `traces`).

    **Reproducibility.** Batches come from a per-epoch permutation and all chain noise from
    generators seeded by `shortinfer.train.derive_seed` ``(seed, purpose,
    iteration, rank)``, so a run resumed from a checkpoint takes bit-for-bit the same steps
    as an uninterrupted one (same device, thread count and world size).

    **Data-parallel.** Under ``torchrun`` (a process group initialised before the trainer is
    built), each process takes ``batch_size`` examples from its shard, inference runs on the
    unwrapped model, the θ-update goes through ``DistributedDataParallel``, and the tuning
    objective is averaged over processes; see `shortinfer.train._distributed`.

    Arguments:
        model: The model: an ``nn.Module`` with ``log_joint(x, z) -> (B,)``.
        data: Training observations, a tensor with shape ``(N, *event)`` (e.g. images
            ``(N, C, H, W)`` in $[-1, 1]$), or an `shortinfer.data.ImageData`.
        num_iterations: $T$, the number of θ-updates.
        batch_size: $m$, examples per update (per process).
        num_steps: $K$, Langevin steps per inference.
        step_size: The initial step size $s$ (float, ``(K,)`` tensor, or dict per block).
        tuning: A `StepSizeTuning`, or ``None`` to keep ``step_size`` fixed.
        learning_rate: A float (constant) or a `shortinfer.train.LearningRateSchedule`.
        sigma: A `shortinfer.train.SigmaSchedule`; ``None`` to leave ``model.sigma``
            alone; ``"auto"`` (default) anneals with ``SigmaSchedule()`` when the model has a
            float ``sigma`` attribute.
        latent_shape: Per-example latent shape (or dict of shapes); default
            ``model.latent_shapes``.
        seed: Seed of the data order and all chain noise (the model's initialisation is up to
            the caller).
        output_dir: Folder for ``latest.pt`` and ``metrics.jsonl``; ``None`` writes nothing.
        checkpoint_interval: Write a checkpoint every this many iterations (and at the end).
        log_interval: Write a metrics row every this many iterations (and on tuning
            iterations and the last one).
        progress: Show a progress bar (tqdm if installed, else periodic lines on stderr);
            ``None`` shows it only when stderr is a terminal.
        device: Where to train (default: the model's device); batches are moved there.
        method: ``None`` (default) trains by Algorithm 1, short-run inference; a
            `shortinfer.train.TrainingMethod` (`LadderVAEMethod`,
            `PersistentChainsMethod`) trains the same model with another loss under the same
            data order, schedules, checkpoints and logs (``tuning`` is then ignored).
        compile: ``False`` (default), ``True`` or a ``torch.compile`` mode: run each
            update's short-run chain compiled (`shortinfer.short_run`'s ``compile``; cached,
            so it compiles once per run, plus once more when the batch size or σ first
            changes). Step-size tuning and the θ update stay eager.

    Raises:
        TypeError: If the model lacks ``log_joint``, the latent shape is unknown, or an
            argument has the wrong type.
        ValueError: If ``data`` is empty or non-finite, or ``batch_size`` exceeds the examples
            available per process.

    Examples:
        >>> class Model(torch.nn.Module):
        ...     latent_shapes = (2,)
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.decoder = torch.nn.Linear(2, 4)
        ...     def log_joint(self, x, z):
        ...         return -0.5 * z.square().sum(-1) - 0.5 * (x - self.decoder(z)).square().sum(-1)
        >>> trainer = Trainer(Model(), torch.randn(32, 4), num_iterations=6, batch_size=8,
        ...                   num_steps=5, step_size=0.1, learning_rate=1e-2,
        ...                   tuning=StepSizeTuning(interval=3, grid=(0.05, 0.1, 0.2)))
        >>> result = trainer.fit()
        >>> result.iterations, [record.iteration for record in result.history]
        (6, [0, 3])
    """

    def __init__(
        self,
        model: nn.Module,
        data: Tensor | Sequence[Any],
        *,
        num_iterations: int,
        batch_size: int = 64,
        num_steps: int = 25,
        step_size: StepSizeValue = 0.05,
        tuning: StepSizeTuning | None = StepSizeTuning(),
        learning_rate: float | LearningRateSchedule = LearningRateSchedule(),
        sigma: SigmaSchedule | Literal["auto"] | None = "auto",
        latent_shape: LatentShape | None = None,
        seed: int = 0,
        output_dir: str | os.PathLike[str] | None = None,
        checkpoint_interval: int = 1000,
        log_interval: int = 10,
        progress: bool | None = None,
        device: str | torch.device | None = None,
        method: TrainingMethod | None = None,
        compile: CompileOption = False,
    ) -> None:
        if method is not None:
            if not isinstance(method, TrainingMethod):
                raise ArgumentTypeError(
                    f"method must be None (short-run inference) or a TrainingMethod such as "
                    f"LadderVAEMethod(); received {type(method).__name__}."
                )
            if is_distributed():
                raise ArgumentError(
                    f"method={method.name!r} does not support data-parallel training yet; "
                    "run it in one process."
                )
            tuning = None  # step-size tuning belongs to short-run inference
        self.method = method
        check_compile(compile)
        self.compile: CompileOption = compile
        if method is None and not (
            isinstance(model, nn.Module) and isinstance(model, LogJointModel)
        ):
            raise ArgumentTypeError(
                f"model must be a torch.nn.Module with a method log_joint(x, z) -> (B,); "
                f"received {type(model).__name__}. Wrap your density in a module, see "
                "examples/train_custom_model.py."
            )
        self.model = model
        self.data = self._check_data(data)
        self.num_iterations = _check_int("num_iterations", num_iterations, 1)
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.num_steps = _check_int("num_steps", num_steps, 1, " The paper uses 25.")
        self.step_size: Any = _storable_step_size(step_size)
        if tuning is not None and not isinstance(tuning, StepSizeTuning):
            raise ArgumentTypeError(
                f"tuning must be a StepSizeTuning or None; received {type(tuning).__name__}. "
                "Example: StepSizeTuning(method='grid', interval=100)."
            )
        self.tuning = tuning
        if isinstance(learning_rate, LearningRateSchedule):
            self.learning_rate = learning_rate
        elif isinstance(learning_rate, (int, float)) and not isinstance(learning_rate, bool):
            self.learning_rate = LearningRateSchedule(base=float(learning_rate), factors=(1.0,))
        else:
            raise ArgumentTypeError(
                f"learning_rate must be a float or a LearningRateSchedule; received "
                f"{learning_rate!r}."
            )
        self.learning_rate(0, self.num_iterations)  # validates base and factors
        if sigma == "auto":
            sigma = SigmaSchedule() if _settable_sigma(model) else None
        if sigma is not None:
            if not isinstance(sigma, SigmaSchedule):
                raise ArgumentTypeError(
                    f"sigma must be a SigmaSchedule, 'auto' or None; received {sigma!r}."
                )
            if not _settable_sigma(model):
                raise ArgumentTypeError(
                    f"sigma={sigma!r} anneals model.sigma, but {type(model).__name__} has no "
                    "float attribute sigma. Pass sigma=None."
                )
            sigma(0, self.num_iterations)  # validates
        self.sigma_schedule = sigma
        # Short-run inference needs the latent shape; other methods bring their own.
        self.latent_shape: Any = (
            latent_shape_of(model, latent_shape) if method is None else latent_shape
        )
        self.seed = _check_int("seed", seed, 0)
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.checkpoint_interval = _check_int("checkpoint_interval", checkpoint_interval, 1)
        self.log_interval = _check_int("log_interval", log_interval, 1)
        self.progress = sys.stderr.isatty() if progress is None else bool(progress)
        if device is not None:
            self.device = torch.device(device)
            model.to(self.device)
        else:
            first = next(iter(model.parameters()), None)
            self.device = first.device if first is not None else torch.device("cpu")

        self.rank, self.world_size = get_rank(), get_world_size()
        self.per_rank = -(-self.data.shape[0] // self.world_size)
        if self.batch_size > self.per_rank:
            raise ArgumentError(
                f"batch_size={self.batch_size} is larger than the {self.per_rank} examples "
                f"available per process ({self.data.shape[0]} examples over "
                f"{self.world_size} process(es)); use batch_size <= {self.per_rank} or more data."
            )
        self.batches_per_epoch = self.per_rank // self.batch_size
        self.optimizer = torch.optim.Adam(
            model.parameters(), lr=self.learning_rate(0, self.num_iterations)
        )
        self.update_module: nn.Module = LogJointModule(model)
        if is_distributed():
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.update_module = DistributedDataParallel(self.update_module, device_ids=ids)
        self.iteration = 0
        self.history: list[StepSizeRecord] = []
        self.traces: list[dict[str, Any]] = []
        self.last_loss = float("nan")
        self.train_seconds = 0.0
        self._shard_cache: tuple[int, Tensor] | None = None
        self._validate_next = True
        self._last_batch: tuple[Tensor, Any] | None = None

    # -- validation -------------------------------------------------------------------------

    @staticmethod
    def _check_data(data: Any) -> Tensor:
        if isinstance(data, tuple) and data and isinstance(data[0], Tensor):
            data = data[0]  # ImageData(images, labels) or (images, labels)
        if not isinstance(data, Tensor):
            raise ArgumentTypeError(
                f"data must be a tensor of observations with shape (N, ...) or an ImageData; "
                f"received {type(data).__name__}."
            )
        if data.dim() < 1 or data.shape[0] == 0:
            raise ArgumentError(
                f"data is empty (shape {tuple(data.shape)}); it needs at least one example "
                "along the first dimension. Check the data root and split."
            )
        if not data.is_floating_point():
            raise ArgumentTypeError(
                f"data must be floating point; received dtype {data.dtype}. Scale 8-bit images "
                "with data.float() / 127.5 - 1."
            )
        if not bool(torch.isfinite(data).all()):
            raise ArgumentError("data contains NaN or infinite values; clean it before training.")
        return data

    # -- data order -------------------------------------------------------------------------

    def _data_position(self, iteration: int) -> tuple[int, int]:
        return divmod(iteration, self.batches_per_epoch)

    def batch_rows(self, iteration: int) -> Tensor:
        r"""Indices into ``data`` of this process's batch for ``iteration`` (see `batch`).

        Arguments:
            iteration: 0-based iteration.

        Returns:
            A long tensor with shape ``(batch_size,)``.
        """
        epoch, index = self._data_position(iteration)
        if self._shard_cache is None or self._shard_cache[0] != epoch:
            order = shard_indices(
                self.data.shape[0],
                epoch=epoch,
                seed=self.seed,
                rank=self.rank,
                world_size=self.world_size,
            )
            self._shard_cache = (epoch, order)
        order = self._shard_cache[1]
        return order[index * self.batch_size : (index + 1) * self.batch_size]

    def batch(self, iteration: int) -> Tensor:
        r"""The batch of this process for ``iteration`` (a pure function of seed and iteration).

        Batches walk through a per-epoch permutation of the data (no replacement within an
        epoch).

        Arguments:
            iteration: 0-based iteration.

        Returns:
            Observations with shape ``(batch_size, *event)`` on the training device.
        """
        return self.data[self.batch_rows(iteration)].to(self.device)

    def _generator(self, purpose: str, iteration: int) -> torch.Generator:
        generator = torch.Generator(device=self.device)
        generator.manual_seed(derive_seed(self.seed, purpose, iteration, self.rank))
        return generator

    # -- state ------------------------------------------------------------------------------

    @property
    def sigma(self) -> float | None:
        """The model's current observation noise, or ``None`` if it has none."""
        return _model_sigma(self.model)

    def settings(self) -> dict[str, Any]:
        """The hyperparameters of this run, as plain values (stored in checkpoints)."""
        tuning = None
        if self.tuning is not None:
            tuning = self.tuning.as_dict()
        shape = self.latent_shape
        latent = (
            {str(k): list(v) for k, v in shape.items()}
            if isinstance(shape, Mapping)
            else (list(shape) if shape is not None else None)
        )
        return {
            "num_iterations": self.num_iterations,
            "batch_size": self.batch_size,
            "num_steps": self.num_steps,
            "tuning": tuning,
            "learning_rate": {
                "base": self.learning_rate.base,
                "factors": list(self.learning_rate.factors),
            },
            "sigma": dict(self.sigma_schedule._asdict()) if self.sigma_schedule else None,
            "latent_shape": latent,
            "seed": self.seed,
            "method": self.method.name if self.method is not None else "short_run",
            "world_size": self.world_size,
            "checkpoint_interval": self.checkpoint_interval,
            "log_interval": self.log_interval,
        }

    def state_dict(self) -> dict[str, Any]:
        r"""Everything needed to resume exactly, as a ``weights_only``-loadable dict.

        Returns:
            The checkpoint dict described in `shortinfer.train._checkpoint`.
        """
        model_type = type(self.model)
        config = self.model.config if isinstance(self.model, HasConfig) else None
        epoch, index = self._data_position(self.iteration)
        return {
            "format": CHECKPOINT_FORMAT,
            "shortinfer_version": __version__,
            "model_class": f"{model_type.__module__}.{model_type.__qualname__}",
            "model_config": dict(config) if isinstance(config, Mapping) else None,
            "model_state": self.model.state_dict(),
            "optimizer_state": self.optimizer.state_dict(),
            "iteration": self.iteration,
            "step_size": _storable_step_size(self.step_size),
            "sigma": self.sigma,
            "step_size_history": {
                "iteration": [r.iteration for r in self.history],
                "step_size": [_jsonable(r.step_size) for r in self.history],
                "objective": [r.objective for r in self.history],
            },
            "tuning_traces": [dict(trace) for trace in self.traces],
            "data_position": {
                "epoch": epoch,
                "batch": index,
                "batches_per_epoch": self.batches_per_epoch,
                "world_size": self.world_size,
            },
            "rng": rng_state(),
            "settings": self.settings(),
            "method": self.method.name if self.method is not None else "short_run",
            "method_state": self.method.state_dict() if self.method is not None else {},
            "train_seconds": self.train_seconds,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        r"""Restore a state from `state_dict` (e.g. a loaded checkpoint).

        Arguments:
            state: The checkpoint dict.

        Raises:
            CheckpointError: If the checkpoint is for another model configuration; the message
                names the differing keys.
        """
        check_trainer_checkpoint(state)
        check_model_compatible(state, self.model)
        check_finite_weights(state)
        compare_settings(state.get("settings"), self.settings(), iteration=int(state["iteration"]))
        try:
            self._load_state(state)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as err:
            raise CheckpointError(
                f"checkpoint is damaged or partial: reading it failed with {type(err).__name__}: "
                f"{err}. Resume from a complete checkpoint, or start a new run."
            ) from err

    def _load_state(self, state: Mapping[str, Any]) -> None:
        position = state.get("data_position", {})
        saved_world_size = position.get("world_size", self.world_size)
        if saved_world_size != self.world_size:
            warnings.warn(
                f"this checkpoint was written by a run of {saved_world_size} process(es) and is "
                f"resumed with {self.world_size}: the model, optimiser and step size carry "
                "over, but each process's data shard and chains differ from the original run, "
                "so it is not an exact continuation. Resume with the same --nproc_per_node for "
                "that.",
                stacklevel=2,
            )
        self.model.load_state_dict(state["model_state"])
        self.optimizer.load_state_dict(state["optimizer_state"])
        self.iteration = int(state["iteration"])
        self.step_size = _storable_step_size(state["step_size"])
        if state.get("sigma") is not None and _settable_sigma(self.model):
            _set_sigma(self.model, float(state["sigma"]))
        history = state.get("step_size_history", {})
        self.history = [
            StepSizeRecord(int(i), s, float(o))
            for i, s, o in zip(
                history.get("iteration", []),
                history.get("step_size", []),
                history.get("objective", []),
                strict=True,
            )
        ]
        self.traces = [dict(trace) for trace in state.get("tuning_traces", [])]
        saved_method = state.get("method", "short_run")
        method_name = self.method.name if self.method is not None else "short_run"
        if saved_method != method_name:
            raise CheckpointError(
                f"this checkpoint was trained with method {saved_method!r}; this Trainer runs "
                f"{method_name!r}. Resume with the same method, or use another output folder."
            )
        if self.method is not None:
            self.method.load_state_dict(state.get("method_state", {}))
        self.train_seconds = float(state.get("train_seconds", 0.0))
        if "rng" in state:
            set_rng_state(state["rng"])

    @property
    def checkpoint_path(self) -> Path | None:
        """``<output_dir>/latest.pt``, or ``None`` without an output folder."""
        return self.output_dir / LATEST_NAME if self.output_dir is not None else None

    def save_checkpoint(self, path: str | os.PathLike[str] | None = None) -> Path | None:
        r"""Write `state_dict` atomically (rank 0 only; other ranks return ``None``).

        Arguments:
            path: Destination (default `checkpoint_path`).

        Returns:
            The path written, or ``None``.

        Raises:
            TrainingDivergedError: If a parameter is non-finite; nothing is written, so the
                previous checkpoint stays the last good one.
        """
        target = Path(path) if path is not None else self.checkpoint_path
        if target is None or self.rank != 0:
            return None
        for name, parameter in self.model.named_parameters():
            if not bool(torch.isfinite(parameter).all()):
                raise TrainingDivergedError(
                    f"parameter {name!r} is not finite at iteration {self.iteration}; the "
                    f"checkpoint was not written, the last good one at {str(target)!r} is kept."
                )
        return save_checkpoint(self.state_dict(), target)

    # -- logging ----------------------------------------------------------------------------

    def _log(self, record: Mapping[str, Any]) -> None:
        if self.output_dir is None or self.rank != 0:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with open(self.output_dir / METRICS_NAME, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(_jsonable(dict(record))) + "\n")

    def _truncate_log(self, iteration: int) -> None:
        """Drop metrics rows past ``iteration`` (written after the checkpoint we resume from)."""
        if self.output_dir is None or self.rank != 0:
            return
        path = self.output_dir / METRICS_NAME
        if not path.is_file():
            return
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a kill
            if int(row.get("iteration", 0)) <= iteration:
                kept.append(line)
        temporary = path.with_suffix(".jsonl.tmp")
        temporary.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        os.replace(temporary, path)

    # -- one iteration ----------------------------------------------------------------------

    def tune(self, x: Tensor, *, iteration: int | None = None) -> StepSizeRecord:
        r"""Re-tune the step size on ``x`` (Algorithm 1, step 5) and record it.

        Arguments:
            x: The current batch, with shape ``(B, *event)``; the first
                ``tuning.batch_size`` examples are used.
            iteration: The iteration to record (default: the current one).

        Returns:
            The `StepSizeRecord` appended to `history`.

        Raises:
            ValueError: If the trainer was built with ``tuning=None``.
        """
        if self.tuning is None:
            raise ArgumentError("this Trainer has tuning=None; build it with a StepSizeTuning.")
        iteration = self.iteration if iteration is None else iteration
        tuning = self.tuning
        subset = x if tuning.batch_size is None else x[: tuning.batch_size]
        with frozen_parameters(self.model):
            posterior = short_run(
                _log_joint_of(self.model),
                subset,
                latent_shape=self.latent_shape,
                num_steps=self.num_steps,
                step_size=self.step_size,
                generator=self._generator("tune", iteration),
                validate=False,
            )
            tuned = posterior.tune_step_size(
                tuning.method,
                grid=tuning.grid,
                num_samples=tuning.num_samples,
                num_iterations=tuning.num_iterations,
                learning_rate=tuning.learning_rate,
                estimator=tuning.estimator,
                refine=tuning.refine,
                all_reduce=mean_all_reduce if is_distributed() else None,
            )
        self.step_size = _broadcast_step_size(_storable_step_size(tuned.step_size))
        trace = tuned.trace
        objectives = trace.objectives if trace is not None else torch.zeros(0)
        if trace is not None and trace.method == "grid":
            objective = float(objectives.min())
        else:
            objective = float(objectives[-1]) if objectives.numel() else float("nan")
        if trace is not None:
            self.traces.append(
                {
                    "iteration": iteration,
                    "method": trace.method,
                    "step_sizes": trace.step_sizes.detach().cpu().to(torch.float64),
                    "objectives": trace.objectives.detach().cpu().to(torch.float64),
                    "rejected": [[step, reason] for step, reason in trace.rejected],
                }
            )
        record = StepSizeRecord(iteration, _jsonable(self.step_size), objective)
        self.history.append(record)
        return record

    def step(self) -> dict[str, Any]:
        r"""Run iteration `iteration` of Algorithm 1 and advance it by one.

        Returns:
            The iteration's metrics: ``iteration`` (updates completed), ``loss``, ``lr``,
            ``sigma``, ``step_size``, ``images_per_second`` and, when it tuned,
            ``objective`` and ``tune_seconds``.

        Raises:
            TrainingDivergedError: If the loss or a chain becomes non-finite; nothing is
                updated.
        """
        t = self.iteration
        lr = self.learning_rate(t, self.num_iterations)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.sigma_schedule is not None:
            _set_sigma(self.model, self.sigma_schedule(t, self.num_iterations))
        if self.method is not None:
            return self._method_step(t, lr)
        x = self.batch(t)
        metrics: dict[str, Any] = {}
        if self.tuning is not None and t % self.tuning.interval == 0:
            started = time.perf_counter()
            try:
                record = self.tune(x, iteration=t)
            except FloatingPointError as err:
                raise TrainingDivergedError(f"step-size tuning failed: {err}") from err
            metrics["objective"] = record.objective
            metrics["tuning_objective"] = self.tuning.estimator.objective
            metrics["tune_seconds"] = time.perf_counter() - started
            if self.traces and self.traces[-1]["iteration"] == t and self.traces[-1]["rejected"]:
                metrics["tuning_rejected"] = self.traces[-1]["rejected"]
        started = time.perf_counter()
        try:
            out = train_step(
                self.model,
                self.optimizer,
                x,
                latent_shape=self.latent_shape,
                num_steps=self.num_steps,
                step_size=self.step_size,
                generator=self._generator("chain", t),
                update_module=self.update_module,
                all_reduce=mean_all_reduce if is_distributed() else None,
                validate=self._validate_next,
                compile=self.compile,
            )
        except TrainingDivergedError as err:
            raise TrainingDivergedError(
                f"training stopped at iteration {t}: {err} (lr={lr:.3g}, sigma={self.sigma}, "
                f"step_size={_describe_step_size(self.step_size)}). Lower the learning rate or "
                "the step size, and resume from the last good checkpoint."
            ) from err
        self._validate_next = False
        seconds = time.perf_counter() - started
        self.iteration = t + 1
        self.last_loss = float(out.loss)
        metrics.update(
            {
                "iteration": self.iteration,
                "loss": self.last_loss,
                "lr": lr,
                "sigma": self.sigma,
                "step_size": _jsonable(self.step_size),
                "delta": delta_of(_jsonable(self.step_size)),
                "images_per_second": self.batch_size * self.world_size / max(seconds, 1e-9),
            }
        )
        self._last_batch = (x, out.z)
        return metrics

    def _method_step(self, t: int, lr: float) -> dict[str, Any]:
        assert self.method is not None
        rows = self.batch_rows(t)
        x = self.data[rows].to(self.device)
        started = time.perf_counter()
        loss = self.method.loss(self.model, x, rows, t, self.num_iterations)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrainingDivergedError(
                f"training stopped at iteration {t}: the {self.method.name} loss is {value} "
                f"(lr={lr:.3g}, sigma={self.sigma}). Lower the learning rate, and resume from "
                "the last good checkpoint."
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self._validate_next = False
        seconds = time.perf_counter() - started
        self.iteration = t + 1
        self.last_loss = value
        self._last_batch = None
        return {
            "iteration": self.iteration,
            "loss": value,
            "lr": lr,
            "sigma": self.sigma,
            "method": self.method.name,
            "images_per_second": self.batch_size / max(seconds, 1e-9),
        }

    def _batch_mse(self) -> float | None:
        if not isinstance(self.model, Decodes) or self._last_batch is None:
            return None
        x, z = self._last_batch
        with torch.no_grad():
            mean = self.model.decode(z)
            if not isinstance(mean, Tensor) or mean.shape != x.shape:
                return None  # decode is not an image mean of x's shape: no MSE to report
            mse = (mean - x).square().mean().reshape(1)
        return float(mean_all_reduce(mse)) if is_distributed() else float(mse)

    # -- the loop ---------------------------------------------------------------------------

    def fit(
        self,
        *,
        resume: bool | str | os.PathLike[str] = False,
        max_seconds: float | None = None,
    ) -> TrainResult:
        r"""Train until `num_iterations` updates are done.

        Arguments:
            resume: ``False`` starts from the current state (refusing to overwrite an existing
                ``latest.pt`` in ``output_dir``); ``True`` continues from
                ``<output_dir>/latest.pt`` if it exists (else starts fresh); a path continues
                from that checkpoint file or folder.
            max_seconds: Stop (after writing a checkpoint) once this call has trained this many
                seconds; ``fit(resume=True)`` continues later. ``None``: train to the end.

        Returns:
            A `TrainResult`.

        Raises:
            FileExistsError: If ``resume=False`` and ``output_dir`` already holds a checkpoint.
            FileNotFoundError: If ``resume`` is a path without a checkpoint.
            CheckpointError: If the checkpoint is unreadable or for another model.
            TrainingDivergedError: If the loss becomes non-finite; the last good checkpoint is
                kept and the message says where.
            FolderLockedError: If another process is training into ``output_dir`` (the lock is
                ``output_dir/.shortinfer.lock``, held by rank 0 for the whole run).
        """
        if self.output_dir is None or self.rank != 0:
            return self._fit(resume, max_seconds)
        with folder_lock(self.output_dir):
            # Under the lock no other process writes here: a temporary checkpoint file is the
            # leftover of a writer killed mid-write.
            remove_stale_temporaries(self.output_dir / LATEST_NAME)
            return self._fit(resume, max_seconds)

    def _fit(
        self, resume: bool | str | os.PathLike[str], max_seconds: float | None
    ) -> TrainResult:
        started = time.perf_counter()
        source: Path | None = None
        if resume is True:
            if self.checkpoint_path is None:
                raise ArgumentError("resume=True needs output_dir (where latest.pt lives).")
            if self.checkpoint_path.is_file():
                source = self.checkpoint_path
        elif resume is not False:
            source = resolve_checkpoint(resume)  # type: ignore[arg-type]
        elif (
            self.checkpoint_path is not None
            and self.checkpoint_path.is_file()
            and (self.iteration == 0)
        ):
            raise ExistingFileError(
                f"{str(self.checkpoint_path)!r} already exists; pass resume=True to continue "
                "that run, or choose another output_dir (or delete the file) to start afresh."
            )
        if source is not None:
            self.load_state_dict(load_checkpoint(source, map_location=self.device))
            self._truncate_log(self.iteration)
        elif self.iteration == 0 and self.output_dir is not None and self.rank == 0:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / METRICS_NAME).write_text("", encoding="utf-8")
        # Probe log_joint once at the start of a run (a resumed run was probed when it began,
        # and the probe draws from the chain generator, so it must run at iteration 0 only).
        self._validate_next = self.iteration == 0
        written: Path | None = None
        progress = _Progress(self.num_iterations, self.iteration, self.progress and self.rank == 0)
        window_images, window_seconds = 0, 0.0
        try:
            while self.iteration < self.num_iterations:
                try:
                    metrics = self.step()
                except TrainingDivergedError as err:
                    kept = (
                        f" The last good checkpoint {str(self.checkpoint_path)!r} is kept."
                        if self.checkpoint_path is not None and self.checkpoint_path.is_file()
                        else ""
                    )
                    self._log(
                        {"iteration": self.iteration, "event": "diverged", "message": str(err)}
                    )
                    raise TrainingDivergedError(f"{err}{kept}") from err
                done = self.iteration
                self.train_seconds += metrics.get("tune_seconds", 0.0) + (
                    self.batch_size * self.world_size / max(metrics["images_per_second"], 1e-9)
                )
                window_images += self.batch_size * self.world_size
                window_seconds += self.batch_size * self.world_size / metrics["images_per_second"]
                last = done == self.num_iterations
                if done % self.log_interval == 0 or "objective" in metrics or last:
                    metrics["images_per_second"] = window_images / max(window_seconds, 1e-9)
                    window_images, window_seconds = 0, 0.0
                    metrics["mse"] = self._batch_mse()
                    self._log(metrics)
                out_of_time = max_seconds is not None and (
                    time.perf_counter() - started > max_seconds
                )
                if done % self.checkpoint_interval == 0 or last or out_of_time:
                    written = self.save_checkpoint() or written
                progress.update(
                    done,
                    {
                        "loss": f"{metrics['loss']:.4g}",
                        "s": _describe_step_size(self.step_size),
                    },
                )
                if out_of_time:
                    break
        finally:
            progress.close()
        return TrainResult(
            self.iteration,
            self.step_size,
            list(self.history),
            self.last_loss,
            time.perf_counter() - started,
            written,
        )
