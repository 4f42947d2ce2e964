r"""Argument checks shared by the dataset loaders."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from shortinfer._checks import ArgumentError, ArgumentTypeError

__all__ = ["check_choice", "check_image_size", "check_num_workers", "check_path"]


def check_path(name: str, value: object) -> Path:
    r"""Return ``value`` as an expanded `pathlib.Path`, or raise ``TypeError``."""
    if not isinstance(value, (str, os.PathLike)):
        raise ArgumentTypeError(
            f"{name} must be a str or os.PathLike, got {type(value).__name__} ({value!r}); "
            f"pass the path as a string, e.g. {name}='/data/celeba'"
        )
    return Path(os.fspath(value)).expanduser()


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    r"""Return ``value`` if it is one of ``choices``, else raise ``ValueError`` listing them."""
    if not isinstance(value, str) or value not in choices:
        raise ArgumentError(
            f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}"
        )
    return value


def check_image_size(image_size: object) -> tuple[int, int] | None:
    r"""Normalise ``image_size`` (None, int s, or (H, W)) to ``None`` or ``(H, W)``."""
    if image_size is None:
        return None
    if isinstance(image_size, bool):
        raise ArgumentTypeError(
            f"image_size must be an int or a (height, width) pair, got {image_size!r}"
        )
    if isinstance(image_size, int):
        pair: tuple[object, ...] = (image_size, image_size)
    elif isinstance(image_size, (tuple, list)) and len(image_size) == 2:
        pair = tuple(image_size)
    else:
        raise ArgumentTypeError(
            "image_size must be None, an int s (for s×s) or a (height, width) pair, "
            f"got {image_size!r}; e.g. image_size=32"
        )
    for side in pair:
        if isinstance(side, bool) or not isinstance(side, int):
            raise ArgumentTypeError(f"image_size entries must be ints, got {image_size!r}")
        if side <= 0:
            raise ArgumentError(f"image_size must be positive, got {image_size!r}; e.g. 32 or 64")
    return (int(pair[0]), int(pair[1]))  # type: ignore[arg-type]


def check_num_workers(num_workers: object) -> int | None:
    r"""Validate ``num_workers``: ``None`` (automatic) or an int >= 0."""
    if num_workers is None:
        return None
    if isinstance(num_workers, bool) or not isinstance(num_workers, int):
        raise ArgumentTypeError(f"num_workers must be None or an int >= 0, got {num_workers!r}")
    if num_workers < 0:
        raise ArgumentError(
            f"num_workers must be >= 0, got {num_workers}; use 0 to decode in this process"
        )
    return num_workers
