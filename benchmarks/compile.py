r"""Compiled against eager sampling of the demo's generator (issue 14, part 1).

The model is the one ``shortinfer demo`` trains (`shortinfer.cli.demo_training`: the L = 3
generator, latents (4, 8, 16), 16 filters, 28×28 grey images), at the demo's batch size
B = 64 and K = 25, with the parameters frozen as in training. Candidates, each building a new
posterior per call as the trainer does (``validate=False``):

- **hand loop**: a plain Python Langevin loop with ``torch.autograd.grad`` per step (the
  baseline every ratio is against);
- **eager**: ``short_run(...).sample()``;
- **compiled MODE**: ``short_run(..., compile=MODE).sample()`` for each ``--modes`` entry
  (``default``; on CUDA also ``reduce-overhead``, which records CUDA graphs).

The first call of each compiled mode compiles; it is timed separately (``compile seconds`` =
first call minus one eager call) and excluded from the medians, as are ``--warmup`` further
calls. Before timing, the script checks that each compiled mode returns the eager chain for
the same generator seed (largest absolute difference, float32 round-off).

Run from the repository root::

    python benchmarks/compile.py                       # CPU, B = 64, K = 25
    python benchmarks/compile.py --device cuda --modes default reduce-overhead
    python benchmarks/compile.py --quick               # smoke run (tiny model)
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
    interleaved,
    reference_images,
    setup,
    summarise,
    synchronize,
    timing_table,
    write_result,
)

from shortinfer import short_run  # noqa: E402
from shortinfer._compile import compile_available  # noqa: E402

GOAL = 1.3  # issue 14: compiled sampling at least 1.3x faster than eager on this CPU


def demo_model(device: torch.device, quick: bool):
    from shortinfer.cli import demo_training
    from shortinfer.models import MultiLayerGenerator

    torch.manual_seed(0)
    if quick:
        model = MultiLayerGenerator(image_size=28, channels=1, latent_sizes=(2, 4), num_filters=4)
    else:
        model, _ = demo_training()
    return model.to(device).requires_grad_(False)


def hand_loop(model, x, num_steps: int, step_size: float, generator) -> dict:
    """The plain loop: z_{k+1} = z_k + s grad + sqrt(2 s) eps, per block, autograd per step."""
    names = list(model.latent_shapes)
    z = {
        n: torch.randn(x.shape[0], *model.latent_shapes[n], generator=generator, device=x.device)
        for n in names
    }
    root = (2 * step_size) ** 0.5
    for _ in range(num_steps):
        leaves = {n: v.detach().requires_grad_(True) for n, v in z.items()}
        with torch.enable_grad():
            grads = torch.autograd.grad(model.log_joint(x, leaves).sum(), list(leaves.values()))
        z = {
            n: leaves[n].detach()
            + step_size * g
            + root * torch.randn(g.shape, generator=generator, device=x.device)
            for n, g in zip(names, grads, strict=True)
        }
    return z


def profile_lines(call, device: torch.device, top: int = 8) -> list[str]:
    """What one eager call spends its time on: the ``top`` operators by self time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + (
        [ProfilerActivity.CUDA] if device.type == "cuda" else []
    )
    with profile(activities=activities) as prof:
        call()
        synchronize(device)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)
    total = sum(getattr(e, key) for e in events) or 1.0
    lines = [
        f"What one eager `sample()` spends its time on (torch.profiler, {key}):",
        "",
        "| operator | share | calls |",
        "|---|---:|---:|",
    ]
    for event in events[:top]:
        lines.append(
            f"| `{event.key}` | {100 * getattr(event, key) / total:.1f}% | {event.count} |"
        )
    return lines


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--batch", type=int, default=64, help="B (the demo's 64)")
    parser.add_argument("--num-steps", type=int, default=25, help="K (default 25)")
    parser.add_argument("--step-size", type=float, default=0.005)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls after compiling")
    parser.add_argument(
        "--modes",
        nargs="*",
        default=["default"],
        help="torch.compile modes (none: only the hand loop and eager)",
    )
    parser.add_argument("--name", default=None, help="result file name (default compile)")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.num_steps, args.repeats = 8, 3, 2
    device = setup(args)
    available, reason = compile_available(device)
    if args.modes and not available:
        raise SystemExit(f"torch.compile is not available here: {reason}")
    env = environment()
    model = demo_model(device, args.quick)
    x = reference_images(model, args.batch)
    generator = torch.Generator(device).manual_seed(0)

    def sampler(option):
        def call():
            post = short_run(
                model.log_joint,
                x,
                latent_shape=model.latent_shapes,
                num_steps=args.num_steps,
                step_size=args.step_size,
                generator=generator,
                validate=False,
                compile=option,
            )
            return post.sample()

        return call

    candidates = {
        "hand loop": lambda: hand_loop(model, x, args.num_steps, args.step_size, generator)
    }
    candidates["eager sample()"] = sampler(False)
    for mode in args.modes:
        candidates[f"compiled {mode}"] = sampler(mode)

    def timed(call):
        synchronize(device)
        start = time.perf_counter()
        out = call()
        synchronize(device)
        return time.perf_counter() - start, out

    eager_seconds, _ = timed(candidates["eager sample()"])
    compile_seconds, max_difference = {}, {}
    for mode in args.modes:
        first, _ = timed(candidates[f"compiled {mode}"])
        compile_seconds[mode] = first - eager_seconds
        samples = []
        for option in (False, mode):
            state = generator.get_state()
            samples.append(sampler(option)())
            generator.set_state(state)
        max_difference[mode] = max(
            float((samples[0][n] - samples[1][n]).abs().max()) for n in samples[0]
        )
        print(
            f"compiled {mode}: first call {first:.1f} s (compile ~{compile_seconds[mode]:.1f}"
            f" s); max |z_K - eager z_K| = {max_difference[mode]:.2e}",
            flush=True,
        )
    times = interleaved(candidates, repeats=args.repeats, warmup=args.warmup, device=device)
    rows = summarise(times, "hand loop")
    medians = {row["name"]: row["median_s"] for row in rows}
    paired = {}
    for mode in args.modes:
        eager, compiled = times["eager sample()"], times[f"compiled {mode}"]
        paired[mode] = statistics.median(e / c for e, c in zip(eager, compiled, strict=True))
    lines = [
        f"Demo generator (latents {tuple(model.latent_sizes)}, {model.num_filters} filters, "
        f"{model.image_size}x{model.image_size}), B = {args.batch}, K = {args.num_steps}, "
        f"s = {args.step_size}, device {device}, {args.repeats} interleaved repeats after "
        f"{args.warmup} warm-up call(s).",
        "",
        timing_table(rows, "hand loop"),
        "",
        "| compiled mode | compile s (first call − eager call) | max abs diff to eager z_K | "
        "eager / compiled (medians) | paired median | goal ≥ 1.3× |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for mode in args.modes:
        ratio = medians["eager sample()"] / medians[f"compiled {mode}"]
        lines.append(
            f"| {mode} | {compile_seconds[mode]:.1f} | {max_difference[mode]:.2e} | "
            f"{ratio:.3f}× | {paired[mode]:.3f}× | {'met' if ratio >= GOAL else 'not met'} |"
        )
    lines += ["", *profile_lines(candidates["eager sample()"], device)]
    body = "\n".join(lines)
    print(body, flush=True)
    text = (
        "# Compiled sampling\n\nProduced by `benchmarks/compile.py` (see its docstring).\n\n"
        f"## Environment\n\n{environment_markdown(env)}\n\n{body}"
    )
    name = args.name or ("compile_quick" if args.quick else "compile")
    write_result(
        name,
        text,
        {
            "environment": env,
            "args": vars(args),
            "times": times,
            "rows": rows,
            "compile_seconds": compile_seconds,
            "max_abs_difference": max_difference,
            "paired_eager_over_compiled": paired,
        },
    )


if __name__ == "__main__":
    main()
