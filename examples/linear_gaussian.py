"""Short-run inference against an exact posterior: the linear-Gaussian model.

Run: ``python examples/linear_gaussian.py``

With z ~ N(0, I) and x | z ~ N(Wz + b, sigma^2 I) the posterior is Gaussian, and short-run
Langevin is affine, so the law q_s of z_K is Gaussian with known moments. This script draws
from ``shortinfer``'s posterior, compares its moments with the exact recursion and the exact
posterior, tunes the step size, and prints the errors and the exact KL(q_s || p(z|x)).
"""

from __future__ import annotations

import torch

import shortinfer
from shortinfer.models import LinearGaussian

torch.manual_seed(0)
D, P, K = 4, 10, 25
model = LinearGaussian(
    torch.randn(P, D, dtype=torch.float64) / P**0.5, torch.zeros(P, dtype=torch.float64), sigma=0.5
)
x = model.sample_observations(8, generator=torch.Generator().manual_seed(1))
post = shortinfer.short_run(
    model.log_joint,
    x,
    latent_shape=(D,),
    num_steps=K,
    step_size=0.05,
    generator=torch.Generator().manual_seed(2),
)

tuned = post.tune_step_size("grid", num_samples=32)
s = tuned.step_size
print(f"grid-tuned step size s = {s}")
for label, p in (("paper default s=0.05", post), (f"tuned s={s}", tuned)):
    step = p.step_size
    z = p.sample((4000,))
    mean_q, cov_q = model.short_run_moments(x, step, K)
    mean_p, cov_p = model.posterior(x)
    with torch.no_grad():
        err_recursion = (z.mean(0) - mean_q).abs().max().item()
        err_posterior = (z.mean(0) - mean_p).abs().max().item()
        cov_err = (torch.cov(z[:, 0].T) - cov_p).abs().max().item()
        kl = model.kl_to_posterior(x, step, K).mean().item()
        elbo_exact = model.conditional_elbo(x, step, K).mean().item()
    elbo = p.elbo(num_samples=64).mean().item()
    print(f"[{label}]")
    print(f"  max |mean error| vs exact short-run recursion: {err_recursion:.4f}")
    print(f"  max |mean error| vs exact posterior:           {err_posterior:.4f}")
    print(f"  max |cov error| vs exact posterior (example 0): {cov_err:.4f}")
    print(f"  exact KL(q_s || p(z|x)) per example:            {kl:.4f} nats")
    print(
        f"  ELBO estimate {elbo:.3f} vs closed form {elbo_exact:.3f} "
        f"(log p(x) = {model.log_evidence(x).mean().item():.3f})"
    )
