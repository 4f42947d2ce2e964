"""shortinfer.likelihoods.observation_log_prob: any torch.distributions observation model."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import (
    Bernoulli,
    Categorical,
    Independent,
    MultivariateNormal,
    Normal,
    OneHotCategorical,
    Poisson,
)

import shortinfer
from shortinfer import (
    ArgumentError,
    gaussian_log_likelihood,
    observation_log_prob,
    standard_normal_log_prob,
)


def test_bernoulli_matches_a_hand_written_sum_with_mask():
    logits = torch.randn(3, 2, 4)  # (B, H, W) images
    x = torch.bernoulli(torch.full((3, 2, 4), 0.4))
    mask = torch.bernoulli(torch.full((3, 2, 4), 0.5))
    log_sigmoid = torch.nn.functional.logsigmoid
    by_hand = x * log_sigmoid(logits) + (1 - x) * log_sigmoid(-logits)
    got = observation_log_prob(Bernoulli(logits=logits), x, mask)
    torch.testing.assert_close(got, (by_hand * mask).sum((1, 2)))


def test_gaussian_agrees_with_gaussian_log_likelihood():
    mean, x = torch.randn(2, 5, 3), torch.randn(5, 3)  # (S, B, P) decoder output
    mask = torch.tensor([1.0, 0.0, 1.0])
    got = observation_log_prob(Normal(mean, 0.3), x.expand(2, 5, 3), mask, event_dims=1)
    torch.testing.assert_close(got, gaussian_log_likelihood(x, mean, 0.3, mask=mask, event_dims=1))
    assert got.shape == (2, 5)


def test_categorical_poisson_and_event_shaped_models():
    logits = torch.randn(4, 6, 3)
    labels = torch.randint(0, 3, (4, 6))
    expected = torch.log_softmax(logits, -1).gather(-1, labels[..., None])[..., 0].sum(-1)
    torch.testing.assert_close(observation_log_prob(Categorical(logits=logits), labels), expected)
    one_hot = torch.nn.functional.one_hot(labels, 3).float()
    mask = torch.ones(4, 6)
    mask[:, 3:] = 0
    torch.testing.assert_close(
        observation_log_prob(OneHotCategorical(logits=logits), one_hot, mask),
        torch.log_softmax(logits, -1).gather(-1, labels[..., None])[:, :3, 0].sum(-1),
    )
    rate = torch.rand(4, 6) + 0.5
    counts = torch.poisson(rate)
    expected = (counts * rate.log() - rate - torch.lgamma(counts + 1)).sum(-1)
    torch.testing.assert_close(observation_log_prob(Poisson(rate), counts), expected)
    mvn = MultivariateNormal(torch.zeros(4, 2), torch.eye(2))
    assert observation_log_prob(mvn, torch.zeros(4, 2)).shape == (4,)
    assert observation_log_prob(Independent(Normal(torch.zeros(4, 6), 1.0), 1), counts).shape == (
        4,
    )


def test_errors_name_the_problem():
    mvn = MultivariateNormal(torch.zeros(4, 2), torch.eye(2))
    with pytest.raises(ValueError, match="event_dims=0 is smaller"):
        observation_log_prob(mvn, torch.zeros(4, 2), event_dims=0)
    with pytest.raises(ValueError, match=r"mask with shape \(5,\) does not broadcast"):
        observation_log_prob(Poisson(torch.ones(4, 6)), torch.zeros(4, 6), torch.ones(5))


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_works_inside_short_run_under_torch_func(mode):
    decoder = torch.nn.Linear(3, 8)
    x = torch.bernoulli(torch.full((5, 8), 0.3))

    def log_joint(x, z):
        return standard_normal_log_prob(z) + observation_log_prob(Bernoulli(logits=decoder(z)), x)

    post = shortinfer.short_run(
        log_joint,
        x,
        latent_shape=(3,),
        num_steps=4,
        step_size=0.05,
        generator=torch.Generator().manual_seed(0),
    )
    assert bool(torch.isfinite(post.entropy(mode=mode)).all())


@pytest.mark.parametrize(
    ("sigma", "match"),
    [
        (0.0, r"received 0\.0"),
        (-0.3, r"received -0\.3"),
        (float("nan"), r"received nan"),
        (torch.tensor(0.0), r"received \[0\.0\]"),
        (torch.tensor([0.3, -1.0, 0.3]), r"received \[0\.3.*-1\.0"),
    ],
)
def test_sigma_must_be_positive(sigma, match):
    x = torch.zeros(2, 3)
    with pytest.raises(ArgumentError, match="sigma must be positive and finite; " + match):
        gaussian_log_likelihood(x, x, sigma)


def test_sigma_of_the_wrong_type_is_refused():
    with pytest.raises(
        TypeError, match=r"sigma must be a positive float or a tensor; received '0.3'"
    ):
        gaussian_log_likelihood(torch.zeros(2, 3), torch.zeros(2, 3), "0.3")  # type: ignore[arg-type]


def test_positive_tensor_sigma_still_works_under_vmap():
    sigma = torch.tensor([0.5, 1.0, 2.0])
    x = torch.zeros(4, 2, 3)
    values = torch.func.vmap(lambda xb: gaussian_log_likelihood(xb, xb + 1, sigma))(x)
    assert values.shape == (4, 2)
