r"""Training images per second of the paper preset's L = 5 cell, and the full run's wall time.

Builds the trainer of ``shortinfer bench celeba --preset paper``'s ``short_run-L5-K25`` cell
(`shortinfer.bench._runner.build_trainer` with the ``paper`` preset: the L = 5 generator with
latents (64, 64, 64, 96, 128), 64 filters, 32×32×3 images, batch 100, K = 25, grid re-tuning
every 1000 updates with the paper's objective) on **synthetic** images of CelebA's shape
(uniform in [-1, 1]; the cost of an update does not depend on the pixels), then

- times ``--updates`` θ-updates (`shortinfer.train.Trainer.step` at iterations that do not
  re-tune, after ``--warmup`` untimed ones), giving images per second;
- times one re-tuning (`shortinfer.train.Trainer.tune` on the tuning batch);

and states the estimated wall time of the full preset,

$$
T_{\text{wall}} \approx \frac{T \cdot B}{\text{images/s}}
+ \frac{T}{T_s} \cdot t_{\text{tune}},
$$

with $T$ = 300,000 updates, $B$ = 100 and $T_s$ = 1000 (evaluation and FID not included).

Run from the repository root::

    python benchmarks/paper_throughput.py --device cuda [--compile reduce-overhead]
    python benchmarks/paper_throughput.py --quick      # toy sizes on the CPU (smoke preset)
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    benchmark_parser,
    environment,
    environment_markdown,
    setup,
    synchronize,
    write_result,
)

from shortinfer.bench import get_preset  # noqa: E402
from shortinfer.bench._runner import BenchData, Cell, build_trainer, cell_config  # noqa: E402


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--updates", type=int, default=20, help="timed updates (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed updates first")
    parser.add_argument(
        "--compile", nargs="?", const="default", default=False, help="torch.compile mode"
    )
    parser.add_argument("--name", default=None, help="result file name")
    args = parser.parse_args()
    if args.quick:
        args.updates, args.warmup = 3, 1
    device = setup(args)
    env = environment()
    # The quick run: the smoke preset with a short chain and a one-point tuning grid.
    quick = {"num_steps": 3, "batch_size": 4, "tune_grid": (0.01,), "tune_batch": 2}
    preset = get_preset("smoke", **quick) if args.quick else get_preset("paper")
    num_layers = max(preset.layers)
    cell = Cell("short_run", num_layers, preset.num_steps)
    size, channels = (28, 1) if args.quick else (32, 3)
    config = cell_config(cell, preset, image_size=size, channels=channels)
    generator = torch.Generator().manual_seed(0)
    count = max(preset.batch_size * 4, preset.tune_batch)
    images = torch.rand(count, channels, size, size, generator=generator) * 2 - 1
    data = BenchData("synthetic", images, images[: preset.batch_size])
    trainer = build_trainer(cell, data, preset, None, device=str(device))
    trainer.compile = args.compile

    def update() -> float:
        if trainer.tuning is not None and trainer.iteration % trainer.tuning.interval == 0:
            trainer.iteration += 1  # a re-tuning iteration: timed separately below
        synchronize(device)
        started = time.perf_counter()
        trainer.step()
        synchronize(device)
        return time.perf_counter() - started

    warmup_seconds = [update() for _ in range(args.warmup)]
    seconds = [update() for _ in range(args.updates)]
    tune_seconds = 0.0
    if trainer.tuning is not None:
        synchronize(device)
        started = time.perf_counter()
        trainer.tune(trainer.batch(trainer.iteration))
        synchronize(device)
        tune_seconds = time.perf_counter() - started
    median = statistics.median(seconds)
    images_per_second = preset.batch_size / median
    full = get_preset("paper")
    tunes = full.num_iterations // full.tune_every if full.tune_every else 0
    estimate = full.num_iterations * full.batch_size / images_per_second + tunes * tune_seconds
    lines = [
        f"Cell {cell.key} of the `{preset.name}` preset: latents "
        f"{config['model']['latent_sizes']}, "
        f"{preset.num_filters} filters, {channels}×{size}×{size} synthetic images, batch "
        f"{preset.batch_size}, K = {preset.num_steps}, compile = {args.compile}, device {device}.",
        "",
        "| quantity | value |",
        "|---|---:|",
        f"| warm-up updates (s, untimed) | {', '.join(f'{s:.2f}' for s in warmup_seconds)} |",
        f"| median seconds per update ({args.updates} updates) | {median:.4f} |",
        f"| min–max seconds per update | {min(seconds):.4f}–{max(seconds):.4f} |",
        f"| training images/s | {images_per_second:.1f} |",
        f"| one re-tuning (s) | {tune_seconds:.2f} |",
        f"| estimated wall time of the full paper preset (T = {full.num_iterations}, B = "
        f"{full.batch_size}, {tunes} re-tunings), hours | {estimate / 3600:.1f} |",
    ]
    if args.quick:
        lines.append(
            "\nThe quick run measures the smoke preset; its wall-time line still extrapolates to "
            "the paper preset and means nothing."
        )
    body = "\n".join(lines)
    print(body, flush=True)
    text = (
        "# Paper-preset training throughput\n\nProduced by `benchmarks/paper_throughput.py` "
        f"(see its docstring).\n\n## Environment\n\n{environment_markdown(env)}\n\n{body}"
    )
    name = args.name or ("paper_throughput_quick" if args.quick else "paper_throughput")
    write_result(
        name,
        text,
        {
            "environment": env,
            "args": vars(args),
            "config": config,
            "seconds_per_update": seconds,
            "images_per_second": images_per_second,
            "tune_seconds": tune_seconds,
            "estimated_full_run_hours": estimate / 3600,
        },
    )


if __name__ == "__main__":
    main()
