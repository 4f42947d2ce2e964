r"""Sampling and training throughput against hand-written research loops (issue 5, goals 1, 4).

**Sampling** (``python benchmarks/sampling.py sample``). Baseline: the loop of the authors'
reference code (``infer_z`` in ``enijkamp/short_run_inf``), written for the paper's step-size
form: latents held per layer, ``torch.autograd.grad`` of $\sum_b \log p(x_b, z_b)$ per
step, and in-place ``.data`` updates $z \mathrel{+}= s\,\nabla$ then
$z \mathrel{+}= \sqrt{2s}\,\epsilon$ with the noise drawn inside the loop. Candidate:
`shortinfer.ShortRunPosterior.sample` on the same model and batch. Before timing, the
script feeds the posterior's own noise (`shortinfer.ShortRunPosterior.draw_noise`) to
the research loop and checks that both return bit-for-bit the same $z_K$.

**Training** (``python benchmarks/sampling.py train``). Images per second of one iteration of
Algorithm 1 (short-run inference, then one Adam step on θ). Baseline: the reference code's
training loop (``infer_z`` with θ still requiring grad, then ``loss.backward()``,
``optimizer.step()``). Candidates: `shortinfer.train.train_step` (what
`shortinfer.train.Trainer` runs; it freezes θ during inference), a plain
``short_run(...).sample()`` followed by the same θ step (validation on, as a user would write
it), and `shortinfer.train.Trainer.step` itself (no tuning, no σ schedule). Each candidate
trains its own copy of the model.

Repetitions are interleaved and summarised by medians; ratios are against the baseline
measured in the same run (see ``benchmarks/_common.py``).

Run from the repository root::

    python benchmarks/sampling.py sample                  # reference generator, B = 100, K = 25
    python benchmarks/sampling.py train                   # reference generator, B = 32, K = 25
    python benchmarks/sampling.py sample --quick          # smoke run
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    benchmark_parser,
    environment,
    environment_markdown,
    interleaved,
    reference_generator,
    reference_images,
    setup,
    summarise,
    timing_table,
    write_result,
)

from shortinfer import short_run  # noqa: E402

GOAL_SAMPLE = 1.05  # issue 5: sample() within 1.05x of the research loop's time
GOAL_TRAIN = 1.0  # issue 5: training throughput at least the reference loop's


def research_loop(model, x, blocks, step_size, num_steps, noise=None, generator=None):
    """The reference code's inference loop in the paper's (s) parameterisation.

    ``blocks`` are the initial latents per layer; ``noise`` (optional) per layer with shape
    ``(K, B, d)``, otherwise drawn inside the loop from ``generator`` as the reference code does.
    """
    names = list(model.latent_shapes)
    z = [block.clone() for block in blocks]
    root = math.sqrt(2 * step_size)
    for k in range(num_steps):
        z = [var.requires_grad_(True) for var in z]
        log_p = model.log_joint(x, dict(zip(names, z, strict=True))).sum()
        grads = torch.autograd.grad(log_p, z)
        for index, (var, grad) in enumerate(zip(z, grads, strict=True)):
            var.data += step_size * grad
            eps = (
                noise[index][k]
                if noise is not None
                else torch.randn(var.shape, generator=generator, device=var.device)
            )
            var.data += root * eps
        z = [var.detach() for var in z]
    return z


def check_same_z(model, x, post, step_size: float, num_steps: int) -> bool:
    """Run ``post.sample()`` and the research loop on the posterior's own noise; compare."""
    state = post.generator.get_state()
    sample = post.sample()
    post.generator.set_state(state)
    chain = post.draw_noise()
    sizes = list(model.latent_sizes)
    reference = research_loop(
        model,
        x,
        chain.z0.split(sizes, -1),
        step_size,
        num_steps,
        noise=chain.noise.split(sizes, -1),
    )
    names = model.latent_shapes
    return all(torch.equal(sample[n], r) for n, r in zip(names, reference, strict=True))


def bench_sample(args: argparse.Namespace) -> tuple[str, dict]:
    sections, data = [], []
    configs = [(args.num_filters, args.batch)] + ([(8, args.batch)] if not args.quick else [])
    for num_filters, batch in configs:
        model = reference_generator(num_filters, device=args.device)
        x = reference_images(model, batch)
        generator = torch.Generator(args.device).manual_seed(0)
        post = short_run(
            model.log_joint,
            x,
            latent_shape=model.latent_shapes,
            num_steps=args.num_steps,
            step_size=args.step_size,
            generator=generator,
        )
        same = check_same_z(model, x, post, args.step_size, args.num_steps)
        sizes = list(model.latent_sizes)
        research_generator = torch.Generator(args.device).manual_seed(1)

        def research(
            model=model, x=x, sizes=sizes, research_generator=research_generator, batch=batch
        ):
            blocks = [
                torch.randn(batch, d, generator=research_generator, device=args.device)
                for d in sizes
            ]
            return research_loop(
                model, x, blocks, args.step_size, args.num_steps, generator=research_generator
            )

        candidates = {"research loop": research, "ShortRunPosterior.sample": post.sample}
        times = interleaved(candidates, repeats=args.repeats, warmup=1, device=args.device)
        rows = summarise(times, "research loop")
        ratio = rows[1]["ratio"]
        verdict = "met" if ratio <= GOAL_SAMPLE and same else "not met"
        title = (
            f"Reference generator, {num_filters} filters, B = {batch}, "
            f"K = {args.num_steps}, s = {args.step_size}"
        )
        sections.append(
            f"### {title}\n\nSame z_K for the same noise (bit for bit): **{same}**\n\n"
            + timing_table(rows, "research loop")
            + f"\n\nGoal (sample ≤ {GOAL_SAMPLE}× the research loop, same z): **{verdict}** "
            f"(ratio of medians {ratio:.3f}, paired {rows[1]['paired_ratio']:.3f} "
            f"[{rows[1]['paired_min']:.3f}, {rows[1]['paired_max']:.3f}])."
        )
        data.append(
            {
                "num_filters": num_filters,
                "batch": batch,
                "same_z": same,
                "times": times,
                "rows": rows,
            }
        )
        print(sections[-1], flush=True)
    return "## Sampling\n\n" + "\n\n".join(sections), {"sample": data}


def bench_train(args: argparse.Namespace) -> tuple[str, dict]:
    from shortinfer.train import Trainer, train_step

    base = reference_generator(args.num_filters, device=args.device)
    for parameter in base.parameters():
        parameter.requires_grad_(True)
    x = reference_images(base, args.batch)
    sizes = list(base.latent_sizes)
    step, num_steps = args.step_size, args.num_steps

    def fresh():
        model = copy.deepcopy(base)
        return model, torch.optim.Adam(model.parameters(), lr=1e-4)

    ref_model, ref_opt = fresh()
    ref_generator = torch.Generator(args.device).manual_seed(1)

    def reference_step():
        blocks = [
            torch.randn(args.batch, d, generator=ref_generator, device=args.device) for d in sizes
        ]
        z = research_loop(ref_model, x, blocks, step, num_steps, generator=ref_generator)
        ref_opt.zero_grad()
        loss = -ref_model.log_joint(x, dict(zip(ref_model.latent_shapes, z, strict=True))).mean()
        loss.backward()
        ref_opt.step()

    step_model, step_opt = fresh()
    step_generator = torch.Generator(args.device).manual_seed(2)

    def library_train_step():
        train_step(
            step_model,
            step_opt,
            x,
            latent_shape=step_model.latent_shapes,
            num_steps=num_steps,
            step_size=step,
            generator=step_generator,
        )

    post_model, post_opt = fresh()
    post_generator = torch.Generator(args.device).manual_seed(3)

    def posterior_step():
        z = short_run(
            post_model.log_joint,
            x,
            latent_shape=post_model.latent_shapes,
            num_steps=num_steps,
            step_size=step,
            generator=post_generator,
        ).sample()
        post_opt.zero_grad()
        loss = -post_model.log_joint(x, z).mean()
        loss.backward()
        post_opt.step()

    trainer_model, _ = fresh()
    trainer = Trainer(
        trainer_model,
        x,
        num_iterations=10**6,
        batch_size=args.batch,
        num_steps=num_steps,
        step_size=step,
        tuning=None,
        learning_rate=1e-4,
        sigma=None,
        progress=False,
        device=args.device,
    )

    candidates = {
        "reference loop": reference_step,
        "train_step": library_train_step,
        "short_run().sample() + θ step": posterior_step,
        "Trainer.step": trainer.step,
    }
    times = interleaved(candidates, repeats=args.repeats, warmup=1, device=args.device)
    rows = summarise(times, "reference loop")
    for row in rows:
        row["images_per_second"] = args.batch / row["median_s"]
    lines = [
        f"Reference generator, {args.num_filters} filters, B = {args.batch}, "
        f"K = {num_steps}, s = {step}, Adam lr 1e-4 (θ requires grad).",
        "",
        "| candidate | images/s (median) | throughput / reference | paired [min, max] |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        paired = 1 / row["paired_ratio"]
        lines.append(
            f"| {row['name']} | {row['images_per_second']:.2f} | "
            f"{row['speedup']:.3f} | {paired:.3f} [{1 / row['paired_max']:.3f}, "
            f"{1 / row['paired_min']:.3f}] |"
        )
    verdicts = ", ".join(f"{row['name']}: {row['speedup']:.3f}×" for row in rows[1:])
    best = max(row["speedup"] for row in rows[1:])
    verdict = "met" if rows[1]["speedup"] >= GOAL_TRAIN else "not met"
    text = (
        "## Training throughput\n\n"
        + "\n".join(lines)
        + "\n\nRaw timings:\n\n"
        + timing_table(rows, "reference loop")
        + f"\n\nGoal (train_step throughput ≥ {GOAL_TRAIN}× the reference loop): "
        f"**{verdict}** ({verdicts}; best {best:.3f}×)."
    )
    print(text, flush=True)
    return text, {"train": {"times": times, "rows": rows}}


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("what", choices=["sample", "train"])
    parser.add_argument("--num-filters", type=int, default=64)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--num-steps", type=int, default=25)
    parser.add_argument("--step-size", type=float, default=0.05)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.batch is None:
        args.batch = 100 if args.what == "sample" else 32
    if args.quick:
        args.num_filters, args.batch, args.num_steps, args.repeats = 8, 8, 3, 2
    args.device = setup(args)
    env = environment()
    body, data = bench_sample(args) if args.what == "sample" else bench_train(args)
    title = "Sampling" if args.what == "sample" else "Training throughput"
    text = (
        f"# {title}\n\nProduced by `benchmarks/sampling.py` (see its docstring).\n\n"
        f"## Environment\n\n{environment_markdown(env)}\n\n{body}"
    )
    name = ("sampling" if args.what == "sample" else "training") + ("_quick" if args.quick else "")
    write_result(name, text, {"environment": env, "args": vars(args), **data})


if __name__ == "__main__":
    main()
