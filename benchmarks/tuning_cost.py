r"""Cost of step-size tuning in units of one ``sample()``, and what the cheap default gives up.

Model: a VAE of the pytorch/examples shape (784-400-20, ReLU, Bernoulli pixels), trained for a
few epochs on the MNIST-5k training digits, decoder frozen; posterior over ``B = 100`` held-out
digits, ``K = 25``. Candidates, timed in one run with repetitions interleaved:

- ``sample``: one `shortinfer.ShortRunPosterior.sample` (the unit);
- ``entropy``: one exact-Jacobian `shortinfer.ShortRunPosterior.entropy`;
- ``tune default``: ``tune_step_size()`` with every default (bracketing search, linearized
  objective on a subset of the batch, stability check);
- ``tune grid (previous default)``: the default before this benchmark: the 21-point
  `shortinfer.tuning.DEFAULT_GRID` with 6 golden-section steps on all ``B`` examples (64 chains
  or more), timed once.

Quality: every chosen step size is scored with the linearized objective on the whole batch
with 4 chains per example (fixed noise): the cheap default's loss is its objective gap to the
best chosen step size, in nats per example.

Run from the repository root::

    python benchmarks/tuning_cost.py            # B = 100, a few minutes on one core
    python benchmarks/tuning_cost.py --quick    # smoke run
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from _common import (  # noqa: E402
    benchmark_parser,
    environment,
    environment_markdown,
    interleaved,
    set_threads,
    summarise,
    timing_table,
    write_result,
)
from vae_refine import VAE, train  # noqa: E402

from shortinfer import short_run  # noqa: E402
from shortinfer.data import load_mnist5k  # noqa: E402
from shortinfer.tuning import DEFAULT_GRID  # noqa: E402

GOAL = 50.0  # issue 14: default tuning at most 50x one sample()


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--batch", type=int, default=100, help="held-out digits B")
    parser.add_argument("--epochs", type=int, default=5, help="VAE training epochs")
    args = parser.parse_args()
    set_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    batch = 10 if args.quick else args.batch

    def images(split: str) -> torch.Tensor:
        return ((load_mnist5k(split=split).images + 1) / 2).reshape(-1, 784)

    vae = VAE()
    train(vae, images("train"), 1 if args.quick else args.epochs, seed=0)
    vae = vae.to(device).requires_grad_(False)
    x = images("test")[:batch].to(device)
    post = short_run(
        vae.log_joint,
        x,
        latent_shape=(20,),
        num_steps=25,
        step_size=0.01,
        generator=torch.Generator(device).manual_seed(0),
    )

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    chosen: dict[str, float] = {}

    def tuner(name: str, **options):
        def run() -> None:
            tuned = post.tune_step_size(progress=False, **options)
            sync()
            chosen[name] = float(tuned.step_size)
            evaluations[name] = len(tuned.trace.step_sizes)

        return run

    evaluations: dict[str, int] = {}
    old_grid = {"grid": DEFAULT_GRID, "num_examples": batch, "num_samples": -(-64 // batch)}
    candidates = {
        "sample": lambda: (post.sample(), sync()),
        "entropy": lambda: (post.entropy(), sync()),
        "tune default": tuner("tune default"),
    }
    start = time.perf_counter()
    times = interleaved(candidates, repeats=2 if args.quick else 5)
    # The previous default is too slow to repeat: one run, against the median sample().
    once = interleaved(
        {"tune grid (previous default)": tuner("tune grid (previous default)", **old_grid)},
        repeats=1,
        warmup=0,
    )
    rows = summarise(times, "sample")
    unit = next(row["median_s"] for row in rows if row["name"] == "sample")
    for name, values in once.items():
        rows.append(
            {
                "name": name,
                "median_s": values[0],
                "min_s": values[0],
                "max_s": values[0],
                "ratio": values[0] / unit,
                "paired_ratio": values[0] / unit,
                "paired_min": values[0] / unit,
                "paired_max": values[0] / unit,
                "speedup": unit / values[0],
                "repeats": 1,
            }
        )

    # Quality: each chosen s under the linearized objective on the whole batch, 4 chains each.
    chain = post.draw_noise(4)
    scored = {
        name: float(post.step_size_objective(chain, torch.tensor([[s]]), objective="linearized"))
        for name, s in chosen.items()
    }
    best = min(scored.values())
    lines = [
        "# Tuning cost on a VAE decoder (784-400-20, Bernoulli), in units of one sample()",
        "",
        f"Command: `python benchmarks/tuning_cost.py{' --quick' if args.quick else ''} "
        f"--threads {args.threads} --device {args.device}`; B = {batch}, K = 25, D = 20; "
        f"{time.perf_counter() - start:.0f} s in all.",
        "",
        timing_table(rows, "sample"),
        "",
        "| search | evaluations | chosen s (δ) | J on the full batch, 4 chains (nats/example) "
        "| gap to the best |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, s in chosen.items():
        lines.append(
            f"| {name} | {evaluations[name]} | {s:.4g} ({math.sqrt(2 * s):.4g}) | "
            f"{scored[name]:.2f} | {scored[name] - best:.2f} |"
        )
    ratio = next(row["ratio"] for row in rows if row["name"] == "tune default")
    lines += [
        "",
        f"Goal: default tuning ≤ {GOAL:.0f}× one sample(). Measured: {ratio:.1f}×: "
        f"{'met' if ratio <= GOAL else 'missed'}.",
        "",
        environment_markdown(environment()),
    ]
    text = "\n".join(lines)
    print(text)
    data = {"rows": rows, "chosen": chosen, "scored": scored, "evaluations": evaluations}
    write_result("tuning_cost_quick" if args.quick else "tuning_cost", text, data)


if __name__ == "__main__":
    main()
