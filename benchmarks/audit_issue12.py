"""Issue 12 audit, classes 1-2: each case must end in a clear error or correct behaviour.

Run ``python benchmarks/audit_issue12.py``: one line per case, then a count per class.
"""

# ruff: noqa: E501, E731 - a table of one-line cases reads best with one case per line

import argparse
import warnings

import torch
from torch.distributions import Normal

import shortinfer

_parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
_parser.add_argument("--device", default="cpu", help="torch device: cpu (default) or cuda")
_device = torch.device(_parser.parse_args().device)
if _device.type != "cpu":  # the cases build their tensors inline: make the device the default
    torch.set_default_device(_device)
S = shortinfer
g = lambda: torch.Generator(_device).manual_seed(0)
std = lambda x, z: -0.5 * z.square().sum(-1) - 0.5 * (x - z).square().sum(-1)
sup = lambda x, z: (-0.5 * (z - 5) ** 2 + torch.log(3 - z)).sum(-1)
results = []


def case(cls, name, f, expect):
    try:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            out = f()
        ok = expect(out, w) if callable(expect) else False
        what = f"returned; warnings={[str(x.message)[:60] for x in w]}"
    except Exception as e:
        ok = (
            isinstance(expect, type) and isinstance(e, expect) and isinstance(e, S.ShortinferError)
        )
        what = f"{type(e).__name__}: {str(e)[:110]}"
    results.append((cls, name, ok))
    print(f"[{'ok ' if ok else 'BAD'}] {cls} {name}: {what}")


post = lambda lj, **k: S.short_run(
    lj, torch.zeros(4, k.pop("d", 1)), latent_shape=(k.pop("d2", 1),), generator=g(), **k
)
for m in ["sample", "rsample", "entropy", "elbo"]:
    case(
        1,
        f"support {m}",
        lambda m=m: getattr(post(sup, step_size=0.5), m)(),
        S.ChainDivergenceError,
    )
case(
    1,
    "support dict latent",
    lambda: S.short_run(
        lambda x, z: sup(x, z["a"]) + std(x, z["b"]),
        torch.zeros(4, 1),
        latent_shape={"a": (1,), "b": (1,)},
        step_size=0.5,
        generator=g(),
    ).sample(),
    S.ChainDivergenceError,
)
case(
    1,
    "support num_samples=3",
    lambda: post(sup, step_size=0.5).sample((3,)),
    S.ChainDivergenceError,
)
for m in ["sample", "entropy", "elbo"]:
    case(
        1,
        f"explode {m}",
        lambda m=m: getattr(post(std, d=2, d2=2, step_size=1e6), m)(),
        S.ChainDivergenceError,
    )
case(
    1,
    "explode tune grid all",
    lambda: post(std, step_size=0.1).tune_step_size(grid=[1e6, 1e7]),
    FloatingPointError,
)
case(
    1,
    "explode tune grid mixed",
    lambda: post(std, step_size=0.1).tune_step_size(grid=[0.1, 1e7]),
    lambda t, w: t.step_size == 0.1 and len(t.trace.dropped) == 1,
)
case(
    1,
    "explode tune gradient huge lr",
    lambda: post(std, step_size=0.1).tune_step_size(
        "gradient", learning_rate=50.0, num_iterations=5
    ),
    lambda t, w: True,
)
case(
    1,
    "elbo NaN (support)",
    lambda: post(sup, step_size=0.5).elbo(num_samples=2),
    S.ChainDivergenceError,
)
case(
    1,
    "step_size requires_grad scalar",
    lambda: post(std, step_size=torch.tensor(0.1, requires_grad=True)),
    S.ArgumentError,
)
case(
    1,
    "step_size requires_grad per step",
    lambda: post(std, step_size=torch.full((25,), 0.1, requires_grad=True)),
    S.ArgumentError,
)
case(
    1,
    "step_size requires_grad dict",
    lambda: S.short_run(
        std,
        torch.zeros(2, 1),
        latent_shape={"a": (1,)},
        step_size={"a": torch.tensor(0.1, requires_grad=True)},
    ),
    S.ArgumentError,
)


def mk(kind):
    x0 = torch.zeros(2, 1)
    x = {"t": x0, "tuple": (x0,), "list": [x0], "dict": {"a": x0}}[kind]

    def lj(x, z):
        leaf = x if isinstance(x, torch.Tensor) else (x["a"] if isinstance(x, dict) else x[0])
        leaf.mul_(2).add_(1)
        return std(leaf, z)

    try:
        S.short_run(lj, x, latent_shape=(1,))
    finally:
        assert bool((x0 == 0).all()), "caller's x changed"


for kind in ["t", "tuple", "list", "dict"]:
    case(1, f"mutate x ({kind})", lambda kind=kind: mk(kind), S.LogJointError)


class M(torch.nn.Module):
    def __init__(s):
        super().__init__()
        s.bn = torch.nn.BatchNorm1d(1)

    def log_joint(s, x, z):
        return std(x, s.bn(z))


case(
    1,
    "BatchNorm train bound method",
    lambda: S.short_run(M().log_joint, torch.zeros(4, 1), latent_shape=(1,)),
    lambda p, w: len(w) == 1 and "batch norm" in str(w[0].message),
)
case(
    1,
    "BatchNorm eval",
    lambda: S.short_run(M().eval().log_joint, torch.zeros(4, 1), latent_shape=(1,)),
    lambda p, w: len(w) == 0,
)
ljd = lambda x, z: (
    Normal(z, 1.0, validate_args=True).log_prob(x).sum(-1) - 0.5 * z.square().sum(-1)
)
case(
    1,
    "grid candidate raises ValueError",
    lambda: post(ljd).tune_step_size(grid=[0.05, 1e6]),
    lambda t, w: t.step_size == 0.05 and "ValueError" in t.trace.dropped[0],
)
case(
    1,
    "grid all candidates raise",
    lambda: post(ljd).tune_step_size(grid=[1e5, 1e6]),
    FloatingPointError,
)
# class 2
q = S.short_run(std, torch.zeros(2, 1), latent_shape=(1,))
for name, f in [
    ("latent_shape (2.7, 2)", lambda: S.short_run(std, torch.zeros(2, 1), latent_shape=(2.7, 2))),
    ("latent_shape '12'", lambda: S.short_run(std, torch.zeros(2, 1), latent_shape="12")),
    ("latent_shape (True,)", lambda: S.short_run(std, torch.zeros(2, 1), latent_shape=(True,))),
    (
        "latent_shape {'a': 2.5}",
        lambda: S.short_run(std, torch.zeros(2, 1), latent_shape={"a": 2.5}),
    ),
    ("latent_shape (0,)", lambda: S.short_run(std, torch.zeros(2, 1), latent_shape=(0,))),
    ("sample((-1,))", lambda: q.sample((-1,))),
    ("sample((0,))", lambda: q.sample((0,))),
    ("sample(3)", lambda: q.sample(3)),
    ("sample((2.0,))", lambda: q.sample((2.0,))),
    ("rsample((-2,))", lambda: q.rsample((-2,))),
    ("entropy(num_samples=0)", lambda: q.entropy(num_samples=0)),
    ("entropy(num_samples=1.5)", lambda: q.entropy(num_samples=1.5)),
    ("elbo(num_samples=-1)", lambda: q.elbo(num_samples=-1)),
    ("entropy(mode='x')", lambda: q.entropy(mode="x")),
    ("elbo(objective='x')", lambda: q.elbo(objective="x")),
    ("draw_noise(0)", lambda: q.draw_noise(0)),
    ("tune gradient num_iterations=-1", lambda: q.tune_step_size("gradient", num_iterations=-1)),
    ("tune gradient num_iterations=0", lambda: q.tune_step_size("gradient", num_iterations=0)),
    ("tune num_samples=0", lambda: q.tune_step_size(num_samples=0)),
    ("tune grid=['a']", lambda: q.tune_step_size(grid=["a"])),
    ("tune grid=[]", lambda: q.tune_step_size(grid=[])),
    ("tune grid=[nan]", lambda: q.tune_step_size(grid=[float("nan")])),
    ("tune grid=[inf]", lambda: q.tune_step_size(grid=[float("inf")])),
    ("tune method='x'", lambda: q.tune_step_size("x")),
    ("tune mode='x'", lambda: q.tune_step_size(grid=[0.1], mode="x")),
    ("generator=0", lambda: S.short_run(std, torch.zeros(2, 1), latent_shape=(1,), generator=0)),
    (
        "generator='cpu'",
        lambda: S.short_run(std, torch.zeros(2, 1), latent_shape=(1,), generator="cpu"),
    ),
    (
        "num_steps=2.5",
        lambda: S.short_run(std, torch.zeros(2, 1), latent_shape=(1,), num_steps=2.5),
    ),
    (
        "step_size=-1",
        lambda: S.short_run(std, torch.zeros(2, 1), latent_shape=(1,), step_size=-1.0),
    ),
    (
        "sigma tensor 0",
        lambda: S.gaussian_log_likelihood(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor(0.0)),
    ),
    (
        "sigma tensor <0",
        lambda: S.gaussian_log_likelihood(
            torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([1.0, -1.0, 1.0])
        ),
    ),
    (
        "sigma float nan",
        lambda: S.gaussian_log_likelihood(torch.zeros(2, 3), torch.zeros(2, 3), float("nan")),
    ),
    ("sigma str", lambda: S.gaussian_log_likelihood(torch.zeros(2, 3), torch.zeros(2, 3), "0.3")),
]:
    expect = S.ShortinferError
    case(2, name, f, expect)
for cls in (1, 2):
    rs = [r for r in results if r[0] == cls]
    print(
        f"class {cls}: {sum(r[2] for r in rs)} of {len(rs)} cases end in a clear error or correct behaviour"
    )
