"""Quickstart: wrap a custom PyTorch decoder in three lines and infer its latents.

Run: ``python examples/quickstart.py`` (about 10 seconds on a laptop CPU).

The model is a small MLP decoder with a standard-normal prior and Gaussian observations. We
fit it for a few hundred steps with short-run inference (Algorithm 1 of the paper, written
out by hand here; ``shortinfer.train`` packages it), tune the step size, and print the
posterior's reconstruction error and ELBO.
"""

from __future__ import annotations

import torch
from torch import nn

import shortinfer

torch.manual_seed(0)
LATENT, PIXELS, SIGMA = 4, 16, 0.3


class Decoder(nn.Module):
    """A user's own generator: z (B, 4) -> x (B, 16)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(LATENT, 64), nn.GELU(), nn.Linear(64, PIXELS))

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x, z) per example: N(0, I) prior plus a Gaussian likelihood, shape (B,)."""
        prior = shortinfer.standard_normal_log_prob(z)
        return prior + shortinfer.gaussian_log_likelihood(x, self.net(z), SIGMA)


# Synthetic data from a hidden "true" decoder, so the example needs no download.
truth = Decoder()
with torch.no_grad():
    data = truth.net(torch.randn(512, LATENT)) + SIGMA * torch.randn(512, PIXELS)

model = Decoder()
optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
step_size = 0.05
for iteration in range(200):
    x = data[torch.randint(0, len(data), (64,))]
    # The three lines: wrap the model, draw z_K by short-run Langevin, learn on it.
    post = shortinfer.short_run(
        model.log_joint,
        x,
        latent_shape=(LATENT,),
        num_steps=25,
        step_size=step_size,
        validate=iteration == 0,
    )
    z = post.sample()
    loss = -model.log_joint(x, z).mean()
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    if iteration % 100 == 99:  # re-tune s every T_s = 100 iterations (Algorithm 1, step 5)
        step_size = post.tune_step_size("grid", grid=[0.005, 0.01, 0.02, 0.05]).step_size
        print(f"iteration {iteration + 1}: loss {loss.item():.2f}, tuned step size {step_size}")

x = data[:128]
post = shortinfer.short_run(
    model.log_joint,
    x,
    latent_shape=(LATENT,),
    step_size=step_size,
    generator=torch.Generator().manual_seed(1),
)
z = post.sample()
mse = (model.net(z) - x).square().mean().item()
print(f"reconstruction MSE {mse:.4f} (noise floor sigma^2 = {SIGMA**2:.4f})")
print(f"short-run ELBO per example {post.elbo().mean().item():.2f} nats")
