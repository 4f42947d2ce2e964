r"""The command lines' runtime: the torch device they run on and the CPU cores they may use.

Shared by ``shortinfer`` (`shortinfer.cli`) and ``shortinfer bench`` (`shortinfer.bench._cli`).
`spare_cores` reads the machine's load from ``/proc/stat`` so that ``shortinfer demo`` does
not start more torch threads than there are idle cores: PyTorch's OpenMP threads spin-wait, and
on cores busy with other work a second thread slows every training step (the measurement is in
``docs/performance.md``).
"""

from __future__ import annotations

import os
import time
from typing import Any

__all__ = ["BUSY_CORE_THRESHOLD", "UsageError", "busy_cores", "checked_device", "spare_cores"]

#: A core counts as taken by other work only when it is at least this busy in every sample.
BUSY_CORE_THRESHOLD = 0.7


class UsageError(Exception):
    """A problem with the user's input, reported as one line with exit code 2.

    Errors the library raises about the input (`shortinfer.ShortinferError`) are reported the
    same way; any other exception is a bug and shows its traceback.
    """


def spare_cores(window: float = 0.3, samples: int = 3) -> int | None:
    r"""Cores left idle by other processes, or None if unknown.

    Linux: the busy share of all cores from ``/proc/stat`` in ``samples`` windows of
    ``window`` seconds (this process sleeps meanwhile, so all of it is other work). Transient
    work, such as the tail of a ``pip install`` or another process's start-up, is not
    sustained over every window, so the quietest window counts; a core is taken when that
    window shows it at least `BUSY_CORE_THRESHOLD` busy. Elsewhere the 1-minute load
    average, which lags.

    Arguments:
        window: Seconds per sample.
        samples: How many samples; the quietest counts.

    Returns:
        ``max(1, cores - taken)``, or ``None`` when neither ``/proc/stat`` nor the load average
        can be read.

    Examples:
        >>> spare = spare_cores(0.01, samples=1)
        >>> spare is None or 1 <= spare <= (os.cpu_count() or 1)
        True
    """
    cores = os.cpu_count() or 1
    readings = [busy_cores(window) for _ in range(max(1, samples))]
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


def busy_cores(window: float) -> float | None:
    r"""How many cores' worth of work ran over the next ``window`` seconds (``/proc/stat``).

    Busy time is $n_\text{cores} (\Delta t_\text{total} - \Delta t_\text{idle}) /
    \Delta t_\text{total}$ over the window, with iowait counted as idle.

    Arguments:
        window: Seconds to sleep between the two readings.

    Returns:
        The busy cores, or ``None`` off Linux or when ``/proc/stat`` cannot be parsed.

    Examples:
        >>> busy = busy_cores(0.01)
        >>> busy is None or busy >= 0
        True
    """

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


def checked_device(name: str) -> Any:
    r"""``torch.device(name)`` for ``--device``, or a `UsageError` that says what to pass.

    Shared by every subcommand (``train``, ``sample``, ``bench``, ...).

    Arguments:
        name: What the user passed, e.g. ``"cpu"`` or ``"cuda:1"``.

    Returns:
        The ``torch.device``.

    Raises:
        UsageError: If the name is not a device, or the device is not available here.

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
