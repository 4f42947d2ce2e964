r"""What a user looks at after training: PNG grids, step-size plots and ``summary.md``.

- `image_grid` / `save_image_grid`: tile images in $[-1, 1]$ into a PNG.
- `reconstruct`: short-run inference $z_K \sim q_s(z \mid x)$ then $g(z_K)$,
  optionally with a mask of observed pixels (inpainting: the missing pixels drop out of
  ``log_joint``, so $g(z_K)$ fills them in).
- `inpainting_mask`: the mask patterns ``"centre"``, ``"left"``, ``"bottom"``,
  ``"random"``.
- `plot_step_size_history` (the paper's Fig. 6a/b) and `plot_objective_curves`
  (Fig. 6c: the objective $J(s)$ against $s$).
- `write_report`: all of the above, plus ``summary.md``, into one folder.

PNG output needs Pillow and the plots need matplotlib, both in the ``demo`` extra
(``pip install "shortinfer[demo]"``); they are imported only when used.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from shortinfer._checks import ArgumentError, MissingDependencyError
from shortinfer._markdown import cell, image_section, table
from shortinfer._modules import model_method
from shortinfer.metrics._reconstruction import reconstruction_mse
from shortinfer.posterior import short_run
from shortinfer.train._contract import latent_shape_of
from shortinfer.train._trainer import METRICS_NAME, frozen_parameters

__all__ = [
    "INPAINTING_MASKS",
    "SUMMARY_NAME",
    "image_grid",
    "inpainting_mask",
    "plot_objective_curves",
    "plot_step_size_history",
    "read_metrics",
    "reconstruct",
    "save_image_grid",
    "write_report",
    "write_summary",
]

MaskPattern = Literal["centre", "left", "bottom", "random"]

#: Mask patterns of `inpainting_mask`, each naming the *missing* region.
INPAINTING_MASKS: tuple[MaskPattern, ...] = ("centre", "left", "bottom", "random")

#: File name of the Markdown summary that `write_report` writes into the report folder.
SUMMARY_NAME = "summary.md"

_EXTRA_HINT = 'pip install "shortinfer[demo]" (or pip install Pillow matplotlib)'


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as err:
        raise MissingDependencyError(
            f"writing PNG images needs Pillow; install it with {_EXTRA_HINT}."
        ) from err
    return Image


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; never needs a display
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise MissingDependencyError(
            f"plotting needs matplotlib; install it with {_EXTRA_HINT}."
        ) from err
    return plt


def _save_figure(figure: Any, path: str | os.PathLike[str]) -> Path:
    """Lay out ``figure``, write it to ``path`` (making the folder) and close it."""
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    _pyplot().close(figure)
    return path


def image_grid(images: Tensor, *, num_columns: int | None = None, padding: int = 2) -> Tensor:
    r"""Tile images in $[-1, 1]$ into one uint8 picture.

    Pixel values map as $u = \mathrm{round}(127.5 (x + 1))$, clipped to 0..255; the
    padding is white.

    Arguments:
        images: Images with shape ``(N, C, H, W)``, ``C`` = 1 or 3, in $[-1, 1]$.
        num_columns: Images per row (default $\lceil\sqrt N\rceil$).
        padding: Pixels between images and around the border.

    Returns:
        The grid, uint8 with shape ``(rows·(H+p)+p, cols·(W+p)+p, C)``.

    Raises:
        ValueError: If ``images`` is not ``(N, C, H, W)`` with ``N >= 1`` and C in {1, 3}.

    Examples:
        >>> image_grid(torch.zeros(6, 1, 4, 4), num_columns=3, padding=1).shape
        torch.Size([11, 16, 1])
    """
    if (
        not isinstance(images, Tensor)
        or images.dim() != 4
        or images.shape[0] == 0
        or (images.shape[1] not in (1, 3))
    ):
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ArgumentError(
            f"images must have shape (N, C, H, W) with N >= 1 and C in (1, 3); received {shape}."
        )
    count, channels, height, width = images.shape
    columns = num_columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    pixels = ((images.detach().float().cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    grid = torch.full(
        (rows * (height + padding) + padding, columns * (width + padding) + padding, channels),
        255,
        dtype=torch.uint8,
    )
    for index in range(count):
        row, column = divmod(index, columns)
        top, left = padding + row * (height + padding), padding + column * (width + padding)
        grid[top : top + height, left : left + width] = pixels[index].permute(1, 2, 0)
    return grid


def save_image_grid(
    images: Tensor,
    path: str | os.PathLike[str],
    *,
    num_columns: int | None = None,
    padding: int = 2,
    scale: int = 2,
) -> Path:
    r"""Write `image_grid` of ``images`` to a PNG file (needs Pillow).

    Arguments:
        images: Images with shape ``(N, C, H, W)`` in $[-1, 1]$.
        path: The PNG file; parent folders are created.
        num_columns: Images per row.
        padding: Pixels between images.
        scale: Integer upscaling (nearest neighbour), so small digits stay visible.

    Returns:
        The path written.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     save_image_grid(torch.zeros(4, 1, 8, 8), f"{tmp}/grid.png").name
        'grid.png'
    """
    image_module = _pillow()
    grid = image_grid(images, num_columns=num_columns, padding=padding)
    array = grid.numpy()
    picture = image_module.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    if scale > 1:
        picture = picture.resize(
            (picture.width * scale, picture.height * scale), image_module.NEAREST
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
    return path


def inpainting_mask(
    pattern: MaskPattern,
    shape: Sequence[int],
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""A mask of observed pixels (1) and missing pixels (0) for inpainting.

    - ``"centre"``: a centred square of half the height and width is missing;
    - ``"left"``: the left half is missing;
    - ``"bottom"``: the bottom half is missing;
    - ``"random"``: each pixel is missing with probability 1/2 (independently per image).

    Arguments:
        pattern: One of `INPAINTING_MASKS`.
        shape: The image batch shape ``(B, C, H, W)``.
        generator: Randomness for ``"random"``.

    Returns:
        A float mask with shape ``(B, 1, H, W)`` (shared by the channels).

    Raises:
        ValueError: For an unknown pattern or a shape that is not ``(B, C, H, W)``.

    Examples:
        >>> mask = inpainting_mask("left", (1, 1, 4, 4))
        >>> mask[0, 0].tolist()
        [[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]]
    """
    if len(shape) != 4:
        raise ArgumentError(f"shape must be (B, C, H, W); received {tuple(shape)}.")
    batch, _, height, width = (int(s) for s in shape)
    mask = torch.ones(batch, 1, height, width)
    if pattern == "centre":
        top, left = height // 4, width // 4
        mask[:, :, top : top + height // 2, left : left + width // 2] = 0
    elif pattern == "left":
        mask[:, :, :, : width // 2] = 0
    elif pattern == "bottom":
        mask[:, :, height // 2 :, :] = 0
    elif pattern == "random":
        mask = (torch.rand(batch, 1, height, width, generator=generator) >= 0.5).float()
    else:
        raise ArgumentError(
            f"pattern must be one of {list(INPAINTING_MASKS)}; received {pattern!r}."
        )
    return mask


def reconstruct(
    model: nn.Module,
    x: Tensor,
    *,
    num_steps: int,
    step_size: Any,
    mask: Tensor | None = None,
    latent_shape: Any = None,
    generator: torch.Generator | None = None,
    batch_size: int = 250,
) -> Tensor:
    r"""Reconstruct (or inpaint) ``x``: $g(z_K)$ with $z_K \sim q_s(z \mid x)$.

    With a ``mask``, inference uses ``model.log_joint(x, z, mask=mask)``, in which missing
    pixels do not count, so $g(z_K)$ fills them from what the model learned.

    Arguments:
        model: A model with ``log_joint(x, z[, mask=])``, ``decode(z)`` and
            ``latent_shapes`` (or pass ``latent_shape``).
        x: Images with shape ``(B, C, H, W)``.
        num_steps: K.
        step_size: s (float, ``(K,)`` tensor, or dict per block).
        mask: Observed pixels (1) and missing ones (0), broadcastable to ``x``, e.g.
            ``(B, 1, H, W)`` from `inpainting_mask`.
        latent_shape: Per-example latent shape (default ``model.latent_shapes``).
        generator: Randomness of the chains.
        batch_size: Images per inference call (bounds memory).

    Returns:
        $g(z_K)$ with the shape of ``x``.

    Examples:
        >>> from shortinfer.models import MultiLayerGenerator
        >>> model = MultiLayerGenerator(image_size=28, channels=1, latent_sizes=(4,),
        ...                             num_filters=4)
        >>> reconstruct(model, torch.zeros(3, 1, 28, 28), num_steps=2, step_size=0.05).shape
        torch.Size([3, 1, 28, 28])
    """
    shape = latent_shape_of(model, latent_shape)
    model_log_joint = model_method(model, "log_joint")
    decode = model_method(model, "decode")
    outputs = []
    with frozen_parameters(model):
        for start in range(0, x.shape[0], batch_size):
            chunk = x[start : start + batch_size]
            if mask is None:
                observed: Any = chunk

                def log_joint(data: Any, z: Any) -> Tensor:
                    return model_log_joint(data, z)
            else:
                piece = torch.broadcast_to(mask, (x.shape[0], *mask.shape[1:]))
                observed = (chunk, piece[start : start + batch_size].to(chunk))

                def log_joint(data: Any, z: Any) -> Tensor:
                    return model_log_joint(data[0], z, mask=data[1])

            posterior = short_run(
                log_joint,
                observed,
                latent_shape=shape,
                num_steps=num_steps,
                step_size=step_size,
                generator=generator,
                validate=False,
            )
            z = posterior.sample()
            with torch.no_grad():
                outputs.append(decode(z))
    return torch.cat(outputs)


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    r"""Read a ``metrics.jsonl`` log (skipping torn lines) as a list of dicts.

    Arguments:
        path: The JSON-lines file.

    Returns:
        One dict per row, in file order.

    Examples:
        >>> read_metrics("no-such-file.jsonl")
        []
    """
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _scalar_step(value: Any) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    return None


def plot_step_size_history(
    history: Sequence[Any], path: str | os.PathLike[str], *, title: str | None = None
) -> Path:
    r"""Plot the tuned step size against the training iteration (the paper's Fig. 6a/b).

    Arguments:
        history: `shortinfer.train.StepSizeRecord` items (or ``(iteration, step_size,
            objective)`` triples). Per-step or per-block step sizes are drawn as their mean.
        path: The PNG file.
        title: Plot title.

    Returns:
        The path written.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     plot_step_size_history([(0, 0.1, 5.0), (10, 0.05, 4.0)], f"{tmp}/s.png").name
        's.png'
    """
    plt = _pyplot()
    iterations, values = [], []
    for iteration, step_size, _ in history:
        scalar = _scalar_step(step_size)
        if scalar is None:
            leaves = torch.as_tensor(
                list(step_size.values()) if isinstance(step_size, Mapping) else step_size,
                dtype=torch.float64,
            )
            scalar = float(leaves.mean())
        iterations.append(int(iteration))
        values.append(scalar)
    figure, axis = plt.subplots(figsize=(5, 3.2), dpi=120)
    # The step size holds from one tuning to the next: draw it as a staircase.
    axis.plot(iterations, values, marker="o", markersize=3, drawstyle="steps-post")
    axis.set_xlabel("iteration t")
    axis.set_ylabel("step size s")
    axis.set_title(title or "Tuned step size over training (cf. Fig. 6a/b)")
    axis.grid(alpha=0.3)
    return _save_figure(figure, path)


def plot_objective_curves(
    traces: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], *, max_curves: int = 6
) -> Path:
    r"""Plot the tuning objective $J(s)$ against $s$ (the paper's Fig. 6c).

    Each grid search is one curve, coloured by the iteration it ran at (the last
    ``max_curves`` searches; the latest is drawn thickest). A gradient search is drawn as the
    path of $(s_i, J(s_i))$ it took.

    Arguments:
        traces: Dicts with ``iteration``, ``method``, ``step_sizes`` ``(G, ...)`` and
            ``objectives`` ``(G,)`` (the trainer's `shortinfer.train.Trainer.traces`).
        path: The PNG file.
        max_curves: Most recent searches to draw.

    Returns:
        The path written.

    Raises:
        ValueError: If ``traces`` is empty.

    Examples:
        >>> import tempfile
        >>> trace = {"iteration": 0, "method": "grid", "step_sizes": torch.tensor([0.1, 0.2]),
        ...          "objectives": torch.tensor([3.0, 2.0])}
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     plot_objective_curves([trace], f"{tmp}/j.png").name
        'j.png'
    """
    if not traces:
        raise ArgumentError(
            "traces is empty: no step-size search ran, so there is nothing to plot."
        )
    plt = _pyplot()
    shown = list(traces)[-max_curves:]
    figure, axis = plt.subplots(figsize=(5, 3.2), dpi=120)
    colours = plt.get_cmap("viridis")
    plotted: list[float] = []
    for index, trace in enumerate(shown):
        steps = torch.as_tensor(trace["step_sizes"], dtype=torch.float64)
        objectives = torch.as_tensor(trace["objectives"], dtype=torch.float64)
        steps = steps.reshape(steps.shape[0], -1).mean(1)[: objectives.shape[0]]
        finite = torch.isfinite(objectives)
        latest = index == len(shown) - 1
        plotted += steps[finite].tolist()
        axis.plot(
            steps[finite].tolist(),
            objectives[finite].tolist(),
            marker="o" if trace.get("method") == "grid" else ".",
            markersize=3,
            linewidth=2.0 if latest else 1.0,
            color=colours(index / max(1, len(shown) - 1)),
            label=f"t = {int(trace['iteration'])}",
        )
    if plotted and min(plotted) > 0 and max(plotted) / min(plotted) > 8:
        axis.set_xscale("log")  # geometric grids such as 0.001..0.02 read better on a log axis
    axis.set_xlabel("step size s")
    axis.set_ylabel(r"$J(s) = E_q[\log q_s - \log p_\theta(x, z)]$")
    axis.set_title("Step-size objective (cf. Fig. 6c)")
    axis.legend(fontsize=7)
    axis.grid(alpha=0.3)
    return _save_figure(figure, path)


def _plot_training_curves(rows: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    rows = [r for r in rows if "loss" in r]
    if not rows:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(8, 3), dpi=120)
    axes[0].plot([r["iteration"] for r in rows], [r["loss"] for r in rows])
    axes[0].set_xlabel("iteration")
    axes[0].set_ylabel(r"loss $-\log p(x, z_K)$ (nats)")
    with_mse = [r for r in rows if r.get("mse") is not None]
    axes[1].plot([r["iteration"] for r in with_mse], [r["mse"] for r in with_mse])
    axes[1].set_xlabel("iteration")
    axes[1].set_ylabel("batch MSE per pixel ([-1, 1] scale)")
    for axis in axes:
        axis.grid(alpha=0.3)
    return _save_figure(figure, path)


def _rows(values: Mapping[str, Any]) -> list[list[str]]:
    return [[cell(name), cell(value)] for name, value in values.items()]


def write_summary(
    path: str | os.PathLike[str],
    *,
    title: str,
    figures: Mapping[str, Any],
    settings: Mapping[str, Any],
    images: Mapping[str, str],
    notes: Sequence[str] = (),
) -> Path:
    r"""Write a Markdown summary: a table of figures, the settings, and the images.

    Arguments:
        path: The ``.md`` file.
        title: The heading.
        figures: Headline numbers (name to value), e.g. the MSE and wall time.
        settings: Hyperparameters (name to value).
        images: Caption to relative image path, embedded in order.
        notes: Extra paragraphs at the end.

    Returns:
        The path written.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     out = write_summary(f"{tmp}/summary.md", title="Run", figures={"MSE": 0.1},
        ...                         settings={"K": 25}, images={})
        ...     print(out.read_text().splitlines()[0])
        # Run
    """

    lines = [f"# {title}", "", *table(["figure", "value"], _rows(figures))]
    lines += ["", "## Settings", "", *table(["setting", "value"], _rows(settings))]
    for caption, image in images.items():
        lines += image_section(caption, image)
    for note in notes:
        lines += ["", note]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_report(
    model: nn.Module,
    output_dir: str | os.PathLike[str],
    *,
    test_images: Tensor,
    num_steps: int,
    step_size: Any,
    history: Sequence[Any] = (),
    traces: Sequence[Mapping[str, Any]] = (),
    figures: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    num_images: int = 32,
    seed: int = 0,
    title: str = "shortinfer training report",
    started: float | None = None,
) -> dict[str, Any]:
    r"""Evaluate a trained generator and write PNGs, plots and ``summary.md`` to a folder.

    Writes ``samples.png`` ($g(z)$, $z \sim p(z)$), ``reconstructions.png``
    (rows alternate data / reconstruction), ``inpainting-<pattern>.png`` for each of
    `INPAINTING_MASKS` (rows: data, observed pixels with missing ones grey, inpainted),
    ``step_size.png`` and ``objective.png`` (when there was tuning), ``training.png`` (when
    ``metrics.jsonl`` is in the folder) and ``summary.md``.

    The held-out error is ``reconstruction_mse(test_images, reconstruct(...)).mean()``: per
    pixel on the $[-1, 1]$ scale (divide by 4 for $[0, 1]$), averaged over ``test_images``.

    Arguments:
        model: A trained model with ``log_joint``, ``decode``, ``sample_latents`` (or
            ``sample_images``) and ``latent_shapes``.
        output_dir: The report folder.
        test_images: Held-out images with shape ``(N, C, H, W)`` in $[-1, 1]$.
        num_steps: K for inference.
        step_size: s for inference (the tuned one).
        history: Step-size records for ``step_size.png``.
        traces: Tuning traces for ``objective.png``.
        figures: Extra headline numbers for the summary (e.g. wall time).
        settings: Settings for the summary.
        num_images: Images per grid.
        seed: Seed of the samples, masks and chains.
        title: The summary's heading.
        started: ``time.perf_counter()`` at the start of the job: report the total wall time.

    Returns:
        ``{"mse": float, "inpainting_mse": {pattern: float}, "files": [Path, ...]}``.

    Examples:
        >>> import tempfile
        >>> from shortinfer.models import MultiLayerGenerator
        >>> model = MultiLayerGenerator(image_size=28, channels=1, latent_sizes=(4,),
        ...                             num_filters=4)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     out = write_report(model, tmp, test_images=torch.zeros(4, 1, 28, 28),
        ...                        num_steps=2, step_size=0.05, num_images=4)
        ...     sorted(p.name for p in out["files"])[:3]
        ['inpainting-bottom.png', 'inpainting-centre.png', 'inpainting-left.png']
    """
    grids = _ReportFiles(Path(output_dir))
    generator = torch.Generator().manual_seed(seed)
    device = next(iter(model.parameters())).device
    test_images = test_images.to(device)
    chains = torch.Generator(device=device).manual_seed(seed + 1)
    inference = {"num_steps": num_steps, "step_size": step_size, "generator": chains}
    _write_samples(model, grids, num_images=num_images, generator=generator)
    mse, subset = _write_reconstructions(model, grids, test_images, num_images, inference)
    inpainting_mse = _write_inpainting(model, grids, subset, inference, generator=generator)
    _write_plots(grids, history=history, traces=traces)
    headline = {
        "held-out reconstruction MSE (per pixel, [-1, 1] scale)": mse,
        "held-out images": int(test_images.shape[0]),
        **{f"inpainting MSE on missing pixels, {k}": v for k, v in inpainting_mse.items()},
        **(figures or {}),
    }
    if started is not None:
        headline[_TOTAL_TIME] = round(time.perf_counter() - started, 1)
    note = _MSE_NOTE.format(num_steps=num_steps)
    summary = {"title": title, "figures": headline, "settings": settings or {}, "notes": [note]}
    path = write_summary(grids.folder / SUMMARY_NAME, images=grids.images, **summary)
    return {"mse": mse, "inpainting_mse": inpainting_mse, "files": [*grids.files, path]}


_TOTAL_TIME = "total wall time incl. data loading and this report (s)"
_MSE_NOTE = (
    "MSE is the mean over images of the per-pixel squared error on the [-1, 1] pixel scale "
    "(divide by 4 for the [0, 1] scale), with reconstructions g(z_K) from short-run inference "
    "(K = {num_steps}) at the final step size."
)


class _ReportFiles:
    """The report folder, the files written to it, and each image's caption for the summary."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.files: list[Path] = []
        self.images: dict[str, str] = {}

    def add(self, caption: str, path: Path | None) -> None:
        if path is not None:
            self.files.append(path)
            self.images[caption] = path.name

    def grid(self, caption: str, name: str, images: Tensor, num_columns: int) -> None:
        self.add(caption, save_image_grid(images, self.folder / name, num_columns=num_columns))


def _write_samples(
    model: nn.Module, files: _ReportFiles, *, num_images: int, generator: torch.Generator
) -> None:
    with torch.no_grad():
        if hasattr(model, "sample_latents"):
            latents = model_method(model, "sample_latents")(num_images, generator=generator)
            samples = model_method(model, "decode")(latents)
        else:
            samples = model_method(model, "sample_images")(num_images)
    files.grid("Samples g(z), z ~ N(0, I)", "samples.png", samples, 8)


def _write_reconstructions(
    model: nn.Module,
    files: _ReportFiles,
    test_images: Tensor,
    num_images: int,
    inference: dict[str, Any],
) -> tuple[float, Tensor]:
    """Reconstruct every held-out image; draw a grid of some. Returns the MSE and one row."""
    recon = reconstruct(model, test_images, **inference)
    mse = float(reconstruction_mse(test_images, recon).mean())
    # Evenly spaced examples: test splits are often sorted by class (MNIST-5k is).
    shown = min(num_images, test_images.shape[0])
    picked = torch.linspace(0, test_images.shape[0] - 1, shown).round().long()
    picked = picked.to(test_images.device)
    columns = min(8, shown)
    pairs = []
    for start in range(0, shown, columns):
        rows = picked[start : start + columns]
        pairs += [test_images[rows], recon[rows]]
    caption = "Reconstructions (odd rows: data; even rows: g(z_K))"
    files.grid(caption, "reconstructions.png", torch.cat(pairs), columns)
    return mse, test_images[picked[:columns]]


def _write_inpainting(
    model: nn.Module,
    files: _ReportFiles,
    subset: Tensor,
    inference: dict[str, Any],
    *,
    generator: torch.Generator,
) -> dict[str, float]:
    """One grid per `INPAINTING_MASKS` pattern; returns the MSE on the missing pixels of each."""
    inpainting_mse = {}
    for pattern in INPAINTING_MASKS:
        mask = inpainting_mask(pattern, tuple(subset.shape), generator=generator)
        mask = mask.to(subset.device)
        filled = reconstruct(model, subset, mask=mask, **inference)
        observed = subset * mask  # missing pixels shown mid-grey (0 on the [-1, 1] scale)
        missing = (1 - mask).expand_as(subset)
        inpainting_mse[pattern] = float(reconstruction_mse(subset, filled, mask=missing).mean())
        caption = f"Inpainting, {pattern} missing (rows: data, observed, inpainted)"
        images = torch.cat([subset, observed, filled])
        files.grid(caption, f"inpainting-{pattern}.png", images, subset.shape[0])
    return inpainting_mse


def _write_plots(
    files: _ReportFiles, *, history: Sequence[Any], traces: Sequence[Mapping[str, Any]]
) -> None:
    folder = files.folder
    if history:
        path = plot_step_size_history(history, folder / "step_size.png")
        files.add("Step size over training (cf. Fig. 6a/b)", path)
    if traces:
        path = plot_objective_curves(traces, folder / "objective.png")
        files.add("Step-size objective J(s) (cf. Fig. 6c)", path)
    rows = read_metrics(folder / METRICS_NAME)
    files.add("Training curves", _plot_training_curves(rows, folder / "training.png"))
