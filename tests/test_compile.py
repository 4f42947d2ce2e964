"""``short_run(..., compile=...)``: same chains as eager, the cache, the fallbacks, the errors."""

from __future__ import annotations

import pytest
import torch

from shortinfer import short_run
from shortinfer._checks import ChainDivergenceError
from shortinfer._compile import check_compile, clear_cache, compile_available
from shortinfer.models import MultiLayerGenerator
from tests._models import random_images, single_thread  # noqa: F401

AVAILABLE, REASON = compile_available("cpu")
needs_compile = pytest.mark.skipif(not AVAILABLE, reason=f"torch.compile: {REASON}")


def _linear_gaussian(dtype: torch.dtype, device: torch.device):
    """x = A z + noise with z ~ N(0, I): the chain is affine, every step a few matmuls."""
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(5, 3, generator=generator, dtype=dtype).to(device)
    x = torch.randn(4, 5, generator=generator, dtype=dtype).to(device)

    def log_joint(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return -0.5 * z.square().sum(-1) - 0.5 * (x - z @ weight.T).square().sum(-1) / 0.5**2

    return log_joint, x


def test_check_compile_values() -> None:
    assert check_compile(False) is None
    assert check_compile(True) == "default"
    assert check_compile("max-autotune") == "max-autotune"


def test_check_compile_errors() -> None:
    with pytest.raises(ValueError, match="not a torch.compile mode.*reduce-overhead"):
        check_compile("fast")
    with pytest.raises(TypeError, match="compile must be False, True or a torch.compile mode"):
        check_compile(1)
    log_joint, x = _linear_gaussian(torch.float64, torch.device("cpu"))
    with pytest.raises(ValueError, match="compile='turbo'"):
        short_run(log_joint, x, latent_shape=(3,), compile="turbo")  # type: ignore[arg-type]


@needs_compile
def test_compiled_chain_matches_eager_linear_gaussian(device: torch.device) -> None:
    log_joint, x = _linear_gaussian(torch.float64, device)
    samples = {}
    for option in (False, True):
        post = short_run(
            log_joint,
            x,
            latent_shape=(3,),
            num_steps=10,
            step_size=0.05,
            generator=torch.Generator(device).manual_seed(0),
            compile=option,
        )
        samples[option] = post.sample((3,))
    assert samples[True].shape == (3, 4, 3)
    torch.testing.assert_close(samples[True], samples[False], rtol=1e-12, atol=1e-12)
    # A different seed gives different chains: the comparison above can fail.
    other = short_run(
        log_joint,
        x,
        latent_shape=(3,),
        num_steps=10,
        step_size=0.05,
        generator=torch.Generator(device).manual_seed(1),
        compile=True,
    ).sample((3,))
    assert (other - samples[False]).abs().max() > 1e-3


@needs_compile
@pytest.mark.slow
def test_compiled_chain_matches_eager_generator(device: torch.device) -> None:
    torch.manual_seed(0)
    model = MultiLayerGenerator(image_size=28, channels=1, latent_sizes=(2, 4), num_filters=4)
    model = model.to(device).requires_grad_(False)
    x = random_images(model, 6).to(device)
    samples = {}
    for option in (False, True):
        post = short_run(
            model.log_joint,
            x,
            latent_shape=model.latent_shapes,
            num_steps=5,
            step_size=0.01,
            generator=torch.Generator(device).manual_seed(0),
            compile=option,
        )
        samples[option] = post.sample()
    for name in model.latent_shapes:
        # float32: the compiled graph fuses the elementwise work differently from eager.
        torch.testing.assert_close(samples[True][name], samples[False][name], rtol=1e-5, atol=1e-5)


@needs_compile
def test_cache_reuses_the_compiled_step() -> None:
    from shortinfer import _compile

    clear_cache()
    log_joint, x = _linear_gaussian(torch.float64, torch.device("cpu"))
    for batch in (4, 4, 2, 3):  # the third size runs the shape-generic graph of the second
        post = short_run(log_joint, x[:batch], latent_shape=(3,), num_steps=3, compile=True)
        post.sample()
    assert len(_compile._CACHE[log_joint]) == 1
    short_run(log_joint, x, latent_shape=(3,), num_steps=3, compile="max-autotune")
    assert len(_compile._CACHE[log_joint]) == 1  # built on first sample, not at construction


@needs_compile
def test_compiled_chain_reports_divergence() -> None:
    log_joint, x = _linear_gaussian(torch.float64, torch.device("cpu"))
    post = short_run(log_joint, x, latent_shape=(3,), num_steps=40, step_size=5.0, compile=True)
    with pytest.raises(ChainDivergenceError, match="the short-run chain diverged"):
        post.sample()


def test_compile_leaves_differentiable_paths_eager() -> None:
    """rsample and entropy ignore compile=..., so they return exactly the eager values."""
    log_joint, x = _linear_gaussian(torch.float64, torch.device("cpu"))
    values = []
    for option in (False, True):
        post = short_run(
            log_joint,
            x,
            latent_shape=(3,),
            num_steps=5,
            step_size=0.05,
            generator=torch.Generator().manual_seed(0),
            compile=option,
        )
        values.append((post.rsample(), post.entropy()))
    assert torch.equal(values[0][0], values[1][0])
    assert torch.equal(values[0][1], values[1][1])


@needs_compile
@pytest.mark.slow
def test_trainer_compile_matches_eager_and_sigma_does_not_recompile_each_update() -> None:
    import torch._dynamo.utils as dynamo_utils

    from shortinfer.train import Trainer

    images = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    results = {}
    for option in (False, True):
        torch.manual_seed(0)
        model = MultiLayerGenerator(image_size=28, channels=1, latent_sizes=(2,), num_filters=2)
        trainer = Trainer(
            model,
            images,
            num_iterations=6,  # sigma changes at every update (SigmaSchedule's ramp)
            batch_size=4,
            num_steps=3,
            step_size=0.01,
            tuning=None,
            compile=option,
        )
        graphs = dynamo_utils.counters["stats"]["unique_graphs"]
        trainer.fit()
        results[option] = (model.state_dict(), dynamo_utils.counters["stats"]["unique_graphs"])
        if option:
            # The forward graph compiles once, then at most twice more as sigma starts to move
            # (dynamo makes it a graph input), plus the update: never once per update.
            assert results[True][1] - graphs <= 4
    for name, value in results[False][0].items():
        torch.testing.assert_close(results[True][0][name], value, rtol=1e-4, atol=1e-5)


def test_cli_compile_option() -> None:
    from shortinfer.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["train"]).compile is False
    assert parser.parse_args(["train", "--compile"]).compile == "default"
    assert parser.parse_args(["demo", "--compile", "reduce-overhead"]).compile == "reduce-overhead"
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--compile", "fastest"])


def test_trainer_rejects_bad_compile() -> None:
    from shortinfer.train import Trainer

    model = MultiLayerGenerator(image_size=28, channels=1, latent_sizes=(2,), num_filters=2)
    with pytest.raises(ValueError, match="not a torch.compile mode"):
        Trainer(model, torch.zeros(4, 1, 28, 28), num_iterations=1, batch_size=2, compile="x")
