import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import shortinfer
from shortinfer import ChainDivergenceError, LogJointError, short_run
from shortinfer.objectives import DEFAULT_NUM_MIXTURE, EntropyEstimator

from ._oracle import make_linear_gaussian

# Gaussian quantile for a two-sided 1e-4 tail per check: with a fixed seed these cannot flake,
# and a real bias of a few standard errors still fails them.
Z = 4.0


def _setup(batch=2, latent_dim=3, seed=0):
    model = make_linear_gaussian(latent_dim=latent_dim, seed=seed)
    x = model.sample_observations(batch, generator=torch.Generator().manual_seed(seed + 10))
    return model, x


def _posterior(model, x, *, num_steps, step_size, seed):
    """The oracle's short-run posterior on ``x``, drawing from a generator seeded with ``seed``."""
    return short_run(
        model.log_joint,
        x,
        latent_shape=(3,),
        num_steps=num_steps,
        step_size=step_size,
        generator=torch.Generator().manual_seed(seed),
    )


def test_sample_moments_match_exact_recursion():
    model, x = _setup()
    post = _posterior(model, x, num_steps=10, step_size=0.08, seed=1)
    n = 4000
    z = post.sample((n,))
    assert z.shape == (n, 2, 3)
    mean, cov = model.short_run_moments(x, 0.08, 10)
    mean, cov = mean.detach(), cov.detach()
    se_mean = (cov.diagonal() / n).sqrt()
    assert ((z.mean(0) - mean).abs() <= Z * se_mean).all()
    for b in range(2):
        emp = torch.cov(z[:, b].T)
        var = cov.diagonal()
        se_cov = ((var[:, None] * var[None, :] + cov.square()) / n).sqrt()
        assert ((emp - cov).abs() <= Z * se_cov).all()


def test_entropy_per_draw_is_exact_change_of_variables():
    model, x = _setup()
    post = short_run(model.log_joint, x, latent_shape=(3,), num_steps=6, step_size=0.05)
    chain = post.draw_noise(3)
    _, entropy = post._terms(chain, None, EntropyEstimator("conditional"))
    log_det = torch.linalg.slogdet(model.short_run_jacobian(0.05, 6)).logabsdet.detach()
    expected = log_det + 0.5 * chain.z0.square().sum(-1) + 1.5 * math.log(2 * math.pi)
    torch.testing.assert_close(entropy.detach(), expected, rtol=1e-10, atol=1e-10)


def test_entropy_and_elbo_match_closed_forms():
    model, x = _setup()
    post = _posterior(model, x, num_steps=10, step_size=0.06, seed=2)
    n = 2000
    chain = post.draw_noise(n)
    log_p, entropy = post._terms(chain, None, EntropyEstimator("conditional"))
    elbo = (log_p + entropy).detach().reshape(n, 2)
    entropy = entropy.detach().reshape(n, 2)
    log_det = torch.linalg.slogdet(model.short_run_jacobian(0.06, 10)).logabsdet.detach()
    closed_entropy = 1.5 * (1 + math.log(2 * math.pi)) + log_det
    se = entropy.std(0) / n**0.5
    assert ((entropy.mean(0) - closed_entropy).abs() <= Z * se).all()
    closed_elbo = model.conditional_elbo(x, 0.06, 10).detach()
    se = elbo.std(0) / n**0.5
    assert ((elbo.mean(0) - closed_elbo).abs() <= Z * se).all()
    # The public methods return the per-example means.
    assert post.entropy(num_samples=4).shape == (2,)
    assert post.elbo(num_samples=4).shape == (2,)
    # ELBO <= log p(x): the conditional ELBO is a lower bound.
    assert (closed_elbo <= model.log_evidence(x).detach()).all()


def _closed_objective(model, x, s, k):
    return -model.conditional_elbo(x, s, k).mean().detach()


def test_grid_tuning_returns_closed_form_argmin():
    model, x = _setup(batch=4)
    grid = [0.01, 0.03, 0.06, 0.1, 0.15]
    closed = torch.stack([_closed_objective(model, x, s, 10) for s in grid])
    post = _posterior(model, x, num_steps=10, step_size=0.01, seed=3)
    tuned = post.tune_step_size("grid", grid=grid, num_samples=256, objective="conditional")
    assert tuned.step_size == grid[int(closed.argmin())]
    assert post.step_size == 0.01  # the original is unchanged
    assert tuned.trace.method == "grid"
    torch.testing.assert_close(tuned.trace.step_sizes, torch.tensor(grid, dtype=torch.float64))
    # The estimated objective tracks the closed form within Monte Carlo error.
    assert (tuned.trace.objectives - closed).abs().max() < 0.2


def test_gradient_tuning_lands_near_closed_form_optimum():
    model, x = _setup(batch=4)
    fine = torch.linspace(0.01, 0.2, 191, dtype=torch.float64)
    closed = torch.stack([_closed_objective(model, x, float(s), 10) for s in fine])
    best = float(fine[closed.argmin()])
    post = _posterior(model, x, num_steps=10, step_size=0.02, seed=4)
    tuned = post.tune_step_size(
        "gradient", num_samples=32, num_iterations=40, learning_rate=0.1, objective="conditional"
    )
    assert tuned.step_size == pytest.approx(best, rel=0.15)
    assert tuned.trace.step_sizes.shape == (41,)
    assert tuned.trace.objectives[-5:].mean() < tuned.trace.objectives[:5].mean()


@pytest.mark.parametrize("kind", ["per_step", "per_block"])
def test_gradient_tuning_handles_structured_step_sizes(kind):
    model, x = _setup(batch=4)
    k = 6
    if kind == "per_step":
        latent, log_joint = (3,), model.log_joint
        step = torch.full((k,), 0.02)
    else:
        latent = {"a": (1,), "b": (2,)}

        def log_joint(xx, z):
            return model.log_joint(xx, torch.cat([z["a"], z["b"]], -1))

        step = {"a": 0.02, "b": 0.03}
    post = short_run(
        log_joint,
        x,
        latent_shape=latent,
        num_steps=k,
        step_size=step,
        generator=torch.Generator().manual_seed(5),
    )
    tuned = post.tune_step_size(
        "gradient", num_samples=16, num_iterations=25, learning_rate=0.1, objective="conditional"
    )
    if kind == "per_step":
        assert tuned.step_size.shape == (k,)
        assert tuned.trace.step_sizes.shape == (26, k)
        closed_before = _closed_objective(model, x, torch.full((k,), 0.02, dtype=torch.float64), k)
        closed_after = _closed_objective(model, x, tuned.step_size.to(torch.float64), k)
        assert closed_after < closed_before
    else:
        assert set(tuned.step_size) == {"a", "b"}
        assert tuned.trace.step_sizes.shape == (26, 2)
    assert tuned.trace.objectives[-1] < tuned.trace.objectives[0]


def test_per_block_step_sizes_apply_to_their_blocks():
    # Two independent blocks: with zero noise and a quadratic log-joint, each block contracts
    # by its own (1 - s_block)^K.
    def log_joint(x, z):
        return -0.5 * (z["a"].square().sum(-1) + z["b"].square().sum(-1))

    post = short_run(
        log_joint,
        torch.zeros(1, 1),
        latent_shape={"a": (2,), "b": (1,)},
        num_steps=3,
        step_size={"a": 0.1, "b": 0.5},
    )
    chain = post.draw_noise()
    chain = chain._replace(noise=torch.zeros_like(chain.noise))
    z = post.layout.unflatten(post.run_chain(chain))
    z0 = post.layout.unflatten(chain.z0)
    torch.testing.assert_close(z["a"], z0["a"] * 0.9**3)
    torch.testing.assert_close(z["b"], z0["b"] * 0.5**3)


def test_dict_latents_equal_flat_latents():
    model, x = _setup()

    def split(xx, z):
        return model.log_joint(xx, torch.cat([z["top"], z["bottom"].flatten(1)], -1))

    flat = short_run(
        model.log_joint,
        x,
        latent_shape=(3,),
        num_steps=5,
        generator=torch.Generator().manual_seed(6),
    )
    blocks = short_run(
        split,
        x,
        latent_shape={"top": (1,), "bottom": (2, 1)},
        num_steps=5,
        generator=torch.Generator().manual_seed(6),
    )
    z_flat, z_dict = flat.sample((2,)), blocks.sample((2,))
    assert z_dict["top"].shape == (2, 2, 1) and z_dict["bottom"].shape == (2, 2, 2, 1)
    torch.testing.assert_close(
        torch.cat([z_dict["top"], z_dict["bottom"].flatten(-2)], -1), z_flat
    )
    torch.testing.assert_close(blocks.elbo(), flat.elbo())


@settings(max_examples=15, deadline=None)
@given(
    batch=st.integers(1, 4),
    dims=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    sample_shape=st.sampled_from([(), (1,), (2,), (2, 3)]),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    as_dict=st.booleans(),
)
def test_shapes_dtypes_and_reproducibility(batch, dims, sample_shape, seed, dtype, as_dict):
    x = torch.randn(batch, 2, dtype=dtype)
    if as_dict:
        latent = {f"z{i}": (d,) for i, d in enumerate(dims)}

        def log_joint(xx, z):
            return sum(-0.5 * (v - xx[:, :1]).square().sum(-1) for v in z.values())
    else:
        latent = tuple(dims)

        def log_joint(xx, z):
            return -0.5 * (z.flatten(1) - xx[:, :1]).square().sum(-1)

    def draw():
        post = short_run(
            log_joint,
            x,
            latent_shape=latent,
            num_steps=3,
            step_size=0.1,
            generator=torch.Generator().manual_seed(seed),
        )
        return post.sample(sample_shape)

    a, b = draw(), draw()
    if as_dict:
        for i, d in enumerate(dims):
            assert a[f"z{i}"].shape == (*sample_shape, batch, d)
            assert a[f"z{i}"].dtype == dtype
            torch.testing.assert_close(a[f"z{i}"], b[f"z{i}"], rtol=0, atol=0)
    else:
        assert a.shape == (*sample_shape, batch, *dims)
        assert a.dtype == dtype
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_custom_prior_is_used_for_init_and_entropy():
    loc = torch.tensor([3.0, -3.0], dtype=torch.float64)
    prior = torch.distributions.Independent(torch.distributions.Normal(loc, 0.5), 1)

    def log_joint(x, z):
        return prior.log_prob(z)

    post = short_run(
        log_joint,
        torch.zeros(2, 1, dtype=torch.float64),
        latent_shape=(2,),
        num_steps=1,
        step_size=1e-6,
        prior=prior,
        generator=torch.Generator().manual_seed(0),
    )
    z = post.sample((500,))
    assert (z.mean((0, 1)) - loc).abs().max() < 0.1
    # With s -> 0 the map is the identity: entropy -> that of the prior.
    expected = prior.entropy()
    assert post.entropy(num_samples=2000).mean() == pytest.approx(float(expected), abs=0.1)


def test_repr_and_properties():
    post = short_run(lambda x, z: -z.square().sum(-1), torch.zeros(3, 1), latent_shape=4)
    assert post.latent_shape == torch.Size([4]) and post.latent_dim == 4
    assert post.batch_size == 3 and post.num_steps == 25 and post.step_size == 0.05
    assert "ShortRunPosterior" in repr(post)


def test_observations_may_be_a_tuple_with_a_mask():
    x = torch.randn(3, 4)
    mask = torch.tensor([[1.0, 1, 0, 0]]).expand(3, 4)

    def log_joint(obs, z):
        images, m = obs
        return shortinfer.standard_normal_log_prob(z) + shortinfer.gaussian_log_likelihood(
            images, z, 0.5, mask=m
        )

    post = short_run(
        log_joint,
        (x, mask),
        latent_shape=(4,),
        num_steps=40,
        step_size=0.02,
        generator=torch.Generator().manual_seed(0),
    )
    z = post.sample((400,))
    assert z.shape == (400, 3, 4)
    # Observed coordinates move toward x (posterior mean x/(1+0.25)); missing stay at prior.
    torch.testing.assert_close(z.mean(0)[:, :2], x[:, :2] / 1.25, atol=0.15, rtol=0)
    assert z.mean(0)[:, 2:].abs().max() < 0.2


# -- bad input ------------------------------------------------------------------------------


def good(x, z):
    return -0.5 * z.square().sum(-1)


@pytest.mark.parametrize(
    "log_joint, match",
    [
        (lambda x, z: -z.square().sum(), r"returned shape \(\); expected \(2,\)"),
        (lambda x, z: -z.square(), r"returned shape \(2, 3\)"),
        (lambda x, z: torch.full((2,), float("nan")) + 0 * z.sum(-1), "non-finite values"),
        (lambda x, z: x.sum(-1), "does not depend on z"),
        (lambda x, z: z.detach().sum(-1), "does not depend on z"),
        (lambda x, z: 3.0, "must return a tensor"),
        (lambda x, z: torch.sqrt(z.square().sum(-1) * 0), "gradient of log_joint"),
    ],
)
def test_log_joint_contract_errors(log_joint, match):
    with pytest.raises(LogJointError, match=match):
        short_run(log_joint, torch.zeros(2, 1), latent_shape=(3,))


def test_log_joint_that_raises_is_reported():
    def broken(x, z):
        return (x @ z).sum(-1)  # wrong shapes

    with pytest.raises(LogJointError, match="log_joint\\(x, z\\) raised RuntimeError"):
        short_run(broken, torch.zeros(2, 5), latent_shape=(3,))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"step_size": 0.0}, ValueError, "must be finite and > 0"),
        ({"step_size": -0.1}, ValueError, "must be finite and > 0"),
        ({"step_size": float("nan")}, ValueError, "must be finite and > 0"),
        ({"step_size": torch.ones(3)}, ValueError, r"shape \(3,\); expected \(\) or \(25,\)"),
        ({"step_size": torch.ones(2, 25)}, ValueError, r"shape \(2, 25\)"),
        ({"step_size": {"a": 0.1}}, TypeError, "latent is a single tensor"),
        ({"step_size": "big"}, TypeError, "step_size must be"),
        ({"num_steps": 0}, ValueError, "num_steps must be an int >= 1"),
        ({"num_steps": 2.5}, TypeError, "num_steps must be an int"),
        ({"latent_shape": (0,)}, ValueError, "positive sizes"),
        ({"latent_shape": "abc"}, TypeError, "latent_shape must be"),
        ({"prior": "normal"}, TypeError, "prior must be"),
        (
            {"prior": torch.distributions.Normal(torch.zeros(2), 1.0)},
            ValueError,
            r"batch_shape \+ event_shape \(2,\); expected",
        ),
    ],
)
def test_bad_hyperparameters(kwargs, error, match):
    options = {"latent_shape": (3,)} | kwargs
    with pytest.raises(error, match=match):
        short_run(good, torch.zeros(2, 1), **options)


def test_bad_observations():
    with pytest.raises(ValueError, match="non-finite value"):
        short_run(good, torch.tensor([[0.0], [float("nan")]]), latent_shape=(3,))
    with pytest.raises(ValueError, match="leading batch dimension"):
        short_run(good, torch.tensor(1.0), latent_shape=(3,))
    with pytest.raises(ValueError, match="leading batch dimension"):
        short_run(good, (torch.zeros(2, 1), torch.zeros(3, 1)), latent_shape=(3,))
    with pytest.raises(TypeError, match="x must be a tensor"):
        short_run(good, ["a"], latent_shape=(3,))
    with pytest.raises(TypeError, match="log_joint must be callable"):
        short_run(None, torch.zeros(1), latent_shape=(3,))


def test_divergence_names_the_step():
    def log_joint(x, z):  # curvature 100: s = 0.05 gives |1 - 5| = 4 per step and blows up
        return -50.0 * z.square().sum(-1)

    post = short_run(
        log_joint, torch.zeros(2, 1), latent_shape=(3,), num_steps=200, step_size=0.05
    )
    with pytest.raises(ChainDivergenceError, match=r"exploded\) at step \d+ of 200.*smaller step"):
        post.sample()


def test_grid_skips_diverging_candidates():
    def log_joint(x, z):
        return -50.0 * z.square().sum(-1)

    post = short_run(
        log_joint,
        torch.zeros(2, 1, dtype=torch.float64),
        latent_shape=(2,),
        num_steps=300,
        step_size=0.001,
    )
    tuned = post.tune_step_size("grid", grid=[0.001, 0.005, 0.5])
    assert tuned.trace.objectives[-1] == float("inf")
    assert tuned.step_size in (0.001, 0.005)


def test_torch_func_failures_point_to_the_contract():
    buffer = torch.zeros(2, 3)

    def log_joint(x, z):
        buffer.copy_(z)  # an in-place write to a captured tensor: fine eagerly, not in torch.func
        return -(buffer * z).sum(-1)

    post = short_run(log_joint, torch.zeros(2, 1), latent_shape=(3,), num_steps=2)
    with pytest.raises(LogJointError, match="(?s)in-place.*docs/log_joint.md"):
        post.entropy()


def test_unknown_tuning_method_and_bad_grid():
    post = short_run(good, torch.zeros(2, 1), latent_shape=(3,), num_steps=2)
    with pytest.raises(ValueError, match="method must be .*'grid' or 'gradient'"):
        post.tune_step_size("bayes")
    with pytest.raises(ValueError, match="positive step sizes"):
        post.tune_step_size("grid", grid=[0.1, -0.1])


def test_works_under_no_grad_and_follows_x_dtype():
    x = torch.zeros(2, 1, dtype=torch.float64)
    with torch.no_grad():
        post = short_run(good, x, latent_shape=(3,), num_steps=3)
        z = post.sample()
        h = post.entropy()
    assert z.dtype == torch.float64 and h.dtype == torch.float64


def test_device(device, dtype):
    model = make_linear_gaussian(dtype=dtype, device=device)
    x = model.sample_observations(2)
    post = short_run(
        model.log_joint,
        x,
        latent_shape=(3,),
        num_steps=4,
        generator=torch.Generator(device=device).manual_seed(0),
    )
    assert post.sample().device.type == device.type
    assert post.elbo().dtype == dtype


# -- validation does not consume randomness -------------------------------------------------------


@pytest.mark.parametrize("prior", ["standard", "custom"])
@pytest.mark.parametrize("seeded", ["generator", "global"])
def test_validation_probe_leaves_the_random_streams_alone(prior, seeded):
    # The probe draws one latent per example; with validate=True the chains that follow must be
    # exactly those of validate=False on the same seed (custom priors draw through
    # torch.distributions, with a seed derived from the generator or the global stream).
    model, x = _setup(batch=3)
    dist = None
    if prior == "custom":
        loc = torch.tensor([0.5, -0.5, 0.0], dtype=torch.float64)
        dist = torch.distributions.Independent(torch.distributions.Normal(loc, 0.7), 1)

    def draw(validate):
        torch.manual_seed(123)
        generator = torch.Generator().manual_seed(7) if seeded == "generator" else None
        post = short_run(
            model.log_joint,
            x,
            latent_shape=(3,),
            num_steps=4,
            prior=dist,
            generator=generator,
            validate=validate,
        )
        return post.sample((2,)), post.draw_noise(2).noise

    (z_checked, noise_checked), (z_plain, noise_plain) = draw(True), draw(False)
    torch.testing.assert_close(z_checked, z_plain, rtol=0, atol=0)
    torch.testing.assert_close(noise_checked, noise_plain, rtol=0, atol=0)


# -- the semi-implicit mixture size ---------------------------------------------------------------


def _spy_on_entropy_bound(monkeypatch):
    calls = []
    original = EntropyEstimator.__call__

    def spy(self, *args, **kwargs):
        calls.append(self.num_mixture)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(EntropyEstimator, "__call__", spy)
    return calls


def test_num_mixture_reaches_the_entropy_bound_from_every_public_method(monkeypatch):
    model, x = _setup()
    post = _posterior(model, x, num_steps=4, step_size=0.05, seed=0)
    calls = _spy_on_entropy_bound(monkeypatch)
    kw = {"objective": "semi_implicit", "num_mixture": 3}
    post.elbo(num_samples=8, **kw)
    table = torch.tensor([[0.05]], dtype=torch.float64)
    post.step_size_objective(post.draw_noise(8), table, **kw)
    post.tune_step_size("grid", grid=[0.02, 0.05], num_samples=8, **kw)
    post.tune_step_size("gradient", num_samples=8, num_iterations=2, **kw)
    assert calls == [3] * (1 + 1 + 2 + 2)
    calls.clear()
    post.elbo(num_samples=8, objective="sandwich")
    assert calls == [DEFAULT_NUM_MIXTURE]
    # and it changes the estimate: M = 1 against M = S - 1 on the same chains
    chain = post.draw_noise(8)
    one, all_others = (
        post.step_size_objective(chain, table, objective="semi_implicit", num_mixture=m)
        for m in (1, 7)
    )
    assert float(one.detach()) != float(all_others.detach())


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "8", None])
def test_num_mixture_is_validated_by_every_public_method(bad):
    post = short_run(good, torch.zeros(2, 1), latent_shape=(3,), num_steps=2)
    message = (
        rf"num_mixture must be an int >= 1 .*received {re.escape(repr(bad))} "
        r"\(\w+\)\. Pass a positive int, e\.g\. the default 255"
    )
    kw = {"objective": "sandwich", "num_mixture": bad}
    with pytest.raises(ValueError, match=message):
        post.elbo(num_samples=4, **kw)
    with pytest.raises(ValueError, match=message):
        post.step_size_objective(post.draw_noise(4), torch.tensor([[0.05]]), **kw)
    with pytest.raises(ValueError, match=message):
        post.tune_step_size("grid", num_samples=4, **kw)
    with pytest.raises(ValueError, match=message):
        post.elbo(num_samples=4, objective="conditional", num_mixture=bad)  # checked anyway


# -- init: a per-example start distribution ----------------------------------------------


def _exact_posterior_init(model, x):
    mean, cov = model.posterior(x)
    scale_tril = torch.linalg.cholesky(cov).expand(x.shape[0], -1, -1)
    return torch.distributions.MultivariateNormal(mean, scale_tril=scale_tril), mean, cov


def test_init_at_the_exact_posterior_keeps_its_entropy_and_mean():
    model, x = _setup(batch=3)
    init, mean, cov = _exact_posterior_init(model, x)
    s, k = 1e-4, 5
    post = short_run(
        model.log_joint,
        x,
        latent_shape=(3,),
        num_steps=k,
        step_size=s,
        init=init,
        generator=torch.Generator().manual_seed(3),
    )
    # Per draw: -log q0(z0 | x_b) + log|det prod(I - sA)|, the start density of its own example.
    chain = post.draw_noise(4)
    _, entropy = post._terms(chain, None, EntropyEstimator("conditional"))
    log_det = torch.linalg.slogdet(model.short_run_jacobian(s, k)).logabsdet
    rows = chain.z0.reshape(4, 3, 3)  # (S, B, D): row s·B + b is example b
    expected = -init.log_prob(rows).reshape(-1) + log_det
    torch.testing.assert_close(entropy.detach(), expected.detach(), rtol=1e-10, atol=1e-10)
    # In expectation: the exact posterior entropy, up to the tiny log-det.
    n = 2000
    estimate = post.entropy(num_samples=n)
    exact = 0.5 * torch.logdet(2 * math.pi * math.e * cov) + log_det
    se = (1.5 / n) ** 0.5  # -log q0(z0) of a 3-D Gaussian has variance D / 2
    assert ((estimate - exact.detach()).abs() <= Z * se).all()
    z = post.sample((n,))
    se_mean = (cov.diagonal() / n).sqrt()
    assert ((z.mean(0) - mean.detach()).abs() <= Z * se_mean).all()
    # The ELBO is log p(x) up to Monte Carlo error: KL = 0 and the chain barely moves.
    elbo = post.elbo(num_samples=n)
    assert ((elbo - model.log_evidence(x).detach()).abs() <= Z * 2 * se).all()


def test_init_rows_follow_their_examples():
    loc = torch.tensor([[-50.0], [0.0], [50.0]], dtype=torch.float64)
    init = torch.distributions.Independent(torch.distributions.Normal(loc, 1e-3), 1)
    post = short_run(
        lambda x, z: -0.5 * z.square().sum(-1),
        torch.zeros(3, 1, dtype=torch.float64),
        latent_shape=(1,),
        num_steps=1,
        step_size=1e-8,
        init=init,
    )
    z = post.sample((5,))
    torch.testing.assert_close(z, loc.expand(5, 3, 1), atol=0.01, rtol=0)
    assert post.init_log_prob(loc).shape == (3,)


def test_init_shared_and_dict_latents():
    normal = torch.distributions.Normal
    independent = torch.distributions.Independent
    init = {
        "a": independent(normal(torch.zeros(4, 2), 1.0), 1),  # per example (B = 4)
        "b": independent(normal(torch.ones(3), 0.1), 1),  # shared
    }
    post = short_run(
        lambda x, z: -0.5 * (z["a"].square().sum(-1) + z["b"].square().sum(-1)),
        torch.zeros(4, 1),
        latent_shape={"a": (2,), "b": (3,)},
        num_steps=2,
        step_size=1e-6,
        init=init,
    )
    z = post.sample((100,))
    assert z["a"].shape == (100, 4, 2) and z["b"].shape == (100, 4, 3)
    assert abs(float(z["b"].mean()) - 1.0) < 0.05
    with pytest.raises(ValueError, match="pools the start distribution"):
        post.elbo(objective="epi")


def test_init_errors():
    normal = torch.distributions.Normal
    independent = torch.distributions.Independent
    log_joint = lambda x, z: -0.5 * z.square().sum(-1)  # noqa: E731
    with pytest.raises(ValueError, match=r"init for 'z' has batch_shape \+ event_shape \(5, 2\)"):
        short_run(
            log_joint,
            torch.zeros(3, 1),
            latent_shape=(2,),
            init=independent(normal(torch.zeros(5, 2), 1.0), 1),
        )
    with pytest.raises(ValueError, match=r"prior for 'z' has batch_shape \+ event_shape \(4, 2\)"):
        short_run(
            log_joint,
            torch.zeros(3, 1),
            latent_shape=(2,),
            prior=independent(normal(torch.zeros(4, 2), 1.0), 1),
        )
    # A prior with one distribution per example (a conditional prior) is accepted.
    loc = torch.tensor([[0.0, 0.0], [10.0, 10.0], [20.0, 20.0]])
    post = short_run(
        log_joint,
        torch.zeros(3, 1),
        latent_shape=(2,),
        num_steps=1,
        step_size=1e-8,
        prior=independent(normal(loc, 1e-3), 1),
    )
    torch.testing.assert_close(post.sample(), loc, atol=0.01, rtol=0)
    assert post.prior_log_prob(loc.repeat(2, 1)).shape == (6,)
    gamma = independent(torch.distributions.Gamma(torch.ones(2), 1.0), 1)
    with pytest.raises(ValueError, match="outside the prior's support"):
        short_run(
            log_joint,
            torch.zeros(3, 1),
            latent_shape=(2,),
            prior=gamma,
            init=independent(normal(torch.zeros(3, 2), 1.0), 1),
        )


def test_matrix_latent_without_event_dims_says_what_happened():
    def log_joint(x, z):  # z: (B, 3, 4); forgets event_dims=2
        return shortinfer.standard_normal_log_prob(z) + shortinfer.gaussian_log_likelihood(
            x, z.flatten(1), 1.0
        )

    with pytest.raises(LogJointError, match="event_dims=2"):
        short_run(log_joint, torch.zeros(5, 12), latent_shape=(3, 4))


# -- issue 12: nothing silent (each failure class, each example of the issue) -------------------


def _seeded() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _out_of_support(x, z):  # log(3 - z) is NaN for z > 3, while its gradient stays finite
    return (-0.5 * (z - 5) ** 2 + torch.log(3 - z)).sum(-1)


@pytest.mark.parametrize("method", ["sample", "rsample", "entropy", "elbo"])
def test_chain_leaving_the_support_raises(method):
    post = short_run(
        _out_of_support, torch.zeros(4, 1), latent_shape=(1,), step_size=0.5, generator=_seeded()
    )
    with pytest.raises(ChainDivergenceError, match=r"log_joint\(x, z\) became nan while z stayed"):
        getattr(post, method)()


def test_chain_leaving_the_support_only_at_the_end_raises():
    # z_0 = 0 is in the support z < 0.45, z_1 = 0 + 0.5 * 1 = 0.5 (no noise) is not: only the
    # monitor's last look, at z_K itself, can see it.
    def log_joint(x, z):
        return torch.where(z < 0.45, 0.0, torch.nan).sum(-1) + z.sum(-1) + 0 * x.sum(-1)

    post = short_run(
        log_joint, torch.zeros(1, 1), latent_shape=(1,), num_steps=1, step_size=0.5, validate=False
    )
    chain = shortinfer.ChainNoise(torch.zeros(1, 1), torch.zeros(1, 1, 1))
    with pytest.raises(
        ChainDivergenceError, match="became nan while z stayed finite.* at step 1 of 1"
    ):
        post.run_chain(chain)
    healthy = shortinfer.ChainNoise(torch.zeros(1, 1), torch.zeros(1, 1, 1))
    assert post.with_step_size(0.1).run_chain(healthy).shape == (1, 1)


@pytest.mark.parametrize("method", ["sample", "entropy", "elbo"])
def test_exploding_chain_raises_before_overflow(method):
    post = short_run(
        lambda x, z: -0.5 * z.square().sum(-1) - 0.5 * (x - z).square().sum(-1),
        torch.zeros(4, 2),
        latent_shape=(2,),
        step_size=1e6,
        generator=_seeded(),
    )
    with pytest.raises(ChainDivergenceError, match=r"\|z\| exceeded 1e\+10 \(the chain exploded"):
        getattr(post, method)()


def test_step_size_requiring_grad_is_refused():
    step_size = torch.tensor(0.1, requires_grad=True)
    with pytest.raises(ValueError, match="step_size requires grad.*silently detach"):
        short_run(good, torch.zeros(2, 1), latent_shape=(3,), step_size=step_size)
    with pytest.raises(ValueError, match="step_size requires grad"):
        short_run(good, torch.zeros(2, 1), latent_shape={"a": (1,)}, step_size={"a": step_size})


@pytest.mark.parametrize("container", ["tensor", "tuple", "dict"])
def test_log_joint_writing_into_x_is_refused_and_x_is_unchanged(container):
    images = torch.zeros(2, 3)
    x = {"tensor": images, "tuple": (images,), "dict": {"images": images}}[container]

    def log_joint(x, z):
        leaf = (
            x if isinstance(x, torch.Tensor) else (x[0] if isinstance(x, tuple) else x["images"])
        )
        leaf.add_(1.0)
        return -0.5 * (z - leaf).square().sum(-1)

    with pytest.raises(
        LogJointError, match=r"modified x(\[0\])? in place .*your tensor is unchanged"
    ):
        short_run(log_joint, x, latent_shape=(3,))
    assert torch.equal(images, torch.zeros(2, 3))


class _NormedDecoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 3)
        self.norm = torch.nn.BatchNorm1d(3)

    def log_joint(self, x, z):
        return -0.5 * z.square().sum(-1) - 0.5 * (x - self.norm(self.linear(z))).square().sum(-1)


def test_batch_norm_in_training_mode_warns_and_eval_mode_does_not():
    model = _NormedDecoder()
    with pytest.warns(
        UserWarning, match=r"training mode with batch norm \(norm\).*model.eval\(\)"
    ):
        short_run(model.log_joint, torch.zeros(4, 3), latent_shape=(2,))
    model.eval()
    short_run(model.log_joint, torch.zeros(4, 3), latent_shape=(2,))  # warnings are errors


def test_grid_candidate_whose_log_joint_raises_counts_as_divergence():
    def log_joint(x, z):  # torch.distributions refuses NaN arguments (validate_args)
        normal = torch.distributions.Normal(z, 1.0, validate_args=True)
        return normal.log_prob(x).sum(-1) - 0.5 * z.square().sum(-1)

    post = short_run(log_joint, torch.zeros(4, 2), latent_shape=(2,), generator=_seeded())
    tuned = post.tune_step_size("grid", grid=[0.05, 1e6])
    assert tuned.step_size == 0.05
    assert math.isinf(float(tuned.trace.objectives[1]))
    assert len(tuned.trace.dropped) == 1
    assert re.match(
        r"step size \[1000000\.0\]: ValueError: Expected parameter", tuned.trace.dropped[0]
    )
    assert tuned.trace.dropped[0].count("\n") == 0
    with pytest.raises(FloatingPointError, match=r"(?s)every grid point.*Why each.*1000000"):
        post.tune_step_size("grid", grid=[1e5, 1e6])


@pytest.mark.parametrize(
    ("latent_shape", "match"),
    [
        ((2.7, 2), r"received \(2\.7, 2\)"),
        ("12", "received '12'"),
        ((True,), r"received \(True,\)"),
    ],
)
def test_latent_shape_must_hold_ints(latent_shape, match):
    with pytest.raises(
        TypeError, match="latent_shape must be an int or a sequence of ints; " + match
    ):
        short_run(good, torch.zeros(2, 1), latent_shape=latent_shape)


def test_latent_shape_accepts_numpy_ints():
    import numpy as np

    post = short_run(good, torch.zeros(2, 1), latent_shape=(np.int64(3),))
    assert post.latent_shape == torch.Size([3])


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda p: p.sample((-1,)),
            ValueError,
            r"sample_shape entry must be an int >= 1; received -1",
        ),
        (
            lambda p: p.sample((0,)),
            ValueError,
            r"sample_shape entry must be an int >= 1; received 0",
        ),
        (lambda p: p.sample(3), TypeError, r"sample_shape must be a tuple of ints"),
        (lambda p: p.rsample((1.5,)), TypeError, r"sample_shape entry must be an int >= 1"),
        (lambda p: p.entropy(num_samples=0), ValueError, r"num_samples must be an int >= 1"),
        (lambda p: p.elbo(num_samples=-2), ValueError, r"num_samples must be an int >= 1"),
        (lambda p: p.draw_noise(2.0), TypeError, r"num_samples must be an int >= 1"),
        (
            lambda p: p.tune_step_size("gradient", num_iterations=-1),
            ValueError,
            r"num_iterations must be an int >= 1; received -1",
        ),
        (
            lambda p: p.tune_step_size(num_samples=0),
            ValueError,
            r"num_samples must be an int >= 1",
        ),
        (lambda p: p.tune_step_size(grid=["a"]), ValueError, r"grid must be .*received \['a'\]"),
        (lambda p: p.tune_step_size(grid=[0.1, float("nan")]), ValueError, r"finite, positive"),
        (lambda p: p.tune_step_size("bayes"), ValueError, r"method .*'grid' or 'gradient'"),
    ],
)
def test_unvalidated_arguments_now_raise(call, error, match):
    post = short_run(good, torch.zeros(2, 1), latent_shape=(3,), num_steps=2)
    with pytest.raises(error, match=match):
        call(post)


def test_generator_must_be_a_generator():
    with pytest.raises(
        TypeError,
        match=r"generator must be a torch.Generator or None; received 0.*manual_seed\(0\)",
    ):
        short_run(good, torch.zeros(2, 1), latent_shape=(3,), generator=0)


def test_library_errors_share_a_base_class():
    post = short_run(good, torch.zeros(2, 1), latent_shape=(3,), num_steps=2)
    for call in (lambda: post.sample((-1,)), lambda: post.tune_step_size(grid=["a"])):
        with pytest.raises(shortinfer.ShortinferError):
            call()


def _weighted_gaussian_posterior(weight: torch.Tensor, seed: int) -> shortinfer.ShortRunPosterior:
    x = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]], dtype=torch.float64)

    def log_joint(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return -0.5 * z.square().sum(-1) - 0.5 * (x - weight * z).square().sum(-1)

    return short_run(
        log_joint,
        x,
        latent_shape=(3,),
        num_steps=6,
        step_size=0.05,
        generator=torch.Generator().manual_seed(seed),
    )


def test_elbo_keeps_no_parameter_graph_by_default_and_the_same_value() -> None:
    weight = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    plain = _weighted_gaussian_posterior(weight, seed=4).elbo()
    kept = _weighted_gaussian_posterior(weight, seed=4).elbo(differentiable=True)
    assert not plain.requires_grad and plain.grad_fn is None
    assert kept.requires_grad
    torch.testing.assert_close(plain, kept.detach(), rtol=0, atol=1e-12)
    with torch.no_grad():  # an outer no_grad wins over differentiable=True
        assert (
            not _weighted_gaussian_posterior(weight, seed=4)
            .elbo(differentiable=True)
            .requires_grad
        )


def test_differentiable_elbo_gradient_matches_finite_differences() -> None:
    # Same seed, same noise: the ELBO is a smooth function of the weight, including its exact
    # log-determinant term, so central differences check the parameter gradient.
    weight = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    (gradient,) = torch.autograd.grad(
        _weighted_gaussian_posterior(weight, seed=7).elbo(differentiable=True).sum(), weight
    )
    h = 1e-5
    up = _weighted_gaussian_posterior(torch.tensor(1.3 + h, dtype=torch.float64), 7).elbo().sum()
    down = _weighted_gaussian_posterior(torch.tensor(1.3 - h, dtype=torch.float64), 7).elbo().sum()
    torch.testing.assert_close(gradient, (up - down) / (2 * h), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    ("enabled", "printed_at"), [(None, [5, 10]), (True, list(range(13))), (False, [])]
)
def test_tuning_progress_prints_one_line_per_interval_by_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], enabled, printed_at
) -> None:
    from shortinfer import posterior

    clock = iter([0.0, *range(13)])  # construction, then one evaluation per second
    monkeypatch.setattr(posterior.time, "perf_counter", lambda: float(next(clock)))
    assert posterior.PROGRESS_AFTER_SECONDS == 5.0
    progress = posterior._Progress(enabled)
    for _ in range(13):
        progress.report(torch.tensor([[0.01]]), torch.tensor(-1.0))
    lines = capsys.readouterr().err.splitlines()
    assert [line.split("(")[1].split(" s)")[0] for line in lines] == [
        f"{t:.1f}" for t in printed_at
    ]
    assert all("s = 0.01 (delta = 0.1414)" in line for line in lines)
