r"""Validation at the public boundary, shared by every entry point.

Each check raises with a message that names the argument, shows what was received, says what
was expected, and suggests a fix.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Mapping

import torch
from torch import Tensor

__all__ = [
    "ArgumentError",
    "ArgumentTypeError",
    "IntArgumentError",
    "ChainDivergenceError",
    "AccessError",
    "ChainMonitor",
    "ExistingFileError",
    "MissingDependencyError",
    "MissingFileError",
    "NotAFolderError",
    "LOG_JOINT_DOCS",
    "LogJointError",
    "MAX_ABS_LATENT",
    "ShortinferError",
    "check_choice",
    "check_finite_observations",
    "check_generator",
    "check_int",
    "check_mode",
    "check_num_mixture",
    "check_num_steps",
    "check_sample_shape",
    "check_step_size_not_trainable",
    "check_x_unchanged",
    "find_divergence",
    "probe_log_joint",
    "translate_func_errors",
    "warn_if_training_batch_norm",
]

LOG_JOINT_DOCS = "docs/log_joint.md (the log_joint contract)"

# Defined here so that `check_num_mixture` can quote it without importing
# `shortinfer.objectives` (which imports this module), where `DEFAULT_NUM_MIXTURE` is documented.
DEFAULT_NUM_MIXTURE = 255

MAX_ABS_LATENT: float = 1e10
r"""Largest $|z|$ a chain may reach before it counts as exploded.

A chain whose step size is far too large grows geometrically without ever overflowing, e.g.
$s = 10^6$ on a standard-normal model gives $|z| \approx 10^{31}$ after 25 steps: finite, and
meaningless. $10^{10}$ is $10^{10}$ standard deviations of the $\mathcal{N}(0, I)$ prior the
library defaults to (a latent there has prior log-density $-5 \cdot 10^{19}$), and the square of
$|z|$, which most log-densities compute, is still finite in float32 (it overflows above
$1.8 \cdot 10^{19}$). A model whose latents legitimately live on a larger scale should rescale
them.
"""


class ShortinferError(Exception):
    """Base class of the errors shortinfer raises on purpose (bad input, bad files, faults).

    The command line turns these, and only these, into a one-line message and exit status 2.

    Examples:
        >>> issubclass(LogJointError, ShortinferError)
        True
    """


class ArgumentError(ShortinferError, ValueError):
    """An argument has the wrong value (or, for `check_int`, also the wrong type).

    Examples:
        >>> issubclass(ArgumentError, ValueError)
        True
    """


class ArgumentTypeError(ShortinferError, TypeError):
    """An argument has the wrong type."""


class IntArgumentError(ArgumentError, ArgumentTypeError):
    """A count or size that is not an int >= its minimum: both a ``TypeError`` and a
    ``ValueError``, so code written against either keeps working."""


class MissingFileError(ShortinferError, FileNotFoundError):
    """A file or folder the user named does not exist (or holds nothing usable)."""


class ExistingFileError(ShortinferError, FileExistsError):
    """A file would be overwritten that holds earlier work."""


class NotAFolderError(ShortinferError, NotADirectoryError):
    """A path that must be a folder is not one."""


class AccessError(ShortinferError, PermissionError):
    """A file or folder cannot be read or written with the current permissions."""


class MissingDependencyError(ShortinferError, ImportError):
    """An optional dependency a feature needs is not installed."""


class LogJointError(ShortinferError, ValueError):
    """``log_joint`` broke its contract: wrong shape, non-finite, or unusable under torch.func."""


class ChainDivergenceError(ShortinferError, FloatingPointError):
    """The short-run chain diverged: non-finite or exploding latents, or a non-finite density."""


def check_int(
    name: str, value: object, minimum: int = 1, *, what: str = "", hint: str = ""
) -> int:
    r"""Return ``value`` if it is an int $\ge$ ``minimum``, else raise naming ``name``.

    The one integer checker behind every count and size the library accepts. The error is both
    a ``TypeError`` and a ``ValueError`` (`ArgumentError`), so either ``except`` catches it.

    Arguments:
        name: The argument's name, as the user wrote it.
        value: What was received.
        minimum: The smallest allowed value.
        what: Words that explain the argument, placed after the bound.
        hint: A sentence that says how to fix it.

    Examples:
        >>> check_int("num_samples", 4)
        4
        >>> check_int("num_samples", 0, hint="Use 1 or more chains.")
        Traceback (most recent call last):
        ...
        shortinfer._checks.IntArgumentError: num_samples must be an int >= 1; received 0 (int). Use 1 or more chains.
    """  # noqa: E501
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        message = (
            f"{name} must be an int >= {minimum}{what}; received {value!r} "
            f"({type(value).__name__})."
        )
        raise IntArgumentError(f"{message} {hint}" if hint else message)
    return int(value)


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise listing them.

    Examples:
        >>> check_choice("mode", "forward", ("reverse", "forward"))
        'forward'
    """
    if not isinstance(value, str) or value not in choices:
        listed = " or ".join(repr(c) for c in choices)
        raise ArgumentError(f"{name} must be {listed}; received {value!r}.")
    return value


def check_mode(mode: object, name: str = "mode") -> str:
    """Check a Jacobian ``mode``: ``"reverse"`` (vjp rows) or ``"forward"`` (jvp columns).

    Examples:
        >>> check_mode("reverse")
        'reverse'
    """
    return check_choice(name, mode, ("reverse", "forward"))


def check_num_steps(num_steps: object) -> int:
    """Return ``num_steps`` as an int, or raise if it is not an integer >= 1.

    Examples:
        >>> check_num_steps(25)
        25
    """
    return check_int("num_steps", num_steps, 1, hint="The paper uses num_steps=25.")


def check_num_mixture(num_mixture: object) -> int:
    """Return ``num_mixture`` (semi-implicit mixture size) as an int, or raise if not >= 1.

    Examples:
        >>> check_num_mixture(255)
        255
    """
    return check_int(
        "num_mixture",
        num_mixture,
        1,
        what=" (the most other chains of an example in each chain's semi-implicit mixture, "
        "M = min(num_mixture, num_samples - 1))",
        hint=f"Pass a positive int, e.g. the default {DEFAULT_NUM_MIXTURE}: "
        "larger M tightens the 'semi_implicit' and 'sandwich' objectives and costs "
        "O(num_samples * M) kernel evaluations per example.",
    )


def check_sample_shape(sample_shape: object) -> torch.Size:
    """Return ``sample_shape`` as a ``torch.Size`` of ints >= 1, or raise.

    Examples:
        >>> check_sample_shape((2, 3))
        torch.Size([2, 3])
    """
    if isinstance(sample_shape, (int, str)) or not isinstance(
        sample_shape, (tuple, list, torch.Size)
    ):
        raise ArgumentTypeError(
            f"sample_shape must be a tuple of ints, as in torch.distributions; received "
            f"{sample_shape!r} ({type(sample_shape).__name__}). Pass e.g. sample_shape=(4,)."
        )
    for size in sample_shape:
        check_int(
            "every sample_shape entry",
            size,
            1,
            hint=f"sample_shape={tuple(sample_shape)!r}; pass e.g. (4,), or () for one draw.",
        )
    return torch.Size(sample_shape)


def check_generator(generator: object) -> torch.Generator | None:
    """Return ``generator`` if it is ``None`` or a ``torch.Generator``, else raise.

    Examples:
        >>> check_generator(None) is None
        True
    """
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ArgumentTypeError(
            f"generator must be a torch.Generator or None; received {generator!r} "
            f"({type(generator).__name__}). For a seed, pass "
            f"generator=torch.Generator().manual_seed({generator!r})."
        )
    return generator


def check_step_size_not_trainable(step_size: object) -> None:
    """Refuse a step size that requires grad: a posterior holds a fixed step size.

    Examples:
        >>> check_step_size_not_trainable(torch.tensor(0.1))
    """
    values = step_size.values() if isinstance(step_size, Mapping) else [step_size]
    if any(isinstance(v, Tensor) and v.requires_grad for v in values):
        raise ArgumentError(
            "step_size requires grad, but a posterior holds a fixed step size and would "
            "silently detach it, so no gradient would reach it. To optimise the step size, use "
            "tune_step_size('gradient'), or differentiate step_size_objective(chain, table) "
            "with respect to a table that requires grad; otherwise pass step_size.detach()."
        )


def check_finite_observations(leaves: list[Tensor]) -> None:
    """Raise if any observed tensor holds NaN or infinity."""
    for i, leaf in enumerate(leaves):
        if leaf.is_floating_point() and not bool(torch.isfinite(leaf).all()):
            bad = int((~torch.isfinite(leaf)).sum())
            where = "x" if len(leaves) == 1 else f"x[{i}]"
            raise ValueError(
                f"{where} contains {bad} non-finite value(s) (NaN or inf) out of "
                f"{leaf.numel()}. Observations must be finite; to leave pixels out, set them to "
                "any finite value and pass a mask to the likelihood instead."
            )


def probe_log_joint(
    log_joint_flat: Callable[[Tensor], Tensor], z_flat: Tensor, batch_size: int
) -> None:
    r"""Call ``log_joint`` once and check its output shape, finiteness and dependence on z.

    Arguments:
        log_joint_flat: ``log_joint`` with ``x`` bound, on flat latents ``(B, D)``.
        z_flat: A prior draw, with shape ``(B, D)``.
        batch_size: B.
    """
    z = z_flat.detach().requires_grad_(True)
    with torch.enable_grad():
        try:
            value = log_joint_flat(z)
        except Exception as err:
            raise LogJointError(
                f"log_joint(x, z) raised {type(err).__name__}: {err}. It is called with x as "
                f"given and z shaped like the latent, batch first. See {LOG_JOINT_DOCS}."
            ) from err
        if not isinstance(value, Tensor):
            raise LogJointError(
                f"log_joint must return a tensor of shape ({batch_size},); received "
                f"{type(value).__name__}. Return log p(x, z) per example, summed over event "
                "dimensions."
            )
        if value.shape != (batch_size,):
            raise LogJointError(
                f"log_joint returned shape {tuple(value.shape)}; expected ({batch_size},), one "
                "log p(x, z) per example. Sum over the event dimensions, e.g. "
                "`.flatten(1).sum(-1)`, and do not average over the batch."
            )
        if not bool(torch.isfinite(value).all()):
            raise LogJointError(
                f"log_joint returned non-finite values {value.detach().cpu().tolist()} at a "
                "draw from the prior. Check the model for log(0) or overflow."
            )
        if not value.requires_grad:
            raise LogJointError(
                "log_joint's output does not depend on z (it carries no gradient). Build the "
                "result from z with differentiable torch operations, and do not detach z or "
                "call .item()/.numpy() on it."
            )
        (gradient,) = torch.autograd.grad(value.sum(), z, allow_unused=True)
    if gradient is None:
        raise LogJointError(
            "log_joint's output does not depend on z: its gradient with respect to z is None. "
            "The Langevin chain needs d log p(x, z) / dz."
        )
    if not bool(torch.isfinite(gradient).all()):
        raise LogJointError(
            "the gradient of log_joint with respect to z is non-finite at a draw from the "
            "prior. Check the model for operations whose derivative blows up (sqrt(0), abs)."
        )


@contextlib.contextmanager
def translate_func_errors() -> Iterator[None]:
    """Re-raise torch.func failures inside ``log_joint`` with a pointer to the contract."""
    try:
        yield
    except (RuntimeError, NotImplementedError) as err:
        message = str(err)
        hints = {
            ".item()": "do not call .item() or convert z to Python numbers",
            "data-dependent": "replace data-dependent `if` on tensors with torch.where",
            "in-place": "avoid in-place writes (x += ..., x[i] = ...) to captured tensors",
            "randomness": "draw random numbers outside log_joint",
        }
        found = [hint for key, hint in hints.items() if key in message]
        hint = "; ".join(found) if found else "see the list of restrictions"
        raise LogJointError(
            f"log_joint failed under torch.func (used for the exact Jacobian): {message}\n"
            f"Fix: {hint}. See {LOG_JOINT_DOCS}."
        ) from err


class ChainMonitor:
    r"""Wraps a flat ``log_joint`` and records, without a device sync, whether the chain is sane.

    Each call folds ``isfinite(log p(x, z_k)).all()`` and ``max |z_k| <= MAX_ABS_LATENT`` into
    one boolean tensor on the device; `healthy` reads it once, at the end of the chain, after
    also checking $z_K$ and $\log p(x, z_K)$ (one extra forward pass of ``log_joint``, without
    gradient). This catches a chain that leaves the density's support while $z$ stays finite
    (``log p`` NaN or $-\infty$) and a chain that explodes without overflowing.

    Arguments:
        log_joint: ``log_joint`` with ``x`` bound, on flat latents ``(N, D) -> (N,)``.

    Examples:
        >>> monitor = ChainMonitor(lambda z: -0.5 * z.square().sum(-1))
        >>> _ = monitor(torch.zeros(2, 3))
        >>> monitor.healthy(torch.zeros(2, 3))
        True
    """

    def __init__(self, log_joint: Callable[[Tensor], Tensor]) -> None:
        self.log_joint = log_joint
        self.flag: Tensor | None = None

    def _fold(self, z: Tensor, value: Tensor) -> None:
        z, value = z.detach(), value.detach()
        flag = torch.isfinite(value).all() & (z.abs().amax() <= MAX_ABS_LATENT)
        self.flag = flag if self.flag is None else self.flag & flag

    def __call__(self, z: Tensor) -> Tensor:
        value = self.log_joint(z)
        self._fold(z, value)
        return value

    def healthy(self, z_k: Tensor) -> bool:
        """Whether every state, including ``z_k``, was finite, bounded and in the support."""
        with torch.no_grad():
            self._fold(z_k, self.log_joint(z_k.detach()))
        assert self.flag is not None  # set by the _fold just above
        return bool(self.flag)


def find_divergence(
    step: Callable[[int, Tensor], Tensor],
    z0: Tensor,
    num_steps: int,
    log_joint: Callable[[Tensor], Tensor] | None = None,
) -> tuple[int, int, str]:
    r"""Replay a chain that went wrong; return (first bad step, chains affected, what happened).

    A state $z_k$ is bad if it is non-finite, if some $|z_k|$ exceeds `MAX_ABS_LATENT`, or (with
    ``log_joint``) if $\log p(x, z_k)$ is NaN or $\pm\infty$. Step 0 is the initial state.

    Examples:
        >>> find_divergence(lambda k, z: 10 * z, torch.ones(1, 2), 20)
        (11, 1, '|z| exceeded 1e+10 (the chain exploded)')
    """
    z = z0
    for k in range(num_steps + 1):
        if k > 0:
            z = step(k - 1, z)
        flat = z.reshape(z.shape[0], -1)
        finite = torch.isfinite(flat).all(-1)
        if not bool(finite.all()):
            return k, int((~finite).sum()), "z became NaN or infinite"
        large = flat.abs().amax(-1) > MAX_ABS_LATENT
        if bool(large.any()):
            return k, int(large.sum()), f"|z| exceeded {MAX_ABS_LATENT:.0e} (the chain exploded)"
        if log_joint is not None:
            with torch.no_grad():
                value = log_joint(z.detach())
            bad = ~torch.isfinite(value)
            if bool(bad.any()):
                sample = float(value[bad][0])
                return (
                    k,
                    int(bad.sum()),
                    f"log_joint(x, z) became {sample} while z stayed finite (the chain left the "
                    "density's support)",
                )
    return num_steps, 0, "no divergence found on replay"


def check_x_unchanged(before: list[Tensor], after: list[Tensor]) -> None:
    """Raise if ``log_joint`` wrote into ``x``: compare the probe's copy with the original.

    Examples:
        >>> check_x_unchanged([torch.ones(2)], [torch.ones(2)])
    """
    for i, (original, probed) in enumerate(zip(before, after, strict=True)):
        if not torch.equal(original, probed):
            where = "x" if len(before) == 1 else f"x[{i}]"
            raise LogJointError(
                f"log_joint(x, z) modified {where} in place (the validation probe ran on a copy, "
                "so your tensor is unchanged). The chain calls log_joint with your x at every "
                "step, so it would change your data and every later step. Replace in-place "
                "operations on x (x.sub_(...), x[...] = ..., x += ...) with out-of-place ones "
                f"(x = x - ...). See {LOG_JOINT_DOCS}."
            )


_BATCH_NORMS = (
    torch.nn.BatchNorm1d,
    torch.nn.BatchNorm2d,
    torch.nn.BatchNorm3d,
    torch.nn.LazyBatchNorm1d,
    torch.nn.LazyBatchNorm2d,
    torch.nn.LazyBatchNorm3d,
    torch.nn.SyncBatchNorm,
)


def warn_if_training_batch_norm(log_joint: object) -> None:
    """Warn if ``log_joint`` is a method of a module in training mode that holds batch norm.

    In training mode batch norm normalises by the statistics of the batch it sees, so each
    example's samples depend on the other examples (and on ``num_samples``), and every Langevin
    step moves its running statistics. Only a bound method can be inspected; a closure over a
    module cannot.

    Examples:
        >>> warn_if_training_batch_norm(lambda x, z: z.sum(-1))
    """
    module = getattr(log_joint, "__self__", None)
    if not isinstance(module, torch.nn.Module):
        return
    norms = [
        name
        for name, sub in module.named_modules()
        if isinstance(sub, _BATCH_NORMS) and sub.training
    ]
    if norms:
        warnings.warn(
            f"log_joint is a method of {type(module).__name__}, which is in training mode with "
            f"batch norm ({', '.join(n or type(module).__name__ for n in norms[:3])}"
            f"{', ...' if len(norms) > 3 else ''}): each example's samples would depend on the "
            "rest of the batch, and every Langevin step would move the running statistics. Call "
            "model.eval() before inference (and model.train() after), or use a norm that does "
            "not mix examples (GroupNorm, LayerNorm).",
            UserWarning,
            stacklevel=3,
        )
