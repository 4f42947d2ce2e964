"""Step-size tuning: the default objective, grid, refinement, edge warning and stability check.

Oracles: the linear-Gaussian model's closed-form KL of any step size
(`shortinfer.models.LinearGaussian.kl_to_posterior`), and a 2-D banana whose divergence rate
is counted on 200,000 chains.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from shortinfer import short_run, tuning
from shortinfer.langevin import autograd_score, max_curvature, rollout
from shortinfer.posterior import GridEdgeWarning
from shortinfer.tuning import (
    DEFAULT_GRID,
    DEFAULT_OBJECTIVE,
    PAPER_DELTA_GRID,
    PAPER_GRID,
    bracket_final,
    bracket_init,
    bracket_update,
    golden_section_search,
    grid_edge,
)
from tests._oracle import make_linear_gaussian

# (latent_dim, obs_dim, sigma): a soft posterior (optimal s about 0.012) and a stiff one
# (curvature up to 3.7e3, optimal s about 2.3e-4), three decades apart.
SETTINGS = {"soft": (4, 8, 0.2), "stiff": (4, 10, 0.02)}
NUM_STEPS = 25


def _kl(model, x, step_size):
    return float(model.kl_to_posterior(x, step_size, NUM_STEPS).mean().detach())


@pytest.mark.acceptance
@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_defaults_pick_a_step_size_within_1_5x_of_the_optimal_kl(name):
    latent_dim, obs_dim, sigma = SETTINGS[name]
    model = make_linear_gaussian(latent_dim, obs_dim, sigma)
    x = model.sample_observations(8, generator=torch.Generator().manual_seed(1))
    fine = torch.logspace(-5, 0, 1000, dtype=torch.float64)
    kls = torch.tensor([_kl(model, x, float(s)) for s in fine])
    best = float(torch.nan_to_num(kls, nan=math.inf).min())
    post = short_run(
        model.log_joint,
        x,
        latent_shape=(latent_dim,),
        num_steps=NUM_STEPS,
        step_size=0.01,
        generator=torch.Generator().manual_seed(0),
    )
    tuned = post.tune_step_size()  # every default: objective, grid, chains, refinement
    assert tuned.trace.objective == DEFAULT_OBJECTIVE == "linearized"
    ratio = _kl(model, x, float(tuned.step_size)) / best
    assert ratio < 1.5, (name, tuned.step_size, ratio)
    # The paper's objective, on the same chains, is far off (the study's finding).
    paper = post.tune_step_size(objective="conditional")
    assert _kl(model, x, float(paper.step_size)) / best > 5


def test_grid_edge_warning_says_how_to_widen_the_grid():
    model = make_linear_gaussian(4, 10, 0.02)  # optimum near 2.3e-4
    x = model.sample_observations(8, generator=torch.Generator().manual_seed(1))
    post = short_run(model.log_joint, x, latent_shape=(4,), num_steps=NUM_STEPS, step_size=3e-4)
    with pytest.warns(GridEdgeWarning, match=r"smallest candidate .* extend the grid downwards"):
        tuned = post.tune_step_size(grid=[3e-4, 4e-4, 5e-4])
    assert tuned.step_size == 3e-4


def test_no_edge_warning_when_larger_candidates_diverge(recwarn):
    model = make_linear_gaussian(4, 8, 0.2)  # stable only below 2 / 54.9 = 0.036
    x = model.sample_observations(8, generator=torch.Generator().manual_seed(1))
    post = short_run(model.log_joint, x, latent_shape=(4,), num_steps=NUM_STEPS)
    tuned = post.tune_step_size(grid=[0.003, 0.006, 0.012, 10.0, 100.0], refine=0)
    assert tuned.step_size == 0.012
    assert not [w for w in recwarn if issubclass(w.category, GridEdgeWarning)]
    assert torch.isinf(tuned.trace.objectives[-2:]).all()


def _banana(z):
    residual = (1.0 - z[..., 1] - 0.5 * z[..., 0].square()) / 0.4
    return -0.5 * z.square().sum(-1) - 0.5 * residual.square()


def _diverged(step_size, count=200_000):
    generator = torch.Generator().manual_seed(99)
    z0 = torch.randn(count, 2, generator=generator)
    noise = torch.randn(NUM_STEPS, count, 2, generator=generator)
    with torch.no_grad():
        z = rollout(autograd_score(_banana), z0, noise, torch.full((NUM_STEPS, 1), step_size))
    return int((~torch.isfinite(z).all(-1) | (z.abs() > 1e6).any(-1)).sum())


@pytest.mark.acceptance
def test_stability_check_refuses_step_sizes_that_diverge_on_rare_chains():
    # s = 0.04 diverges in a few of 200,000 chains: 256 tuning chains cannot see it.
    assert _diverged(0.04) > 0
    grid = torch.logspace(-3, math.log10(0.3), 30)
    chosen = []
    for seed in range(3):
        post = short_run(
            lambda x, z: _banana(z),
            torch.zeros(1, 1),
            latent_shape=(2,),
            num_steps=NUM_STEPS,
            generator=torch.Generator().manual_seed(seed),
        )
        tuned = post.tune_step_size(grid=grid, num_samples=256)
        chosen.append(float(tuned.step_size))
        for step_size, reason in tuned.trace.rejected:
            assert step_size > tuned.step_size
            assert "lambda_max" in reason or "diverged" in reason
        assert _diverged(float(tuned.step_size)) == 0
    assert max(chosen) < 0.04


def test_stability_check_shrinks_a_diverging_gradient_result():
    model = make_linear_gaussian(4, 8, 0.2)  # lambda_max = 54.9
    x = model.sample_observations(4, generator=torch.Generator().manual_seed(1))
    lam = float(torch.linalg.eigvalsh(model.precision().detach()).max())
    bound = tuning.stable_step_bound(5)  # 3.51: |1 - s lambda|^5 <= 100
    start = 1.25 * bound / lam  # above the bound; half of it is below
    post = short_run(model.log_joint, x, latent_shape=(4,), num_steps=5, step_size=start)
    # One Adam step of a negligible learning rate: s stays where it started, which is unstable.
    tuned = post.tune_step_size("gradient", num_iterations=1, learning_rate=1e-9)
    assert tuned.step_size * lam <= bound
    assert tuned.trace.rejected and tuned.trace.rejected[0][0] == pytest.approx(start)
    assert "more than the 100x allowed" in tuned.trace.rejected[0][1]


@pytest.mark.parametrize("num_steps", [5, 25])
def test_stability_bound_is_where_the_stiffest_direction_grows_by_the_allowed_factor(num_steps):
    # Oracle: on a Gaussian posterior every chain has curvature lambda_max, so a step size
    # just below the bound passes and one just above is refused; the bound is where
    # |1 - s lambda|^K equals STABILITY_GROWTH.
    bound = tuning.stable_step_bound(num_steps)
    assert abs(1 - bound) ** num_steps == pytest.approx(tuning.STABILITY_GROWTH)
    model = make_linear_gaussian(4, 8, 0.2)
    x = model.sample_observations(4, generator=torch.Generator().manual_seed(1))
    lam = float(torch.linalg.eigvalsh(model.precision().detach()).max())
    for factor, refused in ((0.98, False), (1.02, True)):
        post = short_run(
            model.log_joint, x, latent_shape=(4,), num_steps=num_steps, step_size=0.01
        )
        step_size = factor * bound / lam
        tuned = post.tune_step_size(grid=[step_size], num_samples=4)
        assert bool(tuned.trace.rejected) is refused, tuned.trace.rejected


def test_step_amplification_of_one_step_size_is_the_bound():
    # For one step size, A <= G exactly where s * lambda <= stable_step_bound(K, G).
    for num_steps in (1, 5, 25):
        bound = tuning.stable_step_bound(num_steps)
        for ratio in (0.5, 1.0, 1.9, 2.0, 0.99 * bound, 1.01 * bound, 4.0):
            table = torch.full((num_steps,), ratio / 7.0, dtype=torch.float64)
            amplification = tuning.step_amplification(table, 7.0)
            assert (amplification <= tuning.STABILITY_GROWTH) is (ratio <= bound)
            assert amplification == pytest.approx(max(1.0, abs(1 - ratio)) ** num_steps)


def test_step_amplification_is_the_stiffest_singular_value_of_the_linear_map():
    # Oracle: on a quadratic the K-step map is prod_k (I - s_k H); along the eigenvector of
    # the largest eigenvalue, with every factor expanding, it stretches by exactly A.
    lam = 10.0
    table = torch.tensor([0.25, 0.31, 0.4, 0.22], dtype=torch.float64)  # 1 - s lam < -1
    hessian = torch.diag(torch.tensor([lam, 1.0], dtype=torch.float64))
    jacobian = torch.eye(2, dtype=torch.float64)
    for s_k in table:
        jacobian = (torch.eye(2, dtype=torch.float64) - s_k * hessian) @ jacobian
    largest = float(torch.linalg.matrix_norm(jacobian, ord=2))
    assert tuning.step_amplification(table, lam) == pytest.approx(largest)
    # A contracting step does not excuse an expanding one; a (K, D) table uses each row's max.
    assert tuning.step_amplification(torch.tensor([0.1, 0.5]), lam) == pytest.approx(4.0)
    assert tuning.step_amplification(torch.tensor([[0.5, 0.01], [0.01, 0.01]]), lam) == 4.0


def test_stability_check_lets_one_large_step_of_a_per_step_table_pass():
    # K = 5 on a Gaussian: a per-step table with one step at s lambda = 4 (|1 - 4| = 3) and
    # the rest at 1 (no growth) amplifies 3x and passes, though max_k s_k lambda = 4 is above
    # the one-step-size bound 3.51; one step with |1 - s lambda| > 100 is refused.
    model = make_linear_gaussian(4, 8, 0.2)
    x = model.sample_observations(4, generator=torch.Generator().manual_seed(1))
    lam = float(torch.linalg.eigvalsh(model.precision().detach()).max())
    assert 4.0 > tuning.stable_step_bound(5)
    for large, refused in ((4.0, False), (1.0 + 1.05 * tuning.STABILITY_GROWTH, True)):
        table = torch.full((5,), 1.0 / lam)
        table[2] = large / lam
        post = short_run(model.log_joint, x, latent_shape=(4,), num_steps=5, step_size=table)
        tuned = post.tune_step_size("gradient", num_iterations=1, learning_rate=1e-9)
        assert bool(tuned.trace.rejected) is refused, tuned.trace.rejected


def test_stability_check_refuses_a_non_finite_curvature(monkeypatch):
    import shortinfer.posterior as posterior_module

    nan = lambda log_joint, z, num_iterations: torch.full((z.shape[0],), float("nan"))  # noqa: E731
    monkeypatch.setattr(posterior_module, "max_curvature", nan)
    model = make_linear_gaussian(4, 8, 0.2)
    x = model.sample_observations(4, generator=torch.Generator().manual_seed(1))
    post = short_run(model.log_joint, x, latent_shape=(4,), num_steps=5, step_size=0.001)
    # Refused at every halving, so the search gives up with the reason rather than pass it.
    with pytest.raises(FloatingPointError, match="stiffest direction nanx"):
        post.tune_step_size("gradient", num_iterations=1, learning_rate=1e-9)


def test_max_curvature_matches_the_precision_of_a_gaussian():
    model = make_linear_gaussian(4, 8, 0.2)
    x = model.sample_observations(3, generator=torch.Generator().manual_seed(1))
    lam = torch.linalg.eigvalsh(model.precision().detach()).max()
    estimate = max_curvature(lambda z: model.log_joint(x, z), torch.randn(3, 4, dtype=x.dtype))
    torch.testing.assert_close(estimate, lam.expand(3), rtol=1e-3, atol=0)


def test_elbo_uses_the_objective_the_step_size_was_tuned_with():
    model = make_linear_gaussian(3, 5, 0.5)
    x = model.sample_observations(4, generator=torch.Generator().manual_seed(1))
    post = short_run(model.log_joint, x, latent_shape=(3,), num_steps=10, step_size=0.02)
    tuned = post.tune_step_size(grid=[0.01, 0.02, 0.04, 0.08], objective="linearized")

    def elbo(**kwargs):
        tuned.generator = torch.Generator().manual_seed(7)
        return tuned.elbo(num_samples=8, **kwargs)

    torch.testing.assert_close(elbo(), elbo(objective="linearized"))
    assert not torch.allclose(elbo(), elbo(objective="conditional"))
    post.generator = torch.Generator().manual_seed(7)  # untuned: the paper's lower bound
    untuned = post.elbo(num_samples=8)
    post.generator = torch.Generator().manual_seed(7)
    torch.testing.assert_close(untuned, post.elbo(num_samples=8, objective="conditional"))


def test_grids_and_units():
    assert DEFAULT_GRID[0] == 1e-5 and DEFAULT_GRID[-1] == 1.0 and len(DEFAULT_GRID) == 21
    ratios = [b / a for a, b in zip(DEFAULT_GRID, DEFAULT_GRID[1:], strict=False)]
    assert all(1.7 < r < 1.86 for r in ratios)  # four per decade, up to 3-digit rounding
    # The paper's grid is read in delta units: s = delta^2 / 2; delta = 0.05 is s = 0.00125.
    assert len(PAPER_GRID) == len(PAPER_DELTA_GRID) == 15
    assert PAPER_GRID[PAPER_DELTA_GRID.index(0.05)] == 0.00125
    for s, delta in zip(PAPER_GRID, PAPER_DELTA_GRID, strict=True):
        assert s == pytest.approx(delta**2 / 2, rel=1e-6)


def test_grid_edge_and_golden_section():
    grid = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert grid_edge(grid, torch.tensor([0.0, 1.0, 2.0, 3.0])) == "lower"
    assert grid_edge(grid, torch.tensor([3.0, 2.0, 1.0, 0.0])) == "upper"
    assert grid_edge(grid, torch.tensor([3.0, 0.0, 1.0, math.inf])) is None
    points = golden_section_search(lambda s: (math.log(s) + 3) ** 2, 1e-3, 1.0, num_iterations=20)
    assert len(points) == 21
    assert min(points, key=lambda p: p[1])[0] == pytest.approx(math.exp(-3), rel=1e-3)
    # Non-finite values count as +inf and steer the search away.
    points = golden_section_search(lambda s: math.nan if s > 0.1 else -s, 1e-3, 1.0)
    assert min(points, key=lambda p: p[1])[0] <= 0.1


def _run_bracket(objective, start, **options):
    state = bracket_init(start, **options)
    while state.proposal is not None:
        state = bracket_update(state, objective(state.proposal))
    return state


@settings(max_examples=60, deadline=None)
@given(
    optimum=st.floats(min_value=-5.0, max_value=0.5),
    start=st.floats(min_value=-5.5, max_value=0.9),
    curvature=st.floats(min_value=0.1, max_value=50.0),
)
def test_bracket_finds_the_minimum_of_a_unimodal_objective(optimum, start, curvature):
    def objective(s):  # a parabola in log10 s, minimum at 10**optimum
        return curvature * (math.log10(s) - optimum) ** 2

    state = _run_bracket(objective, 10**start)
    best, _ = bracket_final(state)
    # Bracketing brackets (half a decade); four refinement steps land within 0.05 decades.
    assert abs(math.log10(best) - optimum) < 0.05
    # It walks, then refines: at most 3 + |distance| / step + refine evaluations.
    assert len(state.points) <= 3 + abs(start - optimum) / 0.5 + 1 + 4
    assert state.edge is None


def test_bracket_walks_down_from_a_diverging_start_and_stops_at_the_bounds():
    state = _run_bracket(lambda s: math.inf if s > 1e-3 else -math.log(s), 0.1)
    best, value = bracket_final(state)  # J decreases up to the divergence at 1e-3
    assert 1e-4 < best <= 1e-3 and math.isfinite(value)
    edge = _run_bracket(lambda s: s, 1e-3, bounds=(1e-5, 1.0))
    assert edge.edge == "lower" and bracket_final(edge)[0] == pytest.approx(1e-5, rel=1e-6)
    with pytest.raises(FloatingPointError, match="non-finite at every step size"):
        bracket_final(_run_bracket(lambda s: math.inf, 1e-3, bounds=(1e-5, 1.0)))
    with pytest.raises(ValueError, match="factor must be > 1"):
        bracket_init(1e-3, factor=1.0)


def test_default_tuning_is_the_bracketing_search_on_a_subset(recwarn):
    model = make_linear_gaussian(20, 30, 0.3)
    x = model.sample_observations(100, generator=torch.Generator().manual_seed(1))
    post = short_run(
        model.log_joint,
        x,
        latent_shape=(20,),
        num_steps=NUM_STEPS,
        step_size=0.01,
        generator=torch.Generator().manual_seed(0),
    )
    seen = []
    original = type(post).step_size_objective

    def spy(self, chain, table, **kwargs):
        seen.append(chain.z0.shape[0])
        return original(self, chain, table, **kwargs)

    type(post).step_size_objective = spy
    try:
        tuned = post.tune_step_size()
    finally:
        type(post).step_size_objective = original
    assert tuned.trace.method == "bracket"
    assert set(seen) == {16}  # ceil(320 / D) = 16 chains on the first 16 examples
    assert len(seen) <= 12
    assert tuned.batch_size == 100  # the returned posterior keeps the whole batch


def test_adam_rule_matches_torch_adam_and_clamps_to_bounds() -> None:
    # The pure rule against torch.optim.Adam on the same gradients (bounds wide enough to
    # stay inactive), then a large step that the clamp must stop at the lower bound.
    generator = torch.Generator().manual_seed(3)
    initial = torch.tensor([[0.02], [0.1], [0.5]], dtype=torch.float64)
    parameter = initial.log().clone().requires_grad_(True)
    optimiser = torch.optim.Adam([parameter], lr=0.07)
    state = tuning.adam_init(initial)
    for _ in range(20):
        gradient = torch.randn(initial.shape, generator=generator, dtype=torch.float64)
        parameter.grad = gradient.clone()
        optimiser.step()
        state = tuning.adam_update(state, gradient, learning_rate=0.07, bounds=(1e-9, 1e9))
    torch.testing.assert_close(state.log_step_size, parameter.detach(), rtol=1e-12, atol=1e-12)
    assert state.count == 20
    clamped = tuning.adam_update(
        tuning.adam_init(initial), torch.ones_like(initial), learning_rate=50.0, bounds=(1e-3, 1.0)
    )
    torch.testing.assert_close(clamped.log_step_size.exp(), torch.full_like(initial, 1e-3))
    with pytest.raises(ValueError, match="positive and finite"):
        tuning.adam_init(torch.tensor([[0.1], [0.0]]))
