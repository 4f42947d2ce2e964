"""Tests for shortinfer.models._ladder_vae (the Ladder-VAE baseline of Table 1)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from torch import nn

from shortinfer.likelihoods import gaussian_log_likelihood, standard_normal_log_prob
from shortinfer.models import LadderVAE, MultiLayerGenerator

from ._models import (
    random_images,
    single_thread,  # noqa: F401 (an autouse fixture: importing it switches it on here)
    tiny_generator,
)


def tiny_vae(*, dtype: torch.dtype = torch.float64, **options: Any) -> LadderVAE:
    """A Ladder-VAE on `tiny_generator(**options)`, encoder seeded after the generator."""
    return LadderVAE(tiny_generator(dtype=dtype, **options)).to(dtype)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    ("image_size", "channels", "num_layers"),
    [(28, 1, 1), (32, 3, 3), (64, 3, 5), (28, 1, 5), (64, 1, 1)],
)
def test_shapes(image_size: int, channels: int, num_layers: int) -> None:
    vae = tiny_vae(
        image_size=image_size, channels=channels, num_layers=num_layers, dtype=torch.float32
    )
    x = random_images(vae.generator, 2)
    assert vae.elbo(x).shape == (2,)
    assert vae.elbo(x, num_samples=3).shape == (2,)
    assert vae(x).shape == (2,)
    assert vae.loss(x).shape == ()
    codes = vae.encode(x)
    assert list(codes) == list(vae.generator.latent_shapes)
    assert [tuple(v.shape[1:]) for v in codes.values()] == list(
        vae.generator.latent_shapes.values()
    )
    reconstruction = vae.reconstruct(x)
    assert reconstruction.shape == x.shape
    torch.testing.assert_close(reconstruction, vae.generator.decode(codes))
    draw = vae.sample_posterior(x)
    assert draw.log_q.shape == (2,) and draw.mean.shape == x.shape
    assert set(draw.kl) == set(codes) and all(v.shape == (2,) for v in draw.kl.values())


def test_precision_weighting_matches_sonderby_in_z_space() -> None:
    # encode() returns the posterior mean noises; mapped back to z-space with the generator's
    # prior (mu_l, sigma_l), layer 1 must be Sønderby's precision-weighted mean.
    vae = tiny_vae(num_layers=3)
    x = random_images(vae.generator, 2)
    codes = vae.encode(x)
    bottom_up = vae.encoder(x)  # [(mu_hat_1, sigma_hat_1), ...], bottom layer first
    names = list(codes)  # top first
    torch.testing.assert_close(codes[names[0]], bottom_up[-1][0])  # top: q = N(mu_hat_L, .)
    noises = [codes[n] for n in names[1:]]
    priors = []

    def capture(k: int, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        priors.append((mean, scale))
        return noises[k]

    vae.generator._top_down(codes[names[0]], capture)
    for k, (prior_mean, prior_scale) in enumerate(priors):
        layer = vae.generator.num_layers - 1 - k  # z-index of the layer emitted at stage k
        mean_hat, scale_hat = bottom_up[layer - 1]
        precision_hat, precision_prior = scale_hat**-2, prior_scale**-2
        expected_z = (mean_hat * precision_hat + prior_mean * precision_prior) / (
            precision_hat + precision_prior
        )
        torch.testing.assert_close(prior_mean + prior_scale * noises[k], expected_z)


def test_analytic_kl_matches_monte_carlo() -> None:
    # E_q[log q(eps|x) - log N(eps; 0, I)] = E_q[sum_l KL_l]; the paired difference has mean 0.
    vae = tiny_vae(num_layers=3)
    with torch.no_grad():  # push the posterior away from the prior so the KL is not tiny
        for head in vae.encoder.mean_heads:
            head.linear.bias.add_(1.0)
    x = random_images(vae.generator, 2)
    num_samples = 1000
    with torch.no_grad():
        draw = vae.sample_posterior(x, num_samples=num_samples, generator=seeded(0))
        log_prior = sum(standard_normal_log_prob(v) for v in draw.z.values())
        monte_carlo = draw.log_q - log_prior  # (S, B)
        analytic = sum(draw.kl.values())  # (S, B)
        difference = monte_carlo - analytic
        standard_error = difference.std(0) / num_samples**0.5
        assert analytic.mean() > 1.0
        assert (difference.mean(0).abs() < 4 * standard_error).all(), (
            difference.mean(0),
            standard_error,
        )
        # The same identity through the generator's log_joint: the ELBO two ways.
        elbo_samples = gaussian_log_likelihood(x, draw.mean, vae.generator.sigma) - analytic
        paired = (vae.generator.log_joint(x, draw.z) - draw.log_q) - elbo_samples
        assert (paired.mean(0).abs() < 4 * paired.std(0) / num_samples**0.5).all()
        # elbo() averages exactly these per-sample terms (same noise stream).
        small = vae.sample_posterior(x, num_samples=50, generator=seeded(0))
        expected = gaussian_log_likelihood(x, small.mean, vae.generator.sigma) - sum(
            small.kl.values()
        )
        torch.testing.assert_close(
            vae.elbo(x, num_samples=50, generator=seeded(0)), expected.mean(0)
        )


def test_single_layer_kl_is_gaussian_closed_form() -> None:
    vae = tiny_vae(num_layers=1)
    x = random_images(vae.generator, 3)
    ((mean_hat, scale_hat),) = vae.encoder(x)
    draw = vae.sample_posterior(x, generator=seeded(2))
    expected = 0.5 * (mean_hat**2 + scale_hat**2 - 1 - 2 * scale_hat.log()).sum(-1)
    torch.testing.assert_close(draw.kl["z1"], expected)
    dist = torch.distributions.Normal(mean_hat, scale_hat)
    torch.testing.assert_close(draw.log_q, dist.log_prob(draw.z["z1"]).sum(-1))


def test_loss_is_negative_mean_elbo_and_beta_scales_kl() -> None:
    vae = tiny_vae()
    x = random_images(vae.generator, 2)
    loss = vae.loss(x, generator=seeded(4))
    torch.testing.assert_close(loss, -vae.elbo(x, generator=seeded(4)).mean())
    draw = vae.sample_posterior(x, generator=seeded(4))
    total_kl = sum(draw.kl.values())
    torch.testing.assert_close(
        vae.loss(x, beta=0.25, generator=seeded(4)), loss - 0.75 * total_kl.mean()
    )


def test_examples_are_independent() -> None:
    vae = tiny_vae()
    x = random_images(vae.generator, 3)
    before = vae.elbo(x, generator=seeded(1))
    after = vae.elbo(torch.cat([-x[:1], x[1:]]), generator=seeded(1))
    assert not torch.allclose(before[0], after[0])
    torch.testing.assert_close(before[1:], after[1:], rtol=0, atol=1e-12)


def test_adam_steps_increase_the_elbo() -> None:
    vae = tiny_vae(num_layers=3, dtype=torch.float32)
    x = random_images(vae.generator, 4)
    with torch.no_grad():
        start = vae.elbo(x, num_samples=8, generator=seeded(0)).mean()
    optimizer = torch.optim.Adam(vae.parameters(), lr=3e-3)
    noise = seeded(1)
    for _ in range(25):
        optimizer.zero_grad()
        vae.loss(x, generator=noise).backward()
        optimizer.step()
    with torch.no_grad():
        end = vae.elbo(x, num_samples=8, generator=seeded(0)).mean()
    assert end > start + 50.0, (start, end)  # nats per image; observed gain is far larger


def test_config_round_trip() -> None:
    vae = tiny_vae(num_layers=5)
    config = json.loads(json.dumps(vae.config))
    rebuilt = LadderVAE.from_config(config).to(torch.float64)
    assert rebuilt.config == vae.config
    rebuilt.load_state_dict(vae.state_dict())
    x = random_images(vae.generator, 2)
    torch.testing.assert_close(rebuilt.reconstruct(x), vae.reconstruct(x))
    vae.check_config(config)
    with pytest.raises(ValueError, match="num_filters: checkpoint 7"):
        vae.check_config({**config, "num_filters": 7})
    with pytest.raises(ValueError, match="image_size: checkpoint 32"):
        vae.check_config({**config, "generator": {**config["generator"], "image_size": 32}})
    with pytest.raises(ValueError, match="must have the key 'generator'"):
        LadderVAE.from_config({"num_filters": 3})


def test_encoder_follows_generator_device_and_dtype() -> None:
    generator = MultiLayerGenerator(latent_sizes=(2,), num_filters=2).double()
    vae = LadderVAE(generator, num_filters=5)
    assert vae.encoder.input.weight.dtype == torch.float64
    assert vae.encoder.input.out_channels == 5


def test_bad_inputs_raise() -> None:
    with pytest.raises(TypeError, match="must be a MultiLayerGenerator; received Linear"):
        LadderVAE(nn.Linear(2, 2))  # type: ignore[arg-type]
    generator = MultiLayerGenerator(image_size=28, channels=1, latent_sizes=(2,), num_filters=2)
    with pytest.raises(ValueError, match="num_filters must be positive; received 0"):
        LadderVAE(generator, num_filters=0)
    vae = LadderVAE(generator)
    x = torch.zeros(2, 1, 28, 28)
    with pytest.raises(ValueError, match=r"x must have shape \(B, C, H, W\) = \(B, 1, 28, 28\)"):
        vae.elbo(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"shape \(B, C, H, W\); received \(1, 28, 28\)"):
        vae.elbo(torch.zeros(1, 28, 28))
    with pytest.raises(TypeError, match="x has dtype torch.float64"):
        vae.elbo(x.double())
    with pytest.raises(ValueError, match="num_samples must be a positive int; received 0"):
        vae.elbo(x, num_samples=0)
    with pytest.raises(ValueError, match="beta must be a finite float >= 0; received -1.0"):
        vae.loss(x, beta=-1.0)
