r"""``torch.compile`` for the short-run chain: option checking, availability, a cache.

`short_run(..., compile=True)` (or a mode string) runs each Langevin step

$$
z_{k+1} = z_k + s_k \odot \nabla_z \log p(x, z_k) + \sqrt{2 s_k} \odot \epsilon_k
$$

compiled: the forward pass of ``log_joint`` (with its backward, the score, compiled by
AOTAutograd) and the update with the chain's health check. The compiled functions are cached
per ``log_joint`` (per module and method for a bound method), latent layout, constraint
transform and mode, so a new posterior per training batch does not recompile. Shapes, and
floats the model reads (an annealed ``sigma``), become graph inputs after their first change
(``dynamic=None``, dynamo's "automatic dynamic"): a second batch size or σ compiles one
generic graph instead of one graph per value.

Where it applies: `ShortRunPosterior.sample` and the training loop (which samples with the
parameters frozen). Everything that differentiates through the chain stays eager: `rsample`
(compiled backward graphs do not support the double backward a differentiable chain needs),
and `entropy`, `elbo` and `tune_step_size`, whose chains run inside ``torch.func`` transforms
(``vmap``/``jacrev``/``jvp``) that a compiled function cannot sit under. Those calls give the
same results as without ``compile``.
"""

from __future__ import annotations

import shutil
import weakref
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor

from shortinfer._checks import MAX_ABS_LATENT, ArgumentError, ArgumentTypeError

__all__ = ["COMPILE_MODES", "CompileOption", "check_compile", "compile_available", "step_fn"]

#: The modes ``torch.compile(mode=...)`` accepts. ``"reduce-overhead"`` records CUDA graphs
#: on CUDA (one replay per step instead of one launch per operation); on a CPU it is the
#: default mode.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
CompileOption = bool | CompileMode

StepFn = Callable[[Any, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]

# log_joint's owner (module for a bound method, else the function) -> {key: compiled step}.
_CACHE: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], StepFn]] = weakref.WeakKeyDictionary()
_STRONG: dict[tuple[Any, ...], StepFn] = {}  # owners that cannot be weakly referenced


def check_compile(compile: object) -> str | None:
    r"""Validate a ``compile=`` option; return the ``torch.compile`` mode or ``None`` (eager).

    Arguments:
        compile: ``False`` (eager), ``True`` (mode ``"default"``) or one of `COMPILE_MODES`.

    Returns:
        ``None`` for eager, else the mode string.

    Raises:
        TypeError: For anything but a bool or a string.
        ValueError: For an unknown mode string.

    Examples:
        >>> check_compile(True), check_compile(False), check_compile("reduce-overhead")
        ('default', None, 'reduce-overhead')
    """
    if isinstance(compile, bool):
        return "default" if compile else None
    if not isinstance(compile, str):
        raise ArgumentTypeError(
            f"compile must be False, True or a torch.compile mode string; received "
            f"{compile!r} ({type(compile).__name__}). Valid modes: {list(COMPILE_MODES)}."
        )
    if compile not in COMPILE_MODES:
        raise ArgumentError(
            f"compile={compile!r} is not a torch.compile mode; expected one of "
            f"{list(COMPILE_MODES)}, or True for 'default' (False: eager)."
        )
    return compile


def compile_available(device: str | torch.device = "cpu") -> tuple[bool, str]:
    r"""Whether ``torch.compile`` can build kernels for ``device`` here, and if not, why.

    Checks that this torch has ``torch.compile`` and, for a CPU, that a C++ compiler is on
    ``PATH`` (inductor writes C++; the ``CXX`` environment variable is honoured). It does not
    compile anything, so it is cheap; a compile that fails anyway (e.g. a Python version
    dynamo does not support) raises from the first compiled call.

    Arguments:
        device: The device the chain will run on.

    Returns:
        ``(available, reason)``; ``reason`` is ``""`` when available.

    Examples:
        >>> available, reason = compile_available("cpu")
        >>> isinstance(available, bool) and isinstance(reason, str)
        True
    """
    import os

    if not hasattr(torch, "compile"):
        return False, f"torch {torch.__version__} has no torch.compile"
    if torch.device(device).type == "cpu":
        compilers = [os.environ.get("CXX", ""), "g++", "c++", "clang++"]
        if not any(name and shutil.which(name) for name in compilers):
            return False, "no C++ compiler on PATH (inductor builds CPU kernels with one)"
    return True, ""


def _owner_and_key(log_joint: Callable[..., Any]) -> tuple[Any, Any]:
    self = getattr(log_joint, "__self__", None)
    func = getattr(log_joint, "__func__", None)
    if self is not None and func is not None:  # a bound method: a new object per access
        return self, func
    return log_joint, None


def step_fn(
    log_joint: Callable[[Any, Any], Tensor],
    unflatten: Callable[[Tensor], Any],
    transform: Any,
    *,
    layout_key: object,
    mode: str,
) -> StepFn:
    r"""The compiled Langevin step ``(x, z, noise, s) -> (z_next, healthy)``, cached.

    $$
    z' = z + s \odot \nabla_z \log p(x, z) + \sqrt{2s} \odot \epsilon
    $$

    on flat latents $z$ with shape ``(N, D)``, noise $\epsilon$ ``(N, D)`` and step size
    $s$ broadcastable to it; ``healthy`` is a 0-d bool tensor, true when $\log p(x, z)$ is
    finite and $|z| \le$ `shortinfer._checks.MAX_ABS_LATENT` (the eager chain's monitor).

    Arguments:
        log_joint: The user's ``log_joint(x, z)``; the cache key (a bound method is keyed on
            its module and function, so ``model.log_joint`` hits the cache every time).
        unflatten: Flat ``(N, D)`` latents to what ``log_joint`` takes.
        transform: The posterior's `shortinfer._constraints.LatentTransform` (the chain runs
            on $u$ with $z = T(u)$ when it is not the identity).
        layout_key: Identifies ``unflatten`` and ``transform`` in the cache.
        mode: The ``torch.compile`` mode.

    Returns:
        The compiled step.
    """
    owner, func = _owner_and_key(log_joint)
    key = (func, layout_key, mode)
    try:
        table = _CACHE.setdefault(owner, {})
    except TypeError:  # not weakly referenceable: keep it alive with the compiled step
        table = _STRONG
        key = (owner, *key)
    if key not in table:
        table[key] = _build(log_joint, unflatten, transform, mode)
    return table[key]


def _build(
    log_joint: Callable[[Any, Any], Tensor],
    unflatten: Callable[[Tensor], Any],
    transform: Any,
    mode: str,
) -> StepFn:
    def target(x: Any, u: Tensor) -> Tensor:
        if transform.is_identity:
            return log_joint(x, unflatten(u))
        return log_joint(x, unflatten(transform.forward(u))) + transform.log_abs_det(u)

    def update(
        z: Tensor, gradient: Tensor, noise: Tensor, step_size: Tensor, value: Tensor
    ) -> tuple[Tensor, Tensor]:
        healthy = torch.isfinite(value).all() & (z.abs().amax() <= MAX_ABS_LATENT)
        return z + step_size * gradient + torch.sqrt(2 * step_size) * noise, healthy

    # Two compiled pieces around one torch.autograd.grad, rather than torch.func.grad inside
    # one graph: under torch.func.grad dynamo specializes on every float it reads (a model's
    # annealed sigma would recompile the graph at each training update), while a plain
    # compiled forward makes such floats dynamic after their first change. AOTAutograd
    # compiles the forward's backward, so the score is compiled either way.
    compiled_target = torch.compile(target, mode=mode, dynamic=None)
    compiled_update = torch.compile(update, mode=mode, dynamic=None)

    def step(x: Any, z: Tensor, noise: Tensor, step_size: Tensor) -> tuple[Tensor, Tensor]:
        leaf = z.detach().requires_grad_(True)
        with torch.enable_grad():
            value = compiled_target(x, leaf)
            (gradient,) = torch.autograd.grad(value.sum(), leaf)
        return compiled_update(leaf.detach(), gradient, noise, step_size, value.detach())

    return step


def clear_cache() -> None:
    """Forget every compiled step (tests use it to count compilations)."""
    _CACHE.clear()
    _STRONG.clear()
