r"""Fréchet Inception Distance: feature statistics and the distance itself.

FID compares two image sets through the Gaussian fitted to their Inception pool3 features
(`shortinfer.metrics.FIDInceptionV3`):

$$
\mathrm{FID} = \lVert \mu_1 - \mu_2 \rVert_2^2
+ \operatorname{tr}\!\Big(\Sigma_1 + \Sigma_2
- 2 \big(\Sigma_1^{1/2} \Sigma_2 \Sigma_1^{1/2}\big)^{1/2}\Big).
$$

The Inception weights are found and loaded by `load_inception`
(`shortinfer.metrics._weights`); nothing is downloaded.

References:
    GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium
    (Heusel et al., 2017) https://arxiv.org/abs/1706.08500
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from shortinfer._checks import ArgumentError, ArgumentTypeError
from shortinfer.metrics._weights import load_inception

__all__ = [
    "FIDStatistics",
    "feature_statistics",
    "fid",
    "frechet_distance",
]

# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------


class FIDStatistics(NamedTuple):
    r"""Mean and covariance of Inception features, the sufficient statistics of FID.

    Saved as ``.npz`` with the keys ``mu`` and ``sigma`` used by pytorch-fid's precomputed
    statistics, plus ``num_images``, and read back without pickle.

    Attributes:
        mu: Feature mean $\mu$, float64 with shape ``(D,)``.
        sigma: Unbiased feature covariance $\Sigma$, float64 with shape ``(D, D)``.
        num_images: How many images the statistics summarize (0 when unknown, e.g. for a
            pytorch-fid ``.npz``).

    Examples:
        >>> import tempfile
        >>> stats = FIDStatistics(torch.zeros(3), torch.eye(3), 10)
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     stats.save(Path(folder) / "stats.npz")
        ...     FIDStatistics.load(Path(folder) / "stats.npz").num_images
        10
    """

    mu: Tensor
    sigma: Tensor
    num_images: int

    def save(self, path: str | os.PathLike[str]) -> None:
        r"""Write the statistics to ``path`` as an uncompressed ``.npz`` file.

        Arguments:
            path: Destination file; written exactly as named (no suffix is added).
        """
        with Path(path).open("wb") as stream:
            np.savez(
                stream,
                mu=self.mu.detach().cpu().to(torch.float64).numpy(),
                sigma=self.sigma.detach().cpu().to(torch.float64).numpy(),
                num_images=np.int64(self.num_images),
            )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FIDStatistics:
        r"""Read statistics saved by `save` or by pytorch-fid.

        Arguments:
            path: An ``.npz`` file with arrays ``mu`` (D,) and ``sigma`` (D, D).

        Returns:
            The statistics, as float64 tensors on the CPU.

        Raises:
            ValueError: If ``mu`` or ``sigma`` is missing or their shapes disagree.
        """
        with np.load(Path(path), allow_pickle=False) as data:
            if "mu" not in data or "sigma" not in data:
                raise ArgumentError(
                    f"{path} holds arrays {sorted(data.files)}; expected 'mu' and 'sigma'. "
                    "Create the file with FIDStatistics.save or pytorch-fid's --save-stats."
                )
            mu = torch.from_numpy(np.asarray(data["mu"], dtype=np.float64))
            sigma = torch.from_numpy(np.asarray(data["sigma"], dtype=np.float64))
            num_images = int(data["num_images"]) if "num_images" in data else 0
        _check_moments(mu, sigma, "mu", "sigma")
        return cls(mu, sigma, num_images)


def _batches(images: Tensor | Iterable[Tensor], batch_size: int) -> Iterator[Tensor]:
    if isinstance(images, Tensor):
        if images.dim() != 4:
            raise ArgumentError(
                f"images must have shape (N, C, H, W); received shape {tuple(images.shape)}. "
                "Add a batch dimension with images.unsqueeze(0) for a single image."
            )
        yield from images.split(batch_size)
    else:
        for batch in images:
            if not isinstance(batch, Tensor) or batch.dim() != 4:
                shape = tuple(batch.shape) if isinstance(batch, Tensor) else type(batch).__name__
                raise ArgumentError(
                    f"each batch of images must be a tensor with shape (N, C, H, W); received "
                    f"{shape}. Yield image tensors only (e.g. drop labels from the loader)."
                )
            yield batch


def _check_pixels(batch: Tensor) -> None:
    if not batch.is_floating_point():
        raise ArgumentTypeError(
            f"images must be floating point on the [-1, 1] scale; received dtype {batch.dtype}. "
            "Convert 8-bit pixels with images.float() / 127.5 - 1."
        )
    if batch.numel() and batch.abs().amax() > 2:
        low, high = batch.aminmax()
        raise ArgumentError(
            f"images must be on the [-1, 1] scale; received values in [{low.item():.3g}, "
            f"{high.item():.3g}]. Rescale [0, 255] images with x / 127.5 - 1 and [0, 1] images "
            "with 2 * x - 1."
        )


def feature_statistics(
    images: Tensor | Iterable[Tensor],
    model: nn.Module,
    *,
    batch_size: int = 50,
) -> FIDStatistics:
    r"""Mean and covariance of the features ``model`` assigns to a set of images.

    With features $f_n = f(\mathrm{clamp}(x_n, -1, 1)) \in \mathbb{R}^D$,

    $$
    \mu = \frac{1}{N} \sum_n f_n, \qquad
    \Sigma = \frac{1}{N - 1} \sum_n (f_n - \mu)(f_n - \mu)^\top,
    $$

    accumulated in float64 in one pass (shifted by the first batch's mean to avoid
    cancellation), so the images never need to fit in memory at once. Pixels are clamped to
    $[-1, 1]$, as saving them to an image file would.

    Arguments:
        images: Images on the $[-1, 1]$ scale, with shape ``(N, C, H, W)`` and ``C`` in
            {1, 3}, or an iterable of such batches (for example a data loader yielding image
            tensors).
        model: Feature network mapping ``(n, C, H, W)`` to ``(n, D)``, e.g. from
            `load_inception`; used as it is, so put it in eval mode. Batches are moved
            to the device of its parameters (the CPU if it has none).
        batch_size: Images per forward pass when ``images`` is a tensor.

    Returns:
        The statistics, with ``mu`` of shape ``(D,)`` and ``sigma`` of shape ``(D, D)``
        (float64, CPU).

    Raises:
        ValueError: If ``batch_size`` is not positive, the images are not 4-d, not on the
            $[-1, 1]$ scale (values beyond $\pm 2$), or fewer than 2.
        TypeError: If the images are not floating point.

    Examples:
        Any feature map works; FID uses ``load_inception()``, which gives ``D = 2048``.

        >>> images = torch.rand(10, 3, 4, 4) * 2 - 1
        >>> stats = feature_statistics(images, nn.Flatten(), batch_size=4)
        >>> stats.mu.shape, stats.sigma.shape, stats.num_images
        (torch.Size([48]), torch.Size([48, 48]), 10)
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ArgumentError(
            f"batch_size must be a positive integer; received {batch_size!r}. Try 50."
        )
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    count = 0
    shift = total = outer = None
    with torch.inference_mode():
        for batch in _batches(images, batch_size):
            _check_pixels(batch)
            features = model(batch.to(device).clamp(-1, 1)).to(torch.float64)
            if shift is None:
                shift = features.mean(dim=0)
                total = torch.zeros_like(shift)
                outer = torch.zeros(
                    shift.numel(), shift.numel(), dtype=torch.float64, device=device
                )
            centered = features - shift
            total += centered.sum(dim=0)
            outer += centered.T @ centered
            count += features.shape[0]
    if count < 2 or shift is None or total is None or outer is None:
        raise ArgumentError(
            f"FID statistics need at least 2 images to estimate a covariance; received {count}. "
            "Use thousands of images for a meaningful FID (10,000 or 50,000 are customary)."
        )
    mean_shift = total / count
    mu = shift + mean_shift
    sigma = (outer - count * torch.outer(mean_shift, mean_shift)) / (count - 1)
    sigma = (sigma + sigma.T) / 2
    return FIDStatistics(mu.cpu(), sigma.cpu(), count)


# --------------------------------------------------------------------------------------------
# Distance
# --------------------------------------------------------------------------------------------


def _check_moments(mu: Tensor, sigma: Tensor, mu_name: str, sigma_name: str) -> None:
    if mu.dim() != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ArgumentError(
            f"{mu_name} must have shape (D,) and {sigma_name} shape (D, D); received "
            f"{tuple(mu.shape)} and {tuple(sigma.shape)}. Pass a mean vector and its "
            "covariance matrix, e.g. the fields of FIDStatistics."
        )
    if not (torch.isfinite(mu).all() and torch.isfinite(sigma).all()):
        raise ArgumentError(
            f"{mu_name} and {sigma_name} must be finite; received NaN or infinite entries. "
            "Check the images and the feature network for NaNs."
        )


def _symmetric_sqrt(matrix: Tensor) -> Tensor:
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    # Round-off makes tiny eigenvalues of a PSD matrix slightly negative; they are zero.
    return (eigenvectors * eigenvalues.clamp_min(0).sqrt()) @ eigenvectors.T


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> Tensor:
    r"""Fréchet (2-Wasserstein) distance squared between two Gaussians.

    $$
    d^2 = \lVert \mu_1 - \mu_2 \rVert_2^2
    + \operatorname{tr}\!\Big(\Sigma_1 + \Sigma_2
    - 2 \big(\Sigma_1^{1/2} \Sigma_2 \Sigma_1^{1/2}\big)^{1/2}\Big)
    $$

    computed in float64. $\Sigma_1^{1/2}$ comes from an eigen-decomposition of the
    symmetrized $\Sigma_1$, and the trace term is $\sum_i \sqrt{\lambda_i}$ over
    the eigenvalues of the symmetric matrix $\Sigma_1^{1/2} \Sigma_2 \Sigma_1^{1/2}$
    (which equals $\operatorname{tr}(\Sigma_1 \Sigma_2)^{1/2}$, the form in the FID
    paper). Eigenvalues that round-off pushes below zero are set to zero, which keeps the
    result stable for singular covariances (fewer images than feature dimensions), and the
    result is clamped at zero.

    Arguments:
        mu1: Mean $\mu_1$, with shape ``(D,)`` (tensor or array).
        sigma1: Covariance $\Sigma_1$, symmetric positive semi-definite with shape
            ``(D, D)``.
        mu2: Mean $\mu_2$, with shape ``(D,)``.
        sigma2: Covariance $\Sigma_2$, with shape ``(D, D)``.

    Returns:
        The distance $d^2$ as a 0-dimensional float64 tensor.

    Raises:
        ValueError: If the shapes disagree or an entry is not finite.

    Examples:
        >>> frechet_distance(torch.zeros(2), torch.eye(2), torch.ones(2), 4 * torch.eye(2))
        tensor(4., dtype=torch.float64)
    """
    mu1, sigma1, mu2, sigma2 = (
        torch.as_tensor(value).to(torch.float64) for value in (mu1, sigma1, mu2, sigma2)
    )
    _check_moments(mu1, sigma1, "mu1", "sigma1")
    _check_moments(mu2, sigma2, "mu2", "sigma2")
    if mu1.shape != mu2.shape:
        raise ArgumentError(
            f"mu1 and mu2 must have the same dimension; received {tuple(mu1.shape)} and "
            f"{tuple(mu2.shape)}. Compute both statistics with the same feature network."
        )
    sigma1 = (sigma1 + sigma1.T) / 2
    sigma2 = (sigma2 + sigma2.T) / 2
    root1 = _symmetric_sqrt(sigma1)
    product = root1 @ sigma2 @ root1
    eigenvalues = torch.linalg.eigvalsh((product + product.T) / 2).clamp_min(0)
    difference = mu1 - mu2
    distance = (
        difference.dot(difference) + sigma1.trace() + sigma2.trace() - 2 * eigenvalues.sqrt().sum()
    )
    return distance.clamp_min(0)


def fid(
    images_a: Tensor | Iterable[Tensor] | FIDStatistics,
    images_b: Tensor | Iterable[Tensor] | FIDStatistics,
    *,
    weights: str | os.PathLike[str] | None = None,
    model: nn.Module | None = None,
    batch_size: int = 50,
    device: torch.device | str | None = None,
) -> float:
    r"""Fréchet Inception Distance between two image sets.

    $$
    \mathrm{FID}(a, b) = \lVert \mu_a - \mu_b \rVert_2^2
    + \operatorname{tr}\!\Big(\Sigma_a + \Sigma_b
    - 2 \big(\Sigma_a^{1/2} \Sigma_b \Sigma_a^{1/2}\big)^{1/2}\Big)
    $$

    where $(\mu, \Sigma)$ are the mean and covariance of the 2048-d pool3 features of
    the TF Inception-v3 (`feature_statistics`, `frechet_distance`). Images are
    resized to 299×299 bilinearly; 1-channel images are repeated to 3 channels. FID is biased
    upward for small sets, so compare values computed from the same number of images.

    Arguments:
        images_a: First set: images on the $[-1, 1]$ scale with shape ``(N, C, H, W)``,
            an iterable of such batches, or precomputed `FIDStatistics`.
        images_b: Second set, in the same forms.
        weights: Optional weight file for `load_inception`; ignored when ``model`` is
            given.
        model: Optional ready feature network (saves reloading the weights on every call).
        batch_size: Images per forward pass.
        device: Device for the network. By default the device of ``model``, else that of
            ``images_a`` when it is a tensor, else the CPU.

    Returns:
        The FID, a non-negative float.

    Raises:
        FileNotFoundError: If no Inception weights are found (see
            `resolve_inception_weights`).
        ValueError: If the images are malformed or fewer than 2 per set.

    Examples:
        With trained weights installed, ``fid(generated, real)`` is the whole call. Cached
        statistics work without a network:

        >>> real = FIDStatistics(torch.zeros(2), torch.eye(2), 1000)
        >>> fake = FIDStatistics(torch.ones(2), torch.eye(2), 1000)
        >>> fid(fake, real)
        2.0
    """
    needs_model = not all(isinstance(images, FIDStatistics) for images in (images_a, images_b))
    if needs_model and model is None:
        if device is None and isinstance(images_a, Tensor):
            device = images_a.device
        model = load_inception(weights, device=device)
    elif needs_model and model is not None and device is not None:
        model = model.to(device)
    statistics = [
        images
        if isinstance(images, FIDStatistics)
        else feature_statistics(images, model, batch_size=batch_size)  # type: ignore[arg-type]
        for images in (images_a, images_b)
    ]
    return float(
        frechet_distance(
            statistics[0].mu, statistics[0].sigma, statistics[1].mu, statistics[1].sigma
        )
    )
