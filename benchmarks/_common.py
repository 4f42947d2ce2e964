"""Shared helpers for the benchmark scripts: problems, interleaved timing, peak memory, reports.

Every script prints ratios against a baseline measured in the same run. Repetitions of the
candidates are interleaved (round-robin, with the starting candidate rotated each round) so that
a burst of load from other processes hits all of them alike, and the summaries are medians.

Peak memory is the resident-set high-water mark (``VmHWM``, reset with ``clear_refs`` just
before the measured call; ``ru_maxrss`` where ``/proc`` is missing) of a fresh subprocess that
runs one configuration; see `run_measured` and `peak_memory`.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
if str(ROOT) not in sys.path:  # run as `python benchmarks/<script>.py` from a checkout
    sys.path.insert(0, str(ROOT))

#: The paper's L = 5 latent sizes (reference code ``z_dims``), D = 416.
REFERENCE_LATENT_SIZES = (64, 64, 64, 96, 128)


# -- environment ------------------------------------------------------------------------------


def set_threads(threads: int) -> None:
    """Fix torch's intra-op threads (the machine is shared: 1 avoids spin-wait thrashing)."""
    torch.set_num_threads(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def check_device(name: str) -> torch.device:
    """The ``--device`` option as a ``torch.device``; a clear error if CUDA is missing."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            f"--device {name}: CUDA is not available here (torch {torch.__version__})"
        )
    return device


def synchronize(device: torch.device | str | None) -> None:
    """Wait for queued kernels on CUDA (a no-op on the CPU), so that timings are complete."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def setup(args: argparse.Namespace) -> torch.device:
    """Apply the common options: threads, ``--results-dir``; return the checked ``--device``."""
    global RESULTS
    set_threads(args.threads)
    if getattr(args, "results_dir", None):
        RESULTS = Path(args.results_dir)
    return check_device(getattr(args, "device", "cpu"))


def use_default_device(device: torch.device) -> None:
    """Make ``device`` torch's default for new tensors and modules (scripts of small float64
    problems that build their tensors in many places; a no-op on the CPU)."""
    if device.type != "cpu":
        torch.set_default_device(device)


def seeded(seed: int) -> torch.Generator:
    """A ``torch.Generator`` on torch's default device, seeded."""
    return torch.Generator(torch.get_default_device()).manual_seed(seed)


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.strip().lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment() -> dict[str, Any]:
    """Machine and versions, recorded with every result."""
    import numpy

    import shortinfer

    return {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "shortinfer": shortinfer.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_average_at_start": os.getloadavg(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "none",
        "cuda": torch.version.cuda,
    }


def environment_markdown(env: dict[str, Any]) -> str:
    return "\n".join(f"- {key}: `{value}`" for key, value in env.items())


# -- problems ---------------------------------------------------------------------------------


def mlp_problem(
    dim: int,
    batch: int,
    num_steps: int,
    *,
    hidden: int = 256,
    obs_dim: int = 784,
    sigma: float = 0.3,
    step_size: float = 0.005,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> tuple[Callable[[Tensor], Tensor], Tensor, Tensor, Tensor]:
    r"""An MLP decoder ``D -> hidden -> GELU -> obs_dim`` with Gaussian likelihood.

    $\log p(x, z) = -\tfrac12\lVert z\rVert^2 - \lVert x - g(z)\rVert^2 / (2\sigma^2)$,
    with ``x`` drawn from the model. Returns ``(log_joint, z0, noise, step_table)`` with
    shapes ``(B, D) -> (B,)``, ``(B, D)``, ``(K, B, D)``, ``(K, 1)``, all on ``device`` (drawn
    on the CPU from one seed, so every device sees the same problem).
    """
    generator = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(dim, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, obs_dim)
    ).to(dtype)
    with torch.no_grad():
        for parameter in net.parameters():  # default init, but from our own generator
            bound = 1 / parameter.shape[-1] ** 0.5
            parameter.uniform_(-bound, bound, generator=generator)
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    with torch.no_grad():
        z_true = torch.randn(batch, dim, generator=generator, dtype=dtype)
        x = net(z_true) + sigma * torch.randn(batch, obs_dim, generator=generator, dtype=dtype)

    def log_joint(z: Tensor) -> Tensor:
        return -0.5 * z.square().sum(-1) - 0.5 * (x - net(z)).square().sum(-1) / sigma**2

    z0 = torch.randn(batch, dim, generator=generator, dtype=dtype)
    noise = torch.randn(num_steps, batch, dim, generator=generator, dtype=dtype)
    table = torch.full((num_steps, 1), step_size, dtype=dtype)
    net.to(device)
    x = x.to(device)
    return log_joint, z0.to(device), noise.to(device), table.to(device)


def reference_generator(
    num_filters: int = 64,
    *,
    seed: int = 0,
    image_size: int = 32,
    device: str | torch.device = "cpu",
):
    """The paper's L = 5 generator (32x32x3, latent sizes 64/64/64/96/128, D = 416).

    Weights are a fixed random initialisation (no trained checkpoint ships with the package);
    parameters do not require grad, so timings measure inference only.
    """
    from shortinfer.models import MultiLayerGenerator

    torch.manual_seed(seed)
    model = MultiLayerGenerator(
        image_size=image_size,
        channels=3,
        latent_sizes=REFERENCE_LATENT_SIZES,
        num_filters=num_filters,
    )
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.to(device)


def reference_images(model, batch: int, *, seed: int = 1) -> Tensor:
    """Observations drawn from the model itself (with pixel noise), shape ``(B, C, H, W)``.

    Drawn on the CPU from ``seed`` (the same images on every device), returned on the model's
    device.
    """
    device = model.output.weight.device
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        cpu_model = copy.deepcopy(model).cpu() if device.type != "cpu" else model
        images = cpu_model.sample_images(batch, generator=generator)
        images = images + cpu_model.sigma * torch.randn(images.shape, generator=generator)
    return images.clamp(-1, 1).to(device)


def reference_flat_log_joint(model, x: Tensor) -> Callable[[Tensor], Tensor]:
    """``log_joint`` on flat latents ``(B, 416) -> (B,)``, blocks in ``latent_shapes`` order."""
    from shortinfer._latents import LatentLayout

    layout = LatentLayout(model.latent_shapes)
    return lambda z: model.log_joint(x, layout.unflatten(z))


# -- timing -----------------------------------------------------------------------------------


def interleaved(
    candidates: dict[str, Callable[[], object]],
    *,
    repeats: int,
    warmup: int = 1,
    device: torch.device | str | None = None,
) -> dict[str, list[float]]:
    """Wall-clock seconds of each candidate, ``repeats`` times, round-robin with rotation.

    On CUDA (``device``) the queue is drained before each call's clock starts and before it
    stops, so a call's time includes its kernels.
    """
    names = list(candidates)
    for _ in range(warmup):
        for name in names:
            candidates[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            synchronize(device)
            start = time.perf_counter()
            candidates[name]()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def summarise(times: dict[str, list[float]], baseline: str) -> list[dict[str, Any]]:
    """Per candidate: median time, spread, and the ratio to the baseline.

    ``ratio`` is median(candidate) / median(baseline) (< 1 is faster). ``paired`` is the median
    of the per-round ratios (each round ran every candidate back to back), with its min and max:
    the spread says how much the load moved the answer.
    """
    base = times[baseline]
    rows = []
    for name, values in times.items():
        paired = [v / b for v, b in zip(values, base, strict=True)]
        rows.append(
            {
                "name": name,
                "median_s": statistics.median(values),
                "min_s": min(values),
                "max_s": max(values),
                "ratio": statistics.median(values) / statistics.median(base),
                "paired_ratio": statistics.median(paired),
                "paired_min": min(paired),
                "paired_max": max(paired),
                "speedup": statistics.median(base) / statistics.median(values),
                "repeats": len(values),
            }
        )
    return rows


def timing_table(rows: list[dict[str, Any]], baseline: str) -> str:
    lines = [
        f"| candidate | median s | min–max s | time / {baseline} (median) | paired ratio "
        "[min, max] | speed-up |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['median_s']:.3f} | {row['min_s']:.3f}–{row['max_s']:.3f} | "
            f"{row['ratio']:.3f} | {row['paired_ratio']:.3f} [{row['paired_min']:.3f}, "
            f"{row['paired_max']:.3f}] | {row['speedup']:.2f}× |"
        )
    return "\n".join(lines)


# -- memory -----------------------------------------------------------------------------------


def _status_mib(field: str) -> float | None:
    """A ``Vm*`` field of ``/proc/self/status`` in MiB (Linux), or None."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def max_rss_mib() -> float:
    """This process's resident-set high-water mark in MiB.

    ``VmHWM`` on Linux: unlike ``ru_maxrss``, it belongs to the current address space, so a
    child does not inherit the parent's peak across ``fork``/``exec``. Elsewhere ``ru_maxrss``.
    """
    peak = _status_mib("VmHWM")
    if peak is not None:
        return peak
    peak_raw = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB Linux, bytes macOS
    return peak_raw / 1024**2 if sys.platform == "darwin" else peak_raw / 1024


def current_rss_mib() -> float:
    current = _status_mib("VmRSS")
    return current if current is not None else float("nan")


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux ``clear_refs``); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def run_measured(call: Callable[[], object]) -> dict[str, float]:
    """Run ``call`` once in this (fresh) process; report time and peak memory in MiB.

    ``before_mib`` is the resident set just before the call (torch, model, inputs); the peak
    mark is reset to it when the OS allows, so ``peak_mib`` is the whole process's peak
    *during* the call and ``delta_mib = peak_mib - before_mib`` the call's own peak.
    """
    reset = reset_peak_rss()
    before = current_rss_mib() if reset else max_rss_mib()
    start = time.perf_counter()
    call()
    seconds = time.perf_counter() - start
    peak = max_rss_mib()
    return {
        "seconds": seconds,
        "peak_mib": peak,
        "before_mib": before,
        "delta_mib": peak - before,
        "peak_reset": reset,
    }


def peak_memory(script: str, args: Sequence[str], *, timeout: float | None = None) -> dict:
    """Run ``python benchmarks/<script> --child ARGS`` in a fresh process; parse its JSON line.

    The child must print one line ``RESULT {json}`` (see `emit`). A child that fails
    (e.g. killed for memory) reports ``{"error": ...}``.
    """
    command = [sys.executable, str(ROOT / "benchmarks" / script), "--child", *args]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout} s"}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    return {"error": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"}


def emit(result: dict) -> None:
    print("RESULT " + json.dumps(result), flush=True)


# -- reports ----------------------------------------------------------------------------------


def benchmark_parser(doc: str | None) -> argparse.ArgumentParser:
    """A script's parser, described by its docstring's first paragraph, with the options
    every benchmark has: ``--quick`` (a smoke run) and ``--threads`` (torch threads)."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (minutes)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    add_device_options(parser)
    return parser


def add_device_options(parser: argparse.ArgumentParser) -> None:
    """``--device`` (default cpu; ``cuda`` when available) and ``--results-dir``."""
    parser.add_argument("--device", default="cpu", help="torch device: cpu (default) or cuda")
    parser.add_argument(
        "--results-dir",
        default=None,
        help="folder for the result files (default benchmarks/results)",
    )


def add_render_option(parser: argparse.ArgumentParser, what: str) -> None:
    """Add ``--render JSON``: re-render ``what`` from a saved run instead of measuring."""
    parser.add_argument(
        "--render",
        metavar="JSON",
        default=None,
        help=f"only re-render the {what} of a saved run's JSON",
    )


def printed(lines: list[str], data: dict) -> tuple[str, dict]:
    """Join a part's markdown ``lines``, print them, and return ``(text, data)``."""
    text = "\n".join(lines)
    print(text, flush=True)
    return text, data


def results_dir() -> Path:
    """Where results go: ``benchmarks/results`` unless ``--results-dir`` changed it."""
    return RESULTS


def write_result(name: str, markdown: str, data: dict) -> None:
    """Write ``benchmarks/results/<name>.md`` and ``<name>.json``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.md").write_text(markdown.rstrip() + "\n")
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"wrote {RESULTS / (name + '.md')}")
