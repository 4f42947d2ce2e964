from argparse import Namespace
from pathlib import Path

import torch

from shortinfer.bench import Cell, get_preset, run_cell
from shortinfer.bench._cli import load_bench_data

torch.set_num_threads(1)
data = load_bench_data(
    Namespace(bench_dataset="mnist", source="mnist5k", data_root=None, cache_dir=None)
)
preset = get_preset("cpu", num_iterations=3000, checkpoint_every=500, log_every=100)

r = run_cell(Cell("ladder_vae", 5, 25), data, preset, Path("/tmp/bench_mnist5k_vae3000"))
print({k: r[k] for k in ("mse", "mse_std_error", "elbo", "train_seconds", "eval_seconds")})
