"""Tests for shortinfer.train._checkpoint: atomic writes, weights-only loads, config checks."""

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from shortinfer.models import MultiLayerGenerator

# The module's public names, listed like the trainer's import of them: nothing to share.
from shortinfer.train._checkpoint import (
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

REPO = Path(__file__).resolve().parents[1]


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


# -- resuming after SIGKILL -----------------------------------------------------------------

_SCRIPT = textwrap.dedent(
    """
    import sys, time, torch
    torch.set_num_threads(1)
    from shortinfer.models import MultiLayerGenerator
    from shortinfer.train import StepSizeTuning, Trainer

    class SlowTrainer(Trainer):
        def step(self):
            metrics = super().step()
            time.sleep(float(sys.argv[2]))  # leaves time to be killed mid-run
            return metrics

    torch.manual_seed(int(sys.argv[3]))
    model = MultiLayerGenerator(image_size=28, channels=1, latent_sizes=(2, 3), num_filters=4)
    images = torch.tanh(2 * torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    trainer = SlowTrainer(
        model, images, num_iterations=10, batch_size=4, num_steps=3, step_size=0.02,
        tuning=StepSizeTuning(interval=4, grid=(0.01, 0.02), batch_size=2), learning_rate=1e-3,
        output_dir=sys.argv[1], checkpoint_interval=3, log_interval=1, progress=False,
    )
    trainer.fit(resume=True)
    """
)


def _run_script(script, *args):
    return subprocess.Popen(
        [sys.executable, str(script), *map(str, args)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_sigkill_then_resume_gives_the_uninterrupted_parameters(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(_SCRIPT)
    straight_dir, killed_dir = tmp_path / "straight", tmp_path / "killed"
    straight = _run_script(script, straight_dir, 0, 0)
    killed = _run_script(script, killed_dir, 0.25, 0)
    checkpoint = killed_dir / "latest.pt"
    deadline = time.monotonic() + 60
    while not checkpoint.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(killed.pid, signal.SIGKILL)
    killed.communicate()
    assert killed.returncode == -signal.SIGKILL
    stopped_at = load_checkpoint(checkpoint)["iteration"]
    assert 3 <= stopped_at < 10
    resumed = _run_script(script, killed_dir, 0, 7)  # another init: the checkpoint must win
    for process in (straight, resumed):
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err.decode()
    a, b = load_checkpoint(straight_dir), load_checkpoint(killed_dir)
    assert a["iteration"] == b["iteration"] == 10
    for key, value in a["model_state"].items():
        assert torch.equal(value, b["model_state"][key]), key
    assert a["step_size"] == b["step_size"]
    assert a["step_size_history"] == b["step_size_history"]
    rows_a, rows_b = (
        [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        for folder in (straight_dir, killed_dir)
    )
    assert [r["iteration"] for r in rows_b] == list(range(1, 11))
    assert [r["loss"] for r in rows_a] == [r["loss"] for r in rows_b]


# -- issue 12: hostile files, concurrent runs, kills mid-write -------------------------------

_TRAIN = textwrap.dedent(
    """
    import os, signal, sys, torch
    torch.set_num_threads(1)
    import shortinfer.train._checkpoint as checkpoint
    from shortinfer.models import MultiLayerGenerator
    from shortinfer.train import StepSizeTuning, Trainer

    kill_at = int(sys.argv[2])  # the checkpoint write (1, 2, ...) to die in; 0: none
    writes = []
    original = checkpoint.atomic_write

    def dying_write(path, write):
        writes.append(path)
        if len(writes) != kill_at:
            return original(path, write)

        def half_then_die(stream):
            stream.write(b"PK\\x03\\x04 half a checkpoint")
            stream.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        return original(path, half_then_die)

    checkpoint.atomic_write = dying_write
    torch.manual_seed(0)
    model = MultiLayerGenerator(image_size=28, channels=1, latent_sizes=(2, 3), num_filters=4)
    images = torch.tanh(2 * torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    trainer = Trainer(
        model, images, num_iterations=8, batch_size=4, num_steps=3, step_size=0.02,
        tuning=StepSizeTuning(interval=4, grid=(0.01, 0.02), batch_size=2), learning_rate=1e-3,
        output_dir=sys.argv[1], checkpoint_interval=2, log_interval=1, progress=False,
    )
    trainer.fit(resume=True)
    """
)


def _tiny_trainer(output_dir, **kwargs):
    from shortinfer.train import Trainer

    torch.manual_seed(0)
    model = MultiLayerGenerator(image_size=28, channels=1, latent_sizes=(2, 3), num_filters=4)
    images = torch.tanh(2 * torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    options = {"num_iterations": 2, "batch_size": 4, "num_steps": 2, "step_size": 0.02}
    options.update(kwargs)
    return Trainer(
        model, images, output_dir=output_dir, checkpoint_interval=1, progress=False, **options
    )


def test_kill_during_a_checkpoint_write_is_cleaned_and_the_resume_is_exact(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(_TRAIN)
    straight_dir, killed_dir = tmp_path / "straight", tmp_path / "killed"
    straight = _run_script(script, straight_dir, 0)
    killed = _run_script(script, killed_dir, 3)  # dies inside the 3rd write (iteration 6)
    killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL
    leftovers = list(killed_dir.glob(".latest.pt.*.tmp"))
    assert len(leftovers) == 1  # the fault was injected where intended
    assert load_checkpoint(killed_dir)["iteration"] == 4  # the old file survived intact
    resumed = _run_script(script, killed_dir, 0)
    for process in (straight, resumed):
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err.decode()
    assert list(killed_dir.glob(".latest.pt.*.tmp")) == []
    a, b = load_checkpoint(straight_dir), load_checkpoint(killed_dir)
    assert a["iteration"] == b["iteration"] == 8
    for key, value in a["model_state"].items():
        assert torch.equal(value, b["model_state"][key]), key
    assert a["step_size_history"] == b["step_size_history"]


_HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from shortinfer._lock import folder_lock
    with folder_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(120)
    """
)


def test_a_second_run_into_a_locked_folder_is_refused_naming_the_holder(tmp_path):
    from shortinfer._lock import FolderLockedError

    script = tmp_path / "hold.py"
    script.write_text(_HOLD_LOCK)
    out = tmp_path / "run"
    holder = _run_script(script, out)
    try:
        assert holder.stdout.readline().strip() == b"locked"
        trainer = _tiny_trainer(out)
        match = rf"output folder .*run' is in use by another run \(PID {holder.pid} on .*hold\.py"
        with pytest.raises(FolderLockedError, match=match):
            trainer.fit()
        assert not (out / LATEST_NAME).exists()  # refused before writing anything
    finally:
        holder.kill()  # SIGKILL: the kernel releases the lock with the process
        holder.communicate()
    result = _tiny_trainer(out).fit()
    assert result.iterations == 2 and (out / LATEST_NAME).is_file()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "cannot read checkpoint"),
        (b"garbage, not a checkpoint" * 10, "cannot read checkpoint"),
        (None, "cannot read checkpoint"),  # truncated: the first half of a real one
    ],
)
def test_garbage_or_truncated_checkpoint_is_a_checkpoint_error(tmp_path, content, match):
    path = tmp_path / "bad.pt"
    if content is None:
        whole = save_checkpoint(_state(big=torch.zeros(1000)), tmp_path / "good.pt").read_bytes()
        content = whole[: len(whole) // 2]
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_pickled_objects_are_refused_without_torchs_unsafe_advice(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "thing": Path("x")}, path)
    with pytest.raises(CheckpointError, match="pickled Python objects") as caught:
        load_checkpoint(path)
    assert "weights_only" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.fixture(scope="module")
def _finished_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("finished")
    _tiny_trainer(folder).fit()
    return folder


@pytest.mark.parametrize("missing", ["model_state", "optimizer_state", "iteration", "step_size"])
def test_partial_checkpoint_names_what_is_missing(tmp_path, _finished_run, missing):
    state = load_checkpoint(_finished_run)
    del state[missing]
    save_checkpoint(state, tmp_path / "b" / LATEST_NAME)
    with pytest.raises(CheckpointError, match=rf"is partial: '{missing}' is missing"):
        _tiny_trainer(tmp_path / "b").fit(resume=True)


def test_damaged_inner_state_is_a_checkpoint_error_not_a_key_error(tmp_path, _finished_run):
    state = load_checkpoint(_finished_run)
    del state["rng"]["numpy"]
    save_checkpoint(state, tmp_path / "b" / LATEST_NAME)
    with pytest.raises(CheckpointError, match=r"damaged or partial: .*KeyError: 'numpy'"):
        _tiny_trainer(tmp_path / "b").fit(resume=True)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"batch_size": 8}, r"batch_size \(--batch-size\): checkpoint 4, now 8"),
        ({"num_steps": 3}, r"num_steps \(--num-steps\): checkpoint 2, now 3"),
        ({"seed": 5}, r"seed \(--seed\): checkpoint 0, now 5"),
    ],
)
def test_resume_with_changed_settings_is_refused_naming_them(tmp_path, change, match):
    _tiny_trainer(tmp_path, num_iterations=4).fit()
    with pytest.raises(CheckpointError, match="cannot resume: .*" + match):
        _tiny_trainer(tmp_path, num_iterations=4, **change).fit(resume=True)


def test_resume_with_another_iteration_count(tmp_path):
    trainer = _tiny_trainer(tmp_path, num_iterations=4)
    trainer.fit()
    # Extending a finished run is how one trains longer: no message.
    assert _tiny_trainer(tmp_path, num_iterations=5).fit(resume=True).iterations == 5
    state = load_checkpoint(tmp_path)
    state["iteration"] = 3  # as if interrupted at 3 of 5
    save_checkpoint(state, tmp_path)
    with pytest.warns(UserWarning, match=r"unfinished run of 5 iterations \(at 3\).*--iterations"):
        _tiny_trainer(tmp_path, num_iterations=6).fit(resume=True)


def test_nan_weights_are_refused(tmp_path, _finished_run):
    from shortinfer.train._checkpoint import check_finite_weights

    state = load_checkpoint(_finished_run)
    name = next(iter(state["model_state"]))
    state["model_state"][name] = torch.full_like(state["model_state"][name], float("nan"))
    with pytest.raises(CheckpointError, match=rf"non-finite weights: {name} "):
        check_finite_weights(state)
    save_checkpoint(state, tmp_path / LATEST_NAME)
    with pytest.raises(CheckpointError, match="non-finite weights"):
        _tiny_trainer(tmp_path, num_iterations=3).fit(resume=True)
