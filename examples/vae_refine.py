"""Close a VAE's amortization gap with a few Langevin steps started from its encoder.

A VAE of the pytorch/examples shape (784-400-20, Bernoulli pixels; our own code) is trained on
the 4,500 MNIST-5k training digits. With its decoder frozen, five posteriors are compared on
the 500 held-out digits:

- the encoder q_phi(z | x) alone;
- short-run Langevin from the prior N(0, I), K = 25 (step size tuned by the default search);
- short-run started from the encoder (``init=``), K = 5 and K = 25 (step size tuned likewise);
- a Gaussian per example fitted by Adam on its ELBO, started at the encoder's output (the
  reference for the amortization gap, Cremer, Li and Duvenaud 2018, arXiv:1801.03558).

For each it prints an ELBO estimate, the BCE and the MSE of one draw's reconstruction (per image,
summed over the 784 pixels; MSE per pixel), and the wall time of the inference. The Gaussian
ELBOs are unbiased estimates of each q's ELBO; the short-run ELBOs use the entropy given the
injected noise, H(z_K | eps) <= H(z_K), so they are lower bounds on the short-run posterior's
own ELBO (docs/concepts.md). Pixels are intensities in [0, 1] scored with the Bernoulli
log-likelihood, as pytorch/examples does (a pseudo-likelihood: hence ``validate_args=False``).

Run: python examples/vae_refine.py            (about a minute on 2 CPU cores: 5 epochs)
     python examples/vae_refine.py --epochs 30 --sweep (the numbers in docs/vae_refine.md)
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Independent, Normal

import shortinfer
from shortinfer.data import load_mnist5k


class VAE(nn.Module):
    """Encoder 784-400-(20, 20) and decoder 20-400-784 with ReLU, Bernoulli logits out."""

    def __init__(self, hidden: int = 400, latent: int = 20) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(784, hidden), nn.ReLU())
        self.loc = nn.Linear(hidden, latent)
        self.log_scale = nn.Linear(hidden, latent)
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, 784))

    def encode(self, x: Tensor) -> Independent:
        """q_phi(z | x): batch_shape (B,), event_shape (20,)."""
        h = self.encoder(x)
        return Independent(Normal(self.loc(h), self.log_scale(h).exp()), 1)

    def log_joint(self, x: Tensor, z: Tensor) -> Tensor:
        """log N(z; 0, I) + sum_j log Bernoulli(x_j; sigmoid(decoder(z)_j)), shape (B,)."""
        pixels = Bernoulli(logits=self.decoder(z), validate_args=False)
        return shortinfer.standard_normal_log_prob(z) + shortinfer.observation_log_prob(
            pixels, x, event_dims=1
        )


def train(model: VAE, x: Tensor, epochs: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        for batch in torch.randperm(x.shape[0], generator=generator).split(128):
            q = model.encode(x[batch])
            z = q.rsample()
            elbo = model.log_joint(x[batch], z) + q.entropy()
            optimizer.zero_grad()
            (-elbo.mean()).backward()
            optimizer.step()


def reconstruction(model: VAE, x: Tensor, z: Tensor) -> tuple[float, float]:
    """BCE per image and MSE per pixel of one draw z, shape (B, 20)."""
    with torch.no_grad():
        logits = model.decoder(z)
        bce = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none")
        mse = (torch.sigmoid(logits) - x).square()
    return float(bce.sum(-1).mean()), float(mse.mean())


def gaussian_elbo(model: VAE, x: Tensor, q: Independent, num_samples: int = 64) -> float:
    with torch.no_grad():
        z = q.sample((num_samples,))  # (S, B, D)
        log_p = model.log_joint(x.expand(num_samples, -1, -1), z)
        return float((log_p.mean(0) + q.entropy()).mean())


def fit_gaussians(model: VAE, x: Tensor, iterations: int) -> Independent:
    """A Gaussian per example, started at the encoder, by Adam on its reparameterised ELBO."""
    with torch.no_grad():
        start = model.encode(x).base_dist
    loc = start.loc.clone().requires_grad_(True)
    log_scale = start.scale.log().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([loc, log_scale], lr=1e-2)
    for _ in range(iterations):
        q = Independent(Normal(loc, log_scale.exp()), 1)
        z = q.rsample((4,))
        elbo = model.log_joint(x.expand(4, -1, -1), z).mean(0) + q.entropy()
        optimizer.zero_grad()
        (-elbo.sum()).backward()
        optimizer.step()
    return Independent(Normal(loc.detach(), log_scale.detach().exp()), 1)


def _subset(q: Independent | None, count: int) -> Independent | None:
    if q is None:
        return None
    base = q.base_dist
    return Independent(Normal(base.loc[:count], base.scale[:count]), 1)


def short_run(model: VAE, x: Tensor, num_steps: int, init: Independent | None, seed: int):
    """The short-run posterior, its step size tuned by the default search on 100 digits."""

    def posterior(x: Tensor, init: Independent | None, step_size: float):
        return shortinfer.short_run(
            model.log_joint,
            x,
            latent_shape=(20,),
            num_steps=num_steps,
            step_size=step_size,
            init=init,
            generator=torch.Generator().manual_seed(seed),
        )

    # The default search (bracketing in log s, the default objective). Chains started from the
    # encoder differ per digit, so tune_step_size() would tune on all of them; 100 keep the
    # example quick, as each candidate costs an exact entropy.
    tuned = posterior(x[:100], _subset(init, 100), 0.01).tune_step_size()
    step_size = tuned.step_size
    assert isinstance(step_size, float)
    return posterior(x, init, step_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5, help="VAE training epochs")
    parser.add_argument("--fit-iterations", type=int, default=300, help="Adam steps per fit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sweep", action="store_true", help="also sweep K and s for chains from the encoder"
    )
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # a shared CPU: see docs/performance.md

    def pixels(split: str) -> Tensor:
        return ((load_mnist5k(split=split).images + 1) / 2).flatten(1)

    train_x, test_x = pixels("train"), pixels("test")
    model = VAE()
    start = time.perf_counter()
    train(model, train_x, args.epochs, args.seed)
    print(f"trained the VAE for {args.epochs} epochs in {time.perf_counter() - start:.0f} s")
    model.requires_grad_(False)  # the decoder (and encoder) are frozen from here on

    rows = []
    start = time.perf_counter()
    q = model.encode(test_x)
    elapsed = time.perf_counter() - start
    rows.append(("encoder", gaussian_elbo(model, test_x, q), q.sample(), elapsed))

    for label, num_steps, init in [
        ("short-run from the prior, K=25", 25, None),
        ("short-run from the encoder, K=5", 5, q),
        ("short-run from the encoder, K=25", 25, q),
    ]:
        start = time.perf_counter()
        posterior = short_run(model, test_x, num_steps, init, args.seed)
        z = posterior.sample()
        elapsed = time.perf_counter() - start  # tuning and sampling, not the ELBO below
        elbo = float(posterior.elbo().mean())
        rows.append((f"{label} (s={posterior.step_size:g})", elbo, z, elapsed))

    start = time.perf_counter()
    fitted = fit_gaussians(model, test_x, args.fit_iterations)
    elapsed = time.perf_counter() - start
    rows.append(
        (
            "per-example Gaussian (Adam)",
            gaussian_elbo(model, test_x, fitted),
            fitted.sample(),
            elapsed,
        )
    )

    print(f"\n{'posterior':<44} {'ELBO':>8} {'BCE':>7} {'MSE':>7} {'time':>7}")
    for label, elbo, z, elapsed in rows:
        bce, mse = reconstruction(model, test_x, z)
        print(f"{label:<44} {elbo:8.1f} {bce:7.1f} {mse:7.4f} {elapsed:6.1f}s")
    print("ELBO: Gaussian rows estimate their ELBO; short-run rows are lower bounds (H(z_K|eps)).")
    if args.sweep:
        sweep(model, test_x, q, args.seed)


def sweep(model: VAE, x: Tensor, q: Independent, seed: int) -> None:
    """BCE and MSE of one draw from the encoder-started chain, over K and a fixed s."""
    print(f"\n{'K':>4} {'s':>7} {'BCE':>7} {'MSE':>7} {'time':>6}")
    for num_steps in (5, 25, 100):
        for step_size in (0.0003, 0.001, 0.003, 0.01, 0.03):
            start = time.perf_counter()
            posterior = shortinfer.short_run(
                model.log_joint,
                x,
                latent_shape=(20,),
                num_steps=num_steps,
                step_size=step_size,
                init=q,
                generator=torch.Generator().manual_seed(seed),
            )
            z = posterior.sample()
            elapsed = time.perf_counter() - start
            bce, mse = reconstruction(model, x, z)
            print(f"{num_steps:>4} {step_size:>7g} {bce:7.1f} {mse:7.4f} {elapsed:5.1f}s")


if __name__ == "__main__":
    main()
