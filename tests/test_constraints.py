"""Constrained latents (shortinfer/_constraints.py, used by ShortRunPosterior).

The chain runs on u = T^{-1}(z) with T = biject_to(prior.support). Checks:

- LogNormal scale: in u = log z the target is Gaussian, so the short-run chain is affine and
  its moments and entropy are known exactly for any K; the constrained moments and the
  entropy of z_K = exp(u_K) follow in closed form.
- Gamma-Poisson and Beta-Bernoulli: a long chain with a small step is near the exact conjugate
  posterior; its moments agree within Monte Carlo error (plus the unadjusted chain's O(s) bias,
  which the step size makes negligible against the tolerance).
- The entropy per draw equals a change of variables done by hand on a hand-written chain.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import (
    Beta,
    Dirichlet,
    Gamma,
    Independent,
    LogNormal,
    Normal,
    Poisson,
    Uniform,
    Wishart,
)

from shortinfer import short_run
from shortinfer._constraints import LatentTransform, support_transform
from shortinfer._latents import LatentLayout
from shortinfer.objectives import EntropyEstimator

# Gaussian quantile for a two-sided 1e-4 tail per check (fixed seeds: cannot flake).
Z = 4.0
DT = torch.float64


def _gamma_poisson(batch: int = 3, count: int = 5, seed: int = 0):
    """Rates lambda_b ~ Gamma(a, b), ``count`` Poisson counts per example."""
    g = torch.Generator().manual_seed(seed)
    a, b = torch.tensor(2.0, dtype=DT), torch.tensor(1.0, dtype=DT)
    rates = torch.tensor([0.5, 2.0, 6.0], dtype=DT)[:batch]
    x = torch.poisson(rates[:, None].expand(batch, count), generator=g)
    prior = Gamma(a, b)

    def log_joint(x, z):  # z: (B, 1)
        lam = z[..., 0]
        return prior.log_prob(lam) + Poisson(lam[:, None]).log_prob(x).sum(-1)

    posterior = Gamma(a + x.sum(-1), b + count)  # exact, batch (B,)
    return log_joint, x, Independent(Gamma(a.expand(1), b.expand(1)), 1), posterior


def _beta_bernoulli(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.tensor(1.5, dtype=DT), torch.tensor(2.0, dtype=DT)
    probs = torch.tensor([0.2, 0.5, 0.9], dtype=DT)
    x = torch.bernoulli(probs[:, None].expand(3, 8), generator=g)
    prior = Beta(a, b)

    def log_joint(x, z):  # z: (B,), scalar latent per example
        return prior.log_prob(z) + torch.distributions.Bernoulli(probs=z[:, None]).log_prob(x).sum(
            -1
        )

    posterior = Beta(a + x.sum(-1), b + (1 - x).sum(-1))
    return log_joint, x, prior, posterior


def test_gamma_poisson_long_chain_matches_exact_posterior():
    log_joint, x, prior, exact = _gamma_poisson()
    post = short_run(
        log_joint,
        x,
        latent_shape=(1,),
        num_steps=400,
        step_size=0.005,
        prior=prior,
        generator=torch.Generator().manual_seed(1),
    )
    n = 2000
    z = post.sample((n,))[..., 0]
    assert bool((z > 0).all())
    mean, std = exact.mean, exact.stddev
    assert ((z.mean(0) - mean).abs() <= Z * std / n**0.5).all()
    # Standard error of the sample variance: sqrt((mu4 - sigma^4) / n), mu4 of a Gamma.
    shape = exact.concentration
    var = exact.variance
    mu4 = var.square() * (3 + 6 / shape)
    se_var = ((mu4 - var.square()) / n).sqrt()
    assert ((z.var(0) - var).abs() <= Z * se_var).all()


def test_beta_bernoulli_long_chain_matches_exact_posterior():
    log_joint, x, prior, exact = _beta_bernoulli()
    post = short_run(
        log_joint,
        x,
        latent_shape=(),  # one scalar latent per example: z has shape (B,)
        num_steps=400,
        step_size=0.01,
        prior=prior,
        generator=torch.Generator().manual_seed(2),
    )
    n = 2000
    z = post.sample((n,))
    assert bool(((z > 0) & (z < 1)).all())
    assert ((z.mean(0) - exact.mean).abs() <= Z * exact.stddev / n**0.5).all()
    # Sample variance of a bounded variable: mu4 <= var (it lies in [0, 1]), so this bound
    # on its standard error holds.
    se_var = (exact.variance / n).sqrt()
    assert ((z.var(0) - exact.variance).abs() <= Z * se_var).all()


def _lognormal_scale(batch: int = 2):
    """z ~ LogNormal(m0, t0); log x_i ~ N(log z, sigma^2): Gaussian in u = log z."""
    m0, t0, sigma = 0.3, 0.8, 0.5
    g = torch.Generator().manual_seed(3)
    x = (0.5 + 0.4 * torch.randn(batch, 4, generator=g, dtype=DT)).exp()
    prior = Independent(LogNormal(torch.full((1,), m0, dtype=DT), torch.full((1,), t0)), 1)

    def log_joint(x, z):
        log_lik = Normal(z.log(), sigma).log_prob(x.log()) - x.log()  # LogNormal(log z, sigma)
        return prior.log_prob(z) + log_lik.sum(-1)

    # In u: log p_u(u) = log N(u; m0, t0^2) + sum_i log N(log x_i; u, sigma^2) + const.
    precision = 1 / t0**2 + 4 / sigma**2
    shift = m0 / t0**2 + x.log().sum(-1) / sigma**2  # (B,)
    return log_joint, x, prior, (m0, t0), precision, shift


def test_lognormal_short_run_moments_and_entropy_are_exact():
    log_joint, x, prior, (m0, t0), a, c = _lognormal_scale()
    s, k = 0.02, 10
    post = short_run(
        log_joint,
        x,
        latent_shape=(1,),
        num_steps=k,
        step_size=s,
        prior=prior,
        generator=torch.Generator().manual_seed(4),
    )
    # The affine recursion in u: u_{k+1} = (1 - s a) u_k + s c + sqrt(2 s) eps.
    mean, var = torch.full_like(c, m0), torch.full_like(c, t0**2)
    for _ in range(k):
        mean, var = (1 - s * a) * mean + s * c, (1 - s * a) ** 2 * var + 2 * s
    n = 4000
    z = post.sample((n,))[..., 0]
    exact_mean = (mean + var / 2).exp()  # LogNormal moments of exp(u_K)
    exact_var = (var.exp() - 1) * (2 * mean + var).exp()
    assert ((z.mean(0) - exact_mean).abs() <= Z * (exact_var / n).sqrt()).all()
    assert ((z.log().mean(0) - mean).abs() <= Z * (var / n).sqrt()).all()
    # H(z_K | eps) = H(u_0) + K log|1 - s a| + E[u_K]: a Gaussian u_0, an affine chain.
    h_u0 = 0.5 * math.log(2 * math.pi * math.e * t0**2)
    exact_entropy = h_u0 + k * math.log(abs(1 - s * a)) + mean
    entropy = torch.stack([post.entropy(num_samples=50) for _ in range(20)])
    se = entropy.std(0) / 20**0.5
    assert ((entropy.mean(0) - exact_entropy).abs() <= Z * se + 1e-9).all()
    assert bool((entropy.std(0) > 0).all())  # the E[u_K] term is random: a real check


def _hand_written_chain(log_joint, x, z0, noise, s):
    """Short-run Langevin on u = log z by hand, returning z_K = exp(u_K)."""
    u = z0.log()
    for eps in noise:
        u = u.detach().requires_grad_(True) if not u.requires_grad else u
        target = log_joint(x, u.exp()) + u.sum(-1)  # + log|dz/du|
        (grad,) = torch.autograd.grad(target.sum(), u, create_graph=True)
        u = u + s * grad + math.sqrt(2 * s) * eps
    return u.exp()


def test_entropy_per_draw_matches_a_change_of_variables_by_hand():
    torch.manual_seed(0)
    rates = Independent(Gamma(torch.tensor([2.0, 3.0], dtype=DT), torch.ones(2, dtype=DT)), 1)
    weight = torch.tensor([[1.0, 0.5], [0.2, 1.0], [0.3, 0.3]], dtype=DT)

    def log_joint(x, z):  # two positive latents feeding three Poisson rates
        return rates.log_prob(z) + Poisson(z @ weight.T).log_prob(x).sum(-1)

    x = torch.tensor([[1.0, 4.0, 2.0], [0.0, 2.0, 7.0]], dtype=DT)
    s, k = 0.05, 6
    post = short_run(log_joint, x, latent_shape=(2,), num_steps=k, step_size=s, prior=rates)
    chain = post.draw_noise()
    z0 = chain.z0.exp()  # the chain's coordinates are u = log z
    z_k = post.run_chain(chain)
    torch.testing.assert_close(z_k, _hand_written_chain(log_joint, x, z0, chain.noise, s))
    _, entropy = post._terms(chain, None, EntropyEstimator("conditional"))
    for b in range(2):
        jac = torch.autograd.functional.jacobian(
            lambda v, b=b: _hand_written_chain(
                log_joint, x[b : b + 1], v[None], chain.noise[:, b : b + 1], s
            )[0],
            z0[b],
        )
        by_hand = -rates.log_prob(z0[b]) + torch.linalg.slogdet(jac).logabsdet
        torch.testing.assert_close(entropy[b].detach(), by_hand, rtol=1e-9, atol=1e-9)
    # The same posterior's ELBO is finite and tuning does not fall to the smallest candidate.
    assert bool(torch.isfinite(post.elbo()).all())


def test_elbo_is_invariant_and_tuning_works_on_constrained_latents():
    log_joint, x, prior, exact = _gamma_poisson()
    post = short_run(
        log_joint,
        x,
        latent_shape=(1,),
        num_steps=25,
        step_size=0.05,
        prior=prior,
        generator=torch.Generator().manual_seed(5),
    )
    grid = [0.001, 0.01, 0.05, 0.1]
    tuned = post.tune_step_size("grid", grid=grid, num_samples=64)
    assert tuned.trace is not None
    assert bool(torch.isfinite(tuned.trace.objectives).all())
    assert tuned.step_size != 0.001  # 25 tiny steps barely move from the prior
    elbo = tuned.elbo(num_samples=256)
    # log p(x) by quadrature over the rate: the ELBO lies below it (up to Monte Carlo error).
    lam = torch.linspace(1e-4, 40, 200001, dtype=DT)
    log_p = torch.stack(
        [
            torch.logsumexp(log_joint(x[b : b + 1].expand(lam.numel(), -1), lam[:, None]), 0)
            + math.log(float(lam[1] - lam[0]))
            for b in range(x.shape[0])
        ]
    )
    assert bool((elbo <= log_p + 0.05).all())
    assert bool(torch.isfinite(elbo).all())


def test_dict_latents_transform_per_block():
    scale_prior = Independent(LogNormal(torch.zeros(2, dtype=DT), torch.ones(2, dtype=DT)), 1)
    loc_prior = Independent(Normal(torch.zeros(3, dtype=DT), torch.ones(3, dtype=DT)), 1)

    def log_joint(x, z):
        return (
            scale_prior.log_prob(z["scale"])
            + loc_prior.log_prob(z["loc"])
            + Normal(z["loc"].sum(-1, keepdim=True), z["scale"]).log_prob(x).sum(-1)
        )

    x = torch.randn(4, 2, dtype=DT)
    post = short_run(
        log_joint,
        x,
        latent_shape={"loc": (3,), "scale": (2,)},
        num_steps=5,
        step_size=0.02,
        prior={"loc": loc_prior, "scale": scale_prior},
        generator=torch.Generator().manual_seed(6),
    )
    z = post.sample((200,))
    assert bool((z["scale"] > 0).all())
    assert bool((z["loc"] < 0).any())  # the real block is not transformed
    chain = post.draw_noise()
    z0 = post.layout.unflatten(chain.z0)
    assert isinstance(z0, dict)
    log_det = post._transform.log_abs_det(chain.z0)
    torch.testing.assert_close(log_det, z0["scale"].sum(-1))  # d exp(u)/du = exp(u)


def test_scalar_transforms_match_torch():
    layout = LatentLayout({"a": (2,), "b": (1,)})
    low, high = torch.tensor([-1.0, 0.0], dtype=DT), torch.tensor([1.0, 5.0], dtype=DT)
    transform = LatentTransform(
        layout,
        {
            "a": Independent(Uniform(low, high), 1),
            "b": Independent(Normal(torch.zeros(1), 1.0), 1),
        },
    )
    u = torch.randn(7, 3, dtype=DT)
    z = transform.forward(u)
    assert bool(((z[:, :2] > low) & (z[:, :2] < high)).all())
    torch.testing.assert_close(z[:, 2], u[:, 2])
    torch.testing.assert_close(transform.inverse(z), u)
    jac = torch.func.vmap(torch.func.jacrev(transform.forward))(u)
    torch.testing.assert_close(transform.log_abs_det(u), torch.linalg.slogdet(jac).logabsdet)


@pytest.mark.parametrize(
    ("prior", "match"),
    [
        (Dirichlet(torch.ones(3)), "not element-wise"),
        (Independent(Poisson(torch.ones(3)), 1), "discrete support"),
        (Wishart(df=4.0, covariance_matrix=torch.eye(3)), "biject_to cannot"),
    ],
)
def test_unsupported_supports_raise(prior, match):
    shape = tuple(prior.batch_shape + prior.event_shape)
    with pytest.raises(ValueError, match=match):
        short_run(
            lambda x, z: z.flatten(1).sum(-1), torch.zeros(2, 1), latent_shape=shape, prior=prior
        )


def test_support_transform_is_none_for_real_supports():
    assert support_transform(Normal(0.0, 1.0), name="prior") is None
    assert support_transform(Independent(Normal(torch.zeros(2), 1.0), 1), name="prior") is None
    assert support_transform(Gamma(1.0, 1.0), name="prior") is not None
