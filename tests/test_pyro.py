"""shortinfer.pyro: a Pyro model turned into log_joint, latent shapes and prior.

Probabilistic PCA written in Pyro and by hand give the same samples, entropy, ELBO and tuned
step size for the same seed.
"""

from __future__ import annotations

import pytest
import torch

pyro = pytest.importorskip("pyro")
dist = pytest.importorskip("pyro.distributions")

from torch.distributions import Independent, Normal  # noqa: E402

import shortinfer  # noqa: E402
from shortinfer.pyro import from_pyro  # noqa: E402

DT = torch.float64
D, P, SIGMA = 3, 6, 0.5


def _ppca(batch: int = 5):
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(P, D, generator=g, dtype=DT)
    bias = torch.randn(P, generator=g, dtype=DT)
    x = torch.randn(batch, P, generator=g, dtype=DT)

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(D, dtype=DT), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ weight.T + bias, SIGMA).to_event(1), obs=x)

    def log_joint(x, z):
        return shortinfer.standard_normal_log_prob(z) + shortinfer.gaussian_log_likelihood(
            x, z @ weight.T + bias, SIGMA
        )

    return model, log_joint, x


def _pair(seed: int, **kw):
    model, log_joint, x = _ppca()
    m = from_pyro(model, x=x)
    from_model = shortinfer.short_run(
        m.log_joint,
        m.x,
        latent_shape=m.latent_shape,
        prior=m.prior,
        generator=torch.Generator().manual_seed(seed),
        **kw,
    )
    prior = Independent(Normal(torch.zeros(D, dtype=DT), 1.0), 1)
    by_hand = shortinfer.short_run(
        log_joint,
        x,
        latent_shape=(D,),
        prior=prior,
        generator=torch.Generator().manual_seed(seed),
        **kw,
    )
    return m, from_model, by_hand


def test_latent_shapes_and_prior_are_traced():
    m, _, _ = _pair(0)
    assert m.latent_shape == {"z": torch.Size([D])}
    assert tuple(m.prior["z"].batch_shape + m.prior["z"].event_shape) == (5, D)
    z = {"z": torch.randn(5, D, dtype=DT)}
    _, log_joint, x = _ppca()
    torch.testing.assert_close(m.log_joint(m.x, z), log_joint(x, z["z"]))


def test_same_samples_entropy_elbo_and_tuned_step_size_as_by_hand():
    m, from_model, by_hand = _pair(1, num_steps=10, step_size=0.02)
    torch.testing.assert_close(from_model.sample((3,))["z"], by_hand.sample((3,)))
    torch.testing.assert_close(from_model.entropy(num_samples=2), by_hand.entropy(num_samples=2))
    for mode in ("reverse", "forward"):  # forward mode runs log_joint under vmap
        torch.testing.assert_close(from_model.entropy(mode=mode), by_hand.entropy(mode=mode))
    torch.testing.assert_close(from_model.elbo(num_samples=2), by_hand.elbo(num_samples=2))
    grid = [0.005, 0.01, 0.02, 0.04, 0.08]
    tuned_model = from_model.tune_step_size("grid", grid=grid, num_samples=4)
    tuned_hand = by_hand.tune_step_size("grid", grid=grid, num_samples=4)
    assert tuned_model.step_size == tuned_hand.step_size
    torch.testing.assert_close(tuned_model.trace.objectives, tuned_hand.trace.objectives)
    gradient_model = from_model.tune_step_size("gradient", num_iterations=5)
    gradient_hand = by_hand.tune_step_size("gradient", num_iterations=5)
    assert gradient_model.step_size == pytest.approx(gradient_hand.step_size, rel=1e-9)


def test_validation_is_switched_off_inside_and_restored():
    model, _, x = _ppca()
    m = from_pyro(model, x=x)
    seen = []

    def spy(x):
        seen.append(pyro.poutine.util.is_validation_enabled())
        model(x)

    spied = from_pyro(spy, x=x)
    with pyro.validation_enabled(True):
        spied.log_joint(m.x, {"z": torch.zeros(5, D, dtype=DT)})
        assert pyro.poutine.util.is_validation_enabled()
    assert seen[-1] is False


def test_global_latent_is_refused():
    def model(x):
        scale = pyro.sample("scale", dist.LogNormal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(0.0, scale).expand([P]).to_event(1), obs=x)

    with pytest.raises(ValueError, match="'scale'.*not one latent per example"):
        from_pyro(model, x=torch.zeros(4, P))
    with pytest.raises(ValueError, match="keyword arguments"):
        from_pyro(model)


def test_constrained_pyro_latent_uses_the_transform():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            rate = pyro.sample("rate", dist.Gamma(torch.tensor(2.0, dtype=DT), 1.0))
            pyro.sample("x", dist.Poisson(rate[:, None].expand(-1, 4)).to_event(1), obs=x)

    x = torch.tensor([[0.0, 1.0, 0.0, 2.0], [5.0, 7.0, 6.0, 4.0]], dtype=DT)
    m = from_pyro(model, x=x)
    assert m.latent_shape == {"rate": torch.Size([])}
    post = shortinfer.short_run(
        m.log_joint,
        m.x,
        latent_shape=m.latent_shape,
        prior=m.prior,
        num_steps=200,
        step_size=0.01,
        generator=torch.Generator().manual_seed(0),
    )
    rate = post.sample((500,))["rate"]
    assert bool((rate > 0).all())
    exact = torch.distributions.Gamma(2.0 + x.sum(-1), 1.0 + 4)
    assert ((rate.mean(0) - exact.mean).abs() <= 4 * exact.stddev / 500**0.5).all()
