r"""Evaluation metrics: reconstruction error and FID with a plain-PyTorch Inception-v3."""

from shortinfer.metrics._frechet import FIDStatistics, feature_statistics, fid, frechet_distance
from shortinfer.metrics._inception import FIDInceptionV3
from shortinfer.metrics._reconstruction import reconstruction_mse
from shortinfer.metrics._weights import load_inception, resolve_inception_weights

__all__ = [
    "FIDInceptionV3",
    "FIDStatistics",
    "feature_statistics",
    "fid",
    "frechet_distance",
    "load_inception",
    "reconstruction_mse",
    "resolve_inception_weights",
]
