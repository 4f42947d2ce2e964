"""Tests for shortinfer.bench: presets, schedules, cells, resume, report and the CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

import shortinfer
from shortinfer.bench import BenchData, Cell, get_preset, plan_cells, run_cell
from shortinfer.bench._cli import add_bench_subparser, main, run_bench
from shortinfer.bench._runner import run_fid
from shortinfer.cli import main as cli_main
from shortinfer.models import latent_sizes_for
from shortinfer.train._checkpoint import CheckpointError, load_checkpoint
from shortinfer.train._schedules import SigmaSchedule, step_decay_learning_rate
from shortinfer.tuning import DEFAULT_OBJECTIVE, PAPER_GRID

from .fixtures import make_synthetic_celeba

# A budget small enough that every cell trains in well under a second on one CPU core. It names
# preset fields like `PRESETS` does, on purpose: the test's own values, not a copy of a preset.
TINY = dict(
    num_iterations=3,
    batch_size=4,
    num_filters=4,
    bottom_latent_size=4,
    layers=(1, 2),
    steps_ablation=(2, 5),
    num_steps=5,
    tune_every=2,
    tune_grid=(0.005, 0.01, 0.02, 0.05),
    tune_batch=1,
    num_test=6,
    num_elbo_images=2,
    eval_batch_size=6,
    checkpoint_every=1,
    log_every=1,
    abp_num_steps=3,
)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _data() -> BenchData:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(30, 1, 28, 28, generator=generator) * 2 - 1
    return BenchData("mnist5k", images[:24], images[24:])


def test_latent_sizes_match_table4_and_halve_upwards():
    assert latent_sizes_for(3, 128) == (32, 64, 128)
    assert latent_sizes_for(1, 128) == (128,)
    assert latent_sizes_for(5, 8) == (1, 1, 2, 4, 8)
    with pytest.raises(ValueError, match="num_layers and bottom_size must be positive"):
        latent_sizes_for(0, 8)


def test_presets_paper_schedule_and_overrides():
    paper = get_preset("paper")
    assert (paper.num_iterations, paper.batch_size) == (300_000, 100)
    assert paper.num_fid_samples == 40_000
    assert paper.learning_rates == (1e-4, 5e-5, 1e-5)
    assert (paper.sigma_end, paper.num_steps) == (0.15, 25)
    assert get_preset("smoke", num_iterations=7, batch_size=None).num_iterations == 7
    with pytest.raises(ValueError, match="preset must be one of"):
        get_preset("huge")
    with pytest.raises(TypeError, match="unknown preset field"):
        get_preset("smoke", iterations=3)
    with pytest.raises(ValueError, match="num_iterations must be a positive int"):
        get_preset("smoke", num_iterations=0)


def test_schedules_follow_appendix_7_1():
    paper = get_preset("paper")
    assert [paper.learning_rate_at(t) for t in (0, 99_999, 100_000, 299_999)] == [
        1e-4,
        1e-4,
        5e-5,
        1e-5,
    ]
    short = get_preset("paper", num_iterations=90)
    assert short.sigma_at(0) == pytest.approx(0.3)
    assert short.sigma_at(22) == pytest.approx(0.3 - 0.15 * 22 / 45)
    assert short.sigma_at(45) == pytest.approx(0.15)
    assert short.sigma_at(89) == pytest.approx(0.15)
    warmup = get_preset("paper", num_iterations=100, kl_warmup_fraction=0.1)
    assert warmup.kl_weight_at(5) == pytest.approx(0.5)
    assert get_preset("paper", kl_warmup_fraction=0.0).kl_weight_at(0) == 1.0


def test_schedules_are_the_trainers():
    # One learning-rate decay and one sigma schedule: the preset's are the Trainer's defaults.
    for total in (300, 3000):
        preset = get_preset("cpu", num_iterations=total)
        rates, sigmas = preset.learning_rate_schedule(), preset.sigma_schedule()
        assert sigmas.anneal_fraction == SigmaSchedule().anneal_fraction == 0.5
        for t in range(total):
            assert preset.sigma_at(t) == sigmas(t, total)
            assert preset.learning_rate_at(t) == pytest.approx(rates(t, total), rel=1e-12)
            assert preset.learning_rate_at(t) == step_decay_learning_rate(
                t, total, base=1e-3, factors=(1.0, 0.5, 0.1)
            )


def test_paper_preset_runs_the_papers_experiments():
    paper = get_preset("paper")
    # The grid in the authors' delta units, s = delta^2 / 2, starting at delta = 0.05.
    assert paper.tune_grid == PAPER_GRID
    assert paper.step_size == pytest.approx(0.05**2 / 2)
    assert paper.tune_objective == "conditional"
    assert paper.latent_sizes_at(5) == (64, 64, 64, 96, 128)
    assert paper.latent_sizes_at(3) == (32, 64, 128)  # Table 4
    assert paper.celeba_subset == 40_000
    # Other presets tune with the library's default objective.
    assert get_preset("cpu").tune_objective == DEFAULT_OBJECTIVE


def test_print_config_shows_every_cell_without_training(tmp_path, capsys):
    # No data is read: the configuration follows from the arguments.
    root = tmp_path / "no-such-folder"
    assert main(["celeba", "--data-root", str(root), "--preset", "paper", "--print-config"]) == 0
    configs = json.loads(capsys.readouterr().out)
    keys = [config["cell"] for config in configs["cells"]]
    assert keys == [cell.key for cell in plan_cells(get_preset("paper"))]
    top = configs["cells"][keys.index("short_run-L5-K25")]
    assert top["model"]["latent_sizes"] == [64, 64, 64, 96, 128]
    assert top["tuning"]["objective"] == "conditional"
    assert top["tuning"]["grid_delta"][:3] == [0.01, 0.02, 0.03]
    assert top["step_size"] == {"initial_s": 0.00125, "initial_delta": 0.05}
    assert configs["data"]["crop"] == "none" and configs["data"]["subset"] == 40_000
    assert not (tmp_path / "bench_celeba32_paper").exists()


def test_plan_shares_the_table1_cell_with_the_k_ablation():
    keys = [cell.key for cell in plan_cells(get_preset("paper"), abp=True)]
    assert keys.count("short_run-L5-K25") == 1
    assert {
        "ladder_vae-L1",
        "ladder_vae-L3",
        "ladder_vae-L5",
        "short_run-L5-K5",
        "short_run-L5-K50",
        "abp-L1-K40",
    } <= set(keys)
    assert len(keys) == 10


def test_cell_resumes_from_checkpoint_then_skips(tmp_path):
    preset = get_preset("smoke", **TINY)
    cell = Cell("short_run", 2, 5)
    folder = tmp_path / "cells" / cell.key
    assert run_cell(cell, _data(), preset, tmp_path, stop_after=0.0) is None
    saved = load_checkpoint(folder / "latest.pt")  # the trainer's format, weights_only
    assert saved["iteration"] == 1 and saved["method"] == "short_run"
    assert not (folder / "result.json").exists()

    result = run_cell(cell, _data(), preset, tmp_path)
    assert result is not None and result["num_iterations"] == 3
    iterations = [
        json.loads(line)["iteration"]
        for line in (folder / "metrics.jsonl").read_text().splitlines()
    ]
    assert iterations == [1, 2, 3]  # resumed at 1: iteration 1 was not trained twice
    assert (folder / "latest.pt").is_file()  # an ordinary training-run folder
    assert 0 < result["mse"] < 4 and result["num_test"] == 6
    assert result["elbo"] < 0 and result["num_elbo_images"] == 2
    assert result["objective"] == DEFAULT_OBJECTIVE
    assert result["delta"] == pytest.approx((2 * result["step_size"]) ** 0.5)
    assert isinstance(result["tuning_rejected"], list)  # the stability check's refusals

    before = (folder / "result.json").stat().st_mtime_ns
    assert run_cell(cell, _data(), preset, tmp_path)["mse"] == result["mse"]
    assert (folder / "result.json").stat().st_mtime_ns == before


def test_bench_resume_matches_an_uninterrupted_cell(tmp_path):
    preset = get_preset("smoke", **TINY)
    cell = Cell("short_run", 1, 5)
    whole = run_cell(cell, _data(), preset, tmp_path / "whole")
    assert run_cell(cell, _data(), preset, tmp_path / "split", stop_after=0.0) is None
    resumed = run_cell(cell, _data(), preset, tmp_path / "split")
    assert resumed["mse"] == whole["mse"] and resumed["step_size"] == whole["step_size"]


def test_bench_cell_works_with_the_cli_and_refuses_a_planted_pickle(tmp_path):
    preset = get_preset("smoke", **TINY)
    for baseline in (Cell("ladder_vae", 1, 5), Cell("short_run", 1, 5)):
        run_cell(baseline, _data(), preset, tmp_path)
        png = tmp_path / f"{baseline.key}.png"
        folder = tmp_path / "cells" / baseline.key
        assert cli_main(["sample", str(folder), "--output", str(png), "--num-images", "4"]) == 0
        assert png.stat().st_size > 0
    cell = Cell("short_run", 1, 5)

    marker = tmp_path / "pwned"

    class Planted:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (folder / "result.json").unlink()
    torch.save({"format": 1, "payload": Planted()}, folder / "latest.pt")
    with pytest.raises(CheckpointError):
        run_cell(cell, _data(), preset, tmp_path)
    assert not marker.exists()


def test_no_torch_load_without_weights_only():
    package = Path(shortinfer.__file__).parent
    offenders = []
    for path in package.rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "torch.load(" in line and "weights_only=True" not in line:
                if not line.lstrip().startswith(("#", "``", 'r"', '"')):
                    offenders.append(f"{path.relative_to(package)}:{number}: {line.strip()}")
            if "weights_only=False" in line and not line.lstrip().startswith("#"):
                offenders.append(f"{path.relative_to(package)}:{number}: {line.strip()}")
    assert not offenders, offenders


def test_checkpoint_from_another_preset_is_refused(tmp_path):
    cell = Cell("ladder_vae", 1, 5)
    run_cell(cell, _data(), get_preset("smoke", **TINY), tmp_path, stop_after=0.0)
    other = get_preset("smoke", **{**TINY, "num_iterations": 4})
    with pytest.raises(ValueError, match="another configuration"):
        run_cell(cell, _data(), other, tmp_path)


@pytest.mark.parametrize("method", ["ladder_vae", "abp"])
def test_baselines_train_and_evaluate(tmp_path, method):
    preset = get_preset("smoke", **TINY)
    result = run_cell(Cell(method, 1, 5), _data(), preset, tmp_path)
    assert result["cell"]["method"] == method
    assert 0 < result["mse"] < 4
    assert result["elbo"] < 0
    if method == "abp":
        assert result["step_size"] == pytest.approx(0.045)  # delta 0.3 -> s = 0.3**2 / 2
        assert result["sigma"] == pytest.approx(0.3)
    else:
        assert result["sigma"] == pytest.approx(0.15)
        assert result["step_size"] is None


def test_fid_is_skipped_with_a_note_when_weights_are_missing(tmp_path):
    note = run_fid(
        [], _data(), get_preset("smoke", **TINY), tmp_path, weights=str(tmp_path / "missing.pth")
    )
    assert note is not None and note.startswith("FID skipped: no Inception weights")
    assert run_fid([], _data(), get_preset("smoke", num_fid_samples=0), tmp_path) == (
        "FID skipped: num_fid_samples is 0."
    )


def test_cli_hook_parses_every_dataset():
    root = argparse.ArgumentParser(prog="shortinfer")
    add_bench_subparser(root.add_subparsers(dest="command"))
    args = root.parse_args(
        [
            "bench",
            "celeba",
            "--data-root",
            "d",
            "--size",
            "64",
            "--preset",
            "paper",
            "--fid-weights",
            "w.pth",
            "--iterations",
            "10",
        ]
    )
    assert (args.func, args.size, args.preset, args.fid_weights, args.iterations) == (
        run_bench,
        64,
        "paper",
        "w.pth",
        10,
    )
    args = root.parse_args(["bench", "mnist", "--source", "fashion"])
    assert args.source == "fashion" and args.data_root is None
    with pytest.raises(SystemExit):
        root.parse_args(["bench", "svhn"])  # --data-root is required


def test_smoke_benchmark_on_synthetic_celeba(tmp_path, capsys):
    root = make_synthetic_celeba(tmp_path / "data", num_images=60, seed=0)
    out = tmp_path / "run"
    argv = [
        "celeba",
        "--data-root",
        str(root),
        "--size",
        "32",
        "--preset",
        "smoke",
        "--iterations",
        "2",
        "--batch-size",
        "4",
        "--layers",
        "1",
        "2",
        "--steps",
        "3",
        "25",
        "--num-test",
        "4",
        "--no-fid",
        "--threads",
        "1",
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    assert main(argv) == 0
    keys = json.loads((out / "run.json").read_text())["cells"]
    assert keys == [
        "short_run-L1-K25",
        "ladder_vae-L1",
        "short_run-L2-K25",
        "ladder_vae-L2",
        "short_run-L2-K3",
    ]
    for key in keys:
        result = json.loads((out / "cells" / key / "result.json").read_text())
        assert result["dataset"] == "celeba32" and result["num_iterations"] == 2
    report = (out / "results.md").read_text()
    assert "| Ours (short-run), L = 2 |" in report and "| 0.011 |" in report  # paper column
    assert "per pixel on the [-1, 1] scale" in report
    assert "FID skipped: turned off with --no-fid" in report
    assert (out / "fig3_reconstructions.png").stat().st_size > 0
    assert (out / "samples_side_by_side.png").stat().st_size > 0

    capsys.readouterr()
    assert main(argv) == 0  # the rerun trains nothing
    assert capsys.readouterr().out.count("result exists, skipped") == len(keys)
