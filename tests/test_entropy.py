import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from shortinfer.entropy import jacobian, log_abs_det_jacobian
from shortinfer.langevin import autograd_score, rollout

from ._oracle import make_linear_gaussian


@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("per_step", [False, True])
def test_log_det_matches_closed_form(mode, per_step):
    model = make_linear_gaussian(latent_dim=4)
    x = model.sample_observations(3, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    z0 = torch.randn(3, 4, generator=g, dtype=torch.float64)
    noise = torch.randn(7, 3, 4, generator=g, dtype=torch.float64)
    steps = torch.linspace(0.02, 0.1, 7, dtype=torch.float64) if per_step else torch.tensor(0.05)
    table = steps.reshape(-1, 1).expand(7, 1).to(torch.float64)
    z_k, jac = jacobian(lambda z: model.log_joint(x, z), z0, noise, table, mode=mode)
    expected = model.short_run_jacobian(steps, 7).detach()
    torch.testing.assert_close(jac, expected.expand(3, 4, 4), rtol=1e-10, atol=1e-12)
    _, log_det = log_abs_det_jacobian(lambda z: model.log_joint(x, z), z0, noise, table, mode=mode)
    closed = torch.linalg.slogdet(expected).logabsdet
    torch.testing.assert_close(log_det, closed.expand(3), rtol=1e-10, atol=1e-10)
    score = autograd_score(lambda z: model.log_joint(x, z))
    torch.testing.assert_close(z_k, rollout(score, z0, noise, table))


def _mlp_log_joint(seed: int, latent_dim: int):
    g = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(latent_dim, 16), torch.nn.Tanh(), torch.nn.Linear(16, 6)
    ).double()
    for p in net.parameters():
        p.data = torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5
    x = torch.randn(2, 6, generator=g, dtype=torch.float64)

    def log_joint(z):
        return -0.5 * z.square().sum(-1) - 0.5 * (x - net(z)).square().sum(-1) / 0.5**2

    return log_joint


@settings(max_examples=10, deadline=None)
@given(
    seed=st.integers(0, 1000),
    latent_dim=st.integers(1, 5),
    num_steps=st.integers(1, 6),
    step=st.floats(0.005, 0.08),
    chunk=st.sampled_from([None, 1, 2]),
)
def test_func_log_det_matches_autograd_functional_jacobian(
    seed, latent_dim, num_steps, step, chunk
):
    log_joint = _mlp_log_joint(seed, latent_dim)
    g = torch.Generator().manual_seed(seed + 1)
    z0 = torch.randn(2, latent_dim, generator=g, dtype=torch.float64)
    noise = torch.randn(num_steps, 2, latent_dim, generator=g, dtype=torch.float64)
    table = torch.full((num_steps, 1), step, dtype=torch.float64)
    score = autograd_score(log_joint, create_graph=True)
    reference = []
    for b in range(2):

        def one(z, b=b):
            full = z0.clone()
            full = torch.cat([full[:b], z.unsqueeze(0), full[b + 1 :]])
            return rollout(score, full, noise, table)[b]

        reference.append(torch.autograd.functional.jacobian(one, z0[b]))
    reference = torch.stack(reference)
    for mode in ("reverse", "forward"):
        _, jac = jacobian(log_joint, z0, noise, table, mode=mode, chunk_size=chunk)
        torch.testing.assert_close(jac, reference, rtol=1e-8, atol=1e-10)
        _, log_det = log_abs_det_jacobian(log_joint, z0, noise, table, mode=mode)
        torch.testing.assert_close(log_det, torch.linalg.slogdet(reference).logabsdet)


def test_log_det_is_differentiable_in_step_size():
    model = make_linear_gaussian(latent_dim=3)
    x = model.sample_observations(2, generator=torch.Generator().manual_seed(0))
    s = torch.tensor(0.05, dtype=torch.float64, requires_grad=True)
    z0, noise = torch.randn(2, 3, dtype=torch.float64), torch.randn(5, 2, 3, dtype=torch.float64)
    _, log_det = log_abs_det_jacobian(
        lambda z: model.log_joint(x, z), z0, noise, s.reshape(1, 1).expand(5, 1)
    )
    (grad,) = torch.autograd.grad(log_det.sum(), s)
    eig = torch.linalg.eigvalsh(model.precision().detach())
    # d/ds [K sum log|1 - s a_i|] = -K sum a_i / (1 - s a_i), per example
    expected = 2 * (-5 * (eig / (1 - 0.05 * eig)).sum())
    assert float(grad) == pytest.approx(float(expected), rel=1e-8)


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="mode must be 'reverse' or 'forward'"):
        jacobian(
            lambda z: -z.square().sum(-1),
            torch.zeros(1, 2),
            torch.zeros(1, 1, 2),
            torch.full((1, 1), 0.1),
            mode="sideways",
        )
