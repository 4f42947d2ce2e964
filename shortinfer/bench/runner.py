r"""Benchmark cells: plan, train, evaluate, resume.

A *cell* is one trained model: a method (short-run, Ladder-VAE, ABP), a number of layers L
and, for short-run inference, a number of Langevin steps K. A run lays its cells out as

.. code-block:: text

    OUT/
      run.json                      dataset, preset, device, versions, command
      data_fid_stats.npz            Inception statistics of the data (cached)
      cells/<cell>/checkpoint.pt    resumable training state (written atomically)
      cells/<cell>/metrics.jsonl    loss, lr, sigma, step size during training
      cells/<cell>/result.json      MSE, ELBO, budget, wall time: the cell is done
      cells/<cell>/fid.json         FID (a separate pass, so it can be added later)
      cells/<cell>/images.pt        samples and test reconstructions for the grids

A rerun skips every cell whose ``result.json`` exists and resumes an interrupted cell from its
``checkpoint.pt``; the FID pass likewise skips cells with a ``fid.json`` for the same number of
samples.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from shortinfer._atomic import atomic_write
from shortinfer._version import __version__
from shortinfer.bench.presets import Preset
from shortinfer.bench.trainers import (
    TrainState,
    build_model,
    generator_of,
    short_run_posterior,
    short_run_sample,
    train_step,
)
from shortinfer.metrics import reconstruction_mse
from shortinfer.models import LadderVAE

__all__ = [
    "BenchData",
    "Cell",
    "plan_cells",
    "run_benchmark",
    "run_cell",
    "run_fid",
]

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
        >>> from shortinfer.bench.presets import get_preset
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


def _load_checkpoint(path: Path, cell: Cell, preset: Preset, state: TrainState) -> bool:
    if not path.is_file():
        return False
    saved = torch.load(path, map_location="cpu", weights_only=False)
    if saved.get("cell") != cell.to_dict() or saved.get("preset") != preset.to_dict():
        raise ValueError(
            f"{path} was written by a different cell or preset (saved preset "
            f"{saved.get('preset', {}).get('name')!r}, iterations "
            f"{saved.get('preset', {}).get('num_iterations')}); this run asks for preset "
            f"{preset.name!r} with {preset.num_iterations} iterations. Use another --out "
            "folder, or delete that cell's folder to retrain it."
        )
    state.load_state_dict(saved["state"])
    if state.chains is not None:
        state.chains = state.chains.to(next(state.model.parameters()).device)
    return True


@torch.no_grad()
def _decode(generator: Any, z: dict[str, Tensor]) -> Tensor:
    return generator.decode(z)


def _reconstruct(state: TrainState, cell: Cell, x: Tensor, preset: Preset) -> Tensor:
    if isinstance(state.model, LadderVAE):
        with torch.no_grad():
            return state.model.reconstruct(x)
    generator = generator_of(state.model)
    z, _ = short_run_sample(generator, x, _chain_steps(cell, preset), state.step_size)
    return _decode(generator, z)


def _elbo(state: TrainState, cell: Cell, x: Tensor, preset: Preset) -> Tensor:
    if isinstance(state.model, LadderVAE):
        with torch.no_grad():
            return state.model.elbo(x)
    generator = generator_of(state.model)
    steps = _chain_steps(cell, preset)
    return short_run_posterior(generator, x, steps, state.step_size).elbo().detach()


def _chain_steps(cell: Cell, preset: Preset) -> int:
    """K of the cell's evaluation chains: ABP keeps its training chains' length."""
    return preset.abp_num_steps if cell.method == "abp" else cell.num_steps


def evaluate_cell(
    state: TrainState, cell: Cell, data: BenchData, preset: Preset
) -> dict[str, Any]:
    r"""Reconstruction MSE and per-image ELBO on held-out images; grids' images.

    Returns:
        ``{"mse": float, "mse_std_error": float, "num_test": int, "elbo": float | None,
        "num_elbo_images": int, "images": {"samples", "reconstructions"}}``.
    """
    device = next(state.model.parameters()).device
    state.model.eval()
    test = data.test[: preset.num_test]
    errors = []
    for start in range(0, test.shape[0], preset.eval_batch_size):
        x = test[start : start + preset.eval_batch_size].to(device)
        errors.append(reconstruction_mse(x, _reconstruct(state, cell, x, preset)).cpu())
    mse = torch.cat(errors)
    x_elbo = test[: preset.num_elbo_images].to(device)
    elbo = _elbo(state, cell, x_elbo, preset).cpu()
    grid_x = test[:_NUM_GRID_IMAGES].to(device)
    generator = generator_of(state.model)
    with torch.no_grad():
        samples = generator.sample_images(_NUM_GRID_SAMPLES).cpu()
    return {
        "mse": float(mse.mean()),
        "mse_std_error": (float(mse.std() / mse.numel() ** 0.5) if mse.numel() > 1 else 0.0),
        "num_test": int(mse.numel()),
        "elbo": float(elbo.mean()),
        "num_elbo_images": int(elbo.numel()),
        "images": {
            "samples": samples,
            "reconstructions": _reconstruct(state, cell, grid_x, preset).cpu(),
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
    r"""Train (or resume) and evaluate one cell; write its ``result.json`` atomically.

    Arguments:
        cell: What to train.
        data: The images.
        preset: Budget and sizes.
        out: The run folder (the cell lives in ``out/cells/<cell.key>``).
        device: Where to train.
        seed: Base seed; each cell's seed is derived from it and the cell's key.
        stop_after: Stop training (after checkpointing) once this many seconds have passed
            in this call; the cell stays unfinished and a rerun resumes it. For tests.

    Returns:
        The result dict, or ``None`` when stopped early. An existing ``result.json`` is read
        and returned without training.

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
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed * 1_000_003 + sum(map(ord, cell.key)) * 7919)
    image_size, channels = data.train.shape[-1], data.train.shape[1]
    state = build_model(
        cell.method,
        cell.num_layers,
        preset,
        image_size=image_size,
        channels=channels,
        num_train=data.train.shape[0],
        device=device,
    )
    checkpoint = folder / "checkpoint.pt"
    if _load_checkpoint(checkpoint, cell, preset, state):
        _log(f"{cell.key}: resumed at iteration {state.iteration}/{preset.num_iterations}")
    else:
        _log(f"{cell.key}: training {preset.num_iterations} iterations")

    def save() -> None:
        saved = {"cell": cell.to_dict(), "preset": preset.to_dict(), "state": state.state_dict()}
        atomic_write(checkpoint, lambda stream: torch.save(saved, stream))

    started = time.perf_counter()
    mark = started
    state.model.train()
    with open(folder / "metrics.jsonl", "a", encoding="utf-8") as log:
        while state.iteration < preset.num_iterations:
            indices = torch.randint(data.train.shape[0], (preset.batch_size,))
            x = data.train[indices].to(device)
            numbers = train_step(
                state, cell.method, x, indices.to(device), preset, num_steps=cell.num_steps
            )
            now = time.perf_counter()
            state.elapsed += now - mark
            mark = now
            if state.iteration % preset.log_every == 0 or state.iteration == 1:
                log.write(
                    json.dumps({"iteration": state.iteration, "time": state.elapsed, **numbers})
                    + "\n"
                )
                log.flush()
            if state.iteration % (10 * preset.log_every) == 0:
                _log(
                    f"{cell.key}: {state.iteration}/{preset.num_iterations} "
                    f"loss {numbers['loss']:.1f} s={state.step_size:.3g} "
                    f"({state.elapsed:.0f}s)"
                )
            if (
                state.iteration % preset.checkpoint_every == 0
                or state.iteration == preset.num_iterations
            ):
                save()
            if stop_after is not None and now - started > stop_after:
                save()
                _log(f"{cell.key}: stopped at iteration {state.iteration} (checkpointed)")
                return None
    evaluation_start = time.perf_counter()
    evaluation = evaluate_cell(state, cell, data, preset)
    images = evaluation.pop("images")
    torch.save(images, folder / "images.pt")
    generator = generator_of(state.model)
    result = {
        "cell": cell.to_dict(),
        "key": cell.key,
        "dataset": data.name,
        "preset": preset.name,
        "num_iterations": preset.num_iterations,
        "batch_size": preset.batch_size,
        "latent_sizes": list(generator.latent_sizes),
        "num_filters": generator.num_filters,
        "sigma": generator.sigma,
        "step_size": state.step_size if cell.method != "ladder_vae" else None,
        "step_size_history": state.history,
        "train_seconds": state.elapsed,
        "eval_seconds": time.perf_counter() - evaluation_start,
        "device": str(device),
        **evaluation,
    }
    torch.save(
        {"config": generator.config, "model": state.model.state_dict()}, folder / "model.pt"
    )
    _write_json(result, result_path)
    checkpoint.unlink(missing_ok=True)
    _log(
        f"{cell.key}: MSE {result['mse']:.4f}, ELBO {result['elbo']:.1f} "
        f"(train {state.elapsed:.0f}s)"
    )
    return result


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
    from shortinfer.models import MultiLayerGenerator

    try:
        network = load_inception(weights, device=device)
    except FileNotFoundError as err:
        return f"FID skipped: no Inception weights found ({err})"
    reference = None
    for cell in cells:
        folder = out / "cells" / cell.key
        target = folder / "fid.json"
        if not (folder / "model.pt").is_file():
            continue
        if target.is_file() and json.loads(target.read_text()).get("num_samples") == count:
            continue
        if reference is None:
            _log(f"FID: data statistics on {count} training images")
            reference = _data_statistics(out, data, count, network)
        saved = torch.load(folder / "model.pt", map_location=device, weights_only=False)
        generator = MultiLayerGenerator.from_config(saved["config"]).to(device)
        prefix = "generator." if cell.method == "ladder_vae" else ""
        generator.load_state_dict(
            {k[len(prefix) :]: v for k, v in saved["model"].items() if k.startswith(prefix)}
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
            `shortinfer.bench.results.write_report`.

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
            raise ValueError(
                f"{out} holds a run of dataset {previous.get('dataset')!r} with preset "
                f"{previous.get('preset', {}).get('name')!r} and different settings; pass "
                "another --out folder to start a new run."
            )
        run_info["started"] = previous.get("started", run_info["started"])
        run_info["resumed"] = time.strftime("%Y-%m-%d %H:%M:%S")
    _write_json(run_info, run_path)
    if report is None:
        from shortinfer.bench.results import write_report as report
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
