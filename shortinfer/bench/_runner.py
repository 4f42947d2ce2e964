r"""Benchmark cells: plan, train, evaluate, resume.

A *cell* is one trained model: a method (short-run, Ladder-VAE, ABP), a number of layers L
and, for short-run inference, a number of Langevin steps K. A run lays its cells out as

.. code-block:: text

    OUT/
      run.json                      dataset, preset, device, versions, command
      data_fid_stats.npz            Inception statistics of the data (cached)
      cells/<cell>/latest.pt        the cell's checkpoint (`shortinfer.train._checkpoint`)
      cells/<cell>/metrics.jsonl    loss, lr, sigma, step size (and delta) during training
      cells/<cell>/result.json      MSE, ELBO, budget, wall time: the cell is done
      cells/<cell>/fid.json         FID (a separate pass, so it can be added later)
      cells/<cell>/images.pt        samples and test reconstructions for the grids

Every cell is trained by `shortinfer.train.Trainer`, the engine behind ``shortinfer train``:
short-run cells by Algorithm 1, the baselines through a `shortinfer.train._methods`
method, so a cell folder is an ordinary training-run folder (``shortinfer sample
--checkpoint cells/<cell>`` works on it). A rerun skips every cell whose ``result.json``
exists and resumes an interrupted cell from its ``latest.pt``; the FID pass likewise skips
cells with a ``fid.json`` for the same number of samples.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from shortinfer._atomic import atomic_write
from shortinfer._checks import ArgumentError
from shortinfer._version import __version__
from shortinfer.bench._presets import Preset
from shortinfer.langevin import delta_from_step_size, step_size_from_delta
from shortinfer.metrics import reconstruction_mse
from shortinfer.models import LadderVAE, MultiLayerGenerator
from shortinfer.objectives import EntropyEstimator
from shortinfer.posterior import ShortRunPosterior, short_run
from shortinfer.train._checkpoint import LATEST_NAME, load_checkpoint
from shortinfer.train._methods import LadderVAEMethod, PersistentChainsMethod, TrainingMethod
from shortinfer.train._trainer import StepSizeTuning, Trainer

__all__ = [
    "METHODS",
    "BenchData",
    "Cell",
    "build_trainer",
    "cell_config",
    "plan_cells",
    "run_benchmark",
    "run_cell",
    "run_fid",
]

METHODS: tuple[str, ...] = ("short_run", "ladder_vae", "abp")
"""The methods a cell can train: short-run inference (Algorithm 1), Ladder-VAE, ABP."""

_NUM_GRID_IMAGES = 10  # test images in the reconstruction grid (Fig. 3 shows a row of ten)
_NUM_GRID_SAMPLES = 64


class BenchData(NamedTuple):
    r"""Training and held-out images of one benchmark.

    Attributes:
        name: Data set label for the report, e.g. ``"mnist5k"`` or ``"celeba32"``.
        train: Training images in $[-1, 1]$, shape ``(N, C, H, W)``.
        test: Held-out images, shape ``(M, C, H, W)``.

    Examples:
        >>> images = torch.rand(12, 1, 28, 28) * 2 - 1
        >>> data = BenchData("mnist5k", train=images[:8], test=images[8:])
        >>> data.name, data.train.shape[0], data.test.shape[0]
        ('mnist5k', 8, 4)
    """

    name: str
    train: Tensor
    test: Tensor


@dataclass(frozen=True)
class Cell:
    r"""One trained model of the benchmark.

    Attributes:
        method: ``"short_run"``, ``"ladder_vae"`` or ``"abp"``.
        num_layers: L.
        num_steps: K (short-run inference; ABP's chains use the preset's 40 steps).
        tables: Which tables the cell feeds, e.g. ``("table1", "table3a")``.

    Examples:
        >>> cell = Cell("short_run", num_layers=5, num_steps=10, tables=("table3b",))
        >>> cell.key
        'short_run-L5-K10'
        >>> Cell("ladder_vae", 3, 25).key  # K plays no part in a Ladder-VAE cell
        'ladder_vae-L3'
    """

    method: str
    num_layers: int
    num_steps: int
    tables: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """Folder name, e.g. ``short_run-L5-K25``."""
        if self.method == "ladder_vae":
            return f"ladder_vae-L{self.num_layers}"
        return f"{self.method}-L{self.num_layers}-K{self.num_steps}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {
            "method": self.method,
            "num_layers": self.num_layers,
            "num_steps": self.num_steps,
            "tables": list(self.tables),
        }


def plan_cells(preset: Preset, *, abp: bool = False) -> list[Cell]:
    r"""The cells of Table 1 and Table 3, in the order they are run.

    Short-run and Ladder-VAE for every L in ``preset.layers`` (Tables 1 and 3a), then short-run
    with the largest L for every K in ``preset.steps_ablation`` (Table 3b; the K of Table 1 is
    shared, not trained twice), then optionally ABP with L = 1 (Table 2's baseline).

    Examples:
        >>> from shortinfer.bench._presets import get_preset
        >>> [cell.key for cell in plan_cells(get_preset("paper"))]
        ['short_run-L1-K25', 'ladder_vae-L1', 'short_run-L3-K25', 'ladder_vae-L3',
         'short_run-L5-K25', 'ladder_vae-L5', 'short_run-L5-K5', 'short_run-L5-K10',
         'short_run-L5-K50']
    """
    top = max(preset.layers)
    cells: list[Cell] = []
    for layers in preset.layers:
        ablated = layers == top and preset.num_steps in preset.steps_ablation
        shared = ("table3b",) if ablated else ()
        cells.append(Cell("short_run", layers, preset.num_steps, ("table1", "table3a", *shared)))
        cells.append(Cell("ladder_vae", layers, preset.num_steps, ("table1",)))
    for steps in preset.steps_ablation:
        if steps != preset.num_steps:
            cells.append(Cell("short_run", top, steps, ("table3b",)))
    if abp:
        cells.append(Cell("abp", 1, preset.abp_num_steps, ("table2",)))
    return cells


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def environment() -> dict[str, Any]:
    """Machine and version facts recorded with every run."""
    info: dict[str, Any] = {
        "shortinfer": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
    }
    try:  # the CPU model on Linux; platform.processor() is often empty there
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            models = [
                line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")
            ]
        if models:
            info["cpu"] = f"{models[0]} ({len(models)} logical cores)"
    except OSError:
        pass
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    try:
        import numpy

        info["numpy"] = numpy.__version__
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    return info


def _write_json(obj: Any, path: Path) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda stream: stream.write(text.encode("utf-8")))


def _cell_seed(seed: int, cell: Cell) -> int:
    return seed * 1_000_003 + sum(map(ord, cell.key)) * 7919


def cell_config(cell: Cell, preset: Preset, *, image_size: int, channels: int) -> dict[str, Any]:
    r"""The resolved configuration of one cell: model, method, schedules, tuning, evaluation.

    This is what ``shortinfer bench ... --print-config`` prints, and what `build_trainer`
    builds, so a user can see what a run will train before spending GPU-days on it.

    Examples:
        >>> from shortinfer.bench._presets import get_preset
        >>> config = cell_config(Cell("short_run", 5, 25), get_preset("paper"), image_size=32,
        ...                      channels=3)
        >>> config["model"]["latent_sizes"], config["tuning"]["objective"]
        ([64, 64, 64, 96, 128], 'conditional')
        >>> config["step_size"]["initial_s"], config["step_size"]["initial_delta"]
        (0.00125, 0.05)
    """
    if cell.method not in METHODS:
        raise ArgumentError(f"cell method must be one of {METHODS}; received {cell.method!r}.")
    abp = cell.method == "abp"
    step_size = float(step_size_from_delta(preset.abp_delta)) if abp else preset.step_size
    config: dict[str, Any] = {
        "cell": cell.key,
        "method": cell.method,
        "model": {
            "class": "LadderVAE" if cell.method == "ladder_vae" else "MultiLayerGenerator",
            "image_size": image_size,
            "channels": channels,
            "latent_sizes": list(preset.latent_sizes_at(cell.num_layers)),
            "num_filters": preset.num_filters,
        },
        "num_iterations": preset.num_iterations,
        "batch_size": preset.batch_size,
        "learning_rate": preset.learning_rate_schedule()._asdict(),
        "sigma": {"fixed": preset.abp_sigma} if abp else dict(preset.sigma_schedule()._asdict()),
        "num_steps": preset.abp_num_steps if abp else cell.num_steps,
        "step_size": {
            "initial_s": step_size,
            "initial_delta": float(f"{float(delta_from_step_size(step_size)):.6g}"),
        },
        "tuning": None,
        "checkpoint_interval": preset.checkpoint_every,
        "log_interval": preset.log_every,
        "evaluation": {
            "num_test": preset.num_test,
            "num_elbo_images": preset.num_elbo_images,
            "elbo_objective": "conditional",
            "num_fid_samples": preset.num_fid_samples,
        },
    }
    if cell.method == "short_run" and preset.tune_every:
        config["tuning"] = {
            "method": "grid",
            "interval": preset.tune_every,
            "objective": preset.tune_objective,
            "grid_s": list(preset.tune_grid),
            "grid_delta": [
                float(f"{float(delta_from_step_size(s)):.4g}") for s in preset.tune_grid
            ],
            "refine": preset.tune_refine,
            "batch_size": preset.tune_batch,
            "num_samples": preset.tune_samples,
        }
    if cell.method == "ladder_vae":
        config["kl_warmup_fraction"] = preset.kl_warmup_fraction
    return config


def build_trainer(
    cell: Cell,
    data: BenchData,
    preset: Preset,
    folder: Path | None,
    *,
    device: str = "cpu",
    seed: int = 0,
) -> Trainer:
    r"""A fresh model and the `shortinfer.train.Trainer` that trains one cell.

    The model is initialised from the cell's seed; the trainer's data order and chains come
    from the same seed.

    Examples:
        >>> from shortinfer.bench._presets import get_preset
        >>> data = BenchData("mnist5k", torch.rand(8, 1, 28, 28) * 2 - 1, torch.rand(4, 1, 28, 28))
        >>> trainer = build_trainer(Cell("ladder_vae", 1, 25), data, get_preset("smoke"), None)
        >>> type(trainer.model).__name__, trainer.method.name
        ('LadderVAE', 'ladder_vae')
    """
    config = cell_config(
        cell, preset, image_size=data.train.shape[-1], channels=data.train.shape[1]
    )
    cell_seed = _cell_seed(seed, cell)
    torch.manual_seed(cell_seed)
    abp = cell.method == "abp"
    generator = MultiLayerGenerator(
        image_size=config["model"]["image_size"],
        channels=config["model"]["channels"],
        latent_sizes=tuple(config["model"]["latent_sizes"]),
        num_filters=preset.num_filters,
        sigma=preset.abp_sigma if abp else preset.sigma_start,
    )
    model: torch.nn.Module = LadderVAE(generator) if cell.method == "ladder_vae" else generator
    method: TrainingMethod | None = None
    if cell.method == "ladder_vae":
        method = LadderVAEMethod(kl_warmup_fraction=preset.kl_warmup_fraction)
    elif abp:
        method = PersistentChainsMethod(
            data.train.shape[0],
            generator.latent_shapes,
            num_steps=preset.abp_num_steps,
            step_size=config["step_size"]["initial_s"],
            seed=cell_seed,
        )
    tuning = None
    if config["tuning"] is not None:
        tune = config["tuning"]
        tuning = StepSizeTuning(
            method="grid",
            interval=tune["interval"],
            estimator=EntropyEstimator(tune["objective"]),
            grid=tuple(tune["grid_s"]),
            batch_size=tune["batch_size"],
            num_samples=tune["num_samples"],
            refine=tune["refine"],
        )
    return Trainer(
        model,
        data.train,
        num_iterations=preset.num_iterations,
        batch_size=preset.batch_size,
        num_steps=config["num_steps"],
        step_size=config["step_size"]["initial_s"],
        tuning=tuning,
        learning_rate=preset.learning_rate_schedule(),
        sigma=None if abp else preset.sigma_schedule(),
        seed=cell_seed % 2**62,
        output_dir=folder,
        checkpoint_interval=preset.checkpoint_every,
        log_interval=preset.log_every,
        progress=False,
        device=device,
        method=method,
    )


def _posterior(trainer: Trainer, x: Tensor, seed: int) -> ShortRunPosterior:
    generator = _generator_of(trainer.model)
    return short_run(
        generator.log_joint,
        x,
        latent_shape=generator.latent_shapes,
        num_steps=trainer.num_steps,
        step_size=trainer.step_size,
        generator=torch.Generator(device=x.device).manual_seed(seed),
        validate=False,
    )


def _generator_of(model: torch.nn.Module) -> MultiLayerGenerator:
    return model.generator if isinstance(model, LadderVAE) else model  # type: ignore[return-value]


@torch.no_grad()
def _decode(generator: Any, z: Any) -> Tensor:
    return generator.decode(z)


def _reconstruct(trainer: Trainer, x: Tensor, seed: int) -> Tensor:
    if isinstance(trainer.model, LadderVAE):
        with torch.no_grad():
            return trainer.model.reconstruct(x)
    return _decode(_generator_of(trainer.model), _posterior(trainer, x, seed).sample())


#: Held-out images per ELBO evaluation, and Jacobian rows pushed at once.
_ELBO_IMAGES = 8
_ELBO_JACOBIAN_ROWS = 64


def _elbo(trainer: Trainer, x: Tensor, seed: int) -> Tensor:
    if isinstance(trainer.model, LadderVAE):
        with torch.no_grad():
            return trainer.model.elbo(x)
    # The paper's conditional bound: a true lower bound, comparable with the Ladder-VAE's.
    # elbo() keeps no graph for the parameters; a few images and Jacobian rows at a time
    # bound the memory of the exact Jacobian's transforms at large D.
    parts = [
        _posterior(trainer, part, seed + index)
        .elbo(objective="conditional", chunk_size=_ELBO_JACOBIAN_ROWS)
        .detach()
        for index, part in enumerate(x.split(_ELBO_IMAGES))
    ]
    return torch.cat(parts)


def evaluate_cell(
    trainer: Trainer, data: BenchData, preset: Preset, *, seed: int = 0
) -> dict[str, Any]:
    r"""Reconstruction MSE and per-image ELBO on held-out images; grids' images.

    Short-run reconstructions decode one short-run sample at the trained step size (a chain
    that diverges raises `shortinfer.ChainDivergenceError`; nothing is retried at another step
    size); Ladder-VAE reconstructions decode the posterior mean.

    Returns:
        ``{"mse": float, "mse_std_error": float, "num_test": int, "elbo": float,
        "num_elbo_images": int, "images": {"samples", "reconstructions", "originals"}}``.
    """
    device = trainer.device
    trainer.model.eval()
    test = data.test[: preset.num_test]
    errors = []
    for index, start in enumerate(range(0, test.shape[0], preset.eval_batch_size)):
        x = test[start : start + preset.eval_batch_size].to(device)
        errors.append(reconstruction_mse(x, _reconstruct(trainer, x, seed + index)).cpu())
    mse = torch.cat(errors)
    x_elbo = test[: preset.num_elbo_images].to(device)
    elbo = _elbo(trainer, x_elbo, seed).cpu()
    grid_x = test[:_NUM_GRID_IMAGES].to(device)
    with torch.no_grad():
        samples = _generator_of(trainer.model).sample_images(_NUM_GRID_SAMPLES).cpu()
    return {
        "mse": float(mse.mean()),
        "mse_std_error": (float(mse.std() / mse.numel() ** 0.5) if mse.numel() > 1 else 0.0),
        "num_test": int(mse.numel()),
        "elbo": float(elbo.mean()),
        "num_elbo_images": int(elbo.numel()),
        "images": {
            "samples": samples,
            "reconstructions": _reconstruct(trainer, grid_x, seed).cpu(),
            "originals": grid_x.cpu(),
        },
    }


def run_cell(
    cell: Cell,
    data: BenchData,
    preset: Preset,
    out: Path,
    *,
    device: str = "cpu",
    seed: int = 0,
    stop_after: float | None = None,
) -> dict[str, Any] | None:
    r"""Train (or resume) and evaluate one cell with `shortinfer.train.Trainer`.

    Arguments:
        cell: What to train.
        data: The images.
        preset: Budget and sizes.
        out: The run folder (the cell lives in ``out/cells/<cell.key>``).
        device: Where to train.
        seed: Base seed; each cell's seed is derived from it and the cell's key.
        stop_after: Stop training (after checkpointing) once this many seconds have passed
            in this call; the cell stays unfinished and a rerun resumes it.

    Returns:
        The result dict, or ``None`` when stopped early. An existing ``result.json`` is read
        and returned without training.

    Raises:
        CheckpointError: If the cell's ``latest.pt`` was written for another configuration
            (the message names the differing settings).

    Examples:
        A two-update cell on random images (it logs progress lines, silenced here):

        >>> import contextlib, io, tempfile
        >>> from shortinfer.bench import get_preset
        >>> images = torch.rand(12, 1, 28, 28) * 2 - 1
        >>> data = BenchData("mnist5k", images[:8], images[8:])
        >>> preset = get_preset("smoke", num_iterations=2, num_test=4)
        >>> with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        ...     result = run_cell(Cell("short_run", 1, 2), data, preset, Path(tmp))
        ...     again = run_cell(Cell("short_run", 1, 2), data, preset, Path(tmp))
        >>> result["key"], result["num_iterations"], result["num_test"]
        ('short_run-L1-K2', 2, 4)
        >>> again == result  # the second call read result.json instead of training
        True
    """
    folder = out / "cells" / cell.key
    result_path = folder / "result.json"
    if result_path.is_file():
        _log(f"{cell.key}: result exists, skipped")
        return json.loads(result_path.read_text())
    _claim_cell_folder(cell, data, preset, folder)
    trainer = build_trainer(cell, data, preset, folder, device=device, seed=seed)
    checkpoint = folder / LATEST_NAME
    if checkpoint.is_file():
        _log(f"{cell.key}: resuming from {checkpoint}")
    else:
        _log(f"{cell.key}: training {preset.num_iterations} iterations")
    fitted = trainer.fit(resume=True, max_seconds=stop_after)
    if fitted.iterations < preset.num_iterations:
        _log(f"{cell.key}: stopped at iteration {fitted.iterations} (checkpointed)")
        return None
    evaluation_start = time.perf_counter()
    evaluation = evaluate_cell(trainer, data, preset, seed=_cell_seed(seed, cell) + 1)
    torch.save(evaluation.pop("images"), folder / "images.pt")
    result = _cell_result(cell, data, preset, trainer, device=device)
    result["eval_seconds"] = time.perf_counter() - evaluation_start
    result.update(evaluation)
    _write_json(result, result_path)
    _log(
        f"{cell.key}: MSE {result['mse']:.4f}, ELBO {result['elbo']:.1f} "
        f"(train {trainer.train_seconds:.0f}s)"
    )
    return result


def _claim_cell_folder(cell: Cell, data: BenchData, preset: Preset, folder: Path) -> None:
    """Write ``cell.json``, or refuse a folder that holds a cell of another configuration."""
    folder.mkdir(parents=True, exist_ok=True)
    config = cell_config(
        cell, preset, image_size=data.train.shape[-1], channels=data.train.shape[1]
    )
    config_path = folder / "cell.json"
    if config_path.is_file() and json.loads(config_path.read_text()) != json.loads(
        json.dumps(config)
    ):
        raise ArgumentError(
            f"{folder} holds a cell trained with another configuration (see {config_path}); "
            "use another --out folder, or delete that cell's folder to retrain it."
        )
    _write_json(config, config_path)


def _cell_result(
    cell: Cell, data: BenchData, preset: Preset, trainer: Trainer, *, device: str
) -> dict[str, Any]:
    """What ``result.json`` records of a trained cell, before its evaluation is added."""
    generator = _generator_of(trainer.model)
    step_size = float(trainer.step_size) if cell.method != "ladder_vae" else None
    return {
        "cell": cell.to_dict(),
        "key": cell.key,
        "dataset": data.name,
        "preset": preset.name,
        "num_iterations": preset.num_iterations,
        "batch_size": preset.batch_size,
        "latent_sizes": list(generator.latent_sizes),
        "num_filters": generator.num_filters,
        "sigma": generator.sigma,
        "objective": preset.tune_objective if cell.method == "short_run" else None,
        "step_size": step_size,
        "delta": float(delta_from_step_size(step_size)) if step_size is not None else None,
        "step_size_history": [
            {"iteration": record.iteration, "step_size": record.step_size}
            for record in trainer.history
        ],
        "tuning_rejected": [
            {"iteration": trace["iteration"], "step_size": step, "reason": reason}
            for trace in trainer.traces
            for step, reason in trace.get("rejected", ())
        ],
        "train_seconds": trainer.train_seconds,
        "device": str(device),
    }


def _data_statistics(out: Path, data: BenchData, count: int, model: Any) -> Any:
    from shortinfer.metrics import FIDStatistics, feature_statistics

    path = out / f"data_fid_stats_{count}.npz"
    if path.is_file():
        return FIDStatistics.load(path)
    stats = feature_statistics(data.train[:count], model, batch_size=50)
    stats.save(path)
    return stats


def _generated(generator: Any, total: int, size: int = 50) -> Iterable[Tensor]:
    for start in range(0, total, size):
        with torch.no_grad():
            yield generator.sample_images(min(size, total - start))


def run_fid(
    cells: Iterable[Cell],
    data: BenchData,
    preset: Preset,
    out: Path,
    *,
    weights: str | None = None,
    device: str = "cpu",
    seed: int = 0,
) -> str | None:
    r"""FID between generated images and training images for every finished cell.

    ``min(preset.num_fid_samples, N_train)`` images on each side; the result goes to
    ``cells/<cell>/fid.json``. Cells with a ``fid.json`` for the same count are skipped.

    Returns:
        ``None``, or a note saying why FID was skipped (no Inception weights, or 0 samples).

    Examples:
        A real FID pass needs the Inception-v3 weights and trained cells (`run_benchmark`
        runs it after training); with no samples asked for it returns at once:

        >>> import tempfile
        >>> from shortinfer.bench import get_preset
        >>> images = torch.rand(12, 1, 28, 28) * 2 - 1
        >>> data = BenchData("mnist5k", images[:8], images[8:])
        >>> preset = get_preset("smoke", num_fid_samples=0)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     run_fid(plan_cells(preset), data, preset, Path(tmp))
        'FID skipped: num_fid_samples is 0.'
    """
    count = min(preset.num_fid_samples, data.train.shape[0])
    if count < 2:
        return "FID skipped: num_fid_samples is 0."
    from shortinfer.metrics import feature_statistics, frechet_distance, load_inception

    try:
        network = load_inception(weights, device=device)
    except FileNotFoundError as err:
        return f"FID skipped: no Inception weights found ({err})"
    reference = None
    for cell in cells:
        folder = out / "cells" / cell.key
        target = folder / "fid.json"
        if not (folder / "result.json").is_file() or not (folder / LATEST_NAME).is_file():
            continue
        if target.is_file() and json.loads(target.read_text()).get("num_samples") == count:
            continue
        if reference is None:
            _log(f"FID: data statistics on {count} training images")
            reference = _data_statistics(out, data, count, network)
        saved = load_checkpoint(folder / LATEST_NAME, map_location=device)
        config = saved["model_config"]
        generator = MultiLayerGenerator.from_config(
            config["generator"] if cell.method == "ladder_vae" else config
        ).to(device)
        prefix = "generator." if cell.method == "ladder_vae" else ""
        generator.load_state_dict(
            {k[len(prefix) :]: v for k, v in saved["model_state"].items() if k.startswith(prefix)}
        )
        generator.eval()
        torch.manual_seed(seed + 12345)
        started = time.perf_counter()

        fake = feature_statistics(_generated(generator, count), network)
        value = float(frechet_distance(fake.mu, fake.sigma, reference.mu, reference.sigma))
        _write_json(
            {"fid": value, "num_samples": count, "seconds": time.perf_counter() - started}, target
        )
        _log(f"FID {cell.key}: {value:.2f} on {count} samples")
    return None


def _write_run_info(
    out: Path,
    data: BenchData,
    preset: Preset,
    cells: Sequence[Cell],
    *,
    device: str,
    command: str | None,
) -> None:
    """Write ``run.json``, or refuse a folder that holds a run with other settings."""
    run_info = {
        "dataset": data.name,
        "num_train": int(data.train.shape[0]),
        "num_test_available": int(data.test.shape[0]),
        "image_shape": list(data.train.shape[1:]),
        "preset": preset.to_dict(),
        "device": device,
        "environment": environment(),
        "command": command or " ".join(sys.argv),
        "cells": [cell.key for cell in cells],
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    run_path = out / "run.json"
    if run_path.is_file():
        previous = json.loads(run_path.read_text())
        if previous.get("preset") != run_info["preset"] or previous.get("dataset") != data.name:
            raise ArgumentError(
                f"{out} holds a run of dataset {previous.get('dataset')!r} with preset "
                f"{previous.get('preset', {}).get('name')!r} and different settings; pass "
                "another --out folder to start a new run."
            )
        run_info["started"] = previous.get("started", run_info["started"])
        run_info["resumed"] = time.strftime("%Y-%m-%d %H:%M:%S")
    _write_json(run_info, run_path)


def run_benchmark(
    data: BenchData,
    preset: Preset,
    out: str | Path,
    *,
    device: str = "cpu",
    abp: bool = False,
    fid: bool = True,
    fid_weights: str | None = None,
    seed: int = 0,
    command: str | None = None,
    report: Callable[..., Any] | None = None,
) -> list[dict[str, Any]]:
    r"""Run every cell of `plan_cells`, then FID, then write ``results.md``.

    Arguments:
        data: Training and held-out images.
        preset: Budget and sizes.
        out: Output folder (created; reused on reruns, which skip finished cells).
        device: ``"cpu"`` or ``"cuda"``.
        abp: Also train the ABP baseline (L = 1).
        fid: Compute FID (needs Inception weights; see
            `shortinfer.metrics.resolve_inception_weights`).
        fid_weights: Explicit Inception weight file.
        seed: Base seed.
        command: The command line, recorded in ``run.json``.
        report: The function writing the report; defaults to
            `shortinfer.bench.write_report`.

    Returns:
        The result dicts of all cells, in plan order.

    Examples:
        One layer count and one K (so two cells: short-run and Ladder-VAE), two updates
        each, no FID; the progress lines are silenced:

        >>> import contextlib, io, tempfile
        >>> from shortinfer.bench import get_preset
        >>> images = torch.rand(12, 1, 28, 28) * 2 - 1
        >>> data = BenchData("mnist5k", images[:8], images[8:])
        >>> preset = get_preset("smoke", num_iterations=2, layers=(1,), num_steps=2,
        ...                     steps_ablation=(2,), num_test=4)
        >>> with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        ...     results = run_benchmark(data, preset, tmp, fid=False)
        ...     written = sorted(path.name for path in Path(tmp).iterdir())
        >>> [result["key"] for result in results]
        ['short_run-L1-K2', 'ladder_vae-L1']
        >>> written
        ['cells', 'fig3_reconstructions.png', 'results.md', 'run.json', 'samples_side_by_side.png']
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cells = plan_cells(preset, abp=abp)
    _write_run_info(out, data, preset, cells, device=device, command=command)
    if report is None:
        from shortinfer.bench._results import write_report as report
    # Table 1's cells first, with their FID and a report, so that an interrupted run has the
    # headline comparison; then the K ablation, cheapest first.
    first = [cell for cell in cells if "table1" in cell.tables]
    rest = sorted(
        (cell for cell in cells if "table1" not in cell.tables),
        key=lambda cell: (cell.method != "short_run", cell.num_steps),
    )
    results: dict[str, dict[str, Any] | None] = {}
    note: str | None = None
    for group in (first, rest):
        for cell in group:
            results[cell.key] = run_cell(cell, data, preset, out, device=device, seed=seed)
        note = (
            run_fid(cells, data, preset, out, weights=fid_weights, device=device, seed=seed)
            if fid
            else "FID skipped: turned off with --no-fid."
        )
        if note:
            _log(note)
        report(out, note=note)
    return [r for cell in cells if (r := results.get(cell.key)) is not None]
