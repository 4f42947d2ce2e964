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

__all__ = [
    "PAPER_TABLE1",
    "PAPER_TABLE3A",
    "PAPER_TABLE3B",
    "image_grid",
    "save_png",
    "write_report",
]

# Nijkamp et al. (2020), Table 1: (MSE, FID) per data set; None where the paper has "-".
# Transcribed entry by entry as printed (data, so the repeated shape stays).
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


def image_grid(images: Tensor, *, num_columns: int = 8, padding: int = 2) -> Tensor:
    r"""Tile images into one picture, like ``torchvision.utils.make_grid``.

    Arguments:
        images: Images in $[-1, 1]$, with shape ``(N, C, H, W)``.
        num_columns: Images per row.
        padding: White pixels between images.

    Returns:
        Pixels in $[0, 255]$ as ``uint8``, with shape ``(rows·(H+p)+p, cols·(W+p)+p, 3)``.

    Examples:
        >>> image_grid(torch.zeros(5, 1, 4, 4), num_columns=3, padding=1).shape
        torch.Size([11, 16, 3])
    """
    count, channels, height, width = images.shape
    images = images.detach().float().cpu().clamp(-1, 1)
    if channels == 1:
        images = images.expand(count, 3, height, width)
    columns = max(1, min(num_columns, count))
    rows = -(-count // columns)
    canvas = torch.ones(
        3, rows * (height + padding) + padding, columns * (width + padding) + padding
    )
    for index in range(count):
        top = padding + (index // columns) * (height + padding)
        left = padding + (index % columns) * (width + padding)
        canvas[:, top : top + height, left : left + width] = images[index]
    pixels = ((canvas + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return pixels.permute(1, 2, 0).contiguous()


def save_png(pixels: Tensor, path: str | Path) -> None:
    """Save ``(H, W, 3)`` uint8 pixels from `image_grid` as a PNG (needs Pillow)."""
    from PIL import Image

    Image.fromarray(pixels.numpy()).save(path)


def _side_by_side(left: Tensor, right: Tensor, gap: int = 8) -> Tensor:
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
    extra = " wall min |" if wall_minutes else ""
    lines = [
        "",
        heading,
        "",
        f"| {name} | MSE (ours) | MSE (paper) | FID (ours) | FID (paper) | ELBO (ours) |{extra}",
        "|---|---|---|---|---|---|" + ("---|" if wall_minutes else ""),
    ]
    for value, cell in rows.items():
        paper_mse, paper_fid = paper.get(value, (None, None))
        lines.append(
            f"| {value} | {_mse(cell)} | {_fmt(paper_mse, 3)} | {_fid(cell)} | "
            f"{_fmt(paper_fid, 2)} | {_elbo(cell)} |"
            + (f" {_minutes(cell)} |" if wall_minutes else "")
        )
    return lines


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
        _side_by_side(image_grid(vae["samples"]), image_grid(ours["samples"]), gap=16),
        out / "samples_side_by_side.png",
    )
    return names


def write_report(out: str | Path, *, note: str | None = None) -> Path:
    r"""Write ``OUT/results.md`` (and the PNG grids) from the cells finished so far.

    Arguments:
        out: The run folder written by `shortinfer.bench.runner.run_benchmark`.
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
    preset = run["preset"]
    image_size = run["image_shape"][-1]
    column = _paper_column(run["dataset"], image_size)
    paper1 = PAPER_TABLE1.get(column or "", {})
    top = max(preset["layers"])
    steps = preset["num_steps"]
    env = run["environment"]
    fid_counts = sorted(
        {c["fid_result"]["num_samples"] for c in cells.values() if "fid_result" in c}
    )
    lines = [
        f"# shortinfer bench: {run['dataset']} ({'×'.join(map(str, run['image_shape']))})",
        "",
        f"Preset `{preset['name']}`: {preset['num_iterations']} updates per cell, batch "
        f"{preset['batch_size']}, Adam with learning rates {preset['learning_rates']} in equal "
        f"phases, σ annealed {preset['sigma_start']} → {preset['sigma_end']} over the first "
        f"{preset['sigma_anneal_fraction']:.2f} of the run, n_f = {preset['num_filters']}, "
        f"latent sizes in the Cells table, K = {steps}, "
        f"step size re-tuned every {preset['tune_every']} updates on "
        f"{preset['tune_batch']} image(s) with the objective "
        f"`{preset.get('tune_objective', 'conditional')}` over the grid s = "
        f"{preset['tune_grid']} (δ = √(2s) = "
        f"{[float(f'{(2 * s) ** 0.5:.3g}') for s in preset['tune_grid']]})"
        + (
            f", refined by {preset['tune_refine']} golden-section steps"
            if preset.get("tune_refine")
            else ""
        )
        + ".",
        "",
        f"Data: {run['num_train']} training images; MSE on "
        f"{min(preset['num_test'], run['num_test_available'])} "
        "held-out images, **per pixel on the [-1, 1] scale** (divide by 4 for the [0, 1] "
        "scale), ± one standard error over images; reconstruction = decoder of one "
        "short-run sample z_K (ours) or of the posterior mean (Ladder-VAE). ELBO: nats per "
        f"image on the first {preset['num_elbo_images']} held-out images, both with the final "
        "σ (short-run: the paper's conditional-entropy bound with the exact log-determinant; "
        "Ladder-VAE: its own ELBO). FID: generated images vs "
        + (
            f"{fid_counts} training images (small-sample FID is biased upward; compare only "
            "numbers with the same count)."
            if fid_counts
            else "training images — not computed."
        ),
        "",
        f"Device `{run['device']}`; {env.get('cpu', env.get('processor', ''))} on "
        f"{env.get('platform', '')}; "
        f"torch {env.get('torch')}, shortinfer {env.get('shortinfer')}, python "
        f"{env.get('python')}, {env.get('torch_threads')} torch thread(s)"
        + (f", GPU {env['cuda_device']}" if env.get("cuda_device") else "")
        + ".",
        "",
        f"Command: `{run['command']}`",
        "",
        "## Table 1: Ladder-VAE vs short-run inference",
        "",
        f"Paper column: {column or 'none (the paper has no table for this data set)'}"
        + (
            " — the paper's MNIST numbers, shown for scale; the data set differs"
            if column == "MNIST" and run["dataset"] != "mnist"
            else ""
        )
        + ".",
        "",
        "| Model | MSE (ours) | MSE (paper) | FID (ours) | FID (paper) | ELBO (ours) | "
        "updates × batch | wall min |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method, label in (("ladder_vae", "Ladder-VAE"), ("short_run", "Ours (short-run)")):
        for layers in preset["layers"]:
            key = (
                f"ladder_vae-L{layers}"
                if method == "ladder_vae"
                else f"short_run-L{layers}-K{steps}"
            )
            cell = cells.get(key)
            paper_mse, paper_fid = paper1.get((method, layers), (None, None))
            lines.append(
                f"| {label}, L = {layers} | {_mse(cell)} | {_fmt(paper_mse, 3)} | {_fid(cell)} "
                f"| {_fmt(paper_fid, 2)} | {_elbo(cell)} | "
                f"{preset['num_iterations']} × {preset['batch_size']} | {_minutes(cell)} |"
            )
    comparisons = []
    for layers in preset["layers"]:
        vae = cells.get(f"ladder_vae-L{layers}")
        ours = cells.get(f"short_run-L{layers}-K{steps}")
        if vae and ours:
            change = 100 * (ours["mse"] - vae["mse"]) / vae["mse"]
            comparisons.append(
                f"L = {layers}: short-run MSE {ours['mse']:.4f} vs Ladder-VAE "
                f"{vae['mse']:.4f} ({change:+.1f}%)"
            )
    if comparisons:
        lines += ["", "At equal updates: " + "; ".join(comparisons) + "."]
    lines += _table3(
        f"## Table 3a: varying L (K = {steps})\n\nPaper: CelebA 64×64.",
        "L",
        {layers: cells.get(f"short_run-L{layers}-K{steps}") for layers in preset["layers"]},
        PAPER_TABLE3A,
    )
    lines += _table3(
        f"## Table 3b: varying K (L = {top})\n\n"
        "Paper: CelebA 32×32 (the paper's K = 400 column is not run).",
        "K",
        {k: cells.get(f"short_run-L{top}-K{k}") for k in preset["steps_ablation"]},
        PAPER_TABLE3B,
        wall_minutes=True,
    )
    abp = [c for k, c in cells.items() if k.startswith("abp-")]
    if abp:
        cell = abp[0]
        lines += [
            "",
            "## ABP baseline (persistent chains, 40 steps, δ = 0.3, σ = 0.3, L = 1)",
            "",
            f"MSE {_mse(cell)}, FID {_fid(cell)} (paper, Table 2: "
            f"{PAPER_ABP_FID.get(column or '', '—')}), ELBO {_elbo(cell)}.",
        ]
    lines += [
        "",
        "## Cells",
        "",
        "| cell | latent sizes | objective | final σ | final s (δ) | train s | eval s | FID s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key in run["cells"]:
        cell = cells.get(key)
        if cell is None:
            lines.append(f"| {key} | not finished | | | | | | |")
            continue
        step = (
            "—"
            if cell.get("step_size") is None
            else f"{cell['step_size']:.3g} ({(2 * cell['step_size']) ** 0.5:.3g})"
        )
        fid_seconds = cell.get("fid_result", {}).get("seconds")
        objective = cell.get("objective") or "—"
        lines.append(
            f"| {key} | {cell['latent_sizes']} | {objective} | {cell['sigma']:.3g} | {step} | "
            f"{cell['train_seconds']:.0f} | {cell['eval_seconds']:.0f} | "
            f"{_fmt(fid_seconds, 0)} |"
        )
    grids = _write_grids(out, run, cells)
    if grids:
        lines += [
            "",
            f"## Reconstructions and samples (L = {top}, as in the paper's Fig. 3)",
            "",
            f"![reconstructions]({grids[0]})",
            "",
            "Top: held-out images. Middle: Ladder-VAE reconstructions. Bottom: short-run "
            "reconstructions.",
            "",
            f"![samples]({grids[1]})",
            "",
            "Left: Ladder-VAE samples. Right: short-run samples (decoder means of prior draws).",
        ]
    if note:
        lines += ["", f"Note: {note}"]
    path = out / "results.md"
    text = "\n".join(lines) + "\n"
    atomic_write(path, lambda stream: stream.write(text.encode("utf-8")))
    return path
