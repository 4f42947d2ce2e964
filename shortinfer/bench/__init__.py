r"""The bundled benchmark behind ``shortinfer bench``: Tables 1 and 3 of the paper.

Short-run inference and Ladder-VAE are trained with L = 1, 3, 5 on the same generator, with the
same optimiser, schedule and number of updates; short-run inference is also trained with
K = 5, 10, 25, 50 at L = 5. Each cell reports reconstruction MSE on held-out images, FID of
generated images and the per-image ELBO; `write_report` lays them out beside the paper's
numbers in ``results.md``.
"""

from shortinfer.bench._presets import PRESETS, Preset, get_preset
from shortinfer.bench._results import image_grid, write_report
from shortinfer.bench._runner import BenchData, Cell, plan_cells, run_benchmark, run_cell, run_fid

__all__ = [
    "PRESETS",
    "BenchData",
    "Cell",
    "Preset",
    "get_preset",
    "image_grid",
    "plan_cells",
    "run_benchmark",
    "run_cell",
    "run_fid",
    "write_report",
]
