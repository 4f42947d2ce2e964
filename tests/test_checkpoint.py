"""Tests for shortinfer.train.checkpoint: atomic writes, weights-only loads, config checks."""

import os
import pickle
import random

import numpy as np
import pytest
import torch

from shortinfer.models import MultiLayerGenerator
from shortinfer.train.checkpoint import (
    CHECKPOINT_FORMAT,
    LATEST_NAME,
    CheckpointError,
    check_model_compatible,
    load_checkpoint,
    resolve_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


def _state(**extra):
    return {"format": CHECKPOINT_FORMAT, "weights": torch.arange(3.0), **extra}


def test_round_trip_of_nested_plain_values(tmp_path):
    state = _state(
        nested={"a": [1, 2.5, None, "x"], "b": (torch.ones(2, 2), {"c": True})},
        step_size={"z2": 0.05, "z1": torch.tensor([0.1, 0.2])},
    )
    path = save_checkpoint(state, tmp_path / "ck.pt")
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["weights"], state["weights"])
    assert loaded["nested"]["a"] == [1, 2.5, None, "x"]
    assert torch.equal(loaded["nested"]["b"][0], torch.ones(2, 2))
    assert torch.equal(loaded["step_size"]["z1"], torch.tensor([0.1, 0.2]))
    # And the file really loads under the strictest setting.
    assert torch.load(path, weights_only=True)["format"] == CHECKPOINT_FORMAT


def test_folder_means_latest_pt(tmp_path):
    path = save_checkpoint(_state(), tmp_path)
    assert path == tmp_path / LATEST_NAME
    assert resolve_checkpoint(tmp_path) == path
    assert load_checkpoint(tmp_path)["format"] == CHECKPOINT_FORMAT


def test_refuses_objects_that_weights_only_cannot_load(tmp_path):
    class Thing:
        pass

    with pytest.raises(TypeError, match=r"state\['extra'\]\['thing'\] is a Thing"):
        save_checkpoint(_state(extra={"thing": Thing()}), tmp_path / "ck.pt")
    assert not list(tmp_path.iterdir())


def test_failed_write_keeps_previous_checkpoint_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = save_checkpoint(_state(), tmp_path / "ck.pt")
    before = path.read_bytes()

    def broken_save(obj, stream):
        stream.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(_state(weights=torch.zeros(3)), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]


def test_missing_checkpoint_error_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*latest.pt"):
        load_checkpoint(tmp_path)


def test_truncated_file_gives_checkpoint_error(tmp_path):
    path = save_checkpoint(_state(), tmp_path / "ck.pt")
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(path)


class _Evil:
    def __reduce__(self):
        return (os.getcwd, ())


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as stream:
        torch.save({"format": CHECKPOINT_FORMAT, "payload": _Evil()}, stream)
    with pytest.raises(CheckpointError, match="pickled objects"):
        load_checkpoint(path)
    # A plain pickle (not a torch.save zip) is refused too.
    other = tmp_path / "plain.pkl"
    other.write_bytes(pickle.dumps({"format": CHECKPOINT_FORMAT}))
    with pytest.raises(CheckpointError):
        load_checkpoint(other)


def test_other_format_is_refused(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.ones(1)}, path)
    with pytest.raises(CheckpointError, match="not a shortinfer training checkpoint"):
        load_checkpoint(path)


def _generator(**kwargs):
    options = {"image_size": 28, "channels": 1, "latent_sizes": (4, 8), "num_filters": 4}
    options.update(kwargs)
    return MultiLayerGenerator(**options)


def test_config_mismatch_names_each_key():
    stored = _generator()
    checkpoint = {"model_config": stored.config, "model_state": stored.state_dict()}
    other = _generator(num_filters=8, latent_sizes=(4, 6))
    with pytest.raises(CheckpointError) as info:
        check_model_compatible(checkpoint, other)
    message = str(info.value)
    assert "num_filters: checkpoint 4 vs model 8" in message
    assert "latent_sizes: checkpoint [4, 8] vs model [4, 6]" in message
    assert "image_size" not in message


def test_sigma_difference_is_not_a_mismatch():
    model = _generator()
    config = {**model.config, "sigma": 0.15}
    checkpoint = {"model_config": config, "model_state": model.state_dict()}
    check_model_compatible(checkpoint, model)  # no error


def test_shape_mismatch_without_config_names_parameters():
    checkpoint = {"model_state": torch.nn.Linear(2, 4).state_dict()}
    message = r"weight: checkpoint shape \(4, 2\) vs model \(3, 2\)"
    with pytest.raises(CheckpointError, match=message):
        check_model_compatible(checkpoint, torch.nn.Linear(2, 3))
    missing = {"model_state": {"weight": torch.zeros(3, 2)}}
    with pytest.raises(CheckpointError, match=r"missing parameters \['bias'\]"):
        check_model_compatible(missing, torch.nn.Linear(2, 3))


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    path = save_checkpoint(_state(rng=rng_state()), tmp_path / "ck.pt")
    expected = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    set_rng_state(load_checkpoint(path)["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert [random.random() for _ in range(3)] == expected[2]
