r"""Exact log-det: speed against the paper's row-by-row loop, memory of its s-gradient (goal 2).

**A. Speed** of one exact $\log\lvert\det \partial z_K/\partial z_0\rvert$ for an MLP decoder
(``D -> 256 -> GELU -> 784``, Gaussian likelihood, $\sigma = 0.3$), $D = 128$,
$B = 64$, $K = 25$. Baseline: the paper's method (Section 5.5), the rollout's graph
built with ``create_graph=True`` and the Jacobian assembled **one row at a time** with
``torch.autograd.grad`` (cotangent $e_j$ in every example, so $D$ backward passes
serve the whole batch), then ``slogdet``. Candidates: ``estimate_log_det`` with
``method="exact"`` (the whole chain's Jacobian, vjp rows under ``vmap`` or jvp columns) and
``method="per_step_exact"`` (per-step Hessians), each in reverse and forward mode, plus the
stochastic estimator for scale. Interleaved repetitions, medians, ratios to the baseline.

**B. Log-det and its derivative in s** (scalar $s$, what gradient tuning needs), same
problem: time (interleaved, in process) and peak memory (one fresh subprocess per candidate,
``VmHWM``). Reverse mode differentiates the graph (``torch.autograd.grad``); forward mode
is one ``torch.func.jvp`` with tangent 1 on $s$ under ``torch.no_grad``.

**C. Reference generator** (L = 5, D = 416, 64 filters, $B = 16$): peak memory of the
exact per-step log-det with its forward-mode s-derivative, chunked. Forward mode keeps nothing
across steps, so its peak does not depend on $K$; the script shows this on
$B = 2$ for $K = 1, 2, 3$ and measures $B = 16$ at $K = 2$ (the first
step's Hessian does not depend on $s$, since $z_0$ does not, so $K = 2$ is the
shortest chain whose derivative runs through a Hessian; a full $K = 25$ pass repeats the
same per-step work, hours on 2 CPU cores). Reverse mode is measured at $B = 1$,
$K = 1, 2$ to show its growth.

**D. Accuracy in float32.** The whole chain's Jacobian is a product of $K$ contractions;
when $|\log\det|$ is large its smallest singular values fall below float32's resolution
relative to the largest, and LU loses them. Each per-step factor $I + S_k H_k$ stays
well conditioned. The script compares both methods in float32 against float64 on the MLP
($D = 32, B = 8, K = 25$) for growing $s$.

Run from the repository root::

    python benchmarks/entropy.py speed          # part A (about 10 minutes)
    python benchmarks/entropy.py gradient       # part B (about 15 minutes)
    python benchmarks/entropy.py reference      # part C (about 40 minutes)
    python benchmarks/entropy.py accuracy       # part D (about 2 minutes)
    python benchmarks/entropy.py speed --quick  # smoke runs (also gradient, reference)
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
    interleaved,
    mlp_problem,
    peak_memory,
    printed,
    reference_flat_log_joint,
    reference_generator,
    reference_images,
    run_measured,
    set_threads,
    setup,
    summarise,
    timing_table,
    write_result,
)

from shortinfer.entropy import estimate_log_det  # noqa: E402
from shortinfer.langevin import autograd_score, rollout  # noqa: E402

GOAL_SPEEDUP = 5.0  # issue 5: >= 5x faster than the row-by-row loop at d = 128, B = 64
GOAL_MEMORY_MIB = 4096  # issue 5: entropy + s-gradient of the reference generator within 4 GB
MEMORY_LIMIT_GIB = 14  # address-space cap of each child, so a runaway candidate fails cleanly


def row_loop(log_joint, z0, noise, table, *, create_graph: bool = False):
    """The paper's method: the Jacobian one row at a time with ``torch.autograd.grad``."""
    batch, dim = z0.shape
    z = z0.detach().clone().requires_grad_(True)
    z_k = rollout(autograd_score(log_joint, create_graph=True), z, noise, table)
    rows = []
    for j in range(dim):
        cotangent = torch.zeros_like(z_k)
        cotangent[:, j] = 1
        (row,) = torch.autograd.grad(
            z_k, z, cotangent, retain_graph=True, create_graph=create_graph
        )
        rows.append(row)
    return z_k, torch.linalg.slogdet(torch.stack(rows, 1)).logabsdet


LOG_DET = {
    "row loop (paper)": lambda p, **kw: row_loop(*p, **kw)[1],
    "exact, reverse (vjp rows, vmap)": lambda p, **kw: estimate_log_det(
        *p, method="exact", mode="reverse", **kw
    )[1],
    "exact, forward (jvp columns, vmap)": lambda p, **kw: estimate_log_det(
        *p, method="exact", mode="forward", **kw
    )[1],
    "per-step exact, reverse": lambda p, **kw: estimate_log_det(
        *p, method="per_step_exact", mode="reverse", **kw
    )[1],
    "per-step exact, forward": lambda p, **kw: estimate_log_det(
        *p, method="per_step_exact", mode="forward", **kw
    )[1],
    "stochastic (J=4, P=1; not exact)": lambda p, **kw: estimate_log_det(
        *p, method="stochastic", generator=torch.Generator(p[1].device).manual_seed(0), **kw
    )[1],
}


def value_and_derivative(name: str, problem, step: float, derivative: str, chunk_size=None):
    """``(log-det summed over the batch, d/ds)`` for a scalar step size, by one route."""
    log_joint, z0, noise, _ = problem
    num_steps = noise.shape[0]
    kwargs = (
        {}
        if name.startswith("row loop") or name.startswith("stochastic")
        else ({"chunk_size": chunk_size})
    )

    def total(s):
        table = s.reshape(1, 1).expand(num_steps, 1)
        if name.startswith("row loop"):
            return row_loop(log_joint, z0, noise, table, create_graph=True)[1].sum()
        return LOG_DET[name]((log_joint, z0, noise, table), **kwargs).sum()

    s0 = torch.tensor(step, dtype=z0.dtype, device=z0.device)
    if derivative == "reverse":
        s = s0.clone().requires_grad_(True)
        value = total(s)
        (slope,) = torch.autograd.grad(value, s)
    elif derivative == "forward":
        with torch.no_grad():
            value, slope = torch.func.jvp(total, (s0,), (torch.ones_like(s0),))
    else:
        raise ValueError(derivative)
    return float(value.detach()), float(slope)


# -- child process: one configuration, peak memory --------------------------------------------


def child(config: dict) -> None:
    limit = int(MEMORY_LIMIT_GIB * 1024**3)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    set_threads(config.get("threads", 1))
    device = config.get("device", "cpu")
    if config["problem"] == "mlp":
        problem = mlp_problem(config["dim"], config["batch"], config["num_steps"], device=device)
    else:
        model = reference_generator(config["num_filters"], device=device)
        x = reference_images(model, config["batch"])
        generator = torch.Generator().manual_seed(5)
        z0 = torch.randn(config["batch"], 416, generator=generator).to(device)
        noise = torch.randn(config["num_steps"], config["batch"], 416, generator=generator)
        noise = noise.to(device)
        problem = (reference_flat_log_joint(model, x), z0, noise, None)
    out: dict = {}

    def call():
        out["value"], out["slope"] = value_and_derivative(
            config["candidate"],
            problem,
            config["step_size"],
            config["derivative"],
            config.get("chunk_size"),
        )

    try:
        result = run_measured(call)
    except (RuntimeError, MemoryError) as err:
        emit({"error": f"{type(err).__name__}: {str(err)[:200]}"})
        return
    emit({**result, **out})


# -- parts ------------------------------------------------------------------------------------


def part_speed(args) -> tuple[str, dict]:
    problem = mlp_problem(args.dim, args.batch, args.num_steps, device=args.device)
    reference = LOG_DET["row loop (paper)"](problem)
    errors = {}
    for name, fn in LOG_DET.items():
        value = fn(problem)
        errors[name] = float(((value - reference).abs() / reference.abs()).max())
    candidates = {name: (lambda fn=fn: fn(problem)) for name, fn in LOG_DET.items()}
    if args.chunk_size:
        for name in ("exact, reverse (vjp rows, vmap)", "per-step exact, reverse"):
            label = f"{name}, chunk {args.chunk_size}"
            candidates[label] = lambda fn=LOG_DET[name]: fn(problem, chunk_size=args.chunk_size)
    times = interleaved(candidates, repeats=args.repeats, warmup=1, device=args.device)
    rows = summarise(times, "row loop (paper)")
    exact_rows = [r for r in rows[1:] if not r["name"].startswith("stochastic")]
    best = max(exact_rows, key=lambda r: r["speedup"])
    verdict = "met" if best["speedup"] >= GOAL_SPEEDUP else "not met"
    text = (
        f"## A. Exact log-det, MLP decoder, D = {args.dim}, B = {args.batch}, "
        f"K = {args.num_steps}\n\n"
        + timing_table(rows, "row loop (paper)")
        + "\n\nLargest relative difference to the row loop: "
        + ", ".join(f"{name}: {err:.1e}" for name, err in errors.items())
        + f"\n\nGoal (an exact method ≥ {GOAL_SPEEDUP}× faster than the row loop): **{verdict}**"
        f" — best exact: {best['name']}, {best['speedup']:.2f}× (paired "
        f"{1 / best['paired_ratio']:.2f}×, range {1 / best['paired_max']:.2f}–"
        f"{1 / best['paired_min']:.2f}×)."
    )
    print(text, flush=True)
    return text, {"speed": {"rows": rows, "times": times, "errors": errors}}


GRADIENT_CANDIDATES = [
    ("row loop (paper)", "reverse"),
    ("exact, reverse (vjp rows, vmap)", "reverse"),
    ("exact, reverse (vjp rows, vmap)", "forward"),
    ("per-step exact, reverse", "reverse"),
    ("per-step exact, reverse", "forward"),
    ("per-step exact, forward", "forward"),
    ("stochastic (J=4, P=1; not exact)", "reverse"),
    ("stochastic (J=4, P=1; not exact)", "forward"),
]


def part_gradient(args) -> tuple[str, dict]:
    problem = mlp_problem(args.dim, args.batch, args.num_steps, device=args.device)
    step = float(problem[3][0, 0])
    candidates = {
        f"{name} + {derivative}-mode d/ds": (
            lambda name=name, derivative=derivative: value_and_derivative(
                name, problem, step, derivative
            )
        )
        for name, derivative in GRADIENT_CANDIDATES
    }
    values = {label: fn() for label, fn in candidates.items()}
    times = interleaved(candidates, repeats=args.gradient_repeats, warmup=0, device=args.device)
    baseline = next(iter(candidates))
    rows = summarise(times, baseline)
    memory = {}
    for (name, derivative), label in zip(GRADIENT_CANDIDATES, candidates, strict=True):
        config = {
            "problem": "mlp",
            "dim": args.dim,
            "batch": args.batch,
            "num_steps": args.num_steps,
            "candidate": name,
            "derivative": derivative,
            "step_size": step,
            "threads": args.threads,
            "device": str(args.device),
        }
        memory[label] = peak_memory("entropy.py", [json.dumps(config)])
        print(label, memory[label], flush=True)
    lines = [
        f"## B. Log-det and d/ds, MLP decoder, D = {args.dim}, B = {args.batch}, "
        f"K = {args.num_steps}, s = {step}",
        "",
        "| candidate | median s | time / baseline | speed-up | peak RSS MiB | "
        "call's own peak MiB | d/ds |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        mem = memory[row["name"]]
        peak = f"{mem['peak_mib']:.0f}" if "peak_mib" in mem else mem.get("error", "?")
        delta = f"{mem['delta_mib']:.0f}" if "delta_mib" in mem else "—"
        lines.append(
            f"| {row['name']} | {row['median_s']:.2f} | {row['ratio']:.3f} | "
            f"{row['speedup']:.2f}× | {peak} | {delta} | "
            f"{values[row['name']][1]:.4g} |"
        )
    return printed(
        lines, {"gradient": {"rows": rows, "times": times, "memory": memory, "values": values}}
    )


def part_reference(args) -> tuple[str, dict]:
    runs = []
    plan = [  # (batch, num_steps, candidate, derivative, chunk)
        (2, 1, "per-step exact, reverse", "forward", args.reference_chunk),
        (2, 2, "per-step exact, reverse", "forward", args.reference_chunk),
        (2, 3, "per-step exact, reverse", "forward", args.reference_chunk),
        (1, 1, "per-step exact, reverse", "reverse", args.reference_chunk),
        (1, 2, "per-step exact, reverse", "reverse", args.reference_chunk),
        (args.reference_batch, 2, "per-step exact, reverse", "forward", args.reference_chunk),
    ]
    if args.quick:
        plan = [
            (1, 1, "per-step exact, reverse", "forward", 8),
            (1, 2, "per-step exact, reverse", "forward", 8),
            (1, 1, "per-step exact, reverse", "reverse", 8),
        ]
    for batch, num_steps, name, derivative, chunk in plan:
        config = {
            "problem": "reference",
            "num_filters": args.num_filters,
            "batch": batch,
            "num_steps": num_steps,
            "candidate": name,
            "derivative": derivative,
            "chunk_size": chunk,
            "step_size": 0.05,
            "threads": args.threads,
            "device": str(args.device),
        }
        result = peak_memory("entropy.py", [json.dumps(config)])
        runs.append({**config, **result})
        print(runs[-1], flush=True)
    lines = [
        f"## C. Reference generator (L = 5, D = 416, {args.num_filters} filters): per-step "
        "exact log-det with d/ds",
        "",
        "| B | K | d/ds mode | chunk | seconds | peak RSS MiB | call's own peak MiB |",
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    for run in runs:
        if "error" in run:
            lines.append(
                f"| {run['batch']} | {run['num_steps']} | {run['derivative']} | "
                f"{run['chunk_size']} | — | {run['error']} | — |"
            )
            continue
        lines.append(
            f"| {run['batch']} | {run['num_steps']} | {run['derivative']} | "
            f"{run['chunk_size']} | {run['seconds']:.0f} | {run['peak_mib']:.0f} | "
            f"{run['delta_mib']:.0f} |"
        )
    big = [
        r
        for r in runs
        if r["batch"] == args.reference_batch and "peak_mib" in r and r["derivative"] == "forward"
    ]
    if big:
        peak = big[-1]["peak_mib"]
        verdict = "met" if peak <= GOAL_MEMORY_MIB else "not met"
        lines += [
            "",
            f"Goal (entropy + d/ds at B = {args.reference_batch} within "
            f"{GOAL_MEMORY_MIB} MiB): **{verdict}** — peak {peak:.0f} MiB at "
            f"K = {big[-1]['num_steps']}; forward mode's peak does not grow with K (rows "
            f"B = 2 above), so it holds for K = 25, whose pass repeats the per-step work "
            f"(about 12 × the K = 2 time, {big[-1]['seconds']:.0f} s, on this machine).",
        ]
    return printed(lines, {"reference": runs})


def part_accuracy(args) -> tuple[str, dict]:
    import copy

    dim, batch, num_steps = (32, 8, 25) if not args.quick else (8, 2, 5)
    generator = torch.Generator().manual_seed(0)
    net64 = (
        torch.nn.Sequential(torch.nn.Linear(dim, 256), torch.nn.GELU(), torch.nn.Linear(256, 784))
        .double()
        .requires_grad_(False)
    )
    net32 = copy.deepcopy(net64).float()
    f64 = torch.float64
    x = net64(torch.randn(batch, dim, generator=generator, dtype=f64))
    x = x + 0.3 * torch.randn(batch, 784, generator=generator, dtype=f64)
    z0 = torch.randn(batch, dim, generator=generator, dtype=f64)
    noise = torch.randn(num_steps, batch, dim, generator=generator, dtype=f64)
    device = args.device
    net64, net32, x, z0, noise = (t.to(device) for t in (net64, net32, x, z0, noise))

    def log_joint(net, observed):
        return lambda z: (
            -0.5 * z.square().sum(-1) - 0.5 * (observed - net(z)).square().sum(-1) / 0.3**2
        )

    rows = []
    for step in (0.002, 0.005, 0.01, 0.02):
        out = {}
        for label, net, dtype in (("float64", net64, f64), ("float32", net32, torch.float32)):
            table = torch.full((num_steps, 1), step, dtype=dtype, device=device)
            fn = log_joint(net, x.to(dtype))
            for method in ("exact", "per_step_exact"):
                value = estimate_log_det(fn, z0.to(dtype), noise.to(dtype), table, method=method)[
                    1
                ]
                out[(method, label)] = value.detach().double()
        reference = out[("per_step_exact", "float64")]
        rows.append(
            {
                "step_size": step,
                "log_det_mean": float(reference.mean()),
                **{f"{m} {d}": float(((out[(m, d)] - reference).abs()).max()) for (m, d) in out},
            }
        )
    lines = [
        f"## D. Accuracy: float32 against float64 (MLP, D = {dim}, B = {batch}, K = {num_steps})",
        "",
        "Largest absolute error over the batch, against per-step exact in float64.",
        "",
        "| s | mean log-det | exact float64 | exact float32 | per-step float32 |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['step_size']} | {row['log_det_mean']:.2f} | "
            f"{row['exact float64']:.1e} | {row['exact float32']:.1e} | "
            f"{row['per_step_exact float32']:.1e} |"
        )
    return printed(lines, {"accuracy": rows})


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
        return
    parser = benchmark_parser(__doc__)
    parser.add_argument("part", choices=["speed", "gradient", "reference", "accuracy"])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--num-steps", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--gradient-repeats", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=32)
    parser.add_argument("--num-filters", type=int, default=64)
    parser.add_argument("--reference-batch", type=int, default=16)
    parser.add_argument("--reference-chunk", type=int, default=16)
    args = parser.parse_args()
    if args.quick:
        args.dim, args.batch, args.num_steps, args.repeats = 16, 8, 3, 2
        args.gradient_repeats, args.num_filters, args.chunk_size = 1, 8, 8
    args.device = setup(args)
    env = environment()
    part = {
        "speed": part_speed,
        "gradient": part_gradient,
        "reference": part_reference,
        "accuracy": part_accuracy,
    }
    body, data = part[args.part](args)
    text = (
        f"# Exact entropy: {args.part}\n\nProduced by `benchmarks/entropy.py` (see its "
        f"docstring).\n\n## Environment\n\n{environment_markdown(env)}\n\n{body}"
    )
    name = f"entropy_{args.part}" + ("_quick" if args.quick else "")
    write_result(name, text, {"environment": env, "args": vars(args), **data})


if __name__ == "__main__":
    main()
