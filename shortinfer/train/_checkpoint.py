r"""Training checkpoints: atomic writes, safe loads, and a clear error for the wrong model.

**Format.** A checkpoint is one ``torch.save`` file holding only tensors, numbers, strings,
``None`` and (nested) dicts/lists/tuples, so it loads with ``torch.load(..., weights_only=True)``
and never unpickles code. The trainer writes these keys (see
`shortinfer.train.Trainer.state_dict`):

======================  ===================================================================
``format``              ``"shortinfer.train/1"`` (`CHECKPOINT_FORMAT`)
``shortinfer_version``  the library version that wrote it
``model_class``         ``"module.QualifiedName"`` of the model
``model_config``        ``model.config`` (a dict of primitives) or ``None``
``model_state``         ``model.state_dict()``
``optimizer_state``     the Adam ``state_dict()``
``iteration``           number of completed iterations $t$
``step_size``           the current step size: a float, a ``(K,)`` tensor, or a dict per block
``sigma``               the observation noise $\sigma$ in use, or ``None``
``step_size_history``   ``{"iteration": [...], "step_size": [...], "objective": [...]}``
``tuning_traces``       every search: ``[{"iteration", "method", "step_sizes", "objectives"}]``
``data_position``       ``{"epoch", "batch", "batches_per_epoch", "world_size"}``
``rng``                 `rng_state` of the writing process (torch, CUDA, numpy, python)
``settings``            the trainer's hyperparameters (primitives), for the record
======================  ===================================================================

**Files.** The trainer keeps one checkpoint per output folder, ``<output_dir>/latest.pt``
(`LATEST_NAME`). `save_checkpoint` writes a temporary file in the same folder,
flushes and ``fsync``-s it, then ``os.replace``-s it over the old one, so a crash (even
``SIGKILL``) at any moment leaves either the previous or the new checkpoint, never a torn file.
"""

from __future__ import annotations

import os
import random
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from shortinfer._atomic import atomic_write
from shortinfer._checks import ArgumentTypeError, MissingFileError, ShortinferError
from shortinfer.train._contract import HasConfig

__all__ = [
    "CHECKPOINT_FORMAT",
    "LATEST_NAME",
    "CheckpointError",
    "RESUME_MUST_MATCH",
    "check_finite_weights",
    "check_model_compatible",
    "check_trainer_checkpoint",
    "compare_settings",
    "load_checkpoint",
    "resolve_checkpoint",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]

#: Format tag stored under ``"format"``; bump the number on an incompatible change.
CHECKPOINT_FORMAT = "shortinfer.train/1"
#: The file name of the checkpoint inside an output folder.
LATEST_NAME = "latest.pt"

_PRIMITIVES = (bool, int, float, str, type(None))


class CheckpointError(ShortinferError, ValueError):
    """A checkpoint is missing, unreadable, of another format, or for another model."""


#: Settings a resumed run must share with the run that wrote the checkpoint: any change makes
#: the continuation a different run (another batch size, chain, seed, schedule or model input).
RESUME_MUST_MATCH: tuple[str, ...] = (
    "batch_size",
    "num_steps",
    "seed",
    "latent_shape",
    "tuning",
    "learning_rate",
    "sigma",
)

#: ``shortinfer train`` flags for the settings, for messages.
_FLAGS = {
    "batch_size": "--batch-size",
    "num_steps": "--num-steps",
    "seed": "--seed",
    "latent_shape": "--latent-sizes",
    "tuning": "--tune*",
    "learning_rate": "--lr/--lr-factors",
    "sigma": "--sigma-*",
    "num_iterations": "--iterations",
}

# Keys `Trainer.load_state_dict` reads, with the types they must have.
_TRAINER_KEYS: dict[str, type | tuple[type, ...]] = {
    "model_state": Mapping,
    "optimizer_state": Mapping,
    "iteration": int,
    "step_size": (float, int, Tensor, Mapping, list),
}


def _readable_reason(err: BaseException) -> str:
    """The first line of a load error, without torch's advice to retry unsafely."""
    text = str(err).strip()
    if "weights_only" in text or "Weights only load failed" in text:
        # torch suggests `weights_only=False`, which runs arbitrary code from a file that may
        # come from elsewhere: never pass that on.
        return "it holds pickled Python objects, which are not loaded (for safety)"
    return text.splitlines()[0] if text else type(err).__name__


def check_trainer_checkpoint(state: Mapping[str, Any], where: str = "checkpoint") -> None:
    r"""Raise `CheckpointError` if ``state`` lacks a key a trainer resume reads, naming it.

    Arguments:
        state: A dict from `load_checkpoint`.
        where: The file, for the message.

    Examples:
        >>> check_trainer_checkpoint({"format": CHECKPOINT_FORMAT})
        Traceback (most recent call last):
        ...
        shortinfer.train._checkpoint.CheckpointError: checkpoint is partial: ...
    """
    problems = []
    for key, kind in _TRAINER_KEYS.items():
        if key not in state:
            problems.append(f"{key!r} is missing")
        elif isinstance(state[key], bool) or not isinstance(state[key], kind):
            problems.append(f"{key!r} is a {type(state[key]).__name__}")
    if problems:
        raise CheckpointError(
            f"{where} is partial: {'; '.join(problems)}. It was not written by Trainer.fit or "
            "`shortinfer train` (or was edited); resume from a complete checkpoint, or start "
            "a new run with --overwrite (Trainer.fit(resume=False) in a fresh output_dir)."
        )


_ESTIMATOR_KEYS = {
    "objective": "objective",
    "entropy_method": "log_det",
    "mode": "mode",
    "chunk_size": "chunk_size",
    "num_mixture": "num_mixture",
}


def _current_tuning_layout(tuning: Any) -> Any:
    """Stored tuning settings in today's layout: checkpoints written before the entropy options
    became one ``estimator`` hold them as flat keys (``objective``, ``entropy_method``, ...)."""
    if not isinstance(tuning, Mapping) or "estimator" in tuning or "objective" not in tuning:
        return tuning
    flat = {k: v for k, v in tuning.items() if k not in _ESTIMATOR_KEYS}
    estimator = {new: tuning[old] for old, new in _ESTIMATOR_KEYS.items() if old in tuning}
    order = ["method", "interval", "estimator", "grid", "batch_size", "num_samples"]
    rebuilt = {key: flat[key] for key in order if key in flat and key != "estimator"}
    rebuilt["estimator"] = estimator
    return {**rebuilt, **flat}


def compare_settings(
    stored: Mapping[str, Any] | None, own: Mapping[str, Any], *, iteration: int
) -> None:
    r"""Refuse a resume whose settings differ from the checkpoint's; warn where harmless.

    A difference in any of `RESUME_MUST_MATCH` raises, naming each setting with both values.
    A different ``num_iterations`` is allowed: extending a finished run is how one trains
    longer; for an unfinished run it warns, since the learning-rate and sigma schedules are
    fractions of the total and so change for the remaining iterations.

    Arguments:
        stored: ``checkpoint["settings"]`` (``None`` for checkpoints without it: not checked).
        own: The resuming trainer's ``settings()``.
        iteration: The checkpoint's iteration.

    Raises:
        CheckpointError: Naming the differing settings.

    Examples:
        >>> compare_settings({"batch_size": 64}, {"batch_size": 32}, iteration=3)
        Traceback (most recent call last):
        ...
        shortinfer.train._checkpoint.CheckpointError: cannot resume: ... batch_size (--batch-size): checkpoint 64, now 32...
    """  # noqa: E501
    if not isinstance(stored, Mapping):
        return
    stored = {**stored, "tuning": _current_tuning_layout(stored.get("tuning"))}
    differ = [
        f"{key} ({_FLAGS[key]}): checkpoint {stored[key]!r}, now {own.get(key)!r}"
        for key in RESUME_MUST_MATCH
        if key in stored and key in own and stored[key] != own[key]
    ]
    if differ:
        raise CheckpointError(
            "cannot resume: this run's settings differ from the checkpoint's, so it would not "
            "continue that run: " + "; ".join(differ) + ". Resume with the checkpoint's "
            "settings, or start a new run in another output folder (or with --overwrite)."
        )
    before, now = stored.get("num_iterations"), own.get("num_iterations")
    if before is not None and now is not None and before != now and iteration < before:
        warnings.warn(
            f"resuming an unfinished run of {before} iterations (at {iteration}) with "
            f"num_iterations (--iterations) {now}: the learning-rate and sigma schedules are "
            "fractions of the total, so the remaining iterations follow another schedule than "
            "the original run's.",
            UserWarning,
            stacklevel=3,
        )


def _check_contents(value: Any, where: str) -> None:
    """Raise if ``value`` holds anything ``torch.load(weights_only=True)`` would refuse."""
    if isinstance(value, (Tensor, *_PRIMITIVES)):
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise ArgumentTypeError(
                    f"checkpoint key {key!r} at {where} is a {type(key).__name__}; only str and "
                    "int keys are stored."
                )
            _check_contents(item, f"{where}[{key!r}]")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_contents(item, f"{where}[{index}]")
        return
    raise ArgumentTypeError(
        f"checkpoint value at {where} is a {type(value).__name__}; a checkpoint holds only "
        "tensors, numbers, strings, None and dicts/lists of them (so that it loads with "
        "torch.load(weights_only=True)). Convert it, e.g. with .tolist() or a dict."
    )


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    r"""The checkpoint file for ``path``: the file itself, or ``<path>/latest.pt`` for a folder.

    Arguments:
        path: A checkpoint file or an output folder.

    Returns:
        The file's path (not checked for existence).

    Examples:
        >>> resolve_checkpoint("run.pt").name
        'run.pt'
    """
    path = Path(path)
    return path / LATEST_NAME if path.is_dir() else path


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    r"""Write ``state`` to ``path`` atomically (temporary file, ``fsync``, ``os.replace``).

    Arguments:
        state: The checkpoint dict: tensors, numbers, strings, ``None`` and nested
            dicts/lists/tuples only.
        path: Destination file (or a folder, meaning ``<folder>/latest.pt``); parent folders
            are created.

    Returns:
        The path written.

    Raises:
        TypeError: If ``state`` holds an object that ``weights_only`` loading would refuse; the
            message names where.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = save_checkpoint({"format": CHECKPOINT_FORMAT, "w": torch.ones(2)}, tmp)
        ...     load_checkpoint(path)["w"]
        tensor([1., 1.])
    """
    if not isinstance(state, Mapping):
        raise ArgumentTypeError(f"state must be a dict; received {type(state).__name__}.")
    _check_contents(state, "state")
    path = resolve_checkpoint(path)
    atomic_write(path, lambda stream: torch.save(dict(state), stream))
    return path


def load_checkpoint(
    path: str | os.PathLike[str], *, map_location: str | torch.device | None = "cpu"
) -> dict[str, Any]:
    r"""Read a checkpoint with ``torch.load(..., weights_only=True)`` and check its format.

    Arguments:
        path: A checkpoint file, or an output folder holding ``latest.pt``.
        map_location: Where to put the tensors (default CPU).

    Returns:
        The checkpoint dict.

    Raises:
        FileNotFoundError: If there is no checkpoint at ``path``.
        CheckpointError: If the file is not a readable shortinfer checkpoint.

    Examples:
        >>> load_checkpoint("no/such/folder")
        Traceback (most recent call last):
        ...
        shortinfer._checks.MissingFileError: no checkpoint at 'no/such/folder'; ...
    """
    file = resolve_checkpoint(path)
    if not file.is_file():
        raise MissingFileError(
            f"no checkpoint at {str(file)!r}; pass a checkpoint file or an output folder that "
            f"holds {LATEST_NAME} (written by `shortinfer train` or Trainer.fit)."
        )
    try:
        with warnings.catch_warnings():
            # torch warns about foreign pickle protocols before refusing them; the error below
            # says what matters.
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - whatever a damaged file triggers in the unpickler
        raise CheckpointError(
            f"cannot read checkpoint {str(file)!r}: {_readable_reason(err)}. It is truncated, "
            "not a torch.save file, or holds pickled objects (shortinfer checkpoints hold only "
            "tensors and plain values)."
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"{str(file)!r} is not a shortinfer training checkpoint: its format is {found!r}, "
            f"expected {CHECKPOINT_FORMAT!r}."
        )
    return state


def _describe_config_mismatch(stored: Mapping[str, Any], own: Mapping[str, Any]) -> list[str]:
    mismatched = []
    for key in sorted(set(stored) | set(own)):
        if key == "sigma":  # annealed during training, not part of the architecture
            continue
        theirs, ours = stored.get(key, "<missing>"), own.get(key, "<missing>")
        if isinstance(theirs, tuple):
            theirs = list(theirs)
        if isinstance(ours, tuple):
            ours = list(ours)
        if theirs != ours:
            mismatched.append(f"{key}: checkpoint {theirs!r} vs model {ours!r}")
    return mismatched


def _model_config(model: nn.Module) -> dict[str, Any] | None:
    config = model.config if isinstance(model, HasConfig) else None
    return dict(config) if isinstance(config, Mapping) else None


def check_model_compatible(checkpoint: Mapping[str, Any], model: nn.Module) -> None:
    r"""Raise a readable error if ``checkpoint`` was written for another model configuration.

    Compares the stored ``model_config`` with ``model.config`` (when both exist; ``sigma`` is
    ignored since it is annealed), then the parameter names and shapes of ``model_state``.

    Arguments:
        checkpoint: A dict from `load_checkpoint`.
        model: The model the weights are about to be loaded into.

    Raises:
        CheckpointError: Naming each differing configuration key (with both values), or each
            missing, unexpected or mis-shaped parameter.

    Examples:
        >>> model = torch.nn.Linear(2, 3)
        >>> check_model_compatible({"model_state": torch.nn.Linear(2, 4).state_dict()}, model)
        Traceback (most recent call last):
        ...
        shortinfer.train._checkpoint.CheckpointError: checkpoint does not fit this model: ...
    """
    stored_config = checkpoint.get("model_config")
    own_config = _model_config(model)
    if isinstance(stored_config, Mapping) and own_config is not None:
        mismatched = _describe_config_mismatch(stored_config, own_config)
        if mismatched:
            raise CheckpointError(
                "checkpoint was written for another model configuration: "
                + "; ".join(mismatched)
                + ". Build the model from the checkpoint's model_config (e.g. "
                "MultiLayerGenerator.from_config(checkpoint['model_config'])) or start a new "
                "run in another output folder."
            )
    stored_state = checkpoint.get("model_state")
    if not isinstance(stored_state, Mapping):
        raise CheckpointError(
            "checkpoint has no model_state dict; it is not a trainer checkpoint."
        )
    own_state = model.state_dict()
    problems = []
    missing = [k for k in own_state if k not in stored_state]
    unexpected = [k for k in stored_state if k not in own_state]
    if missing:
        problems.append(f"missing parameters {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        problems.append(
            f"unexpected parameters {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}"
        )
    for key, value in own_state.items():
        theirs = stored_state.get(key)
        if isinstance(theirs, Tensor) and theirs.shape != value.shape:
            problems.append(
                f"{key}: checkpoint shape {tuple(theirs.shape)} vs model {tuple(value.shape)}"
            )
    if problems:
        raise CheckpointError(
            "checkpoint does not fit this model: "
            + "; ".join(problems[:8])
            + ". Build the model with the configuration the checkpoint was trained with."
        )


def check_finite_weights(checkpoint: Mapping[str, Any], where: str = "checkpoint") -> None:
    r"""Raise `CheckpointError` if a floating-point tensor of ``model_state`` is not finite.

    A model trained into NaN weights (or a damaged file) would otherwise produce black images
    and meaningless numbers without a word.

    Examples:
        >>> check_finite_weights({"model_state": {"w": torch.tensor([1.0, float("nan")])}})
        Traceback (most recent call last):
        ...
        shortinfer.train._checkpoint.CheckpointError: checkpoint has non-finite weights: w (1 of 2 values); ...
    """  # noqa: E501
    state = checkpoint.get("model_state")
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{where} has no model_state dict; it is not a trainer checkpoint.")
    bad = [
        f"{key} ({int((~torch.isfinite(value)).sum())} of {value.numel()} values)"
        for key, value in state.items()
        if isinstance(value, Tensor)
        and value.is_floating_point()
        and not bool(torch.isfinite(value).all())
    ]
    if bad:
        raise CheckpointError(
            f"{where} has non-finite weights: {', '.join(bad[:5])}"
            f"{' ...' if len(bad) > 5 else ''}; the model it holds diverged and would produce "
            "meaningless output. Use an earlier checkpoint, or retrain with a smaller --lr or "
            "--step-size."
        )


def rng_state() -> dict[str, Any]:
    r"""The random states of torch (CPU and CUDA), numpy and Python, as plain values.

    Returns:
        ``{"torch": ByteTensor, "cuda": [ByteTensor, ...], "numpy": {...}, "python": {...}}``,
        storable in a ``weights_only`` checkpoint; restore with `set_rng_state`.

    Examples:
        >>> state = rng_state()
        >>> a = torch.rand(1); set_rng_state(state); b = torch.rand(1)
        >>> bool(a == b)
        True
    """
    numpy_state = np.random.get_state(legacy=True)
    name, keys, position, has_gauss, cached = numpy_state  # type: ignore[misc]
    version, internal, gauss_next = random.getstate()
    cuda = [state for state in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else []
    return {
        "torch": torch.get_rng_state(),
        "cuda": cuda,
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64).copy()),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    r"""Restore random states saved by `rng_state`.

    Arguments:
        state: The dict from `rng_state` (e.g. ``checkpoint["rng"]``).

    Examples:
        >>> set_rng_state(rng_state())
    """
    torch.set_rng_state(state["torch"].cpu())
    cuda = list(state.get("cuda", []))
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["name"],
            numpy_state["keys"].cpu().numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    python_state = state["python"]
    random.setstate(
        (python_state["version"], tuple(python_state["internal"]), python_state["gauss_next"])
    )
