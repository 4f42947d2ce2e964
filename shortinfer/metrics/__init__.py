r"""Evaluation metrics: reconstruction error and FID with a plain-PyTorch Inception-v3."""

from ._weights import load_inception, resolve_inception_weights
from .frechet import FIDStatistics, feature_statistics, fid, frechet_distance
from .inception import FIDInceptionV3
from .reconstruction import reconstruction_mse

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
