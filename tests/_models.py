"""Shared tiny models for the generator and Ladder-VAE tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from shortinfer.models import MultiLayerGenerator

LATENT_SIZES = {1: (5,), 3: (2, 3, 4), 5: (2, 2, 3, 3, 4)}


@pytest.fixture(autouse=True, scope="module")
def single_thread() -> Iterator[None]:
    """One torch thread for a whole test module; import it there to switch it on."""
    # The models here are tiny; on a busy shared CPU, intra-op threading costs far more than it
    # saves (observed 50-100x slowdowns with 2 threads under load).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_generator(
    *,
    image_size: int = 28,
    channels: int = 1,
    num_layers: int = 3,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    sigma: float = 0.3,
) -> MultiLayerGenerator:
    """A generator with 3 filters and the latent sizes of `LATENT_SIZES`, seeded."""
    torch.manual_seed(seed)
    model = MultiLayerGenerator(
        image_size=image_size,
        channels=channels,
        latent_sizes=LATENT_SIZES[num_layers],
        num_filters=3,
        sigma=sigma,
    )
    return model.to(dtype)


def random_images(model: MultiLayerGenerator, batch_size: int, seed: int = 1) -> torch.Tensor:
    """Uniform images in [-1, 1] of the model's shape and dtype."""
    generator = torch.Generator().manual_seed(seed)
    shape = (batch_size, model.channels, model.image_size, model.image_size)
    return torch.rand(shape, generator=generator, dtype=model.output.weight.dtype) * 2 - 1
