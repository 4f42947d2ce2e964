"""Tests of the log-det estimators (per-step exact, stochastic, auto, the exact method's fallback),
the forward-mode step-size derivative, gradient tuning under data parallelism, and the sampling
fast path's agreement with a hand-written research loop."""

import copy
import math
import threading

import pytest
import torch

from shortinfer import ChainDivergenceError, short_run
from shortinfer.entropy import (
    AUTO_EXACT_MAX_DIM,
    EXACT_MAX_ROUNDING,
    auto_log_det_method,
    estimate_log_det,
    jacobian,
    log_abs_det_jacobian,
    per_step_log_abs_det,
    stochastic_log_det,
)
from shortinfer.langevin import autograd_score, rollout
from shortinfer.models._generator import MultiLayerGenerator
from shortinfer.objectives import EntropyEstimator
from shortinfer.tuning import (
    FORWARD_MAX_PARAMETERS,
    FORWARD_MIN_ELEMENTS,
    default_derivative,
    gradient_search,
    objective_and_gradient,
)

from ._oracle import make_linear_gaussian

F64 = torch.float64


def _linear_problem(latent_dim=4, batch=3, num_steps=5, table="scalar", seed=0, frozen=True):
    model = make_linear_gaussian(latent_dim=latent_dim, seed=seed).requires_grad_(not frozen)
    g = torch.Generator().manual_seed(seed + 1)
    x = model.sample_observations(batch, generator=g)
    z0 = torch.randn(batch, latent_dim, generator=g, dtype=F64)
    noise = torch.randn(num_steps, batch, latent_dim, generator=g, dtype=F64)
    if table == "scalar":
        steps = torch.full((num_steps, 1), 0.04, dtype=F64)
    elif table == "per_step":
        steps = torch.linspace(0.02, 0.08, num_steps, dtype=F64).reshape(-1, 1)
    else:  # per coordinate, e.g. per block
        steps = 0.02 + 0.05 * torch.rand(num_steps, latent_dim, generator=g, dtype=F64)
    return model, (lambda z: model.log_joint(x, z)), z0, noise, steps


def _linear_posterior(model, step_size, seed, batch=4):
    """A 5-step posterior of ``model`` on ``batch`` of its observations, seeded with ``seed``."""
    x = model.sample_observations(batch, generator=torch.Generator().manual_seed(0))
    return short_run(
        model.log_joint,
        x,
        latent_shape=(4,),
        num_steps=5,
        step_size=step_size,
        generator=torch.Generator().manual_seed(seed),
    )


def _mlp_log_joint(seed, latent_dim, batch):
    g = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(latent_dim, 16), torch.nn.Tanh(), torch.nn.Linear(16, 6)
    ).double()
    for p in net.parameters():
        p.data = torch.randn(p.shape, generator=g, dtype=F64) * 0.5
    x = torch.randn(batch, 6, generator=g, dtype=F64)
    return lambda z: -0.5 * z.square().sum(-1) - 0.5 * (x - net(z)).square().sum(-1) / 0.5**2


def _step_matrices(model, steps, num_steps):
    """A_k = S_k^{1/2} H S_k^{1/2} with H = -precision, for each step: (K, D, D)."""
    hessian = -model.precision().detach()
    roots = steps.expand(num_steps, hessian.shape[0]).sqrt()
    return roots[:, :, None] * hessian * roots[:, None, :]


def _truncated_series(matrices, order):
    """Closed form of the stochastic estimator's mean: sum_k sum_{j<=J} (-1)^{j+1} tr(A_k^j)/j."""
    total = torch.zeros((), dtype=F64)
    for a in matrices:
        power = torch.eye(a.shape[0], dtype=F64)
        for j in range(1, order + 1):
            power = power @ a
            total = total + (-1) ** (j + 1) * torch.trace(power) / j
    return total


def _probe_variance(matrices, order):
    """Variance of one Rademacher probe per step: sum_k 2(||M_k||_F^2 - sum_i M_k,ii^2)."""
    total = torch.zeros((), dtype=F64)
    for a in matrices:
        series = torch.zeros_like(a)
        power = torch.eye(a.shape[0], dtype=F64)
        for j in range(1, order + 1):
            power = power @ a
            series = series + (-1) ** (j + 1) * power / j
        total = total + 2 * (series.square().sum() - torch.diagonal(series).square().sum())
    return total


# -- per-step exact ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("table", ["scalar", "per_step", "per_coordinate"])
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_per_step_exact_equals_full_exact_on_linear_gaussian(mode, table, chunk_size):
    model, log_joint, z0, noise, steps = _linear_problem(table=table)
    z_k, per_step = per_step_log_abs_det(
        log_joint, z0, noise, steps, mode=mode, chunk_size=chunk_size
    )
    _, full = log_abs_det_jacobian(log_joint, z0, noise, steps)
    eye = torch.eye(4, dtype=F64)
    closed = sum(
        torch.linalg.slogdet(eye - s.reshape(-1, 1) * model.precision().detach()).logabsdet
        for s in steps
    )
    torch.testing.assert_close(per_step, full, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(per_step, closed.expand(3), rtol=1e-10, atol=1e-10)
    score = autograd_score(log_joint)
    torch.testing.assert_close(z_k, rollout(score, z0, noise, steps))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_per_step_exact_equals_full_exact_on_mlp(seed, mode):
    log_joint = _mlp_log_joint(seed, latent_dim=5, batch=3)
    g = torch.Generator().manual_seed(seed + 10)
    z0 = torch.randn(3, 5, generator=g, dtype=F64)
    noise = torch.randn(6, 3, 5, generator=g, dtype=F64)
    steps = torch.linspace(0.01, 0.05, 6, dtype=F64).reshape(-1, 1)
    z_full, full = log_abs_det_jacobian(log_joint, z0, noise, steps)
    z_step, per_step = per_step_log_abs_det(log_joint, z0, noise, steps, mode=mode, chunk_size=2)
    torch.testing.assert_close(per_step, full, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(z_step, z_full, rtol=1e-12, atol=1e-12)
    # The answer is not trivially the identity's: the chain really contracts.
    assert bool((full < -0.05).all())


# -- stochastic -------------------------------------------------------------------------------


@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("table", ["scalar", "per_coordinate"])
def test_stochastic_is_unbiased_for_its_truncated_series(order, table):
    # Steps up to s * lambda_max = 0.7: inside the series' radius of convergence, but large
    # enough that the truncation bias is far above the MC error and the test can tell the
    # truncated series from the exact log-det.
    batch, probes, num_steps = 256, 8, 4
    model, log_joint, z0, noise, _ = _linear_problem(batch=batch, num_steps=num_steps)
    largest = float(torch.linalg.eigvalsh(model.precision().detach()).max())
    if table == "scalar":
        steps = torch.full((num_steps, 1), 0.7 / largest, dtype=F64)
    else:
        spread = torch.rand(num_steps, 4, generator=torch.Generator().manual_seed(3), dtype=F64)
        steps = (0.3 + 0.4 * spread) / largest
    matrices = _step_matrices(model, steps, num_steps)
    _, estimate = stochastic_log_det(
        log_joint,
        z0,
        noise,
        steps,
        order=order,
        num_probes=probes,
        generator=torch.Generator().manual_seed(order),
    )
    truncated = _truncated_series(matrices, order)
    standard_error = (_probe_variance(matrices, order) / (probes * batch)).sqrt()
    assert abs(float(estimate.mean() - truncated)) < 4 * float(standard_error)
    exact = sum(torch.linalg.slogdet(torch.eye(4, dtype=F64) + a).logabsdet for a in matrices)
    # Every dropped term is negative near a mode: the truncation biases the estimate upwards.
    assert float(truncated) > float(exact)
    if order <= 2:  # here the bias is large enough for the estimate itself to show it
        assert float(estimate.mean() - exact) > 4 * float(standard_error)


def test_stochastic_variance_matches_hutchinson_formula():
    batch, num_steps, order = 4000, 3, 2
    model, log_joint, z0, noise, _ = _linear_problem(batch=batch, num_steps=num_steps)
    steps = torch.full((num_steps, 1), 0.2, dtype=F64)
    # The call is spelled out in each test on purpose: its order, probes and seed are the subject.
    _, estimate = stochastic_log_det(
        log_joint,
        z0,
        noise,
        steps,
        order=order,
        num_probes=1,
        generator=torch.Generator().manual_seed(0),
    )
    expected = _probe_variance(_step_matrices(model, steps, num_steps), order)
    assert float(estimate.var()) == pytest.approx(float(expected), rel=0.15)


def test_stochastic_converges_to_exact_with_order_and_probes():
    model, log_joint, z0, noise, steps = _linear_problem(batch=2)
    _, exact = per_step_log_abs_det(log_joint, z0, noise, steps)
    _, estimate = stochastic_log_det(
        log_joint,
        z0,
        noise,
        steps,
        order=12,
        num_probes=4000,
        generator=torch.Generator().manual_seed(0),
    )
    torch.testing.assert_close(estimate, exact, rtol=2e-2, atol=0)


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_stochastic_is_reproducible_and_keeps_the_chain(mode):
    _, log_joint, z0, noise, steps = _linear_problem()
    runs = [
        stochastic_log_det(
            log_joint, z0, noise, steps, mode=mode, generator=torch.Generator().manual_seed(7)
        )
        for _ in range(2)
    ]
    torch.testing.assert_close(runs[0][1], runs[1][1], rtol=0, atol=0)
    other = stochastic_log_det(
        log_joint, z0, noise, steps, mode=mode, generator=torch.Generator().manual_seed(8)
    )[1]
    assert not torch.equal(runs[0][1], other)
    torch.testing.assert_close(runs[0][0], rollout(autograd_score(log_joint), z0, noise, steps))
    # Both modes compute the same estimate from the same probes.
    swapped = "forward" if mode == "reverse" else "reverse"
    again = stochastic_log_det(
        log_joint, z0, noise, steps, mode=swapped, generator=torch.Generator().manual_seed(7)
    )[1]
    torch.testing.assert_close(again, runs[0][1], rtol=1e-10, atol=1e-10)


# -- differentiability in s -------------------------------------------------------------------


def _scalar_table(s, num_steps):
    return s.reshape(1, 1).expand(num_steps, 1)


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_per_step_exact_gradient_in_step_size_matches_closed_form(mode):
    model, log_joint, z0, noise, _ = _linear_problem(batch=2)
    s0 = torch.tensor(0.05, dtype=F64)

    def total(s):
        table = _scalar_table(s, 5)
        return per_step_log_abs_det(log_joint, z0, noise, table, mode=mode)[1].sum()

    s = s0.clone().requires_grad_(True)
    (reverse,) = torch.autograd.grad(total(s), s)
    _, forward = torch.func.jvp(total, (s0,), (torch.ones((), dtype=F64),))
    eig = torch.linalg.eigvalsh(model.precision().detach())
    expected = 2 * (-5 * (eig / (1 - 0.05 * eig)).sum())  # d/ds of K sum log|1 - s a_i|, x B
    assert float(reverse) == pytest.approx(float(expected), rel=1e-8)
    assert float(forward) == pytest.approx(float(expected), rel=1e-8)


def test_per_step_exact_gradient_follows_the_path_on_mlp():
    # On a nonlinear model H_k depends on z_k(s): the gradient must include that path.
    log_joint = _mlp_log_joint(4, latent_dim=4, batch=2)
    g = torch.Generator().manual_seed(5)
    z0, noise = (
        torch.randn(2, 4, generator=g, dtype=F64),
        torch.randn(5, 2, 4, generator=g, dtype=F64),
    )
    s0 = torch.tensor(0.03, dtype=F64)

    def per_step(s):
        return per_step_log_abs_det(log_joint, z0, noise, _scalar_table(s, 5))[1].sum()

    def full(s):
        return log_abs_det_jacobian(log_joint, z0, noise, _scalar_table(s, 5))[1].sum()

    grads = []
    for fn in (per_step, full):
        s = s0.clone().requires_grad_(True)
        grads.append(torch.autograd.grad(fn(s), s)[0])
    _, forward = torch.func.jvp(per_step, (s0,), (torch.ones((), dtype=F64),))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(forward, grads[1], rtol=1e-8, atol=1e-10)


def test_stochastic_is_differentiable_in_step_size():
    _, log_joint, z0, noise, _ = _linear_problem(batch=3)
    s0 = torch.tensor(0.05, dtype=F64)

    def total(s):
        return stochastic_log_det(
            log_joint,
            z0,
            noise,
            _scalar_table(s, 5),
            num_probes=2,
            generator=torch.Generator().manual_seed(0),
        )[1].sum()

    s = s0.clone().requires_grad_(True)
    (reverse,) = torch.autograd.grad(total(s), s)
    _, forward = torch.func.jvp(total, (s0,), (torch.ones((), dtype=F64),))
    h = 1e-6
    finite = (total(s0 + h) - total(s0 - h)) / (2 * h)
    assert float(reverse) == pytest.approx(float(finite), rel=1e-6)
    assert float(forward) == pytest.approx(float(finite), rel=1e-6)
    assert abs(float(reverse)) > 1.0


# -- auto and the dispatch ------------------------------------------------------------------


def test_auto_picks_by_dimension_as_documented():
    assert auto_log_det_method(1) == "per_step_exact"
    assert auto_log_det_method(AUTO_EXACT_MAX_DIM) == "per_step_exact"
    assert auto_log_det_method(AUTO_EXACT_MAX_DIM + 1) == "stochastic"


def test_auto_dispatches_to_the_method_it_picks():
    _, log_joint, z0, noise, steps = _linear_problem()
    _, auto = estimate_log_det(log_joint, z0, noise, steps, method="auto")
    _, per_step = per_step_log_abs_det(log_joint, z0, noise, steps)
    torch.testing.assert_close(auto, per_step, rtol=0, atol=0)

    dim = AUTO_EXACT_MAX_DIM + 1
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(2, dim, generator=g, dtype=F64)
    noise = torch.randn(2, 2, dim, generator=g, dtype=F64)
    steps = torch.full((2, 1), 0.1, dtype=F64)

    def big(z):
        return -0.5 * z.square().sum(-1)

    _, auto = estimate_log_det(
        big, z0, noise, steps, method="auto", generator=torch.Generator().manual_seed(1)
    )
    _, stochastic = stochastic_log_det(
        big, z0, noise, steps, generator=torch.Generator().manual_seed(1)
    )
    torch.testing.assert_close(auto, stochastic, rtol=0, atol=0)


def test_posterior_entropy_accepts_every_method():
    model, _, _, _, _ = _linear_problem()

    def entropy(method):
        # The same seed for every method: the same chains (common random numbers), so the
        # methods differ only by their own error, not by Monte Carlo noise.
        post = _linear_posterior(model, 0.04, seed=1, batch=3)
        return float(post.entropy(method=method, num_samples=64).mean())

    values = {m: entropy(m) for m in ("exact", "per_step_exact", "stochastic", "auto")}
    assert values["per_step_exact"] == pytest.approx(values["exact"], abs=1e-9)
    assert values["auto"] == values["per_step_exact"]  # D = 4: auto is per_step_exact
    assert values["stochastic"] == pytest.approx(values["exact"], abs=0.1)  # seeds 0-3: <= 0.042


def test_estimator_errors_name_the_choices():
    _, log_joint, z0, noise, steps = _linear_problem()
    with pytest.raises(ValueError, match=r"method must be one of \['exact', 'per_step_exact'"):
        estimate_log_det(log_joint, z0, noise, steps, method="hutchinson")
    with pytest.raises(ValueError, match="mode must be 'reverse' or 'forward'"):
        per_step_log_abs_det(log_joint, z0, noise, steps, mode="sideways")
    with pytest.raises(ValueError, match="order must be an int >= 1"):
        stochastic_log_det(log_joint, z0, noise, steps, order=0)
    with pytest.raises(ValueError, match="num_probes must be an int >= 1; received 1.5"):
        stochastic_log_det(log_joint, z0, noise, steps, num_probes=1.5)


# -- forward-mode step-size derivative ------------------------------------------------------


@pytest.mark.parametrize("table", ["scalar", "per_step"])
def test_forward_and_reverse_step_size_gradients_agree(table):
    model, _, _, _, _ = _linear_problem()
    step = 0.03 if table == "scalar" else torch.linspace(0.02, 0.05, 5)
    post = _linear_posterior(model, step, seed=2)
    chain = post.draw_noise(8)
    for method in ("exact", "per_step_exact"):

        def objective(t, method=method):
            return post.step_size_objective(chain, t, entropy_method=method)

        log_s = post._table.log()
        value_f, forward = objective_and_gradient(objective, log_s, derivative="forward")
        value_r, reverse = objective_and_gradient(objective, log_s, derivative="reverse")
        torch.testing.assert_close(value_f, value_r, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(forward, reverse, rtol=1e-8, atol=1e-10)
        assert bool((reverse.abs() > 1e-3).any())


def test_gradient_search_is_the_same_in_both_modes_and_leaves_parameters_alone():
    model, _, _, _, _ = _linear_problem(frozen=False)
    post = _linear_posterior(model, 0.02, seed=3)
    chain = post.draw_noise(4)

    def objective(t):
        return post.step_size_objective(chain, t, entropy_method="per_step_exact")

    runs = {
        d: gradient_search(
            objective, post._table, num_iterations=5, learning_rate=0.1, derivative=d
        )
        for d in ("forward", "reverse")
    }
    torch.testing.assert_close(runs["forward"].step_sizes, runs["reverse"].step_sizes)
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="derivative must be 'auto', 'forward' or 'reverse'"):
        gradient_search(objective, post._table, num_iterations=1, derivative="sideways")


def test_default_derivative_rule():
    assert default_derivative(1, FORWARD_MIN_ELEMENTS) == "forward"
    assert default_derivative(FORWARD_MAX_PARAMETERS, 10**6) == "forward"
    assert default_derivative(FORWARD_MAX_PARAMETERS + 1, 10**6) == "reverse"
    assert default_derivative(1, FORWARD_MIN_ELEMENTS - 1) == "reverse"


def test_stochastic_tuning_uses_common_probes():
    model, _, _, _, _ = _linear_problem()
    post = _linear_posterior(model, 0.02, seed=3)
    tuned = post.tune_step_size("grid", grid=[0.03, 0.03], entropy_method="stochastic")
    objectives = tuned.trace.objectives
    assert float(objectives[0]) == float(objectives[1])  # same candidate, same probes


# -- sampling fast path ---------------------------------------------------------------------


def _research_loop(model, x, blocks, noise_blocks, step_size, num_steps):
    """The authors'-code style: torch.autograd.grad per step, in-place .data updates."""
    z = [block.clone().requires_grad_(True) for block in blocks]
    root = math.sqrt(2 * step_size)
    for k in range(num_steps):
        log_p = model.log_joint(x, dict(zip(model.latent_shapes, z, strict=True))).sum()
        grads = torch.autograd.grad(log_p, z)
        for var, grad, eps in zip(z, grads, noise_blocks, strict=True):
            var.data += step_size * grad
            var.data += root * eps[k]
    return [var.detach() for var in z]


def test_sample_equals_a_hand_written_research_loop():
    torch.manual_seed(0)
    model = MultiLayerGenerator(image_size=28, channels=1, latent_sizes=(4, 8), num_filters=4)
    x = model.sample_images(3).detach()
    generator = torch.Generator().manual_seed(11)
    post = short_run(
        model.log_joint,
        x,
        latent_shape=model.latent_shapes,
        num_steps=6,
        step_size=0.05,
        generator=generator,
    )
    state = generator.get_state()
    sample = post.sample()
    generator.set_state(state)
    chain = post.draw_noise()
    sizes = list(model.latent_sizes)
    blocks = chain.z0.split(sizes, dim=-1)
    noise_blocks = chain.noise.split(sizes, dim=-1)
    reference = _research_loop(model, x, blocks, noise_blocks, 0.05, 6)
    for name, ref in zip(model.latent_shapes, reference, strict=True):
        assert torch.equal(sample[name], ref), name


def test_per_step_exact_keeps_float32_accuracy_when_the_chain_contracts():
    # The whole chain's Jacobian is a product of K contractions whose smallest singular values
    # drop below float32's resolution; each per-step factor I + sH stays well conditioned.
    g = torch.Generator().manual_seed(0)
    net64 = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 64))
    net64 = net64.double().requires_grad_(False)
    for p in net64.parameters():
        p.copy_(torch.randn(p.shape, generator=g, dtype=F64) / p.shape[-1] ** 0.5)
    net32 = copy.deepcopy(net64).float()
    x = net64(torch.randn(2, 8, generator=g, dtype=F64)) + 0.1 * torch.randn(
        2, 64, generator=g, dtype=F64
    )
    z0, noise = (
        torch.randn(2, 8, generator=g, dtype=F64),
        torch.randn(25, 2, 8, generator=g, dtype=F64),
    )

    def log_det(net, dtype, method):
        obs = x.to(dtype)

        def log_joint(z):
            return -0.5 * z.square().sum(-1) - 0.5 * (obs - net(z)).square().sum(-1) / 0.1**2

        table = torch.full((25, 1), 0.0005, dtype=dtype)
        return estimate_log_det(log_joint, z0.to(dtype), noise.to(dtype), table, method=method)[
            1
        ].double()

    reference = log_det(net64, F64, "per_step_exact")
    torch.testing.assert_close(log_det(net64, F64, "exact"), reference, rtol=1e-8, atol=1e-8)
    assert bool((reference < -35).all())  # strongly contracting: the hard case for float32
    torch.testing.assert_close(
        log_det(net32, torch.float32, "per_step_exact"), reference, rtol=1e-5, atol=1e-4
    )


# -- the exact method's fallback to the per-step sum ----------------------------------------------


def _stiff_problem(dtype, num_steps=10):
    """Row 0 contracts its second coordinate by 2^-20 per step (the whole chain: 2^-200, below
    float32's range); row 1 is benign. Curvatures and step are powers of two, so every per-step
    factor 1 - s c is exact in float32 and the oracle is sum_k sum_d log|1 - s c_d|."""
    curvature = torch.tensor([[1.0, 2.0**20 - 1], [1.0, 3.0]], dtype=dtype)

    def log_joint(z):
        return -0.5 * (z.square() * curvature).sum(-1)

    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(2, 2, generator=g, dtype=F64).to(dtype)
    noise = torch.randn(num_steps, 2, 2, generator=g, dtype=F64).to(dtype)
    steps = torch.full((num_steps, 1), 2.0**-20, dtype=dtype)
    oracle = num_steps * torch.log1p(-(2.0**-20) * curvature.double()).sum(-1)
    return log_joint, z0, noise, steps, oracle


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_exact_falls_back_to_the_per_step_sum_where_the_chain_jacobian_underflows(mode):
    log_joint, z0, noise, steps, oracle = _stiff_problem(torch.float32)
    _, jac = jacobian(log_joint, z0, noise, steps, mode=mode)
    plain = torch.linalg.slogdet(jac).logabsdet.double()
    # The failure being fixed: row 0's full-chain LU is -inf (forward) or a subnormal's log
    # (reverse), tens of nats off; row 1's is right.
    assert not bool(torch.isfinite(plain[0])) or float(plain[0] - oracle[0]) > 10
    torch.testing.assert_close(plain[1], oracle[1], rtol=1e-4, atol=1e-5)
    for method in ("exact", "per_step_exact"):
        z_k, log_det = estimate_log_det(log_joint, z0, noise, steps, method=method, mode=mode)
        torch.testing.assert_close(log_det.double(), oracle, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(z_k, rollout(autograd_score(log_joint), z0, noise, steps))


def test_posterior_entropy_is_finite_where_the_full_chain_slogdet_is_not():
    log_joint, z0, noise, steps, oracle = _stiff_problem(torch.float32)
    post = short_run(
        lambda x, z: log_joint(z),
        torch.zeros(2, 1),
        latent_shape=(2,),
        num_steps=10,
        step_size=2.0**-20,
    )
    chain = post.draw_noise()
    _, entropy = post._terms(chain, None, EntropyEstimator("conditional", mode="forward"))
    prior = 0.5 * chain.z0.double().square().sum(-1) + math.log(2 * math.pi)
    torch.testing.assert_close(entropy.double(), oracle + prior, rtol=1e-6, atol=1e-4)


def test_exact_fallback_is_exact_and_differentiable_on_an_ill_conditioned_linear_gaussian():
    # The affine chain's Jacobian is (I - sA)^K. With s just below 1 / lambda_max(A) one
    # direction contracts by 1e-4 per step while another barely moves: kappa ~ 1e40, far past
    # float64, so the full-chain LU is off by tens of nats although everything is finite. The
    # oracle is K sum_i log|1 - s lambda_i| from A's eigenvalues, and its derivative in s.
    model = make_linear_gaussian(latent_dim=3, seed=0).requires_grad_(False)
    x = model.sample_observations(2, generator=torch.Generator().manual_seed(1))
    eigenvalues = torch.linalg.eigvalsh(model.precision())
    num_steps, step = 10, float((1 - 1e-4) / eigenvalues.max())
    g = torch.Generator().manual_seed(2)
    z0 = torch.randn(2, 3, generator=g, dtype=F64)
    noise = torch.randn(num_steps, 2, 3, generator=g, dtype=F64)

    def log_joint(z):
        return model.log_joint(x, z)

    def oracle(s):
        return num_steps * torch.log(torch.abs(1 - s * eigenvalues)).sum()

    _, jac = jacobian(log_joint, z0, noise, torch.full((num_steps, 1), step, dtype=F64))
    singular = torch.linalg.svdvals(jac)
    kappa = singular[:, 0] / singular[:, -1]
    assert bool((kappa * torch.finfo(F64).eps > EXACT_MAX_ROUNDING).all())
    plain = torch.linalg.slogdet(jac).logabsdet
    assert bool(((plain - oracle(step)).abs() > 1).all())  # the bug: finite and wrong

    s = torch.tensor(step, dtype=F64, requires_grad=True)
    _, log_det = log_abs_det_jacobian(log_joint, z0, noise, s.expand(num_steps, 1))
    torch.testing.assert_close(log_det.detach(), oracle(step).expand(2), rtol=1e-9, atol=1e-9)
    (gradient,) = torch.autograd.grad(log_det.sum(), s)
    expected = 2 * num_steps * (-eigenvalues / (1 - step * eigenvalues)).sum()
    torch.testing.assert_close(gradient, expected, rtol=1e-6, atol=1e-6)


def test_exact_keeps_the_full_chain_lu_when_it_is_well_conditioned(monkeypatch):
    # No fallback (and no second pass) on an ordinary chain: per_step_log_abs_det is not called.
    _, log_joint, z0, noise, steps = _linear_problem()
    calls = []
    monkeypatch.setattr(
        "shortinfer.entropy.per_step_log_abs_det", lambda *a, **k: calls.append(1) or 1 / 0
    )
    _, log_det = log_abs_det_jacobian(log_joint, z0, noise, steps)
    assert calls == [] and bool(torch.isfinite(log_det).all())


# -- gradient tuning under data parallelism -------------------------------------------------------


class _ThreadGroup:
    """A process group simulated by threads: ``all_reduce`` blocks until every rank has
    contributed, then returns the mean, like ``torch.distributed.all_reduce`` / world size.
    A rank that stops calling it leaves the others waiting: they fail with
    ``threading.BrokenBarrierError`` after ``timeout`` seconds instead of hanging."""

    def __init__(self, size, timeout=20.0):
        self.barrier = threading.Barrier(size, timeout=timeout)
        self.slots = [None] * size

    def all_reduce(self, rank):
        def reduce(tensor):
            self.slots[rank] = tensor.detach().clone()
            self.barrier.wait()
            mean = torch.stack(self.slots).mean(0)
            self.barrier.wait()  # every rank has read before anyone writes again
            return mean

        return reduce


@pytest.mark.parametrize("failure", ["nan", "inf gradient", "raises"])
@pytest.mark.parametrize("derivative", ["forward", "reverse"])
def test_gradient_search_stops_every_rank_together_when_one_rank_fails(
    failure, derivative, monkeypatch
):
    # Forward-mode AD levels are process-global in PyTorch, so the two simulated ranks (threads)
    # must not be inside a jvp at the same time; real ranks are processes. Serialise the
    # evaluation (it happens before each collective, so the lock never spans a barrier).
    import shortinfer.tuning as tuning_module

    lock = threading.Lock()
    evaluate = tuning_module.objective_and_gradient

    def one_at_a_time(*args, **kwargs):
        with lock:
            return evaluate(*args, **kwargs)

    monkeypatch.setattr(tuning_module, "objective_and_gradient", one_at_a_time)
    group = _ThreadGroup(2)
    calls = [0, 0]
    outcome = [None, None]

    def objective_for(rank):
        def objective(s):
            calls[rank] += 1
            value = (s - 0.05).square().sum()
            if rank == 1 and calls[rank] == 3:  # the other rank's third iteration goes wrong
                if failure == "nan":
                    return value * float("nan")
                if failure == "inf gradient":
                    return value + torch.sqrt(s - s.detach()).sum()  # value finite, slope inf
                raise ChainDivergenceError("the short-run chain diverged (simulated)")
            return value

        return objective

    def run(rank):
        try:
            gradient_search(
                objective_for(rank),
                torch.tensor([[0.1]], dtype=F64),
                num_iterations=10,
                all_reduce=group.all_reduce(rank),
                derivative=derivative,
            )
            outcome[rank] = "finished"
        except Exception as err:  # the test inspects whatever each rank raised
            outcome[rank] = err

    threads = [threading.Thread(target=run, args=(rank,)) for rank in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    healthy, failing = outcome
    assert isinstance(healthy, FloatingPointError), healthy  # not BrokenBarrierError: no hang
    assert "on another process at iteration 2" in str(healthy)
    assert isinstance(failing, FloatingPointError), failing
    if failure == "raises":
        assert isinstance(failing, ChainDivergenceError)
    assert calls == [3, 3]  # both stopped at the same iteration


def test_gradient_search_without_all_reduce_raises_the_objectives_own_error():
    def objective(s):
        raise ChainDivergenceError("diverged")

    with pytest.raises(ChainDivergenceError, match="diverged"):
        gradient_search(objective, torch.tensor([[0.1]], dtype=F64), num_iterations=2)
