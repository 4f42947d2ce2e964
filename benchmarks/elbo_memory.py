r"""Peak memory of `shortinfer.ShortRunPosterior.elbo` with and without a parameter graph.

Model: the ``cpu`` bench preset's L = 5 generator (1×28×28, latent sizes 2/4/8/16/32, D = 62,
16 filters, fixed random initialisation) with its parameters **requiring grad**, as they do in
a user's training script. Observations: images drawn from the model itself. Each row runs in a
fresh process: ``elbo(objective="conditional")`` with the exact log-determinant (reverse
mode, all D rows at once), either as shipped (``differentiable=False``: evaluated under
``torch.no_grad()``) or with ``differentiable=True`` (the graph for the parameters kept
through all K steps, the behaviour before the fix). The ratio column is peak(differentiable) /
peak(default), both measured in this run; the values of the two ELBOs must agree.

Run from the repository root::

    python benchmarks/elbo_memory.py            # K = 10, 25, 50 at B = 1, and K = 50 at B = 4
    python benchmarks/elbo_memory.py --quick    # smoke run
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    benchmark_parser,
    emit,
    environment,
    environment_markdown,
    peak_memory,
    run_measured,
    set_threads,
    setup,
    write_result,
)

from shortinfer import short_run  # noqa: E402
from shortinfer.models import MultiLayerGenerator  # noqa: E402


def child(config: dict) -> None:
    limit = int(config["memory_limit_gib"] * 2**30)  # address space: an OOM fails the row only
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    set_threads(config["threads"])
    torch.manual_seed(0)
    model = MultiLayerGenerator(
        image_size=28, channels=1, latent_sizes=(2, 4, 8, 16, 32), num_filters=16
    ).to(config["device"])
    with torch.no_grad():
        x = model.sample_images(config["batch"])
    posterior = short_run(
        model.log_joint,
        x,
        latent_shape=model.latent_shapes,
        num_steps=config["steps"],
        step_size=1e-3,
        generator=torch.Generator(device=config["device"]).manual_seed(1),
    )
    values: list[float] = []

    def call() -> None:
        elbo = posterior.elbo(objective="conditional", differentiable=config["differentiable"])
        values.append(float(elbo.detach().sum()))

    try:
        emit({**run_measured(call), "elbo_sum": values[0]})
    except Exception as err:  # torch's allocator error, or LogJointError wrapping it
        out_of_memory = "allocate memory" in str(err) or isinstance(err, MemoryError)
        first_line = (str(err).splitlines() or [""])[0][:120]
        emit(
            {"error": "out of memory" if out_of_memory else f"{type(err).__name__}: {first_line}"}
        )


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
        return
    parser = benchmark_parser(__doc__)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per row")
    parser.add_argument(
        "--memory-limit-gib",
        type=float,
        default=12.0,
        help="address-space limit per row (default 12): a row over it reports an error",
    )
    args = parser.parse_args()
    device = setup(args)
    grid = [(10, 1)] if args.quick else [(10, 1), (25, 1), (50, 1), (50, 4)]
    rows = []
    for steps, batch in grid:
        row: dict = {"K": steps, "B": batch}
        for differentiable in (False, True):
            config = {
                "steps": steps,
                "batch": batch,
                "differentiable": differentiable,
                "threads": args.threads,
                "device": str(device),
                "memory_limit_gib": args.memory_limit_gib,
            }
            row[str(differentiable)] = peak_memory(
                "elbo_memory.py", [json.dumps(config)], timeout=args.timeout
            )
        rows.append(row)
        print(json.dumps(row), flush=True)
    lines = [
        "# ELBO peak memory with and without a parameter graph",
        "",
        f"Command: `python benchmarks/elbo_memory.py{' --quick' if args.quick else ''}`",
        "",
        environment_markdown(environment()),
        "",
        "| K | B | default peak MiB | default s | differentiable=True peak MiB | "
        "differentiable=True s | memory ratio | same ELBO |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def cells(result: dict) -> str:
        if "error" in result:
            return f"{result['error']} (limit {args.memory_limit_gib:g} GiB) | —"
        return f"{result['peak_mib']:.0f} | {result['seconds']:.1f}"

    for row in rows:
        plain, kept = row["False"], row["True"]
        ratio = same = "—"
        if "error" not in plain and "error" not in kept:
            ratio = f"{kept['peak_mib'] / plain['peak_mib']:.1f}×"
            close = abs(plain["elbo_sum"] - kept["elbo_sum"]) <= 1e-3 * abs(plain["elbo_sum"])
            same = "yes" if close else "NO"
        lines.append(
            f"| {row['K']} | {row['B']} | {cells(plain)} | {cells(kept)} | {ratio} | {same} |"
        )
    markdown = "\n".join(lines)
    print(markdown)
    write_result("elbo_memory_quick" if args.quick else "elbo_memory", markdown, {"rows": rows})


if __name__ == "__main__":
    main()
