"""Tests for shortinfer.models._generator (the paper's multi-layer generator, Table 4)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from shortinfer.models import MultiLayerGenerator

from ._models import (
    LATENT_SIZES,
    random_images,
    single_thread,  # noqa: F401 (an autouse fixture: importing it switches it on here)
    tiny_generator,
)

# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("image_size", [28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("num_layers", [1, 3, 5])
def test_shapes(image_size: int, channels: int, num_layers: int) -> None:
    model = tiny_generator(
        image_size=image_size, channels=channels, num_layers=num_layers, dtype=torch.float32
    )
    sizes = LATENT_SIZES[num_layers]
    expected_keys = [f"z{num_layers - k}" for k in range(num_layers)]
    assert list(model.latent_shapes) == expected_keys
    assert list(model.latent_shapes.values()) == [(s,) for s in sizes]
    z = model.sample_latents(2)
    assert list(z) == expected_keys
    assert [tuple(v.shape) for v in z.values()] == [(2, s) for s in sizes]
    image = model.decode(z)
    assert image.shape == (2, channels, image_size, image_size)
    assert torch.equal(image, model(z))
    assert image.abs().max() <= 1.0
    assert model.log_joint(image.detach(), z).shape == (2,)
    assert model.sample_images(3).shape == (3, channels, image_size, image_size)


def test_intermediate_feature_sizes_follow_table_4() -> None:
    # 32px: projections reach 16x16 with n_f channels (Table 4); 28px -> 14x14; 64px -> 32x32.
    for image_size, feature_size in [(28, 14), (32, 16), (64, 32)]:
        model = MultiLayerGenerator(image_size=image_size, latent_sizes=(4,), num_filters=5)
        features = model.projections[0](torch.zeros(2, 4))
        assert features.shape == (2, 5, feature_size, feature_size)


def test_batch_of_one_and_sample_dimension() -> None:
    model = tiny_generator()
    z = model.sample_latents(3)
    x = random_images(model, 3)
    full = model.log_joint(x, z)
    single = model.log_joint(x[:1], {k: v[:1] for k, v in z.items()})
    assert single.shape == (1,)
    torch.testing.assert_close(single, full[:1])
    # (S, B, d) latents against (B, C, H, W) images give (S, B).
    z_sb = {k: torch.stack([v, v.flip(0)]) for k, v in z.items()}
    values = model.log_joint(x, z_sb)
    assert values.shape == (2, 3)
    torch.testing.assert_close(values[0], full)
    torch.testing.assert_close(values[1], model.log_joint(x, {k: v.flip(0) for k, v in z.items()}))


def test_parameter_counts_of_paper_configurations() -> None:
    # Recorded values for 32px, n_f=64; they change only if the architecture changes.
    table_4 = MultiLayerGenerator(latent_sizes=(32, 64, 128))
    five = MultiLayerGenerator(latent_sizes=(64, 64, 64, 96, 128))
    assert sum(p.numel() for p in table_4.parameters()) == 3_186_883
    assert sum(p.numel() for p in five.parameters()) == 5_833_859


# --------------------------------------------------------------------------- oracles


def reference_decode(model: MultiLayerGenerator, z: dict[str, torch.Tensor]) -> torch.Tensor:
    """The documented architecture, written out with functional ops on the model's weights."""
    n_f, base = model.num_filters, model.image_size // 4

    def project(p: torch.nn.Module, v: torch.Tensor) -> torch.Tensor:
        u = F.linear(v, p.linear.weight, p.linear.bias).reshape(-1, n_f, base, base)
        return F.conv_transpose2d(F.gelu(u), p.deconv.weight, p.deconv.bias, stride=2, padding=1)

    def block(b: torch.nn.Module, u: torch.Tensor) -> torch.Tensor:
        inner = F.conv2d(F.gelu(u), b.conv1.weight, b.conv1.bias, padding=1)
        return u + F.conv2d(F.gelu(inner), b.conv2.weight, b.conv2.bias, padding=1)

    def head(h_mod: torch.nn.Module, u: torch.Tensor) -> torch.Tensor:
        c = F.gelu(F.conv2d(u, h_mod.conv.weight, h_mod.conv.bias, stride=2, padding=1))
        return F.linear(c.flatten(1), h_mod.linear.weight, h_mod.linear.bias)

    num_layers = model.num_layers
    h = block(model.blocks[0], project(model.projections[0], z[f"z{num_layers}"]))
    for k in range(1, num_layers):
        name = f"z{num_layers - k}"
        mu = head(model.mean_heads[k - 1], h)
        sigma = F.softplus(head(model.scale_heads[k - 1], h)) + 1e-3
        z_l = mu + sigma * z[name]
        h = block(model.blocks[k], project(model.projections[k], z_l)) + h  # residual sum
    return torch.tanh(
        F.conv_transpose2d(h, model.output.weight, model.output.bias, stride=2, padding=1)
    )


@pytest.mark.parametrize("num_layers", [1, 3])
def test_decode_matches_written_out_architecture(num_layers: int) -> None:
    model = tiny_generator(num_layers=num_layers, image_size=32, channels=3)
    z = model.sample_latents(2)
    torch.testing.assert_close(model.decode(z), reference_decode(model, z), rtol=0, atol=1e-12)


def test_log_joint_matches_hand_formula() -> None:
    model = tiny_generator(sigma=0.4)
    z = model.sample_latents(3)
    x = random_images(model, 3)
    mean = model.decode(z)
    num_pixels = x[0].numel()
    sigma = 0.4
    log_prior = sum(
        -0.5 * v.square().sum(-1) - 0.5 * v.shape[-1] * math.log(2 * math.pi) for v in z.values()
    )
    log_likelihood = (
        -0.5 * ((x - mean) / sigma).square().flatten(1).sum(-1)
        - num_pixels * math.log(sigma)
        - 0.5 * num_pixels * math.log(2 * math.pi)
    )
    torch.testing.assert_close(model.log_joint(x, z), log_prior + log_likelihood)
    # Annealing sigma by assignment changes the likelihood as the formula says.
    model.sigma = 0.15
    annealed = (
        -0.5 * ((x - mean) / 0.15).square().flatten(1).sum(-1)
        - num_pixels * math.log(0.15)
        - 0.5 * num_pixels * math.log(2 * math.pi)
    )
    torch.testing.assert_close(model.log_joint(x, z), log_prior + annealed)


def test_mask_drops_missing_pixels() -> None:
    model = tiny_generator(channels=3)
    z = model.sample_latents(2)
    x = random_images(model, 2)
    mask = (torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(3)) > 0.5).double()
    changed = x + (1 - mask) * 5.0  # alter only the missing pixels
    torch.testing.assert_close(
        model.log_joint(x, z, mask=mask), model.log_joint(changed, z, mask=mask)
    )
    assert not torch.allclose(model.log_joint(x, z), model.log_joint(changed, z))
    torch.testing.assert_close(
        model.log_joint(x, z, mask=torch.ones_like(x)), model.log_joint(x, z)
    )
    prior_only = sum(
        -0.5 * v.square().sum(-1) - 0.5 * v.shape[-1] * math.log(2 * math.pi) for v in z.values()
    )
    torch.testing.assert_close(model.log_joint(x, z, mask=torch.zeros_like(x)), prior_only)


def test_examples_are_independent() -> None:
    model = tiny_generator(num_layers=5)
    z = model.sample_latents(3)
    x = random_images(model, 3)
    before = model.log_joint(x, z)
    perturbed = {k: torch.cat([v[:1] + 1.0, v[1:]]) for k, v in z.items()}
    x_perturbed = torch.cat([-x[:1], x[1:]])
    after = model.log_joint(x_perturbed, perturbed)
    assert not torch.allclose(after[0], before[0])
    torch.testing.assert_close(after[1:], before[1:], rtol=0, atol=1e-12)
    # The Jacobian of the batched log joint is block diagonal across examples.
    jac = torch.func.jacrev(lambda zz: model.log_joint(x, zz))(z)
    for value in jac.values():  # (B, B, d)
        off_diagonal = value * (1 - torch.eye(3, dtype=value.dtype))[:, :, None]
        assert off_diagonal.abs().max() == 0
        assert value[0, 0].abs().max() > 0


# --------------------------------------------------------------------------- torch.func


# torch's first forward-mode AD call scripts its jvp decompositions with torch.jit.script, which
# torch 2.13 itself flags as deprecated; the warning is torch-internal, not from this model.
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_func_transforms_agree_with_autograd() -> None:
    model = tiny_generator(num_layers=3)
    z = model.sample_latents(2)
    x = random_images(model, 2)
    names = list(model.latent_shapes)
    sizes = [s[0] for s in model.latent_shapes.values()]

    def per_example_flat(flat: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(flat, sizes, dim=-1)
        latents = {n: p[None] for n, p in zip(names, pieces, strict=True)}
        return model.log_joint(image[None], latents)[0]

    flat = torch.cat([z[n] for n in names], dim=-1)  # (B, D)
    for b in range(2):
        expected = torch.autograd.functional.jacobian(
            lambda v, b=b: per_example_flat(v, x[b]), flat[b]
        )
        got = torch.func.jacrev(per_example_flat)(flat[b], x[b])
        torch.testing.assert_close(got, expected)
        # Forward-over-reverse (used by the entropy estimators) against autograd's Hessian.
        hessian = torch.autograd.functional.hessian(
            lambda v, b=b: per_example_flat(v, x[b]), flat[b]
        )
        got_hessian = torch.func.jacfwd(torch.func.grad(per_example_flat))(flat[b], x[b])
        torch.testing.assert_close(got_hessian, hessian)

    # vmap of the per-example function equals the batched call.
    torch.testing.assert_close(torch.func.vmap(per_example_flat)(flat, x), model.log_joint(x, z))
    # grad over the latent dict equals autograd.grad.
    grads = torch.func.grad(lambda zz: model.log_joint(x, zz).sum())(z)
    leaves = {k: v.detach().requires_grad_(True) for k, v in z.items()}
    expected_grads = torch.autograd.grad(model.log_joint(x, leaves).sum(), list(leaves.values()))
    for name, expected in zip(leaves, expected_grads, strict=True):
        torch.testing.assert_close(grads[name], expected)
    # jvp agrees with the Jacobian-vector product.
    tangent = torch.randn(
        flat.shape[-1], dtype=flat.dtype, generator=torch.Generator().manual_seed(5)
    )
    _, jvp_value = torch.func.jvp(lambda v: per_example_flat(v, x[0]), (flat[0],), (tangent,))
    jac0 = torch.autograd.functional.jacobian(lambda v: per_example_flat(v, x[0]), flat[0])
    torch.testing.assert_close(jvp_value, jac0 @ tangent)


def test_vmapped_vjp_over_batch_gives_per_example_gradients() -> None:
    # The library's per-example Jacobian pattern: vmap the vjp of the batched function over
    # one-hot cotangents.
    model = tiny_generator(num_layers=3)
    z = model.sample_latents(3)
    x = random_images(model, 3)
    value, vjp_fn = torch.func.vjp(lambda zz: model.log_joint(x, zz), z)
    rows = torch.func.vmap(vjp_fn)(torch.eye(3, dtype=value.dtype))[0]
    for name, grad in rows.items():
        for b in range(3):
            single = torch.func.grad(
                lambda v, b=b, name=name: model.log_joint(
                    x[b : b + 1], {**{k: w[b : b + 1] for k, w in z.items()}, name: v}
                )[0]
            )(z[name][b : b + 1])
            torch.testing.assert_close(grad[b, b], single[0])


# --------------------------------------------------------------------------- sampling


def test_sampling_is_reproducible_with_a_generator() -> None:
    model = tiny_generator(dtype=torch.float32)
    first = model.sample_latents(2, generator=torch.Generator().manual_seed(7))
    second = model.sample_latents(2, generator=torch.Generator().manual_seed(7))
    for name in first:
        assert torch.equal(first[name], second[name])
    images = model.sample_images(2, generator=torch.Generator().manual_seed(7))
    assert torch.equal(images, model.decode(first))
    assert first["z3"].dtype == torch.float32


# --------------------------------------------------------------------------- config


def test_config_round_trip() -> None:
    model = tiny_generator(num_layers=5, image_size=64, channels=3)
    model.sigma = 0.15
    config = json.loads(json.dumps(model.config))
    rebuilt = MultiLayerGenerator.from_config(config).to(torch.float64)
    assert rebuilt.config == model.config
    assert rebuilt.sigma == 0.15
    rebuilt.load_state_dict(model.state_dict())
    z = model.sample_latents(2)
    torch.testing.assert_close(rebuilt.decode(z), model.decode(z))
    model.check_config({**config, "sigma": 0.3})  # sigma is not architecture
    with pytest.raises(ValueError, match="latent_sizes: checkpoint"):
        model.check_config({**config, "latent_sizes": [2, 2, 3, 3, 5]})
    with pytest.raises(ValueError, match="unknown keys"):
        MultiLayerGenerator.from_config({**config, "depth": 3})


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"image_size": 30}, ValueError, r"image_size must be one of \(28, 32, 64\); received 30"),
        ({"channels": 2}, ValueError, "channels must be 1 .* received 2"),
        ({"latent_sizes": ()}, ValueError, "latent_sizes is empty"),
        ({"latent_sizes": (4, 0)}, ValueError, r"latent_sizes\[1\] must be positive; received 0"),
        ({"latent_sizes": (4.0,)}, TypeError, r"latent_sizes\[0\] must be an int"),
        ({"latent_sizes": "32"}, TypeError, "latent_sizes must be a sequence of ints"),
        ({"num_filters": 0}, ValueError, "num_filters must be positive; received 0"),
        ({"num_filters": 2.5}, TypeError, "num_filters must be an int"),
        ({"sigma": -0.1}, ValueError, "sigma must be a positive finite float; received -0.1"),
        ({"sigma": "0.3"}, TypeError, "sigma must be a positive float"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        MultiLayerGenerator(**kwargs)


def test_constructor_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        MultiLayerGenerator(32)  # type: ignore[misc]


def test_sigma_setter_validates() -> None:
    model = tiny_generator()
    with pytest.raises(ValueError, match="received 0.0"):
        model.sigma = 0.0
    with pytest.raises(ValueError, match="received nan"):
        model.sigma = float("nan")
    model.sigma = torch.tensor(0.2)
    assert model.sigma == pytest.approx(0.2)


def test_log_joint_rejects_bad_inputs() -> None:
    model = tiny_generator()
    z = model.sample_latents(2)
    x = random_images(model, 2)
    with pytest.raises(
        ValueError,
        match=r"x must have shape \(B, C, H, W\) = \(B, 1, 28, 28\); "
        r"received \(2, 3, 28, 28\)",
    ):
        model.log_joint(torch.zeros(2, 3, 28, 28, dtype=torch.float64), z)
    with pytest.raises(ValueError, match=r"received \(28, 28\)"):
        model.log_joint(torch.zeros(28, 28, dtype=torch.float64), z)
    with pytest.raises(TypeError, match="x must be a tensor"):
        model.log_joint(x.numpy(), z)
    with pytest.raises(ValueError, match=r"exactly the keys \['z3', 'z2', 'z1'\]"):
        model.log_joint(x, {k: v for k, v in z.items() if k != "z2"})
    with pytest.raises(ValueError, match=r"z\['z1'\] must have shape \(B, 4\); received \(2, 5\)"):
        model.log_joint(x, {**z, "z1": torch.zeros(2, 5, dtype=torch.float64)})
    with pytest.raises(ValueError, match="share the batch shape"):
        model.log_joint(x, {**z, "z1": torch.zeros(3, 4, dtype=torch.float64)})
    with pytest.raises(
        TypeError,
        match=r"dtype torch.float32 but the model's parameters are "
        r"torch.float64",
    ):
        model.log_joint(x, {k: v.float() for k, v in z.items()})
    with pytest.raises(ValueError, match=r"x with batch shape \(3,\) does not match"):
        model.log_joint(random_images(model, 3), z)
    with pytest.raises(TypeError, match="z must be a dict"):
        model.log_joint(x, torch.zeros(2, 9))
    with pytest.raises(ValueError, match="mask with shape"):
        model.log_joint(x, z, mask=torch.ones(3, 1, 28, 28))
    with pytest.raises(ValueError, match="batch_size must be a positive int; received 0"):
        model.sample_latents(0)
