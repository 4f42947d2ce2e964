r"""Step-size objectives against the KL-optimal step size (issue 6).

For each objective of `shortinfer.objectives.OBJECTIVES`, on each setting, this script

1. picks the step size $\hat s$ that minimises the objective
   $J(s) = -\frac1N\sum_i [\log p(x_i, z_{K,i}) + \hat H_i]$ over a log-spaced grid, with
   common random numbers (one draw of $z_0, \epsilon$ shared by all candidates), for
   several seeds of that draw;
2. reports the exact $\mathrm{KL}(q_{\hat s} \| p(z \mid x))$ (mean over examples) against
   the oracle optimum $\min_s \mathrm{KL}$;
3. times one evaluation of each objective (and one value-and-gradient in $s$) against the
   paper's ``"conditional"`` objective in the same run, interleaved;
4. runs gradient tuning (Adam on $\log s$) with the two recommended objectives,
   ``"sandwich"`` and ``"semi_implicit"``.

**Settings.** Linear-Gaussian models (latent dimension $d$, noise $\sigma$, steps
$K$ varied), whose KL is closed-form
(`shortinfer.models.LinearGaussian.kl_to_posterior`), and two 2-D
nonlinear posteriors: a banana ($x = z_2 + b z_1^2 + \sigma\eta$) and a small tanh
decoder ($x = W_2 \tanh(W_1 z + b_1) + \sigma\eta$, 6 observed coordinates).

**The exact KL in 2-D.** Given $z_{K-1}$, the last step makes $z_K$ Gaussian, so
$q_s(z) = \mathbb{E}\,\mathcal{N}(z; y_{K-1}, 2 s I)$ with
$y_{K-1} = z_{K-1} + s \nabla \log p(x, z_{K-1})$: the marginal density is a Gaussian
mixture over the chains' last drifts, with no approximation beyond Monte Carlo. With
``--kl-chains`` chains the mixture is evaluated on a $401^2$ grid by binning the drifts
(linear, cloud-in-cell weights, cell $h$) and convolving with the Gaussian by FFT; the
cloud-in-cell kernel adds variance $h^2/6$ per axis, which is taken off the Gaussian's.
The posterior is normalised on the same grid, and
$\mathrm{KL} = \sum q \log(q/p)\,h^2$. This beats a KDE of $z_K$ (no bandwidth to
choose: the bandwidth is the chain's own noise) and the change-of-variables mixture over noise
draws $\mathbb{E}_\epsilon q(z \mid \epsilon)$ (which needs $F^{-1}$ and a Jacobian per
draw and grid point). The oracle's own error is measured by recomputing the KL at the optimum
with an independent seed.

Run from the repository root (about 25 minutes on 2 shared CPU cores)::

    python benchmarks/objectives.py            # full study, writes benchmarks/results/
    python benchmarks/objectives.py --quick    # smoke run: 2 settings, 1 seed, small grids
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    benchmark_parser,
    environment,
    environment_markdown,
    interleaved,
    results_dir,
    seeded,
    setup,
    use_default_device,
    write_result,
)

from shortinfer.langevin import autograd_score, rollout  # noqa: E402
from shortinfer.likelihoods import standard_normal_log_prob  # noqa: E402
from shortinfer.models import LinearGaussian  # noqa: E402
from shortinfer.objectives import EntropyEstimator, semi_implicit_bounds  # noqa: E402
from shortinfer.tuning import gradient_search  # noqa: E402

OBJECTIVES = ("conditional", "epi", "semi_implicit", "linearized", "sandwich")
BASELINE = "conditional"
GRADIENT_TUNED = ("sandwich", "semi_implicit")  # the recommended objectives (docs/objectives.md)
GOAL_KL_RATIO = 1.5  # issue 6: chosen KL within 1.5x of the optimum ...
GOAL_COST_RATIO = 3.0  # ... at a cost within 3x of the paper's objective
READING = (  # written after the run of 2026-11-24; re-read it when the numbers change
    "Reading the goal table: a setting passes when some objective lands within 1.5× of the "
    "optimal KL on every seed at ≤ 3× the paper's cost. The 64-chain d = 2 setting is limited "
    "by Monte Carlo noise (its optimal KL is 0.0064 nats; the noise-free linearized and epi "
    "choices are 1.00×) and passes with 512 chains; the banana's 1.50× entries sit on the "
    "grid's upper edge s = 0.03 (KL ratio 1.497), a borderline pass. See docs/objectives.md "
    "for the discussion and the recommendation."
)


@dataclass(frozen=True)
class Setting:
    """One benchmark problem: a flat ``log_joint`` on ``(S·B, D)`` rows and its exact KL."""

    name: str
    kind: str  # "linear-Gaussian" or "2-D nonlinear"
    dim: int
    num_steps: int
    num_examples: int
    chains: int  # S, chains per example
    log_joint: Callable[[Tensor], Tensor]  # on rows (S·B, D), row i is example i % B
    kl: Callable[[float], float]  # exact mean KL(q_s || p(z|x)) over examples
    s_max: float  # largest step size in the grid
    detail: str
    kl_chains: int = 0  # chains behind a Monte Carlo KL (0: closed form)
    # H(z_K) - E[H_hat] in closed form, for the objectives that have one (linear-Gaussian)
    entropy_gap: Callable[[str, float], float] | None = None


# -- problems ---------------------------------------------------------------------------------


def linear_gaussian_setting(
    dim: int, sigma: float, num_steps: int, *, num_examples: int = 8, chains: int = 64
) -> Setting:
    """``W ~ N(0, 1/P)`` with ``P = 2d``, ``b ~ N(0, 1)``, observations drawn from the model."""
    generator = seeded(0)
    obs_dim = 2 * dim
    weight = torch.randn(obs_dim, dim, generator=generator, dtype=torch.float64) / obs_dim**0.5
    bias = torch.randn(obs_dim, generator=generator, dtype=torch.float64)
    model = LinearGaussian(weight, bias, sigma).requires_grad_(False)
    x = model.sample_observations(num_examples, generator=seeded(1))
    rows = x.repeat(chains, 1)
    eigenvalues = torch.linalg.eigvalsh(model.precision())

    def kl(step_size: float) -> float:
        with torch.no_grad():
            return float(model.kl_to_posterior(x, step_size, num_steps).mean())

    def entropy_gap(objective: str, step_size: float) -> float:
        with torch.no_grad():
            true = model.short_run_entropy(step_size, num_steps)
            if objective == "conditional":
                return float(true - model.conditional_entropy(step_size, num_steps))
            if objective == "epi":
                return float(true - model.epi_entropy(step_size, num_steps))
        return 0.0  # "linearized" is exact in expectation for affine chains

    return Setting(
        name=f"LG d={dim} σ={sigma} K={num_steps} S={chains}",
        kind="linear-Gaussian",
        dim=dim,
        num_steps=num_steps,
        num_examples=num_examples,
        chains=chains,
        log_joint=lambda z: model.log_joint(rows, z),
        kl=kl,
        # the affine chain is stable for s < 2 / lambda_max(A)
        s_max=0.95 * 2 / float(eigenvalues.max()),
        detail=f"eigenvalues of A in [{float(eigenvalues.min()):.2f}, "
        f"{float(eigenvalues.max()):.2f}]",
        entropy_gap=entropy_gap,
    )


def banana_log_joint(b: float = 0.5, sigma: float = 0.4, x: float = 1.0):
    r"""$\log \mathcal{N}(z; 0, I) + \log \mathcal{N}(x; z_2 + b z_1^2, \sigma^2)$."""

    def log_joint(z: Tensor) -> Tensor:
        residual = (x - z[..., 1] - b * z[..., 0].square()) / sigma
        return standard_normal_log_prob(z) - 0.5 * residual.square()

    return log_joint


def decoder_log_joint(seed: int = 3, hidden: int = 16, obs_dim: int = 6, sigma: float = 0.3):
    r"""$\log \mathcal{N}(z; 0, I) + \log \mathcal{N}(x; W_2\tanh(W_1 z + b_1), \sigma^2 I)$.

    Random weights (seed 3), 16 hidden units, 6 observed coordinates, ``x`` drawn from the model.
    """
    generator = seeded(seed)
    kw = {"generator": generator, "dtype": torch.float64}
    w1, b1 = 1.5 * torch.randn(hidden, 2, **kw), torch.randn(hidden, **kw)
    w2 = torch.randn(obs_dim, hidden, **kw) / hidden**0.5

    def decode(z: Tensor) -> Tensor:
        return torch.tanh(z @ w1.T + b1) @ w2.T

    z_true = torch.randn(1, 2, **kw)
    x = (decode(z_true) + sigma * torch.randn(1, obs_dim, **kw))[0]

    def log_joint(z: Tensor) -> Tensor:
        return standard_normal_log_prob(z) - 0.5 * ((x - decode(z)) / sigma).square().sum(-1)

    return log_joint


# (Its keyword signature only looks like _common.mlp_problem's: no logic is shared.)
def grid_kl_2d(
    log_joint: Callable[[Tensor], Tensor],
    step_size: float,
    num_steps: int,
    *,
    num_chains: int,
    seed: int = 0,
    limit: float = 4.0,
    cells: int = 401,
    block: int = 100_000,
) -> tuple[float, float]:
    r"""Exact-up-to-Monte-Carlo $\mathrm{KL}(q_s \| p(z \mid x))$ in 2-D, and the mass of
    $q_s$ inside the grid; ``(inf, nan)`` if a chain diverges. See the module docstring."""
    h = 2 * limit / (cells - 1)
    axis = torch.linspace(-limit, limit, cells, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        log_post = log_joint(grid).reshape(cells, cells)
    log_post = log_post - torch.logsumexp(log_post.flatten(), 0) - 2 * math.log(h)
    hist = torch.zeros(cells, cells, dtype=torch.float64)
    generator = seeded(seed)
    score = autograd_score(log_joint)
    steps = torch.full((num_steps, 1), step_size, dtype=torch.float64)
    for first in range(0, num_chains, block):
        count = min(block, num_chains - first)
        z0 = torch.randn(count, 2, generator=generator, dtype=torch.float64)
        noise = torch.randn(num_steps - 1, count, 2, generator=generator, dtype=torch.float64)
        z = rollout(score, z0, noise, steps[:-1])
        drift = z + step_size * score(z)
        if not bool(torch.isfinite(drift).all()):
            return float("inf"), float("nan")
        u = (drift + limit) / h
        corner = torch.floor(u).long()
        frac = u - corner
        for di in (0, 1):
            for dj in (0, 1):
                weight = (frac[:, 0] if di else 1 - frac[:, 0]) * (
                    frac[:, 1] if dj else 1 - frac[:, 1]
                )
                i, j = corner[:, 0] + di, corner[:, 1] + dj
                inside = (i >= 0) & (i < cells) & (j >= 0) & (j < cells)
                hist.index_put_((i[inside], j[inside]), weight[inside], accumulate=True)
    hist = hist / (num_chains * h * h)
    # Gaussian blur with variance 2s - h^2/6 (the binning already spread each drift by h^2/6).
    std_cells = math.sqrt(max(2 * step_size - h * h / 6, 0.0)) / h
    size = 2 * cells  # zero padding: no wrap-around
    freq = torch.fft.fftfreq(size, dtype=torch.float64)
    kernel = torch.exp(-2 * (math.pi * freq * std_cells) ** 2)
    kernel_2d = kernel[:, None] * kernel[None, : size // 2 + 1]
    padded = torch.nn.functional.pad(hist, (0, cells, 0, cells))
    density = torch.fft.irfft2(torch.fft.rfft2(padded) * kernel_2d, s=(size, size))
    density = density[:cells, :cells].clamp_min(0)
    positive = density > 0
    kl = (density[positive] * (density[positive].log() - log_post[positive])).sum() * h * h
    return float(kl), float(density.sum() * h * h)


_KL_CACHE: dict[tuple, float] = {}  # settings that share a posterior share its KL curve


def nonlinear_setting(
    name: str,
    log_joint: Callable[[Tensor], Tensor],
    *,
    s_max: float,
    kl_chains: int,
    chains: int = 512,
    num_steps: int = 25,
) -> Setting:
    def kl(step_size: float) -> float:
        key = (id(log_joint), step_size, num_steps, kl_chains)
        if key not in _KL_CACHE:
            _KL_CACHE[key] = grid_kl_2d(log_joint, step_size, num_steps, num_chains=kl_chains)[0]
        return _KL_CACHE[key]

    return Setting(
        name=f"{name} S={chains}",
        kind="2-D nonlinear",
        dim=2,
        num_steps=num_steps,
        num_examples=1,
        chains=chains,
        log_joint=log_joint,
        kl=kl,
        s_max=s_max,
        detail=f"KL on a 401² grid from {kl_chains} chains",
        kl_chains=kl_chains,
    )


# -- the study --------------------------------------------------------------------------------


def draw(setting: Setting, seed: int) -> tuple[Tensor, Tensor]:
    generator = seeded(1000 + seed)
    count = setting.chains * setting.num_examples
    z0 = torch.randn(count, setting.dim, generator=generator, dtype=torch.float64)
    noise = torch.randn(
        setting.num_steps, count, setting.dim, generator=generator, dtype=torch.float64
    )
    return z0, noise


def objective_value(
    setting: Setting, objective: str, z0: Tensor, noise: Tensor, table: Tensor
) -> Tensor:
    """$J(s) = -\\text{mean}[\\log p(x, z_K) + \\hat H]$ on the given draw."""
    z_k, entropy = EntropyEstimator(objective)(
        setting.log_joint,
        z0,
        noise,
        table,
        standard_normal_log_prob,
        num_examples=setting.num_examples,
    )
    return -(setting.log_joint(z_k) + entropy).mean()


def select(setting: Setting, objective: str, grid: Tensor, seed: int) -> tuple[float, list]:
    z0, noise = draw(setting, seed)
    values = []
    for step_size in grid.tolist():
        table = torch.full((setting.num_steps, 1), step_size, dtype=torch.float64)
        with torch.no_grad():
            try:
                value = float(objective_value(setting, objective, z0, noise, table))
            except (FloatingPointError, RuntimeError, ValueError):
                value = float("inf")  # a singular Jacobian or diverging chain scores inf
        values.append(value if math.isfinite(value) else float("inf"))
    best = min(range(len(values)), key=values.__getitem__)
    return float(grid[best]), values


def time_objectives(setting: Setting, step_size: float, repeats: int) -> dict[str, dict]:
    z0, noise = draw(setting, 0)
    table = torch.full((setting.num_steps, 1), step_size, dtype=torch.float64)

    def evaluate(objective: str) -> Callable[[], object]:
        def call() -> object:
            with torch.no_grad():
                return objective_value(setting, objective, z0, noise, table)

        return call

    def gradient(objective: str) -> Callable[[], object]:
        def call() -> object:
            variable = table.clone().requires_grad_(True)
            value = objective_value(setting, objective, z0, noise, variable)
            return torch.autograd.grad(value, variable)

        return call

    out = {}
    for label, make in (("evaluate", evaluate), ("gradient", gradient)):
        times = interleaved({name: make(name) for name in OBJECTIVES}, repeats=repeats)
        base = statistics.median(times[BASELINE])
        out[label] = {name: statistics.median(t) / base for name, t in times.items()}
        out[label + "_seconds"] = {name: statistics.median(t) for name, t in times.items()}
    return out


def bracket_width(setting: Setting, step_size: float) -> float:
    """Mean over examples of upper minus lower semi-implicit estimate (nats), seed-0 draw.

    The diagnostic a user can run at a tuned step size: a narrow bracket means the
    semi-implicit lower bound is close to the entropy and its objective can be trusted.
    """
    z0, noise = draw(setting, 0)
    table = torch.full((setting.num_steps, 1), step_size, dtype=torch.float64)
    with torch.no_grad():
        bounds = semi_implicit_bounds(
            setting.log_joint, z0, noise, table, num_examples=setting.num_examples
        )
    return float((bounds.upper - bounds.lower).mean())


def gradient_tune(setting: Setting, name: str, iterations: int) -> tuple[float, float]:
    z0, noise = draw(setting, 0)

    def objective(table: Tensor) -> Tensor:
        full = table.expand(setting.num_steps, 1)
        return objective_value(setting, name, z0, noise, full)

    initial = torch.tensor([[0.005]], dtype=torch.float64)
    found = gradient_search(
        objective,
        initial,
        num_iterations=iterations,
        learning_rate=0.1,
        bounds=(1e-4, setting.s_max),
    )
    step_size = float(found.step_size)
    return step_size, setting.kl(step_size)


def run_setting(
    setting: Setting,
    *,
    grid_points: int,
    seeds: int,
    repeats: int,
    gradient_iterations: int,
    s_min: float,
) -> dict:
    start = time.perf_counter()
    grid = torch.exp(
        torch.linspace(math.log(s_min), math.log(setting.s_max), grid_points, dtype=torch.float64)
    )
    kl_grid = [setting.kl(s) for s in grid.tolist()]
    if setting.kind == "linear-Gaussian":  # continuous oracle: a 2000-point grid
        fine = torch.exp(
            torch.linspace(math.log(s_min), math.log(setting.s_max), 2000, dtype=torch.float64)
        ).tolist()
        fine_kl = [setting.kl(s) for s in fine]
        best = min(range(len(fine)), key=fine_kl.__getitem__)
        oracle_s, oracle_kl, oracle_error = fine[best], fine_kl[best], 0.0
        # Noise-free selection: the minimiser of each objective's exact expectation.
        expected, gap = {}, setting.entropy_gap or (lambda name, s: 0.0)
        for name in ("conditional", "epi", "linearized"):
            values = [k + gap(name, s) for s, k in zip(fine, fine_kl, strict=True)]
            pick = min(range(len(fine)), key=values.__getitem__)
            expected[name] = {
                "s": fine[pick],
                "kl": fine_kl[pick],
                "ratio": fine_kl[pick] / oracle_kl,
            }
    else:  # 2-D: the oracle is the best grid point; its MC error from an independent seed
        expected = None
        finite = [k if math.isfinite(k) else float("inf") for k in kl_grid]
        best = min(range(len(finite)), key=finite.__getitem__)
        oracle_s, oracle_kl = float(grid[best]), finite[best]
        again = grid_kl_2d(
            setting.log_joint, oracle_s, setting.num_steps, num_chains=setting.kl_chains, seed=99
        )[0]
        oracle_error = abs(again - oracle_kl)
    chosen: dict[str, list[dict]] = {name: [] for name in OBJECTIVES}
    curves = {}
    for seed in range(seeds):
        for name in OBJECTIVES:
            s_hat, values = select(setting, name, grid, seed)
            kl_hat = kl_grid[grid.tolist().index(s_hat)]
            chosen[name].append({"s": s_hat, "kl": kl_hat, "ratio": kl_hat / oracle_kl})
            if seed == 0:
                curves[name] = values
    cost = time_objectives(setting, oracle_s, repeats)
    bracket = bracket_width(setting, chosen["semi_implicit"][0]["s"])
    tuned = {}
    for name in GRADIENT_TUNED if gradient_iterations else ():
        s_hat, kl_hat = gradient_tune(setting, name, gradient_iterations)
        tuned[name] = {"s": s_hat, "kl": kl_hat, "ratio": kl_hat / oracle_kl}
    result = {
        "setting": setting.name,
        "kind": setting.kind,
        "detail": setting.detail,
        "dim": setting.dim,
        "num_steps": setting.num_steps,
        "num_examples": setting.num_examples,
        "chains": setting.chains,
        "oracle_s": oracle_s,
        "oracle_kl": oracle_kl,
        "oracle_kl_error": oracle_error,
        "expected_objective_choice": expected,
        "grid": grid.tolist(),
        "kl_grid": kl_grid,
        "curves_seed0": curves,
        "chosen": chosen,
        "cost": cost,
        "gradient_tuning": tuned,
        "semi_implicit_bracket": bracket,
        "seconds": time.perf_counter() - start,
    }
    print_setting(result)
    return result


# -- reporting --------------------------------------------------------------------------------


def print_setting(result: dict) -> None:
    print(
        f"\n{result['setting']} ({result['detail']}): oracle s={result['oracle_s']:.4g} "
        f"KL={result['oracle_kl']:.4g}  [{result['seconds']:.0f} s]"
    )
    for name in OBJECTIVES:
        first = result["chosen"][name][0]
        worst = max(c["ratio"] for c in result["chosen"][name])
        print(
            f"  {name:14s} s={first['s']:.4g} KL={first['kl']:.4g} ({first['ratio']:.2f}x, "
            f"worst {worst:.2f}x)  cost eval {result['cost']['evaluate'][name]:.2f}x "
            f"grad {result['cost']['gradient'][name]:.2f}x",
            flush=True,
        )
    print(
        f"  semi-implicit bracket (upper - lower) at its chosen s: "
        f"{result['semi_implicit_bracket']:.3g} nats"
    )
    for name, tuned in result["gradient_tuning"].items():
        print(
            f"  gradient tuning ({name}): s={tuned['s']:.4g} KL={tuned['kl']:.4g}"
            f" ({tuned['ratio']:.2f}x)"
        )


def _choices_table(results: list[dict], key: str, names: Sequence[str]) -> list[str]:
    """``s / KL (ratio)`` per objective in ``names`` from ``r[key]``, for settings that have it."""
    lines = [
        "| setting | oracle s / KL | " + " | ".join(names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for r in results:
        chosen = r[key]
        if chosen:
            lines.append(
                f"| {r['setting']} | {r['oracle_s']:.4f} / {r['oracle_kl']:.3g} | "
                + " | ".join(
                    f"{chosen[n]['s']:.4f} / {chosen[n]['kl']:.3g} ({chosen[n]['ratio']:.2f}×)"
                    for n in names
                )
                + " |"
            )
    return lines


def markdown_tables(results: list[dict]) -> str:
    head = "| setting | oracle s | oracle KL | " + " | ".join(OBJECTIVES) + " |"
    rule = "|---|---:|---:|" + "---:|" * len(OBJECTIVES)
    main = [head, rule]
    for r in results:
        cells = []
        for name in OBJECTIVES:
            c = r["chosen"][name][0]
            cells.append(f"{c['s']:.4f} / {c['kl']:.3g} ({c['ratio']:.2f}×)")
        err = f" ± {r['oracle_kl_error']:.1g}" if r["oracle_kl_error"] else ""
        main.append(
            f"| {r['setting']} | {r['oracle_s']:.4f} | {r['oracle_kl']:.3g}{err} | "
            + " | ".join(cells)
            + " |"
        )
    seeds = [head.replace("oracle s | oracle KL", "seeds | oracle KL"), rule]
    for r in results:
        cells = []
        for name in OBJECTIVES:
            ratios = [c["ratio"] for c in r["chosen"][name]]
            cells.append(f"{statistics.median(ratios):.2f}× (worst {max(ratios):.2f}×)")
        seeds.append(
            f"| {r['setting']} | {len(r['chosen'][OBJECTIVES[0]])} | "
            f"{r['oracle_kl']:.3g} | " + " | ".join(cells) + " |"
        )
    cost = [
        "| setting | " + " | ".join(OBJECTIVES) + " | conditional s/eval |",
        "|---|" + "---:|" * (len(OBJECTIVES) + 1),
    ]
    for r in results:
        cells = [
            f"{r['cost']['evaluate'][n]:.2f}× / {r['cost']['gradient'][n]:.2f}×"
            for n in OBJECTIVES
        ]
        cost.append(
            f"| {r['setting']} | "
            + " | ".join(cells)
            + f" | {r['cost']['evaluate_seconds'][BASELINE]:.3f} |"
        )
    tuning = _choices_table(results, "gradient_tuning", GRADIENT_TUNED)
    exact = _choices_table(
        results, "expected_objective_choice", ("conditional", "epi", "linearized")
    )
    bracket = [
        "| setting | D | S | bracket (nats) | semi_implicit KL ratio (worst) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        worst = max(c["ratio"] for c in r["chosen"]["semi_implicit"])
        bracket.append(
            f"| {r['setting']} | {r['dim']} | {r['chains']} | "
            f"{r['semi_implicit_bracket']:.3g} | {worst:.2f}× |"
        )
    goal = ["| setting | objectives within 1.5× KL at ≤ 3× cost (all seeds) |", "|---|---|"]
    met_everywhere = True
    for r in results:
        ok = [
            n
            for n in OBJECTIVES
            if max(c["ratio"] for c in r["chosen"][n]) <= GOAL_KL_RATIO
            and r["cost"]["evaluate"][n] <= GOAL_COST_RATIO
        ]
        met_everywhere &= bool(ok)
        goal.append(f"| {r['setting']} | {', '.join(ok) if ok else '**none**'} |")
    return "\n".join(
        [
            "### Chosen step size and exact KL (seed 0): `s / KL (KL ÷ oracle KL)`",
            "",
            *main,
            "",
            "### KL ÷ oracle KL over seeds of the chains' draw: median (worst)",
            "",
            *seeds,
            "",
            "### Linear-Gaussian without Monte Carlo noise: minimiser of each objective's exact "
            "expectation (2000-point grid), `s / KL (ratio)`",
            "",
            *exact,
            "",
            "### Cost per evaluation relative to the paper's objective: "
            "`evaluate / value-and-gradient in s`",
            "",
            *cost,
            "",
            "### Gradient tuning (Adam on log s from s = 0.005, seed 0): `s / KL (ratio)`",
            "",
            *tuning,
            "",
            "### Semi-implicit bracket at its chosen step size (seed 0): "
            "mean of upper − lower estimate",
            "",
            *bracket,
            "",
            "### Goal (issue 6)",
            "",
            *goal,
            "",
            f"**Goal met on every setting: {'yes' if met_everywhere else 'no'}.**",
        ]
    )


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 4
    rows = math.ceil(len(results) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    markers = {
        "conditional": "v",
        "epi": "s",
        "semi_implicit": "D",
        "linearized": "^",
        "sandwich": "o",
    }
    for ax, r in zip(axes.flat, results, strict=True):
        kl = [k if math.isfinite(k) else float("nan") for k in r["kl_grid"]]
        ax.loglog(r["grid"], kl, color="0.3", lw=1.5, label="exact KL(q_s ‖ p)")
        ax.axvline(r["oracle_s"], color="0.6", ls=":", lw=1)
        for i, name in enumerate(OBJECTIVES):
            c = r["chosen"][name][0]
            ax.loglog(
                c["s"], c["kl"] * (1 + 0.04 * i), markers[name], ms=7, alpha=0.85, label=name
            )
        ax.axhline(GOAL_KL_RATIO * r["oracle_kl"], color="tab:green", lw=0.8, ls="--")
        ax.set_title(r["setting"], fontsize=10)
        ax.set_xlabel("step size s")
        ax.set_ylabel("KL")
    for ax in list(axes.flat)[len(results) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="upper right")
    fig.suptitle(
        "Step size chosen by each objective on the exact KL curve "
        "(green dashed: 1.5 × optimum; dotted: oracle s)",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--grid-points", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5, help="timing repetitions")
    parser.add_argument("--kl-chains", type=int, default=200_000)
    parser.add_argument("--gradient-iterations", type=int, default=40)
    args = parser.parse_args()
    use_default_device(setup(args))
    if args.quick:
        args.seeds, args.grid_points, args.repeats = 1, 12, 2
        args.kl_chains, args.gradient_iterations = 20_000, 5
    banana = banana_log_joint()
    settings = [
        linear_gaussian_setting(2, 0.7, 25),
        linear_gaussian_setting(2, 0.7, 25, chains=512),  # the same, with 8x the chains
        linear_gaussian_setting(4, 0.2, 25),
        linear_gaussian_setting(8, 0.7, 25),
        linear_gaussian_setting(8, 0.3, 10),
        linear_gaussian_setting(16, 0.5, 25),
        nonlinear_setting("banana 2-D", banana, s_max=0.03, kl_chains=args.kl_chains),
        nonlinear_setting("banana 2-D", banana, s_max=0.03, kl_chains=args.kl_chains, chains=2048),
        nonlinear_setting(
            "tanh decoder 2-D", decoder_log_joint(), s_max=0.06, kl_chains=args.kl_chains
        ),
    ]
    if args.quick:
        settings = [settings[0], settings[-1]]
    env = environment()
    results = [
        run_setting(
            s,
            grid_points=args.grid_points,
            seeds=args.seeds,
            repeats=args.repeats,
            gradient_iterations=args.gradient_iterations,
            s_min=1e-3,
        )
        for s in settings
    ]
    tables = markdown_tables(results)
    print("\n" + tables)
    if args.quick:
        return
    results_dir().mkdir(parents=True, exist_ok=True)
    plot(results, results_dir() / "objectives.png")
    markdown = "\n".join(
        [
            "# Step-size objectives against the KL-optimal step size",
            "",
            "Produced by `benchmarks/objectives.py` (see its docstring and `docs/objectives.md`).",
            f"Grid: {args.grid_points} log-spaced step sizes from 0.001 to each setting's `s_max`;"
            f" {args.seeds} seeds of the chains' draw (common random numbers across the grid);"
            " linear-Gaussian: 8 examples × S chains, KL closed-form, oracle on a 2000-point grid;"
            f" 2-D: 1 example × S chains, KL from {args.kl_chains} chains on a 401² grid,"
            " oracle = best grid point (± its Monte Carlo error from an independent seed).",
            "",
            "![chosen step sizes](objectives.png)",
            "",
            tables,
            "",
            READING,
            "",
            "## Environment",
            "",
            environment_markdown(env),
            "",
        ]
    )
    write_result("objectives", markdown, {"environment": env, "results": results})


if __name__ == "__main__":
    main()
