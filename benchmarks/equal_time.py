r"""Short-run inference against the Ladder-VAE at equal training time (issue 14, part 4).

Both methods train the same generator (`shortinfer.bench._runner.build_trainer` with the
``cpu`` preset's model and schedules: L = ``--num-layers``, 16 filters) through
`shortinfer.train.Trainer`: short-run inference by Algorithm 1 (the default objective and
re-tuning, K = ``--steps``, optionally ``--compile``), the Ladder-VAE through
`shortinfer.train.LadderVAEMethod`. Each method trains in stages,
``trainer.fit(max_seconds=...)`` up to each budget of ``--budgets`` (minutes of training
time, `shortinfer.train.Trainer.train_seconds`); after each stage the held-out
reconstruction MSE per pixel (on the [-1, 1] scale; short-run: one chain at the trained step
size, decoded; Ladder-VAE: the posterior mean, decoded) is measured **off the training clock**.

The schedules (learning-rate decay at T/3 and 2T/3, σ annealing over T/2, the KL warm-up)
need a length T: each method first measures its own updates per second in a short probe
(``--probe-seconds``, on a throw-away copy), and T = rate × the largest budget, so that both
runs end their schedules at the last budget. After each budget that ends before the first
learning-rate decay (T/3), T is re-derived from the run's own rate so far (`recalibrate`).

Outputs in ``--out``: ``equal_time.json`` (everything, with the command, machine and
versions), ``equal_time.csv`` (one row per method and budget), ``equal_time.md`` (the
table) and ``equal_time.png`` (MSE against training seconds, log x).

Run from the repository root::

    python benchmarks/equal_time.py --source mnist5k --budgets 1 2 5 10 20 30 --out DIR
    python benchmarks/equal_time.py --source fashion --data-root FOLDER_WITH_IDX --out DIR
    python benchmarks/equal_time.py --quick --out /tmp/equal_time      # toy run, seconds
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, environment_markdown, set_threads  # noqa: E402

from shortinfer import short_run  # noqa: E402
from shortinfer.bench import BenchData, Cell, get_preset  # noqa: E402
from shortinfer.bench._runner import build_trainer  # noqa: E402
from shortinfer.metrics import reconstruction_mse  # noqa: E402
from shortinfer.models import LadderVAE  # noqa: E402
from shortinfer.train import frozen_parameters  # noqa: E402

METHODS = ("short_run", "ladder_vae")
SOURCES = {"mnist5k": "mnist5k", "fashion": "fashion_mnist"}


def load(args: argparse.Namespace) -> BenchData:
    from shortinfer.data import load_dataset

    name = SOURCES[args.source]
    if args.source == "fashion" and not args.data_root:
        raise SystemExit(
            "--source fashion needs --data-root: the folder with the Fashion-MNIST idx files "
            "(train-images-idx3-ubyte, t10k-images-idx3-ubyte and their labels, .gz or not)."
        )
    train = load_dataset(name, split="train", root=args.data_root).images
    test = load_dataset(name, split="test", root=args.data_root).images
    order = torch.randperm(test.shape[0], generator=torch.Generator().manual_seed(0))
    test = test[order][: args.num_test]
    if args.train_subset:
        train = train[: args.train_subset]
    return BenchData(args.source, train, test)


def make_trainer(method: str, data: BenchData, args: argparse.Namespace, iterations: int):
    preset = get_preset(
        "cpu",
        num_iterations=iterations,
        batch_size=args.batch_size,
        num_steps=args.steps,
        checkpoint_every=10**9,
        log_every=10**9,
        tune_every=args.tune_every,
    )
    trainer = build_trainer(
        Cell(method, args.num_layers, args.steps), data, preset, None, device=args.device
    )
    if method == "short_run":
        trainer.compile = args.compile
        if args.tune_method == "bracket" and trainer.tuning is not None:
            # The library's default search (bracketing in log s by factors of sqrt(10)) on the
            # preset's chains and refinement: 3 evaluations from a warm start, against the
            # preset grid's 7.
            trainer.tuning = dataclasses.replace(trainer.tuning, method="bracket", grid=None)
        if args.per_step and trainer.tuning is not None:
            # One step size per Langevin step, tuned by Adam on log s_k through the chain and
            # the log-determinant, warm-started from the current vector at each re-tuning.
            start = float(trainer.step_size)
            trainer.step_size = [start] * args.steps
            trainer.tuning = dataclasses.replace(
                trainer.tuning, method="gradient", num_iterations=args.per_step
            )
    return trainer


def held_out_mse(trainer: Any, data: BenchData, args: argparse.Namespace) -> float:
    """Mean per-pixel MSE of the held-out images, in evaluation batches (off the clock)."""
    model = trainer.model
    errors = []
    model.eval()
    for index, start in enumerate(range(0, data.test.shape[0], args.eval_batch_size)):
        x = data.test[start : start + args.eval_batch_size].to(trainer.device)
        if isinstance(model, LadderVAE):
            with torch.no_grad():
                x_hat = model.reconstruct(x)
        else:
            posterior = short_run(
                model.log_joint,
                x,
                latent_shape=model.latent_shapes,
                num_steps=trainer.num_steps,
                step_size=trainer.step_size,
                generator=torch.Generator(trainer.device).manual_seed(index),
                validate=False,
                compile=args.compile,
            )
            with torch.no_grad():
                x_hat = model.decode(posterior.sample())
        errors.append(reconstruction_mse(x, x_hat).cpu())
    model.train()
    return float(torch.cat(errors).mean())


def measured_rate(method: str, data: BenchData, args: argparse.Namespace) -> float:
    """Updates per training second of ``method`` in a short probe on a throw-away trainer."""
    if args.compile and method == "short_run":
        # Compiling is not part of the rate. The chain compiles once, and once more when σ
        # first changes (after the first update); a few updates of a throw-away trainer pay
        # both, and the compiled graphs are shared with every later trainer of this model.
        warm_up = make_trainer(method, data, args, 10**6)
        while warm_up.iteration < 3:
            warm_up.fit(max_seconds=1.0)
    probe = make_trainer(method, data, args, 10**6)
    probe.fit(max_seconds=args.probe_seconds)
    # Training re-tunes the step size every `interval` updates, and a tuning costs as much as
    # tens of updates: a probe that saw one tuning in 30 updates measured a third of the real
    # rate, so the schedule's T was too short and training ended at a third of the budget.
    # Probe one whole interval (its tuning included), as the run pays it.
    interval = probe.tuning.interval if probe.tuning is not None else 0
    wanted = max(_PROBE_MIN_UPDATES, interval + 1)
    for _ in range(_PROBE_MAX_ROUNDS):
        if probe.iteration >= wanted:
            break
        probe.fit(resume=False, max_seconds=args.probe_seconds)
    return probe.iteration / max(probe.train_seconds, 1e-9)


#: A probe runs until at least this many updates, or one tuning interval and one update
#: (at most this many extra rounds of ``--probe-seconds``).
_PROBE_MIN_UPDATES = 30
_PROBE_MAX_ROUNDS = 30


def warm_compile(trainer: Any, data: BenchData, args: argparse.Namespace) -> float:
    """Compile the trainer's chain before the clock starts; return the seconds it took."""
    if not args.compile or trainer.method is not None:
        return 0.0
    model, x = trainer.model, data.train[: args.batch_size].to(trainer.device)
    started = time.perf_counter()
    with torch.no_grad(), frozen_parameters(model):  # as the trainer samples
        short_run(
            model.log_joint,
            x,
            latent_shape=model.latent_shapes,
            num_steps=args.steps,
            step_size=trainer.step_size,
            validate=False,
            compile=args.compile,
        ).sample()
    return time.perf_counter() - started


def current_step_size(trainer: Any) -> Any:
    """The trainer's step size as JSON (a float, or a list per step): its last tuning record."""
    return trainer.history[-1].step_size if trainer.history else trainer.step_size


def format_step_size(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "per step " + ", ".join(f"{v:.3g}" for v in value)
    return f"{float(value):.3g}"


def recalibrate(trainer: Any, seconds: float) -> bool:
    """Re-derive T from the run's own rate so far, while the schedules still allow it.

    The probe's rate is an estimate (it missed by 15-35% in the runs of 2026-12-02); the run's
    own rate over its first stages is a better one. Until the first learning-rate decay (T/3)
    the schedules depend on T only through σ's annealing and the KL warm-up, which a change of
    T moves by a few percent of their range, so T is re-derived after every stage that ends
    before T/3. Returns whether T changed.
    """
    if trainer.iteration >= trainer.num_iterations / 3 or trainer.train_seconds <= 0:
        return False
    wanted = max(2, math.ceil(trainer.iteration / trainer.train_seconds * seconds))
    changed = wanted != trainer.num_iterations
    trainer.num_iterations = max(wanted, trainer.iteration + 1)
    return changed


def run_method(method: str, data: BenchData, args: argparse.Namespace) -> dict[str, Any]:
    budgets = sorted(args.budgets)
    rate = measured_rate(method, data, args)
    iterations = max(2, math.ceil(rate * budgets[-1] * 60))
    trainer = make_trainer(method, data, args, iterations)
    compile_seconds = warm_compile(trainer, data, args)
    points = []
    for budget in budgets:
        remaining = budget * 60 - trainer.train_seconds
        if remaining > 0 and trainer.iteration < trainer.num_iterations:
            trainer.fit(max_seconds=remaining)
        recalibrated = recalibrate(trainer, budgets[-1] * 60)
        started = time.perf_counter()
        mse = held_out_mse(trainer, data, args)
        point = {
            "method": method,
            "budget_minutes": budget,
            "train_seconds": trainer.train_seconds,
            "iterations": trainer.iteration,
            "mse": mse,
            "eval_seconds": time.perf_counter() - started,
            "step_size": current_step_size(trainer) if method == "short_run" else None,
            "schedule_length": trainer.num_iterations,
            "recalibrated": recalibrated,
        }
        print(json.dumps(point), flush=True)
        points.append(point)
    return {
        "method": method,
        "probe_updates_per_second": rate,
        "num_iterations": iterations,
        "compile_seconds": compile_seconds,
        "final_step_size": current_step_size(trainer) if method == "short_run" else None,
        "step_size_history": [
            {"iteration": record.iteration, "step_size": record.step_size}
            for record in trainer.history
        ],
        "points": points,
    }


def plot(runs: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for run in runs:
        seconds = [max(p["train_seconds"], 1e-3) for p in run["points"]]
        axis.plot(seconds, [p["mse"] for p in run["points"]], marker="o", label=run["method"])
    axis.set_xscale("log")
    axis.set_xlabel("training seconds (evaluation excluded)")
    axis.set_ylabel("held-out MSE per pixel ([-1, 1] scale)")
    axis.set_title(title)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_outputs(runs: list[dict[str, Any]], args: argparse.Namespace, env: dict) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [point for run in runs for point in run["points"]]
    (out / "equal_time.json").write_text(
        json.dumps({"environment": env, "args": vars(args), "runs": runs}, indent=2) + "\n"
    )
    with open(out / "equal_time.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        f"# Equal-time comparison: {args.source}",
        "",
        "Produced by `benchmarks/equal_time.py` (see its docstring).",
        "",
        f"## Environment\n\n{environment_markdown(env)}",
        "",
        f"L = {args.num_layers}, batch {args.batch_size}, short-run K = {args.steps} "
        f"({step_sizes(args)}), compile = {args.compile}, {data_sizes(args)}.",
        "",
        "| method | budget (min) | training s | updates | schedule T | held-out MSE | s | eval s "
        "(not counted) |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['method']} | {row['budget_minutes']:g} | {row['train_seconds']:.1f} | "
            f"{row['iterations']} | {row.get('schedule_length', '')} | {row['mse']:.4f} | "
            f"{format_step_size(row.get('step_size'))} | {row['eval_seconds']:.1f} |"
        )
    lines += ["", "| method | probe updates/s | T from the probe | compile s (not counted) |"]
    lines += ["|---|---:|---:|---:|"]
    for run in runs:
        lines.append(
            f"| {run['method']} | {run['probe_updates_per_second']:.2f} | "
            f"{run['num_iterations']} | {run['compile_seconds']:.1f} |"
        )
    for run in runs:
        if run.get("reused_from"):
            lines += ["", f"The {run['method']} run is reused from `{run['reused_from']}`."]
    lines += ["", "![MSE against training time](equal_time.png)"]
    (out / "equal_time.md").write_text("\n".join(lines) + "\n")
    plot(runs, out / "equal_time.png", f"{args.source}: held-out MSE at equal training time")
    print(f"wrote {out / 'equal_time.md'}", flush=True)


def step_sizes(args: argparse.Namespace) -> str:
    if args.per_step:
        return f"one step size per step, {args.per_step} Adam iterations per re-tuning"
    return f"one step size, re-tuned by {args.tune_method} search"


def data_sizes(args: argparse.Namespace) -> str:
    return f"{args.train_size} training / {args.test_size} held-out images"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", choices=sorted(SOURCES), default="mnist5k")
    parser.add_argument("--data-root", default=None, help="Fashion-MNIST idx folder")
    parser.add_argument(
        "--budgets",
        type=float,
        nargs="+",
        default=[1, 2, 5, 10, 20, 30],
        help="training-time budgets in minutes (default 1 2 5 10 20 30)",
    )
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--num-layers", type=int, default=3, help="L (default 3)")
    parser.add_argument("--steps", type=int, default=25, help="short-run K (default 25)")
    parser.add_argument("--batch-size", type=int, default=16, help="the cpu preset's 16")
    parser.add_argument(
        "--compile",
        nargs="?",
        const="default",
        default=False,
        help="compile the short-run chains (torch.compile mode; default off)",
    )
    parser.add_argument(
        "--tune-every",
        type=int,
        default=None,
        help="re-tune the short-run step size every N updates (default: the cpu preset's 100; "
        "0: keep the initial s)",
    )
    parser.add_argument(
        "--tune-method",
        choices=("grid", "bracket"),
        default="grid",
        help="short-run re-tuning: the cpu preset's 7-point grid (default) or the library's "
        "bracketing search in log s (3 evaluations from a warm start)",
    )
    parser.add_argument(
        "--per-step",
        type=int,
        default=0,
        metavar="ITERATIONS",
        help="short-run: one step size per Langevin step, re-tuned by this many Adam iterations "
        "on log s_k (method 'gradient', warm-started); default 0: one scalar s (preset's grid)",
    )
    parser.add_argument("--num-test", type=int, default=500, help="held-out images")
    parser.add_argument("--train-subset", type=int, default=None, help="first N train images")
    parser.add_argument("--eval-batch-size", type=int, default=100)
    parser.add_argument("--probe-seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--quick", action="store_true", help="toy run: seconds, tiny subset")
    parser.add_argument(
        "--reuse",
        metavar="JSON",
        default=None,
        help="take the runs of the methods not in --methods from this earlier equal_time.json "
        "(same data and budgets), e.g. to rerun only short-run after changing it",
    )
    args = parser.parse_args()
    if args.quick:
        args.budgets = [0.02, 0.05]
        args.train_subset, args.num_test, args.probe_seconds = 64, 16, 1.0
        args.batch_size, args.steps, args.num_layers, args.tune_every = 8, 5, 1, 0
    set_threads(args.threads)
    env = environment()
    data = load(args)
    args.train_size, args.test_size = data.train.shape[0], data.test.shape[0]
    runs = [run_method(method, data, args) for method in args.methods]
    if args.reuse:
        earlier = json.loads(Path(args.reuse).read_text())
        for run in earlier["runs"]:
            if run["method"] not in args.methods:
                runs.append({**run, "reused_from": args.reuse})
    write_outputs(runs, args, env)


if __name__ == "__main__":
    main()
