r"""Reference models: the paper's multi-layer generator, the Ladder-VAE baseline, and the
linear-Gaussian model whose short-run posterior is closed-form (the test oracle)."""

from shortinfer.models.generator import MultiLayerGenerator, latent_sizes_for
from shortinfer.models.ladder_vae import LadderPosteriorSample, LadderVAE
from shortinfer.models.linear_gaussian import LinearGaussian

__all__ = [
    "LadderPosteriorSample",
    "LadderVAE",
    "LinearGaussian",
    "MultiLayerGenerator",
    "latent_sizes_for",
]
