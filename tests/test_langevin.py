import pytest
import torch

from shortinfer.langevin import (
    autograd_score,
    delta_from_step_size,
    functional_score,
    langevin_step,
    rollout,
    step_size_from_delta,
)

from ._oracle import make_linear_gaussian


def test_delta_conversion_round_trip():
    for s in (0.001, 0.05, 0.15, 1.0):
        assert step_size_from_delta(delta_from_step_size(s)) == pytest.approx(s, rel=1e-12)


def test_reference_code_update_equals_paper_update():
    # The authors' code: z + delta^2/2 * grad + delta * eps; the paper: z + s grad + sqrt(2s) eps.
    g = torch.Generator().manual_seed(1)
    z, grad, eps = (torch.randn(4, 3, generator=g, dtype=torch.float64) for _ in range(3))
    delta = 0.3
    reference = z + delta**2 / 2 * grad + delta * eps
    s = torch.tensor(step_size_from_delta(delta), dtype=torch.float64)
    paper = langevin_step(lambda _: grad, z, eps, s)
    torch.testing.assert_close(paper, reference)


def test_scores_agree_and_match_closed_form():
    model = make_linear_gaussian()
    x = model.sample_observations(4, generator=torch.Generator().manual_seed(2))
    z = torch.randn(4, 3, dtype=torch.float64)
    log_joint = lambda zz: model.log_joint(x, zz)  # noqa: E731
    expected = -z @ model.precision().T + model._shift(x)
    torch.testing.assert_close(autograd_score(log_joint)(z).detach(), expected.detach())
    torch.testing.assert_close(functional_score(log_joint)(z).detach(), expected.detach())


def test_rollout_is_the_affine_recursion():
    model = make_linear_gaussian()
    x = model.sample_observations(2, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(4)
    z0 = torch.randn(2, 3, generator=g, dtype=torch.float64)
    noise = torch.randn(6, 2, 3, generator=g, dtype=torch.float64)
    steps = torch.tensor([0.01, 0.02, 0.05, 0.1, 0.05, 0.03], dtype=torch.float64)
    score = autograd_score(lambda zz: model.log_joint(x, zz))
    out = rollout(score, z0, noise, steps.unsqueeze(1), trajectory=True)
    a, c = model.precision().detach(), model._shift(x).detach()
    z = z0
    for k, s in enumerate(steps):
        z = z @ (torch.eye(3, dtype=torch.float64) - s * a).T + s * c + (2 * s) ** 0.5 * noise[k]
        torch.testing.assert_close(out[k + 1], z)
    assert out.shape == (7, 2, 3)


def test_autograd_path_keeps_no_graph_between_steps():
    w = torch.randn(3, 3, requires_grad=True)
    score = autograd_score(lambda z: -(z @ w).square().sum(-1))
    z = rollout(score, torch.randn(2, 3), torch.randn(5, 2, 3), torch.full((5, 1), 0.01))
    assert not z.requires_grad


def test_create_graph_path_differentiates_through_steps():
    s = torch.tensor([[0.1]], dtype=torch.float64, requires_grad=True)
    score = autograd_score(lambda z: -0.5 * z.square().sum(-1), create_graph=True)
    z0 = torch.ones(1, 2, dtype=torch.float64)
    z = rollout(score, z0, torch.zeros(3, 1, 2, dtype=torch.float64), s.expand(3, 1))
    (grad,) = torch.autograd.grad(z.sum(), s)
    # z_3 = (1 - s)^3 z0 -> d/ds sum = -3 (1 - s)^2 * 2
    assert float(grad) == pytest.approx(-6 * 0.9**2)
