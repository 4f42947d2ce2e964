"""Shared fixtures for the linear-Gaussian oracle tests."""

from __future__ import annotations

import torch

from shortinfer.models._linear_gaussian import LinearGaussian


def make_linear_gaussian(
    latent_dim: int = 3,
    obs_dim: int = 5,
    sigma: float = 0.7,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> LinearGaussian:
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(obs_dim, latent_dim, generator=g, dtype=torch.float64) / obs_dim**0.5
    bias = torch.randn(obs_dim, generator=g, dtype=torch.float64)
    return LinearGaussian(weight, bias, sigma).to(device=device, dtype=dtype)
