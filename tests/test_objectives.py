"""Step-size objectives of ``shortinfer.objectives``, judged by the linear-Gaussian closed forms.

Every statistical check uses a fixed seed and a tolerance of ``Z`` Monte Carlo standard errors;
where chains share mixture components, the standard error comes from independent replicate
groups (distinct ``num_examples`` groups with the same ``x``), not from the correlated chains.
"""

import math

import pytest
import torch

from shortinfer import short_run
from shortinfer.likelihoods import standard_normal_log_prob
from shortinfer.objectives import (
    DEFAULT_NUM_MIXTURE,
    SANDWICH_MARGIN,
    EntropyEstimator,
    semi_implicit_bounds,
)
from shortinfer.objectives import (
    OBJECTIVES as REGISTRY,
)
from shortinfer.tuning import grid_search

from ._oracle import make_linear_gaussian

# Gaussian quantile for a two-sided 1e-4 tail per check: with a fixed seed these cannot flake,
# and a real bias of a few standard errors still fails them.
Z = 4.0

OBJECTIVES = ["conditional", "epi", "semi_implicit", "linearized", "sandwich"]

# The test setting: make_linear_gaussian(latent_dim=3, obs_dim=5, sigma=0.5, seed=0), four
# observations from sample_observations(4, Generator().manual_seed(1)), K = 10 steps. The
# KL-optimal scalar step size, by brute force over 20 000 points of [0.001, 1.9 / lambda_max(A)]
# with LinearGaussian.kl_to_posterior (mean over the four examples):
S_STAR = 0.07093
KL_STAR = 0.096574
# KL <= 1.5 KL_STAR exactly for s in [0.0495, 0.0977]; the paper's objective (exact expectation)
# is minimised at s = 0.0141, where the KL is 12.7 KL_STAR.


def entropy_bound(
    objective,
    *args,
    method="exact",
    mode="reverse",
    chunk_size=None,
    generator=None,
    num_examples=None,
    num_mixture=DEFAULT_NUM_MIXTURE,
):
    """The objectives through their registry, with the keywords of the former dispatcher."""
    estimator = EntropyEstimator(objective, method, mode, chunk_size, num_mixture)
    return estimator(*args, num_examples=num_examples, generator=generator)


def test_registry_names_functions_and_directions():
    assert list(REGISTRY) == OBJECTIVES
    lower = {name for name, o in REGISTRY.items() if o.bound == "lower"}
    assert lower == {"conditional", "epi", "semi_implicit"}
    for name, objective in REGISTRY.items():
        assert objective.name == name
        assert objective.estimate.__doc__  # one documented function per objective
    assert EntropyEstimator("sandwich").needs_chains == 2
    assert not EntropyEstimator("linearized").is_lower_bound


def test_estimator_config_is_validated_once_and_frozen():
    with pytest.raises(ValueError, match="objective must be one of"):
        EntropyEstimator("bogus")
    with pytest.raises(ValueError, match="log_det"):
        EntropyEstimator(log_det="nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mode"):
        EntropyEstimator(mode="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="chunk_size"):
        EntropyEstimator(chunk_size=0)
    with pytest.raises(ValueError, match="num_mixture"):
        EntropyEstimator(num_mixture=0)
    estimator = EntropyEstimator()
    with pytest.raises(AttributeError):
        estimator.objective = "conditional"  # type: ignore[misc]


def test_deprecated_bounds_module_still_works_and_warns():
    import shortinfer.bounds as bounds

    with pytest.warns(DeprecationWarning, match="shortinfer.objectives"):
        old = bounds.entropy_bound
    with pytest.warns(DeprecationWarning, match="ObjectiveName"):
        bounds.EntropyBound  # noqa: B018
    log_joint = lambda z: -0.5 * z.square().sum(-1)  # noqa: E731
    z0, noise, steps = torch.randn(4, 2), torch.randn(3, 4, 2), torch.full((3, 1), 0.1)
    prior = lambda z: -0.5 * z.square().sum(-1)  # noqa: E731
    _, h_old = old("linearized", log_joint, z0, noise, steps, prior)
    _, h_new = EntropyEstimator("linearized")(log_joint, z0, noise, steps, prior)
    torch.testing.assert_close(h_old, h_new)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Small tensors: extra intra-op threads only spin against the other users of the machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _setting(dtype=torch.float64):
    model = make_linear_gaussian(latent_dim=3, obs_dim=5, sigma=0.5, seed=0, dtype=dtype)
    model.requires_grad_(False)
    x = model.sample_observations(4, generator=torch.Generator().manual_seed(1))
    return model, x


def _draw(num_rows, dim, num_steps, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z0 = torch.randn(num_rows, dim, generator=g, dtype=dtype)
    return z0, torch.randn(num_steps, num_rows, dim, generator=g, dtype=dtype)


def _table(step_size, num_steps, dtype=torch.float64):
    return torch.full((num_steps, 1), step_size, dtype=dtype)


def _rows(model, x, chains):
    rows = x.repeat(chains, 1)  # row i is example i % B, as in ShortRunPosterior.draw_noise
    return lambda z: model.log_joint(rows, z)


def _mean_and_se(values, groups):
    """Mean and standard error from ``groups`` independent group means of ``values``."""
    means = values.reshape(-1, groups).mean(0)
    return float(means.mean()), float(means.std() / math.sqrt(groups))


def _chain_mean(objective, model, x, chains, step_size, seed):
    """Mean and standard error over the chains of ``objective``'s estimate (K = 10 steps)."""
    z0, noise = _draw(4 * chains, 3, 10, seed=seed)
    _, h = entropy_bound(
        objective,
        _rows(model, x, chains),
        z0,
        noise,
        _table(step_size, 10),
        standard_normal_log_prob,
    )
    return float(h.mean()), float(h.std() / math.sqrt(h.numel()))


# -- the oracle constants -------------------------------------------------------------------------


def test_written_oracle_is_the_kl_minimiser():
    model, x = _setting()

    def kl(s):
        return float(model.kl_to_posterior(x, s, 10).mean())

    assert kl(S_STAR) == pytest.approx(KL_STAR, abs=2e-6)
    assert kl(S_STAR - 0.002) > kl(S_STAR) and kl(S_STAR + 0.002) > kl(S_STAR)
    top = 1.9 / float(torch.linalg.eigvalsh(model.precision()).max())
    grid = torch.linspace(1e-3, top, 300).tolist()
    assert min(kl(s) for s in grid) >= KL_STAR - 1e-6
    # the documented failure of the paper's objective: its exact minimiser is far off
    paper = min(grid, key=lambda s: -float(model.conditional_elbo(x, s, 10).mean()))
    assert paper == pytest.approx(0.0141, abs=1e-3)
    assert kl(paper) > 10 * KL_STAR


# -- closed-form entropies and directions ---------------------------------------------------------


@pytest.mark.parametrize("step_size", [0.005, 0.03, 0.08, 0.15])
def test_closed_form_epi_sits_between_conditional_and_true_entropy(step_size):
    model, _ = _setting()
    conditional = model.conditional_entropy(step_size, 10)
    epi = model.epi_entropy(step_size, 10)
    true = model.short_run_entropy(step_size, 10)
    assert conditional < epi <= true + 1e-12
    # strict: the bound is not tight in D = 3 (anisotropic A), so the check can fail
    assert epi < true - 1e-3


def test_closed_form_epi_is_exact_in_one_dimension():
    model = make_linear_gaussian(latent_dim=1, obs_dim=3, sigma=0.5).requires_grad_(False)
    for s in (0.01, 0.1, 0.3):
        torch.testing.assert_close(model.epi_entropy(s, 7), model.short_run_entropy(s, 7))


def test_conditional_estimate_is_unbiased_for_the_conditional_entropy():
    model, x = _setting()
    mean, se = _chain_mean("conditional", model, x, chains=500, step_size=0.05, seed=0)
    assert abs(mean - float(model.conditional_entropy(0.05, 10))) <= Z * se


@pytest.mark.parametrize("step_size", [0.01, 0.07])
def test_epi_estimate_matches_closed_form_and_exceeds_conditional(step_size):
    model, x = _setting()
    chains = 200
    z0, noise = _draw(4 * chains, 3, 10, seed=1)
    log_joint, table = _rows(model, x, chains), _table(step_size, 10)
    _, h_epi = entropy_bound(
        "epi", log_joint, z0, noise, table, standard_normal_log_prob, num_examples=4
    )
    # Affine chain: the per-step log-dets are constant, so the only randomness is the batch
    # mean of -log p(z0), whose error the recursion passes on with slope <= 1.
    prior_entropy = -standard_normal_log_prob(z0)
    se = float(prior_entropy.std() / math.sqrt(z0.shape[0]))
    assert abs(float(h_epi.mean()) - float(model.epi_entropy(step_size, 10))) <= Z * se
    assert float(h_epi.mean()) <= float(model.short_run_entropy(step_size, 10)) + Z * se
    _, h_cond = entropy_bound("conditional", log_joint, z0, noise, table, standard_normal_log_prob)
    shifted = h_cond + prior_entropy.mean() + standard_normal_log_prob(z0)  # same H(p) estimate
    assert (h_epi > shifted).all()


def test_lower_bound_objectives_give_elbos_below_the_evidence():
    model, x = _setting()
    chains = 64
    z0, noise = _draw(4 * chains, 3, 10, seed=2)
    log_joint, table = _rows(model, x, chains), _table(0.05, 10)
    log_evidence = float(model.log_evidence(x).mean())
    for objective in ["conditional", "epi", "semi_implicit"]:
        z_k, h = entropy_bound(
            objective, log_joint, z0, noise, table, standard_normal_log_prob, num_examples=4
        )
        elbo = log_joint(z_k) + h
        se = float(elbo.std() / math.sqrt(elbo.numel()))
        assert float(elbo.mean()) <= log_evidence + Z * se, objective
    # and the conditional ELBO has the closed-form expectation, so the check above can fail
    z_k, h = entropy_bound("conditional", log_joint, z0, noise, table, standard_normal_log_prob)
    elbo = log_joint(z_k) + h
    se = float(elbo.std() / math.sqrt(elbo.numel()))
    assert abs(float(elbo.mean()) - float(model.conditional_elbo(x, 0.05, 10).mean())) <= Z * se


@pytest.mark.parametrize("step_size", [0.01, 0.07, 0.15])
def test_linearized_is_exact_in_expectation_for_affine_chains(step_size):
    model, x = _setting()
    mean, se = _chain_mean("linearized", model, x, chains=400, step_size=step_size, seed=3)
    assert abs(mean - float(model.short_run_entropy(step_size, 10))) <= Z * se
    # ... while the conditional bound is far below at the larger step sizes
    if step_size > 0.05:
        assert float(model.conditional_entropy(step_size, 10)) < mean - 1.0


def test_linearized_uses_the_prior_precision():
    # Prior N(0, tau^2 I) inside an affine chain: z_K is Gaussian with C_0 = tau^2 I.
    tau, s, num_steps, dim = 2.0, 0.05, 6, 2
    a = torch.tensor([[3.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    c = torch.tensor([0.5, -1.0], dtype=torch.float64)

    def log_joint(z):
        return -0.5 * ((z @ a) * z).sum(-1) + z @ c

    def prior(z):
        return (-0.5 * (z / tau).square() - math.log(tau) - 0.5 * math.log(2 * math.pi)).sum(-1)

    cov = tau**2 * torch.eye(dim, dtype=torch.float64)
    for _ in range(num_steps):
        m = torch.eye(dim, dtype=torch.float64) - s * a
        cov = m @ cov @ m.T + 2 * s * torch.eye(dim, dtype=torch.float64)
    true = 0.5 * torch.logdet(2 * math.pi * math.e * cov)
    g = torch.Generator().manual_seed(4)
    z0 = tau * torch.randn(3000, dim, generator=g, dtype=torch.float64)
    noise = torch.randn(num_steps, 3000, dim, generator=g, dtype=torch.float64)
    _, h = entropy_bound("linearized", log_joint, z0, noise, _table(s, num_steps), prior)
    se = float(h.std() / math.sqrt(h.numel()))
    assert abs(float(h.mean()) - float(true)) <= Z * se


def _mlp_log_joint(seed=0, dim=2, rows=3):
    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(8, dim, generator=g, dtype=torch.float64)
    w2 = torch.randn(4, 8, generator=g, dtype=torch.float64) / 8**0.5
    x = torch.randn(rows, 4, generator=g, dtype=torch.float64)

    def log_joint(z):
        return (
            -0.5 * z.square().sum(-1)
            - 0.5 * (x - torch.tanh(z @ w1.T) @ w2.T).square().sum(-1) / 0.5**2
        )

    return log_joint


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_linearized_matches_brute_force_jacobians_on_a_nonlinear_model(mode):
    log_joint = _mlp_log_joint()
    z0, noise = _draw(3, 2, 4, seed=5)
    table = _table(0.05, 4)
    _, h = entropy_bound(
        "linearized", log_joint, z0, noise, table, standard_normal_log_prob, mode=mode
    )

    def one(b):
        def chain(start, eps):  # example b's z_K as a function of its own (z0, noise)
            z = torch.cat([z0[:b], start[None], z0[b + 1 :]])
            for k in range(4):
                grad = torch.autograd.grad(log_joint(z).sum(), z, create_graph=True)[0]
                step_noise = torch.cat([noise[k, :b], eps[k][None], noise[k, b + 1 :]])
                z = z + 0.05 * grad + math.sqrt(0.1) * step_noise
            return z[b]

        jac_z0, jac_noise = torch.autograd.functional.jacobian(
            chain, (z0[b].clone(), noise[:, b].clone()), create_graph=False
        )
        big = torch.cat([jac_z0, jac_noise.reshape(2, -1)], 1)  # dz_K / d(z0, eps): (D, (K+1)D)
        # Lambda_0 = I: H = -log p(z0) + 1/2 logdet(J J^T + C) = -log p(z0) + 1/2 logdet(G G^T)
        return -standard_normal_log_prob(z0[b][None])[0] + 0.5 * torch.logdet(big @ big.T)

    expected = torch.stack([one(b) for b in range(3)])
    torch.testing.assert_close(h, expected, rtol=1e-9, atol=1e-9)


# -- the semi-implicit family ---------------------------------------------------------------------


def test_semi_implicit_bounds_bracket_the_entropy_and_tighten_with_more_chains():
    model, x = _setting()
    x = x[:1]  # one example, replicated into independent groups
    true = float(model.short_run_entropy(0.07, 10))
    groups = 16
    lower_gap, upper_gap = [], []
    for chains in [4, 32, 256]:
        z0, noise = _draw(chains * groups, 3, 10, seed=6)
        bounds = semi_implicit_bounds(
            _rows(model, x, chains * groups), z0, noise, _table(0.07, 10), num_examples=groups
        )
        lower, se_lower = _mean_and_se(bounds.lower, groups)
        upper, se_upper = _mean_and_se(bounds.upper, groups)
        assert lower <= true + Z * se_lower
        assert upper >= true - Z * se_upper
        lower_gap.append(true - lower)
        upper_gap.append(upper - true)
    assert lower_gap[0] > lower_gap[1] > lower_gap[2]
    assert upper_gap[0] > upper_gap[1] > upper_gap[2]
    assert lower_gap[2] < 0.1 * lower_gap[0] and upper_gap[2] < 0.1 * upper_gap[0]
    assert lower_gap[2] < 0.1  # nats: close to the true entropy at M = 255


def test_semi_implicit_mixture_size_caps_the_components():
    model, x = _setting()
    x = x[:1]
    groups, chains = 16, 64
    z0, noise = _draw(chains * groups, 3, 10, seed=12)
    args = (_rows(model, x, chains * groups), z0, noise, _table(0.07, 10))
    few = semi_implicit_bounds(*args, num_examples=groups, num_mixture=3)
    many = semi_implicit_bounds(*args, num_examples=groups)  # M = S - 1 = 63
    assert _mean_and_se(few.lower, groups)[0] < _mean_and_se(many.lower, groups)[0]
    assert _mean_and_se(few.upper, groups)[0] > _mean_and_se(many.upper, groups)[0]
    with pytest.raises(ValueError, match="num_mixture must be an int >= 1"):
        semi_implicit_bounds(*args, num_examples=groups, num_mixture=0)


def test_larger_num_mixture_gives_a_semi_implicit_elbo_that_is_not_looser():
    # Through the public API: ShortRunPosterior.elbo(objective="semi_implicit", num_mixture=M).
    # One observation copied into 16 examples, so the per-example ELBOs are independent
    # replicates (chains share mixture components only within an example), and the same
    # generator seed gives every M the same chains (common random numbers): the differences
    # between M's are then free of the log p(x, z_K) noise. The oracle is the true ELBO
    # log p(x) - KL(q_s || p(z | x)); the semi-implicit ELBO is a lower bound on it for every M.
    model, x = _setting()
    examples, chains, step_size, num_steps = 16, 64, 0.07, 10
    x = x[:1].expand(examples, -1)
    truth = float((model.log_evidence(x) - model.kl_to_posterior(x, step_size, num_steps))[0])

    def elbo(num_mixture):
        post = short_run(
            model.log_joint,
            x,
            latent_shape=(3,),
            num_steps=num_steps,
            step_size=step_size,
            generator=torch.Generator().manual_seed(21),
        )
        with torch.no_grad():
            return post.elbo(
                num_samples=chains, objective="semi_implicit", num_mixture=num_mixture
            )

    mixtures = [1, 7, 63]  # 63 = S - 1, every other chain
    values = {m: elbo(m) for m in mixtures}
    for m in mixtures:  # a lower bound on the true ELBO, up to Monte Carlo error
        mean, se = float(values[m].mean()), float(values[m].std()) / math.sqrt(examples)
        assert mean <= truth + Z * se, (m, mean, truth, se)
    for small, large in zip(mixtures[:-1], mixtures[1:], strict=True):
        gain = values[large] - values[small]  # per example, paired
        mean, se = float(gain.mean()), float(gain.std()) / math.sqrt(examples)
        assert mean >= -Z * se, (small, large, mean, se)  # not looser ...
        assert mean > Z * se, (small, large, mean, se)  # ... and here strictly tighter
    gap_small = truth - float(values[1].mean())
    gap_large = truth - float(values[63].mean())
    assert gap_large < 0.5 * gap_small


def _per_example(values, examples):
    return values.reshape(-1, examples).mean(0)


def _sandwich_interval(bounds, h_lin, prior_entropy, examples):
    """The pooled linearized estimate and the documented clip interval ``[low, high]`` per
    example (``docs/objectives.md``, "sandwich"), written out independently of the library."""

    def standard_error(v):
        per_chain = v.reshape(-1, examples)
        return per_chain.std(0) / math.sqrt(per_chain.shape[0])

    pooled = h_lin - prior_entropy + prior_entropy.mean()  # the same H(p) for every example
    var_lin = standard_error(pooled).square() + prior_entropy.var() / prior_entropy.numel()
    low = (
        _per_example(bounds.lower, examples)
        - SANDWICH_MARGIN * (standard_error(bounds.lower).square() + var_lin).sqrt()
    )
    high = (
        _per_example(bounds.upper, examples)
        + SANDWICH_MARGIN * (standard_error(bounds.upper).square() + var_lin).sqrt()
    )
    return pooled, low, high


def test_semi_implicit_objective_is_the_lower_bound_and_sandwich_is_projected():
    model, x = _setting()
    chains = 32
    z0, noise = _draw(4 * chains, 3, 10, seed=7)
    log_joint, table = _rows(model, x, chains), _table(0.07, 10)
    bounds = semi_implicit_bounds(log_joint, z0, noise, table, num_examples=4)
    z_k, h_si = entropy_bound(
        "semi_implicit", log_joint, z0, noise, table, standard_normal_log_prob, num_examples=4
    )
    torch.testing.assert_close(h_si, bounds.lower)
    torch.testing.assert_close(z_k, bounds.z_k)
    _, h_lin = entropy_bound("linearized", log_joint, z0, noise, table, standard_normal_log_prob)
    _, h_sw = entropy_bound(
        "sandwich", log_joint, z0, noise, table, standard_normal_log_prob, num_examples=4
    )

    prior_entropy = -standard_normal_log_prob(z0)
    pooled, low, high = _sandwich_interval(bounds, h_lin, prior_entropy, 4)
    expected = torch.minimum(torch.maximum(_per_example(pooled, 4), low), high)
    torch.testing.assert_close(_per_example(h_sw, 4), expected)
    # within an example, the chains keep the (pooled) linearized estimate's spread
    torch.testing.assert_close(
        (h_sw - pooled).reshape(chains, 4).std(0),
        torch.zeros(4, dtype=torch.float64),
        atol=1e-12,
        rtol=0,
    )


def test_sandwich_clips_a_linearized_estimate_that_a_bound_contradicts():
    # A log-joint whose score is affine (so chains are Gaussian), but whose "prior" handed to
    # the estimator is wrong by 3 nats: linearized is then 3 nats too high, and the tight
    # 1-D semi-implicit upper bound catches it.
    log_joint = lambda z: -0.5 * z.square().sum(-1)  # noqa: E731

    def wrong_prior(z):
        return standard_normal_log_prob(z) - 3.0

    z0, noise = _draw(1024, 1, 5, seed=11)
    table = _table(0.3, 5)
    _, h_lin = entropy_bound("linearized", log_joint, z0, noise, table, wrong_prior)
    _, h_sw = entropy_bound("sandwich", log_joint, z0, noise, table, wrong_prior, num_examples=1)
    bounds = semi_implicit_bounds(log_joint, z0, noise, table, num_examples=1)
    assert float(h_lin.mean()) > float(bounds.upper.mean()) + 2.5
    assert float(h_sw.mean()) < float(bounds.upper.mean()) + 0.1


def test_sandwich_runs_and_brackets_on_the_multilayer_generator():
    # The reference generator at a tiny size (28x28 grey, latents 2 + 3, 2 filters, float32):
    # a curved, multi-block, non-toy log-joint. The sandwich must run through the public API,
    # be finite, and its semi-implicit bounds must bracket (lower <= upper per example, as
    # their expectations do) with the estimate inside the documented clip interval.
    from shortinfer.models import MultiLayerGenerator

    torch.manual_seed(0)
    model = MultiLayerGenerator(image_size=28, channels=1, latent_sizes=(2, 3), num_filters=2)
    model.requires_grad_(False)
    examples, chains, num_steps, step_size = 2, 8, 3, 0.02
    x = model.sample_images(examples)
    post = short_run(
        model.log_joint,
        x,
        latent_shape=model.latent_shapes,
        num_steps=num_steps,
        step_size=step_size,
        generator=torch.Generator().manual_seed(0),
    )
    elbo = post.elbo(num_samples=chains, objective="sandwich", num_mixture=4)
    assert elbo.shape == (examples,) and bool(torch.isfinite(elbo).all())

    # The same estimate from the pure functions, on flat latents (blocks in latent_shapes order)
    chain = post.draw_noise(chains)
    rows = x.repeat(chains, 1, 1, 1)  # row i is example i % B

    def log_joint(z):
        blocks = z.split([2, 3], -1)
        return model.log_joint(rows, dict(zip(model.latent_shapes, blocks, strict=True)))

    table = _table(step_size, num_steps, dtype=torch.float32)
    args = (log_joint, chain.z0, chain.noise, table, standard_normal_log_prob)
    z_k, h_sw = entropy_bound("sandwich", *args, num_examples=examples, num_mixture=4)
    _, h_lin = entropy_bound("linearized", *args)
    objective = post.step_size_objective(
        chain, torch.tensor([[step_size]]), objective="sandwich", num_mixture=4
    )
    torch.testing.assert_close(objective, -(log_joint(z_k) + h_sw).mean())
    bounds = semi_implicit_bounds(
        log_joint, chain.z0, chain.noise, table, num_examples=examples, num_mixture=4
    )
    for values in (h_sw, h_lin, bounds.lower, bounds.upper):
        assert bool(torch.isfinite(values).all())
    assert bool(
        (_per_example(bounds.lower, examples) <= _per_example(bounds.upper, examples)).all()
    )
    pooled, low, high = _sandwich_interval(
        bounds, h_lin, -standard_normal_log_prob(chain.z0), examples
    )
    assert bool((low <= high).all())
    sandwich = _per_example(h_sw, examples)
    tolerance = 1e-4 * (1 + sandwich.abs())  # float32 rounding of the pooled means
    assert bool((sandwich >= low - tolerance).all() and (sandwich <= high + tolerance).all())
    expected = torch.minimum(torch.maximum(_per_example(pooled, examples), low), high)
    torch.testing.assert_close(sandwich, expected, rtol=1e-5, atol=1e-4)
    # As documented for high dimension (here D = 5 with 8 chains already): the semi-implicit
    # interval is wide (about [-1, 80] nats), so the sandwich is the linearized estimate.
    assert bool((high - low > 10).all())
    torch.testing.assert_close(sandwich, _per_example(pooled, examples), rtol=1e-5, atol=1e-4)


# -- differentiability and tuning -----------------------------------------------------------------


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_objectives_are_differentiable_in_the_step_size(objective):
    model, x = _setting()
    chains = 8
    z0, noise = _draw(4 * chains, 3, 6, seed=8)
    log_joint = _rows(model, x, chains)

    def value(step):
        table = step.reshape(1, 1).expand(6, 1)
        z_k, h = entropy_bound(
            objective, log_joint, z0, noise, table, standard_normal_log_prob, num_examples=4
        )
        return -(log_joint(z_k) + h).mean()

    step = torch.tensor(0.04, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(value(step), step)
    eps = 1e-6
    with torch.no_grad():
        numeric = (value(step + eps) - value(step - eps)) / (2 * eps)
    assert torch.isfinite(grad)
    torch.testing.assert_close(grad, numeric, rtol=1e-4, atol=1e-6)


def test_grid_tuning_with_sandwich_lands_within_1_5x_of_the_oracle_kl():
    model, x = _setting()
    chains = 64
    z0, noise = _draw(4 * chains, 3, 10, seed=9)
    log_joint = _rows(model, x, chains)

    def objective(table):
        z_k, h = entropy_bound(
            "sandwich",
            log_joint,
            z0,
            noise,
            table.expand(10, 1),
            standard_normal_log_prob,
            num_examples=4,
        )
        return -(log_joint(z_k) + h).mean()

    candidates = torch.exp(
        torch.linspace(math.log(0.005), math.log(0.19), 30, dtype=torch.float64)
    ).reshape(-1, 1, 1)
    chosen = float(grid_search(objective, candidates).step_size)
    assert float(model.kl_to_posterior(x, chosen, 10).mean()) <= 1.5 * KL_STAR

    # the paper's objective on the same draw does not
    def paper(table):
        z_k, h = entropy_bound(
            "conditional", log_joint, z0, noise, table.expand(10, 1), standard_normal_log_prob
        )
        return -(log_joint(z_k) + h).mean()

    paper_s = float(grid_search(paper, candidates).step_size)
    assert float(model.kl_to_posterior(x, paper_s, 10).mean()) > 5 * KL_STAR


@pytest.mark.parametrize("method", ["grid", "gradient"])
def test_posterior_tuning_with_sandwich_lands_within_1_5x_of_the_oracle_kl(method):
    model, x = _setting()
    post = short_run(
        model.log_joint,
        x,
        latent_shape=(3,),
        num_steps=10,
        step_size=0.01,
        generator=torch.Generator().manual_seed(10),
    )
    grid = torch.exp(torch.linspace(math.log(0.005), math.log(0.19), 30)).tolist()
    tuned = post.tune_step_size(
        method,
        grid=grid,
        num_samples=64,
        objective="sandwich",
        num_iterations=60,
        learning_rate=0.1,
    )
    assert float(model.kl_to_posterior(x, tuned.step_size, 10).mean()) <= 1.5 * KL_STAR


# -- errors ---------------------------------------------------------------------------------------


def test_unknown_objective_lists_the_choices():
    z0, noise = _draw(4, 2, 3, seed=0)
    with pytest.raises(ValueError, match=r"objective must be one of \['conditional', 'epi'"):
        entropy_bound(
            "exact",
            lambda z: -z.square().sum(-1),
            z0,
            noise,
            _table(0.1, 3),
            standard_normal_log_prob,
        )


@pytest.mark.parametrize("objective", ["semi_implicit", "sandwich"])
def test_semi_implicit_objectives_need_two_chains_per_example(objective):
    z0, noise = _draw(4, 2, 3, seed=0)
    args = (lambda z: -z.square().sum(-1), z0, noise, _table(0.1, 3), standard_normal_log_prob)
    with pytest.raises(ValueError, match="at least 2 chains per example.*num_samples >= 2"):
        entropy_bound(objective, *args)
    with pytest.raises(ValueError, match="at least 2 chains per example"):
        entropy_bound(objective, *args, num_examples=4)
    with pytest.raises(ValueError, match="positive divisor of the number of chains 4"):
        entropy_bound(objective, *args, num_examples=3)


def test_linearized_rejects_an_unknown_mode():
    z0, noise = _draw(4, 2, 3, seed=0)
    with pytest.raises(ValueError, match="mode must be 'reverse' or 'forward'"):
        entropy_bound(
            "linearized",
            lambda z: -z.square().sum(-1),
            z0,
            noise,
            _table(0.1, 3),
            standard_normal_log_prob,
            mode="sideways",
        )


def test_linearized_log_dets_survive_a_noise_covariance_that_float32_rounds_to_singular():
    from shortinfer.objectives import _gaussian_log_dets

    # G = [[1e4, 0], [1e4, 1]]: C = G G^T = [[1e8, 1e8], [1e8, 1e8 + 1]] is positive definite
    # (det C = det(G)^2 = 1e8), but float32 rounds 1e8 + 1 to 1e8, making C singular.
    noise_jac = torch.tensor([[[1e4, 0.0], [1e4, 1.0]]])
    jac = torch.eye(2).unsqueeze(0)
    prior_precision = torch.eye(2).unsqueeze(0)
    rounded = noise_jac @ noise_jac.transpose(-2, -1)
    assert torch.isnan(_gaussian_log_dets(rounded, jac, prior_precision)).all()
    wide = noise_jac.double()
    exact = _gaussian_log_dets(
        wide @ wide.transpose(-2, -1), jac.double(), prior_precision.double()
    )
    # Oracle: log det C + log det(I + C^{-1}) = log det(C + I), computed directly.
    expected = torch.linalg.slogdet(wide @ wide.transpose(-2, -1) + torch.eye(2).double())[1]
    torch.testing.assert_close(exact, expected)


def test_linearized_objective_is_finite_or_scored_inf_near_divergence():
    # A stiff quadratic posterior (curvature 401): at s = 0.02 and 0.05 the chain is still
    # finite but its Jacobians reach ~1e21, so float32 G G^T is no longer positive definite
    # (this raised a LinAlgError before). The grid must score them inf and pick a stable s.
    x = torch.zeros(4, 3)

    def log_joint(x, z):
        return -0.5 * z.square().sum(-1) - 0.5 * 400.0 * (x - z).square().sum(-1)

    for objective in ("linearized", "sandwich"):
        post = short_run(
            log_joint,
            x,
            latent_shape=(3,),
            num_steps=25,
            step_size=0.001,
            generator=torch.Generator().manual_seed(0),
        )
        tuned = post.tune_step_size(
            "grid", grid=[0.001, 0.002, 0.004, 0.02, 0.05], objective=objective, num_samples=4
        )
        assert float(tuned.step_size) <= 0.004
        assert not torch.isfinite(tuned.trace.objectives[-2:]).any()
