r"""``results.md`` and Fig.-3-style image grids from a benchmark run folder.

The report lays out Table 1 (Ladder-VAE vs short-run inference for L = 1, 3, 5), Table 3a
(varying L, K = 25) and Table 3b (varying K, L = 5) as in the paper, with the paper's numbers
beside ours, each cell's budget and wall time, and the machine and versions of the run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from shortinfer._atomic import atomic_write
from shortinfer._markdown import grid_with_deltas, image_section, table
from shortinfer._step_size import describe_step_size
from shortinfer.train._report import image_grid

__all__ = [
    "PAPER_TABLE1",
    "PAPER_TABLE3A",
    "PAPER_TABLE3B",
    "save_png",
    "write_report",
]

# Nijkamp et al. (2020), Table 1: (MSE, FID) per data set; None where the paper has "-".
PAPER_TABLE1: dict[str, dict[tuple[str, int], tuple[float | None, float | None]]] = {
    "MNIST": {
        ("ladder_vae", 1): (0.020, None),
        ("ladder_vae", 3): (0.018, None),
        ("ladder_vae", 5): (0.018, None),
        ("short_run", 1): (0.019, None),
        ("short_run", 3): (0.017, None),
        ("short_run", 5): (0.015, None),
    },
    "SVHN": {
        ("ladder_vae", 1): (0.019, 46.78),
        ("ladder_vae", 3): (0.015, 41.72),
        ("ladder_vae", 5): (0.014, 39.26),
        ("short_run", 1): (0.018, 44.86),
        ("short_run", 3): (0.015, 39.02),
        ("short_run", 5): (0.011, 35.23),
    },
    "CelebA 32x32": {
        ("ladder_vae", 1): (0.031, 69.90),
        ("ladder_vae", 3): (0.029, 58.33),
        ("ladder_vae", 5): (0.028, 53.40),
        ("short_run", 1): (0.019, 45.74),
        ("short_run", 3): (0.018, 41.15),
        ("short_run", 5): (0.011, 36.84),
    },
}
# Table 3a: CelebA 64x64, K = 25, L -> (MSE, FID).
PAPER_TABLE3A: dict[int, tuple[float, float]] = {
    1: (0.020, 61.03),
    3: (0.018, 52.19),
    5: (0.015, 47.95),
}
# Table 3b: CelebA 32x32, L = 5, K -> (MSE, FID).
PAPER_TABLE3B: dict[int, tuple[float, float]] = {
    5: (0.045, 82.79),
    10: (0.037, 67.38),
    25: (0.011, 36.84),
    50: (0.010, 35.39),
    400: (0.010, 35.16),
}
# Table 2, ABP column (L = 1): FID.
PAPER_ABP_FID = {"SVHN": 49.71, "CelebA 32x32": 51.50}


def _paper_column(dataset: str, image_size: int) -> str | None:
    if dataset.startswith(("mnist", "fashion")):
        return "MNIST"
    if dataset.startswith("svhn"):
        return "SVHN"
    if dataset.startswith("celeba") and image_size == 32:
        return "CelebA 32x32"
    return None


def save_png(pixels: Tensor, path: str | Path) -> None:
    """Save ``(H, W, C)`` uint8 pixels from `shortinfer.train._report.image_grid` as a PNG (needs
    Pillow); one channel is saved as RGB grey."""
    from PIL import Image

    Image.fromarray(_rgb(pixels).numpy()).save(path)


def _rgb(pixels: Tensor) -> Tensor:
    return pixels.expand(*pixels.shape[:2], 3) if pixels.shape[2] == 1 else pixels


def _side_by_side(left: Tensor, right: Tensor, gap: int = 8) -> Tensor:
    left, right = _rgb(left), _rgb(right)
    height = max(left.shape[0], right.shape[0])

    def pad(pixels: Tensor) -> Tensor:
        extra = torch.full((height - pixels.shape[0], pixels.shape[1], 3), 255, dtype=torch.uint8)
        return torch.cat([pixels, extra], 0)

    spacer = torch.full((height, gap, 3), 255, dtype=torch.uint8)
    return torch.cat([pad(left), spacer, pad(right)], 1)


def _load(out: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    run = json.loads((out / "run.json").read_text())
    cells: dict[str, dict[str, Any]] = {}
    for key in run["cells"]:
        folder = out / "cells" / key
        if (folder / "result.json").is_file():
            cells[key] = json.loads((folder / "result.json").read_text())
            if (folder / "fid.json").is_file():
                cells[key]["fid_result"] = json.loads((folder / "fid.json").read_text())
    return run, cells


def _fmt(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _mse(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "not finished"
    return f"{cell['mse']:.4f} ± {cell['mse_std_error']:.4f}"


def _fid(cell: dict[str, Any] | None) -> str:
    if cell is None or "fid_result" not in cell:
        return "—"
    return f"{cell['fid_result']['fid']:.1f}"


def _elbo(cell: dict[str, Any] | None) -> str:
    return "—" if cell is None or cell.get("elbo") is None else f"{cell['elbo']:.1f}"


def _minutes(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "—"
    return f"{(cell['train_seconds'] + cell['eval_seconds']) / 60:.1f}"


def _table3(
    heading: str,
    name: str,
    rows: dict[int, dict[str, Any] | None],
    paper: dict[int, tuple[float, float]],
    *,
    wall_minutes: bool = False,
) -> list[str]:
    """Markdown lines of a Table 3 panel: one row per L (3a) or K (3b), ours beside the paper."""
    header = [name, "MSE (ours)", "MSE (paper)", "FID (ours)", "FID (paper)", "ELBO (ours)"]
    body = []
    for value, cell in rows.items():
        paper_mse, paper_fid = paper.get(value, (None, None))
        row = [str(value), _mse(cell), _fmt(paper_mse, 3), _fid(cell), _fmt(paper_fid, 2)]
        body.append([*row, _elbo(cell)] + ([_minutes(cell)] if wall_minutes else []))
    return ["", heading, "", *table(header + (["wall min"] if wall_minutes else []), body)]


def _write_grids(out: Path, run: dict[str, Any], cells: dict[str, dict[str, Any]]) -> list[str]:
    top = max(run["preset"]["layers"])
    steps = run["preset"]["num_steps"]
    vae_key, sr_key = f"ladder_vae-L{top}", f"short_run-L{top}-K{steps}"
    if vae_key not in cells or sr_key not in cells:
        return []
    try:
        import PIL  # noqa: F401
    except ImportError:
        return []
    names = ["fig3_reconstructions.png", "samples_side_by_side.png"]
    sources = [out / "cells" / key / "images.pt" for key in (vae_key, sr_key)]
    if not all(path.is_file() for path in sources):
        # The image tensors are not part of a committed results folder; keep the grids that
        # were drawn when the cells ran.
        return [name for name in names if (out / name).is_file()]
    vae = torch.load(out / "cells" / vae_key / "images.pt", weights_only=True)
    ours = torch.load(out / "cells" / sr_key / "images.pt", weights_only=True)
    rows = torch.cat([ours["originals"], vae["reconstructions"], ours["reconstructions"]])
    columns = ours["originals"].shape[0]
    save_png(image_grid(rows, num_columns=columns), out / "fig3_reconstructions.png")
    save_png(
        _side_by_side(
            image_grid(vae["samples"], num_columns=8),
            image_grid(ours["samples"], num_columns=8),
            gap=16,
        ),
        out / "samples_side_by_side.png",
    )
    return names


def write_report(out: str | Path, *, note: str | None = None) -> Path:
    r"""Write ``OUT/results.md`` (and the PNG grids) from the cells finished so far.

    Arguments:
        out: The run folder written by `shortinfer.bench.run_benchmark`.
        note: A line to print under the tables (e.g. why FID was skipped).

    Returns:
        The path of ``results.md``.

    Examples:
        `shortinfer.bench.run_benchmark` calls it after each group of cells; called again on
        the run folder it redraws the report, e.g. with a note added:

        >>> import contextlib, io, tempfile
        >>> from shortinfer.bench import BenchData, get_preset, run_benchmark
        >>> images = torch.rand(12, 1, 28, 28) * 2 - 1
        >>> tiny = get_preset("smoke", num_iterations=2, layers=(1,), num_steps=2,
        ...                   steps_ablation=(2,))
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     with contextlib.redirect_stdout(io.StringIO()):
        ...         _ = run_benchmark(BenchData("mnist5k", images[:8], images[8:]), tiny, tmp,
        ...                           fid=False)
        ...     text = write_report(tmp, note="rerun by hand").read_text()
        >>> text.splitlines()[0]
        '# shortinfer bench: mnist5k (1×28×28)'
        >>> text.splitlines()[-1]
        'Note: rerun by hand'
    """
    out = Path(out)
    run, cells = _load(out)
    column = _paper_column(run["dataset"], run["image_shape"][-1])
    lines = [
        f"# shortinfer bench: {run['dataset']} ({'×'.join(map(str, run['image_shape']))})",
        *_setup_lines(run, cells),
        *_table1_lines(run, cells, column),
        *_table3_lines(run, cells),
        *_abp_lines(cells, column),
        *_cells_lines(run, cells),
        *_grid_lines(_write_grids(out, run, cells), max(run["preset"]["layers"])),
    ]
    if note:
        lines += ["", f"Note: {note}"]
    path = out / "results.md"
    text = "\n".join(lines) + "\n"
    atomic_write(path, lambda stream: stream.write(text.encode("utf-8")))
    return path


def _preset_line(preset: dict[str, Any]) -> str:
    """The training budget and tuning of every cell, read off the preset's fields."""
    refine = preset.get("tune_refine")
    return (
        f"Preset `{preset['name']}`: {preset['num_iterations']} updates per cell, batch "
        f"{preset['batch_size']}, Adam with learning rates {preset['learning_rates']} in equal "
        f"phases, σ annealed {preset['sigma_start']} → {preset['sigma_end']} over the first "
        f"{preset['sigma_anneal_fraction']:.2f} of the run, n_f = {preset['num_filters']}, "
        f"latent sizes in the Cells table, K = {preset['num_steps']}, step size re-tuned every "
        f"{preset['tune_every']} updates on {preset['tune_batch']} image(s) with the objective "
        f"`{preset.get('tune_objective', 'conditional')}` over the grid "
        f"{grid_with_deltas(preset['tune_grid'])}"
        + (f", refined by {refine} golden-section steps" if refine else "")
        + "."
    )


def _setup_lines(run: dict[str, Any], cells: dict[str, dict[str, Any]]) -> list[str]:
    """The paragraphs under the title: preset, data and metrics, machine, command."""
    preset, env = run["preset"], run["environment"]
    fid_counts = sorted(
        {c["fid_result"]["num_samples"] for c in cells.values() if "fid_result" in c}
    )
    fid = (
        f"{fid_counts} training images (small-sample FID is biased upward; compare only "
        "numbers with the same count)."
        if fid_counts
        else "training images — not computed."
    )
    data = (
        f"Data: {run['num_train']} training images; MSE on "
        f"{min(preset['num_test'], run['num_test_available'])} "
        "held-out images, **per pixel on the [-1, 1] scale** (divide by 4 for the [0, 1] "
        "scale), ± one standard error over images; reconstruction = decoder of one "
        "short-run sample z_K (ours) or of the posterior mean (Ladder-VAE). ELBO: nats per "
        f"image on the first {preset['num_elbo_images']} held-out images, both with the final "
        "σ (short-run: the paper's conditional-entropy bound with the exact log-determinant; "
        f"Ladder-VAE: its own ELBO). FID: generated images vs {fid}"
    )
    machine = (
        f"Device `{run['device']}`; {env.get('cpu', env.get('processor', ''))} on "
        f"{env.get('platform', '')}; torch {env.get('torch')}, shortinfer "
        f"{env.get('shortinfer')}, python {env.get('python')}, {env.get('torch_threads')} "
        "torch thread(s)" + (f", GPU {env['cuda_device']}" if env.get("cuda_device") else "") + "."
    )
    command = f"Command: `{run['command']}`"
    return ["", _preset_line(preset), "", data, "", machine, "", command]


def _short_run_key(layers: int, steps: int) -> str:
    return f"short_run-L{layers}-K{steps}"


def _table1_lines(
    run: dict[str, Any], cells: dict[str, dict[str, Any]], column: str | None
) -> list[str]:
    """Table 1 (Ladder-VAE vs short-run for each L) and the equal-updates comparison."""
    preset, steps = run["preset"], run["preset"]["num_steps"]
    paper = PAPER_TABLE1.get(column or "", {})
    scale = (
        " — the paper's MNIST numbers, shown for scale; the data set differs"
        if column == "MNIST" and run["dataset"] != "mnist"
        else ""
    )
    header = ["Model", "MSE (ours)", "MSE (paper)", "FID (ours)", "FID (paper)", "ELBO (ours)"]
    rows = []
    for method, label in (("ladder_vae", "Ladder-VAE"), ("short_run", "Ours (short-run)")):
        for layers in preset["layers"]:
            key = (
                f"ladder_vae-L{layers}"
                if method == "ladder_vae"
                else _short_run_key(layers, steps)
            )
            cell = cells.get(key)
            paper_mse, paper_fid = paper.get((method, layers), (None, None))
            rows.append(
                [f"{label}, L = {layers}", _mse(cell), _fmt(paper_mse, 3), _fid(cell)]
                + [_fmt(paper_fid, 2), _elbo(cell)]
                + [f"{preset['num_iterations']} × {preset['batch_size']}", _minutes(cell)]
            )
    lines = ["", "## Table 1: Ladder-VAE vs short-run inference", ""]
    lines += [f"Paper column: {column or 'none (the paper has no table for this data set)'}"]
    lines[-1] += scale + "."
    lines += ["", *table([*header, "updates × batch", "wall min"], rows)]
    comparisons = []
    for layers in preset["layers"]:
        vae, ours = cells.get(f"ladder_vae-L{layers}"), cells.get(_short_run_key(layers, steps))
        if vae and ours:
            change = 100 * (ours["mse"] - vae["mse"]) / vae["mse"]
            comparisons.append(
                f"L = {layers}: short-run MSE {ours['mse']:.4f} vs Ladder-VAE "
                f"{vae['mse']:.4f} ({change:+.1f}%)"
            )
    if comparisons:
        lines += ["", "At equal updates: " + "; ".join(comparisons) + "."]
    return lines


def _table3_lines(run: dict[str, Any], cells: dict[str, dict[str, Any]]) -> list[str]:
    """Table 3a (varying L at the preset's K) and 3b (varying K at the largest L)."""
    preset = run["preset"]
    top, steps = max(preset["layers"]), preset["num_steps"]
    return _table3(
        f"## Table 3a: varying L (K = {steps})\n\nPaper: CelebA 64×64.",
        "L",
        {layers: cells.get(_short_run_key(layers, steps)) for layers in preset["layers"]},
        PAPER_TABLE3A,
    ) + _table3(
        f"## Table 3b: varying K (L = {top})\n\n"
        "Paper: CelebA 32×32 (the paper's K = 400 column is not run).",
        "K",
        {k: cells.get(_short_run_key(top, k)) for k in preset["steps_ablation"]},
        PAPER_TABLE3B,
        wall_minutes=True,
    )


def _abp_lines(cells: dict[str, dict[str, Any]], column: str | None) -> list[str]:
    abp = [c for k, c in cells.items() if k.startswith("abp-")]
    if not abp:
        return []
    cell = abp[0]
    return [
        "",
        "## ABP baseline (persistent chains, 40 steps, δ = 0.3, σ = 0.3, L = 1)",
        "",
        f"MSE {_mse(cell)}, FID {_fid(cell)} (paper, Table 2: "
        f"{PAPER_ABP_FID.get(column or '', '—')}), ELBO {_elbo(cell)}.",
    ]


def _cells_lines(run: dict[str, Any], cells: dict[str, dict[str, Any]]) -> list[str]:
    """One row per cell: sizes, objective, final σ and s (with δ), and its wall times."""
    header = ["cell", "latent sizes", "objective", "final σ", "final s (δ)", "train s"]
    rows = []
    for key in run["cells"]:
        cell = cells.get(key)
        if cell is None:
            rows.append([key, "not finished", "", "", "", "", "", ""])
            continue
        step = "—" if cell.get("step_size") is None else describe_step_size(cell["step_size"])
        rows.append(
            [key, str(cell["latent_sizes"]), cell.get("objective") or "—", f"{cell['sigma']:.3g}"]
            + [step, f"{cell['train_seconds']:.0f}", f"{cell['eval_seconds']:.0f}"]
            + [_fmt(cell.get("fid_result", {}).get("seconds"), 0)]
        )
    return ["", "## Cells", "", *table([*header, "eval s", "FID s"], rows)]


def _grid_lines(grids: list[str], top: int) -> list[str]:
    if not grids:
        return []
    return image_section(
        f"Reconstructions and samples (L = {top}, as in the paper's Fig. 3)",
        grids[0],
        text="Top: held-out images. Middle: Ladder-VAE reconstructions. Bottom: short-run "
        "reconstructions.",
    ) + [
        "",
        f"![samples]({grids[1]})",
        "",
        "Left: Ladder-VAE samples. Right: short-run samples (decoder means of prior draws).",
    ]
