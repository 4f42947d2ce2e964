r"""Largest posterior curvature $\lambda_{\max}$ of the paper's generators, and the stable step.

A Langevin step on a posterior whose largest curvature is $\lambda_{\max}$ is stable only for
$s < 2/\lambda_{\max}$. This script measures $\hat\lambda_{\max}$ with
`shortinfer.langevin.max_curvature` (power iteration on Hessian-vector products) at prior draws
$z_0$ and at short-run samples $z_K$, for

* the ``paper`` preset's L = 5 generator (latents 64, 64, 64, 96, 128; 64 filters; 32×32×3) at
  initialisation, at σ = 0.3 and 0.15, on random images (no CelebA here);
* any trained generator checkpoint given with ``--checkpoint`` (e.g. a bench cell folder), on
  held-out MNIST-5k digits, at its trained σ and step size.

It prints a Markdown table and writes it to ``benchmarks/results/curvature.md`` with the
command, machine and versions.

Usage::

    python benchmarks/curvature.py [--checkpoint DIR_OR_FILE ...] [--threads 1]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _common import add_device_options, environment, environment_markdown, setup, write_result

from shortinfer import short_run
from shortinfer.langevin import max_curvature
from shortinfer.models import LadderVAE, MultiLayerGenerator
from shortinfer.train import load_checkpoint


def measure(model: MultiLayerGenerator, x: torch.Tensor, step_size: float) -> dict[str, float]:
    """Median and max of lambda_max over the batch at z_0 and at z_K (K = 25)."""
    post = short_run(
        model.log_joint,
        x,
        latent_shape=model.latent_shapes,
        num_steps=25,
        step_size=step_size,
        generator=torch.Generator(x.device).manual_seed(0),
        validate=False,
    )
    chain = post.draw_noise(1)
    target = post._flat_log_joint(1)
    out = {}
    for name, z in (("z0", chain.z0), ("zK", post.run_chain(chain))):
        lam = max_curvature(target, z, num_iterations=30)
        out[f"{name}_median"] = float(lam.median())
        out[f"{name}_max"] = float(lam.max())
    return out


def trained(path: str) -> tuple[MultiLayerGenerator, float]:
    state = load_checkpoint(path)
    config = state["model_config"]
    if "generator" in config:  # a Ladder-VAE cell: measure its generator
        model = LadderVAE.from_config(config)
        model.load_state_dict(state["model_state"])
        generator = model.generator
    else:
        generator = MultiLayerGenerator.from_config(config)
        generator.load_state_dict(state["model_state"])
    if state.get("sigma") is not None:
        generator.sigma = float(state["sigma"])
    step = state["step_size"]
    return generator.eval(), float(step) if isinstance(step, (int, float)) else 0.001


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", nargs="*", default=[])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--images", type=int, default=8)
    add_device_options(parser)
    args = parser.parse_args()
    device = setup(args)
    torch.manual_seed(0)
    rows = []
    paper = MultiLayerGenerator(
        image_size=32, channels=3, latent_sizes=(64, 64, 64, 96, 128), num_filters=64
    )
    paper = paper.to(device)
    images = torch.rand(args.images, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    images = images.to(device)
    for sigma in (0.3, 0.15):
        paper.sigma = sigma
        label = f"paper L=5 at init, σ={sigma}, random images"
        rows.append((label, measure(paper, images * 2 - 1, 0.00125), 0.00125))
    if args.checkpoint:
        from shortinfer.data import load_dataset

        digits = load_dataset("mnist5k", split="test").images[: args.images]
        for path in args.checkpoint:
            model, step = trained(path)
            model, digits = model.to(device), digits.to(device)
            label = f"{Path(path).name} trained, σ={model.sigma:g}, MNIST-5k test digits"
            rows.append((label, measure(model, digits, step), step))
    lines = [
        "# Largest posterior curvature and the stable step size",
        "",
        "Produced by `benchmarks/curvature.py` (see its docstring). λ_max of −∇²log p(x, z) by "
        f"30 power iterations per image, {args.images} images, at prior draws z_0 and at "
        "short-run samples z_K (K = 25, the model's step size s); a Langevin step is stable "
        "only for s < 2/λ_max.",
        "",
        "| model | s (δ) | λ_max at z_0: median / max | at z_K: median / max | 2/λ_max (worst) |",
        "|---|---|---|---|---|",
    ]
    for label, m, step in rows:
        worst = max(m["z0_max"], m["zK_max"])
        lines.append(
            f"| {label} | {step:.3g} ({(2 * step) ** 0.5:.3g}) | {m['z0_median']:.4g} / "
            f"{m['z0_max']:.4g} | {m['zK_median']:.4g} / {m['zK_max']:.4g} | {2 / worst:.3g} |"
        )
    env = environment()
    lines += ["", "## Environment", "", environment_markdown(env)]
    text = "\n".join(lines) + "\n"
    print(text)
    data = {"rows": [{"model": label, "step_size": step, **m} for label, m, step in rows]}
    write_result("curvature", text, {**data, "environment": env})


if __name__ == "__main__":
    main()
