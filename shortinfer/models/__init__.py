r"""Reference models: the paper's multi-layer generator, the Ladder-VAE baseline, and the
linear-Gaussian model whose short-run posterior is closed-form (the test oracle)."""

from shortinfer.models._generator import IMAGE_SIZES, MultiLayerGenerator, latent_sizes_for
from shortinfer.models._ladder_vae import LadderPosteriorSample, LadderVAE
from shortinfer.models._linear_gaussian import LinearGaussian

__all__ = [
    "IMAGE_SIZES",
    "LadderPosteriorSample",
    "LadderVAE",
    "LinearGaussian",
    "MultiLayerGenerator",
    "latent_sizes_for",
]
