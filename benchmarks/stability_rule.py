r"""The tuning's stability rule during training: which step sizes it lets through, and the MSE.

Trains the ``cpu`` bench preset's L = 3 generator on MNIST-5k by Algorithm 1 with K = 10
(`equal_time.py`'s trainer: the preset's grid tuning every 100 updates, a schedule of
``--schedule`` updates), once per growth bound $G$ of the stability check
(`shortinfer.tuning.step_amplification`: a tuned $s$ is refused when the median chain's
$s\hat\lambda_{\max} > 1 + G^{1/K}$, `shortinfer.tuning.stable_step_bound`). $G = 1$ is the
former rule $s\hat\lambda_{\max} \le 2$; the library ships `shortinfer.tuning.STABILITY_GROWTH`.
Records the step size after each re-tuning, what the check refused, and the held-out MSE
(500 images) every 100 updates. Every run has the same seeds, so the runs differ only by the rule.

Run from the repository root::

    python benchmarks/stability_rule.py --compile       # G = 1, 10, 100; about 12 min
    python benchmarks/stability_rule.py --quick         # smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import equal_time  # noqa: E402
from _common import (  # noqa: E402
    benchmark_parser,
    environment,
    environment_markdown,
    setup,
    write_result,
)

import shortinfer.posterior as posterior_module  # noqa: E402
from shortinfer import tuning  # noqa: E402


def run(growth: float, args: argparse.Namespace, data) -> dict:
    posterior_module.STABILITY_GROWTH = growth  # the check's G
    refused: list[dict] = []
    original = posterior_module.ShortRunPosterior.tune_step_size

    def recorded(self, *positional, **options):
        tuned = original(self, *positional, **options)
        refused.extend({"step_size": s, "reason": r} for s, r in tuned.trace.rejected)
        return tuned

    posterior_module.ShortRunPosterior.tune_step_size = recorded
    try:
        trainer = equal_time.make_trainer("short_run", data, args, args.schedule)
        points = []
        for stop in range(args.every, args.updates + 1, args.every):
            while trainer.iteration < stop:
                trainer.fit(max_seconds=5)
            mse = equal_time.held_out_mse(trainer, data, args)
            points.append(
                {"iteration": trainer.iteration, "step_size": str(trainer.step_size), "mse": mse}
            )
            print(json.dumps({"growth": growth, **points[-1]}), flush=True)
    finally:
        posterior_module.ShortRunPosterior.tune_step_size = original
        posterior_module.STABILITY_GROWTH = tuning.STABILITY_GROWTH
    history = [{"iteration": r.iteration, "step_size": str(r.step_size)} for r in trainer.history]
    return {"growth": growth, "points": points, "history": history, "refused": refused}


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--growth", type=float, nargs="+", default=[1.0, 10.0, 100.0])
    parser.add_argument("--steps", type=int, default=10, help="K (default 10)")
    parser.add_argument("--updates", type=int, default=500, help="updates per run")
    parser.add_argument("--every", type=int, default=100, help="MSE every N updates")
    parser.add_argument("--schedule", type=int, default=1535, help="the schedules' length T")
    parser.add_argument("--compile", action="store_true", help="compiled chains (as equal_time)")
    args = parser.parse_args()
    setup(args)
    args.source, args.data_root, args.num_test, args.train_subset = "mnist5k", None, 500, None
    args.batch_size, args.num_layers, args.tune_every = 16, 3, None
    args.compile, args.eval_batch_size = ("default" if args.compile else False), 100
    args.tune_method, args.per_step = "grid", 0  # equal_time's defaults: the preset's grid
    if args.quick:
        args.growth, args.updates, args.every, args.schedule = [1.0, 100.0], 4, 2, 8
        args.train_subset, args.num_test, args.steps, args.tune_every = 32, 16, 3, 2
    data = equal_time.load(args)
    runs = [run(growth, args, data) for growth in args.growth]
    lines = [
        "# The stability rule during training (MNIST-5k, L = 3)",
        "",
        f"Command: `python {' '.join(sys.argv)}`; "
        f"K = {args.steps}, schedule T = {args.schedule}, compile = {args.compile}, "
        "bound 1 + G^(1/K).",
        "",
        environment_markdown(environment()),
        "",
        "| G | bound s·λ | "
        + " | ".join(f"s, MSE at {p['iteration']}" for p in runs[0]["points"])
        + " |",
        "|---|---|" + "---|" * len(runs[0]["points"]),
    ]
    for result in runs:
        bound = tuning.stable_step_bound(args.steps, growth=result["growth"])
        cells = " | ".join(f"{p['step_size']}, {p['mse']:.4f}" for p in result["points"])
        lines.append(f"| {result['growth']:g} | {bound:.3g} | {cells} |")
    markdown = "\n".join(lines)
    print(markdown)
    name = "stability_rule_quick" if args.quick else "stability_rule"
    write_result(name, markdown, {"runs": runs, "environment": environment()})


if __name__ == "__main__":
    main()
