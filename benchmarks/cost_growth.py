r"""Time and peak memory of each log-det method against D, B and K (issue 5, goal 5).

Problem: the MLP decoder of ``benchmarks/_common.py`` (``D -> 256 -> GELU -> 784``, Gaussian
likelihood), float32. Sweeps (one axis at a time, the others at the base point
$D = 64, B = 16, K = 25$):

- $D \in \{8, 16, 32, 64, 128, 256, 512\}$;
- $B \in \{4, 16, 64\}$;
- $K \in \{5, 25, 50\}$.

Methods: the paper's row-by-row loop, ``method="exact"`` (reverse), ``"per_step_exact"``
(reverse), ``"stochastic"`` (J = 4, P = 1), and the two recommended ways to get the
s-derivative for tuning: per-step exact and stochastic with a forward-mode ``jvp`` in $s$.

Each (method, configuration) runs in a fresh subprocess, which first runs the same method on a
tiny problem (so one-time costs such as torch's lazily scripted decompositions are not
counted), then times one call and reads the peak resident set (``VmHWM``). Configurations
whose predecessor on the D axis took longer than ``--max-seconds`` are skipped for that method.
Writes ``benchmarks/results/cost_growth.{md,json,png}``.

Run from the repository root (about 40 minutes on 2 shared CPU cores)::

    python benchmarks/cost_growth.py
    python benchmarks/cost_growth.py --quick
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    add_render_option,
    benchmark_parser,
    emit,
    environment,
    environment_markdown,
    mlp_problem,
    peak_memory,
    results_dir,
    run_measured,
    set_threads,
    setup,
    synchronize,
    write_result,
)
from entropy import row_loop  # noqa: E402

from shortinfer.entropy import estimate_log_det  # noqa: E402

METHODS = {
    "row loop (paper)": ("row", None),
    "exact": ("exact", None),
    "per_step_exact": ("per_step_exact", None),
    "per_step_exact + forward d/ds": ("per_step_exact", "forward"),
    "stochastic": ("stochastic", None),
    "stochastic + forward d/ds": ("stochastic", "forward"),
}
BASE = {"dim": 64, "batch": 16, "num_steps": 25}
AXES = {"dim": (8, 16, 32, 64, 128, 256, 512), "batch": (4, 16, 64), "num_steps": (5, 25, 50)}


def run_method(label: str, dim: int, batch: int, num_steps: int, device: str = "cpu") -> None:
    method, derivative = METHODS[label]
    log_joint, z0, noise, table = mlp_problem(dim, batch, num_steps, device=device)

    def value(t):
        if method == "row":
            return row_loop(log_joint, z0, noise, t)[1].sum()
        return estimate_log_det(
            log_joint,
            z0,
            noise,
            t,
            method=method,
            generator=torch.Generator(device).manual_seed(0),
        )[1].sum()

    if derivative is None:
        with torch.no_grad() if method != "row" else torch.enable_grad():
            value(table)
        return
    s0 = table[0, 0].detach()
    with torch.no_grad():
        torch.func.jvp(
            lambda s: value(s.reshape(1, 1).expand(num_steps, 1)), (s0,), (torch.ones_like(s0),)
        )


def child(config: dict) -> None:
    limit = int(config.get("memory_limit_gib", 14) * 1024**3)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    set_threads(config.get("threads", 1))
    label, device = config["method"], config.get("device", "cpu")
    run_method(label, 4, 2, 2, device)  # warm-up: one-time costs out of the measurement

    def call() -> None:
        run_method(label, config["dim"], config["batch"], config["num_steps"], device)
        synchronize(device)

    try:
        result = run_measured(call)
    except (RuntimeError, MemoryError) as err:
        emit({"error": f"{type(err).__name__}: {str(err)[:200]}"})
        return
    emit(result)


def configurations(quick: bool) -> list[dict]:
    axes = AXES if not quick else {"dim": (4, 8), "batch": (2, 4), "num_steps": (2, 3)}
    base = BASE if not quick else {"dim": 8, "batch": 4, "num_steps": 3}
    seen, out = set(), []
    for axis, values in axes.items():
        for value in values:
            config = {**base, axis: value}
            key = tuple(sorted(config.items()))
            if key not in seen:
                seen.add(key)
                out.append(config)
    return out


def plot(results: list[dict], path: Path, base: dict, axes: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, grid = plt.subplots(2, 3, figsize=(14, 8), constrained_layout=True)
    titles = {"dim": "latent dimension D", "batch": "batch B", "num_steps": "steps K"}
    for column, axis in enumerate(axes):
        others = {k: v for k, v in base.items() if k != axis}
        for label in METHODS:
            points = sorted(
                (r[axis], r)
                for r in results
                if r["method"] == label
                and "seconds" in r
                and all(r[k] == v for k, v in others.items())
            )
            if not points:
                continue
            xs = [p[0] for p in points]
            grid[0, column].plot(xs, [p[1]["seconds"] for p in points], marker="o", label=label)
            grid[1, column].plot(
                xs, [max(p[1]["delta_mib"], 1.0) for p in points], marker="o", label=label
            )
        for row, name in enumerate(("seconds per call", "call's own peak RSS (MiB)")):
            ax = grid[row, column]
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel(
                titles[axis]
                + "  (others: "
                + ", ".join(f"{k}={v}" for k, v in others.items())
                + ")"
            )
            ax.set_ylabel(name)
            ax.grid(True, which="both", alpha=0.3)
    grid[0, 0].legend(fontsize=8)
    figure.suptitle("Log-det cost growth, MLP decoder (D→256→784), 1 CPU thread")
    figure.savefig(path, dpi=110)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
        return
    parser = benchmark_parser(__doc__)
    parser.add_argument("--max-seconds", type=float, default=240.0)
    parser.add_argument("--timeout", type=float, default=1200.0)
    add_render_option(parser, "table and plot")
    args = parser.parse_args()
    if args.render is not None:
        saved = json.loads(Path(args.render).read_text())
        report(saved["environment"], saved["results"], args.quick, Path(args.render).stem)
        return
    device = setup(args)
    env = environment()
    results = []
    too_slow: set[str] = set()
    for config in configurations(args.quick):
        for label in METHODS:
            if label in too_slow and config["dim"] > BASE["dim"]:
                results.append({**config, "method": label, "error": "skipped (too slow)"})
                continue
            run = {**config, "method": label, "threads": args.threads, "device": str(device)}
            result = peak_memory("cost_growth.py", [json.dumps(run)], timeout=args.timeout)
            results.append({**run, **result})
            print(results[-1], flush=True)
            if result.get("seconds", 0) > args.max_seconds or "error" in result:
                too_slow.add(label)
    name = "cost_growth" + ("_quick" if args.quick else "")
    write_result(name, "", {"environment": env, "results": results})
    report(env, results, args.quick, name)


def report(env: dict, results: list[dict], quick: bool, name: str) -> None:
    base = BASE if not quick else {"dim": 8, "batch": 4, "num_steps": 3}
    axes = AXES if not quick else {"dim": (4, 8), "batch": (2, 4), "num_steps": (2, 3)}
    lines = [
        "# Cost growth of the log-det methods",
        "",
        "Produced by `benchmarks/cost_growth.py` (see its docstring). Each cell: seconds "
        "per call (one call, after a warm-up on a tiny problem) / the call's own peak "
        "resident set in MiB (peak during the call minus the resident set just before it: "
        "torch, the model and the inputs, about 270–310 MiB).",
        "",
        "## Environment",
        "",
        environment_markdown(env),
        "",
    ]
    for axis, values in axes.items():
        others = {k: v for k, v in base.items() if k != axis}
        lines += [
            f"## Against {axis} ({', '.join(f'{k} = {v}' for k, v in others.items())})",
            "",
            "| method | " + " | ".join(f"{axis} = {v}" for v in values) + " |",
            "|---|" + "---:|" * len(values),
        ]
        for label in METHODS:
            cells = []
            for value in values:
                match = [
                    r
                    for r in results
                    if r["method"] == label
                    and r[axis] == value
                    and all(r[k] == v for k, v in others.items())
                ]
                r = match[0] if match else {"error": "—"}
                cells.append(
                    f"{r['seconds']:.2f} s / {r['delta_mib']:.0f}"
                    if "seconds" in r
                    else r["error"][:40]
                )
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    write_result(name, text, {"environment": env, "results": results})
    plot(results, results_dir() / f"{name}.png", base, axes)


if __name__ == "__main__":
    main()
