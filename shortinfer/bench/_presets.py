r"""Benchmark presets: the training budget, model size and evaluation sizes of one run.

Three presets ship with ``shortinfer bench``:

* ``"smoke"``: a few CPU minutes on a small subset; CI runs it on the synthetic CelebA-layout
  fixture. It checks that every cell trains, evaluates, resumes and reports, not that the
  numbers mean anything.
* ``"cpu"``: the budget behind the committed MNIST-5k results (``benchmarks/results/``), sized
  for one shared CPU core (FID on 200 images only); its run time is in ``docs/benchmark.md``.
* ``"paper"``: the paper's experiments (Appendix 7.1, and the authors' code where the text is
  silent or ambiguous): $T = 3 \times 10^5$ Adam updates, batch 100, learning rate
  $10^{-4}, 5 \cdot 10^{-5}, 10^{-5}$ for each third, $\sigma$ annealed from 0.3 to 0.15,
  K = 25, the paper's objective (``"conditional"``) on the paper's grid read in the authors'
  $\delta$ units (`shortinfer.tuning.PAPER_GRID`, initial $\delta = 0.05$, i.e.
  $s = 0.00125$), L = 5 latent sizes (64, 64, 64, 96, 128), the first 40,000 training
  images, FID on 40,000 generated images. ``docs/benchmark.md`` tabulates each choice.

Every field can be overridden with `dataclasses.replace` (the command line does that for
``--iterations``, ``--batch-size`` and a few others).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from shortinfer._checks import ArgumentError, ArgumentTypeError
from shortinfer.models._generator import latent_sizes_for
from shortinfer.train._schedules import (
    PAPER_NUM_ITERATIONS,
    LearningRateSchedule,
    SigmaSchedule,
    annealed_sigma,
    step_decay_learning_rate,
)
from shortinfer.tuning import DEFAULT_GRID, DEFAULT_OBJECTIVE, PAPER_GRID

__all__ = ["PRESETS", "Preset", "get_preset"]


@dataclass(frozen=True)
class Preset:
    r"""The budget and sizes of one benchmark run; every cell of the run uses the same values.

    Attributes:
        name: The preset's name, recorded in the results.
        num_iterations: T, parameter updates per cell (the same for every method).
        batch_size: Training images per update.
        learning_rates: Adam learning rates, one per equal phase of the run (step-wise decay
            scaled to ``num_iterations``: the paper's three phases of $10^5$ updates).
        sigma_start: Likelihood $\sigma$ at the start of training.
        sigma_end: $\sigma$ after annealing (0.15 in the paper).
        sigma_anneal_fraction: Fraction of the run over which $\sigma$ decreases
            linearly from ``sigma_start`` to ``sigma_end`` (the paper says only "gradually").
        num_filters: $n_f$ of the generator (64 in Table 4).
        bottom_latent_size: $d_1$; see `shortinfer.models.latent_sizes_for`.
        layers: The L values of Table 1 / Table 3a.
        num_steps: K of Table 1 and of the Ladder-VAE comparison.
        steps_ablation: The K values of Table 3b, run with the largest L.
        step_size: Initial Langevin step size s.
        tune_every: $T_s$: re-tune s every this many updates (0: never).
        tune_grid: Candidate step sizes for the grid search.
        tune_batch: Images used to evaluate the tuning objective.
        tune_objective: The entropy estimate defining the tuning objective (default
            `shortinfer.tuning.DEFAULT_OBJECTIVE`; the paper's is ``"conditional"``).
        tune_samples: Chains per image in the tuning objective (``None``: the library's
            default, at least 64 chains in all).
        tune_refine: Golden-section refinement iterations after the grid (0: the plain grid).
        celeba_subset: CelebA only: train on the first this many images in file order (the
            authors' code reads the first 40,000; ``None``: all 162,770).
        latent_sizes: Explicit latent sizes $(d_L, \dots, d_1)$ for some L, overriding
            `shortinfer.models.latent_sizes_for` (see `latent_sizes_at`).
        kl_warmup_fraction: Ladder-VAE's linear KL warm-up from 0 to 1, as a fraction of the
            run (Sønderby et al. warm up over the first epochs).
        train_subset: Use only the first this many training images (``None``: all).
        num_test: Held-out images for reconstruction MSE (capped by the test split).
        num_elbo_images: Held-out images for the per-image ELBO (exact log-determinant, so
            expensive for the short-run posterior).
        num_fid_samples: Generated images for FID (and at most as many data images).
        eval_batch_size: Images per forward pass in evaluation.
        checkpoint_every: Write a resumable checkpoint every this many updates.
        log_every: Append a line to ``metrics.jsonl`` every this many updates.
        abp_num_steps: Langevin steps of the ABP baseline's persistent chains (40).
        abp_delta: Its step in the reference code's units, $\delta = 0.3$.
        abp_sigma: Its fixed likelihood $\sigma = 0.3$.

    Examples:
        >>> import dataclasses
        >>> preset = Preset(name="tiny", num_iterations=90, batch_size=10, layers=(1, 3))
        >>> preset.learning_rate_at(0), preset.learning_rate_at(89)  # the paper's rates
        (0.0001, 1e-05)
        >>> dataclasses.replace(preset, batch_size=20).batch_size
        20
        >>> try:  # an ArgumentError, which is a ValueError
        ...     Preset(name="bad", num_iterations=0, batch_size=10)
        ... except ValueError as err:
        ...     print(err)
        preset field num_iterations must be a positive int; received 0.
    """

    name: str
    num_iterations: int
    batch_size: int
    learning_rates: tuple[float, ...] = (1e-4, 5e-5, 1e-5)
    sigma_start: float = 0.3
    sigma_end: float = 0.15
    sigma_anneal_fraction: float = SigmaSchedule().anneal_fraction
    num_filters: int = 64
    bottom_latent_size: int = 128
    layers: tuple[int, ...] = (1, 3, 5)
    num_steps: int = 25
    steps_ablation: tuple[int, ...] = (5, 10, 25, 50)
    step_size: float = 0.05
    tune_every: int = 1000
    tune_grid: tuple[float, ...] = field(default_factory=lambda: tuple(DEFAULT_GRID))
    tune_batch: int = 16
    tune_objective: str = DEFAULT_OBJECTIVE
    tune_samples: int | None = None
    tune_refine: int = 6
    latent_sizes: tuple[tuple[int, ...], ...] = ()
    celeba_subset: int | None = None
    kl_warmup_fraction: float = 0.1
    train_subset: int | None = None
    num_test: int = 10_000
    num_elbo_images: int = 100
    num_fid_samples: int = 40_000
    eval_batch_size: int = 100
    checkpoint_every: int = 1000
    log_every: int = 100
    abp_num_steps: int = 40
    abp_delta: float = 0.3
    abp_sigma: float = 0.3

    def __post_init__(self) -> None:
        for key in (
            "num_iterations",
            "batch_size",
            "num_filters",
            "bottom_latent_size",
            "num_steps",
            "tune_batch",
            "num_test",
            "num_elbo_images",
            "eval_batch_size",
            "checkpoint_every",
            "log_every",
            "abp_num_steps",
        ):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ArgumentError(
                    f"preset field {key} must be a positive int; received {value!r}."
                )
        if self.num_fid_samples < 0 or self.tune_every < 0:
            raise ArgumentError(
                f"num_fid_samples and tune_every must be >= 0 (0 turns them off); received "
                f"{self.num_fid_samples} and {self.tune_every}."
            )
        if not self.learning_rates or any(lr <= 0 for lr in self.learning_rates):
            raise ArgumentError(
                f"learning_rates must be a non-empty tuple of positive floats; received "
                f"{self.learning_rates!r}."
            )
        if not self.layers or not self.steps_ablation:
            raise ArgumentError("layers and steps_ablation must be non-empty.")

    def latent_sizes_at(self, num_layers: int) -> tuple[int, ...]:
        r"""Latent sizes $(d_L, \dots, d_1)$ of the L-layer cells.

        An entry of ``latent_sizes`` with L sizes wins; otherwise
        `shortinfer.models.latent_sizes_for` halves from ``bottom_latent_size`` upwards.

        Examples:
            >>> get_preset("paper").latent_sizes_at(5)
            (64, 64, 64, 96, 128)
            >>> get_preset("paper").latent_sizes_at(3)
            (32, 64, 128)
        """
        for sizes in self.latent_sizes:
            if len(sizes) == num_layers:
                return tuple(sizes)
        return latent_sizes_for(num_layers, self.bottom_latent_size)

    def learning_rate_schedule(self) -> LearningRateSchedule:
        r"""``learning_rates`` as a `shortinfer.train.LearningRateSchedule` (base × factors).

        Examples:
            >>> get_preset("paper").learning_rate_schedule()
            LearningRateSchedule(base=0.0001, factors=(1.0, 0.5, 0.1))
        """
        base = self.learning_rates[0]
        factors = tuple(float(f"{rate / base:.12g}") for rate in self.learning_rates)
        return LearningRateSchedule(base=base, factors=factors)

    def sigma_schedule(self) -> SigmaSchedule:
        r"""The $\sigma$ annealing as a `shortinfer.train.SigmaSchedule`.

        Examples:
            >>> get_preset("paper").sigma_schedule()
            SigmaSchedule(start=0.3, end=0.15, anneal_fraction=0.5)
        """
        return SigmaSchedule(self.sigma_start, self.sigma_end, self.sigma_anneal_fraction)

    def learning_rate_at(self, iteration: int) -> float:
        r"""Adam's learning rate at ``iteration``: ``learning_rates[j]`` in the j-th equal phase.

        This is `shortinfer.train.step_decay_learning_rate` with base 1 and the rates as the
        factors, so the bench and `shortinfer.train.Trainer` share one schedule.

        Examples:
            >>> paper = get_preset("paper")
            >>> [paper.learning_rate_at(t) for t in (0, 99_999, 100_000, 299_999)]
            [0.0001, 0.0001, 5e-05, 1e-05]
        """
        return step_decay_learning_rate(
            iteration, self.num_iterations, base=1.0, factors=self.learning_rates
        )

    def sigma_at(self, iteration: int) -> float:
        r"""The likelihood $\sigma$ at ``iteration`` (`shortinfer.train.annealed_sigma`).

        Linear from ``sigma_start`` to ``sigma_end`` over the first $\lfloor f T \rfloor$
        updates ($f$ = ``sigma_anneal_fraction``), then constant.

        Examples:
            >>> cpu = get_preset("cpu")  # T = 300, annealed over the first 150 updates
            >>> [round(cpu.sigma_at(t), 4) for t in (0, 75, 150, 299)]
            [0.3, 0.225, 0.15, 0.15]
        """
        return annealed_sigma(
            iteration,
            self.num_iterations,
            start=self.sigma_start,
            end=self.sigma_end,
            anneal_fraction=self.sigma_anneal_fraction,
        )

    def kl_weight_at(self, iteration: int) -> float:
        r"""Ladder-VAE's KL weight $\beta$ at ``iteration``: linear from 0 to 1, then 1.

        $\beta_t = \min(1, t / \max(1, f T))$ with $f$ = ``kl_warmup_fraction``; $f \le 0$
        gives $\beta = 1$ throughout.

        Examples:
            >>> cpu = get_preset("cpu")  # T = 300, warm-up over the first 30 updates
            >>> [round(cpu.kl_weight_at(t), 4) for t in (0, 15, 30, 299)]
            [0.0, 0.5, 1.0, 1.0]
        """
        from shortinfer.train._methods import LadderVAEMethod

        method = LadderVAEMethod(kl_warmup_fraction=max(0.0, self.kl_warmup_fraction))
        return method.kl_weight(iteration, self.num_iterations)

    def to_dict(self) -> dict[str, Any]:
        """The preset as a JSON-ready dict (tuples become lists)."""

        def plain(value: Any) -> Any:
            return [plain(item) for item in value] if isinstance(value, (tuple, list)) else value

        return {key: plain(value) for key, value in dataclasses.asdict(self).items()}


#: The shipped presets by name: ``"smoke"`` (a CI check of a few CPU minutes), ``"cpu"`` (the
#: budget of the committed MNIST-5k results) and ``"paper"`` (Appendix 7.1's schedule). Look
#: one up, with overrides, through `get_preset`.
PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        name="smoke",
        num_iterations=20,
        batch_size=8,
        num_filters=8,
        bottom_latent_size=8,
        learning_rates=(1e-3, 5e-4, 1e-4),
        step_size=0.01,
        tune_every=10,
        tune_grid=(0.003, 0.01, 0.03),
        tune_batch=2,
        tune_samples=1,
        tune_refine=0,
        train_subset=64,
        num_test=16,
        num_elbo_images=4,
        num_fid_samples=64,
        eval_batch_size=16,
        checkpoint_every=5,
        log_every=5,
    ),
    # Sized for one shared CPU core on 28x28 images (run time: docs/benchmark.md, Presets).
    # The learning rates are 10x the paper's because the run is 1000x shorter.
    "cpu": Preset(
        name="cpu",
        num_iterations=300,
        batch_size=16,
        num_filters=16,
        bottom_latent_size=32,
        learning_rates=(1e-3, 5e-4, 1e-4),
        step_size=0.01,
        tune_every=100,
        tune_grid=(1e-4, 3e-4, 0.001, 0.003, 0.01, 0.03, 0.1),
        tune_batch=4,
        tune_samples=1,
        tune_refine=0,
        train_subset=None,
        num_test=500,
        num_elbo_images=4,
        num_fid_samples=200,
        eval_batch_size=50,
        checkpoint_every=50,
        log_every=10,
    ),
    # Appendix 7.1, and the authors' code (enijkamp/short_run_inf) where the text is silent or
    # ambiguous: the grid in delta units, delta = 0.05 at the start, the L = 5 sizes, the 40k
    # CelebA subset. T_s is given in neither; 1000 updates is our choice.
    "paper": Preset(
        name="paper",
        num_iterations=PAPER_NUM_ITERATIONS,
        batch_size=100,
        num_filters=64,
        bottom_latent_size=128,
        latent_sizes=((64, 64, 64, 96, 128),),
        step_size=0.00125,
        tune_every=1000,
        tune_grid=PAPER_GRID,
        tune_objective="conditional",
        tune_samples=1,
        tune_refine=0,
        celeba_subset=40_000,
        num_fid_samples=40_000,
    ),
}


def get_preset(name: str, **overrides: Any) -> Preset:
    r"""Look up a preset by name and override some of its fields.

    Arguments:
        name: One of `PRESETS` (``"smoke"``, ``"cpu"``, ``"paper"``).
        overrides: Fields to replace; ``None`` values are ignored.

    Returns:
        The `Preset`.

    Raises:
        ValueError: For an unknown name or an invalid field value.
        TypeError: For an unknown field.

    Examples:
        >>> get_preset("paper", batch_size=50).batch_size
        50
    """
    if name not in PRESETS:
        raise ArgumentError(f"preset must be one of {sorted(PRESETS)}; received {name!r}.")
    given = {key: value for key, value in overrides.items() if value is not None}
    unknown = sorted(set(given) - {f.name for f in dataclasses.fields(Preset)})
    if unknown:
        raise ArgumentTypeError(f"unknown preset field(s) {unknown}.")
    return dataclasses.replace(PRESETS[name], **given)
