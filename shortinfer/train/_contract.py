r"""The model contract of `shortinfer.train.Trainer`, as ``typing.Protocol`` classes.

A model the trainer runs short-run inference on is an ``nn.Module`` with

- ``log_joint(x, z) -> (B,)``, the log density $\log p_\theta(x, z)$ (`LogJointModel`,
  required);
- ``latent_shapes``, the per-example latent shape(s) (`HasLatentShapes`; or pass
  ``latent_shape=`` to the trainer);
- optionally ``decode(z)``, the mean image $g_\theta(z)$ (`Decodes`: the trainer logs the
  batch reconstruction error and the report draws reconstructions), a float ``sigma``, the
  observation noise that `shortinfer.train.SigmaSchedule` anneals (`HasSigma`), and
  ``config``, a mapping of constructor arguments that checkpoints store (`HasConfig`).

Each protocol is ``runtime_checkable``: ``isinstance(model, Decodes)`` asks whether the model
has the member, which also narrows the type for a checker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from shortinfer._checks import ArgumentTypeError

__all__ = [
    "Decodes",
    "HasConfig",
    "HasLatentShapes",
    "HasSigma",
    "LogJointModel",
    "latent_shape_of",
]


@runtime_checkable
class LogJointModel(Protocol):
    r"""A model with ``log_joint(x, z)``: $\log p_\theta(x, z)$ per example, shape ``(B,)``.

    Examples:
        >>> from shortinfer.models import MultiLayerGenerator
        >>> isinstance(MultiLayerGenerator(image_size=28, channels=1, latent_sizes=(2,),
        ...                                num_filters=2), LogJointModel)
        True
    """

    def log_joint(self, x: Tensor, z: Any) -> Tensor: ...


@runtime_checkable
class HasLatentShapes(Protocol):
    """A model that states its per-example latent shape: a ``torch.Size`` or a dict of them.

    Examples:
        >>> import torch
        >>> isinstance(torch.nn.Linear(2, 2), HasLatentShapes)
        False
    """

    latent_shapes: Any


@runtime_checkable
class Decodes(Protocol):
    r"""A model with ``decode(z)``: the mean $g_\theta(z)$ of $p_\theta(x \mid z)$, batch first.

    Examples:
        >>> from shortinfer.models import MultiLayerGenerator
        >>> isinstance(MultiLayerGenerator(image_size=28, channels=1, latent_sizes=(2,),
        ...                                num_filters=2), Decodes)
        True
    """

    def decode(self, z: Any) -> Tensor: ...


@runtime_checkable
class HasSigma(Protocol):
    r"""A model with an observation noise $\sigma$ (a float attribute ``sigma``).

    Examples:
        >>> from shortinfer.models import MultiLayerGenerator
        >>> isinstance(MultiLayerGenerator(image_size=28, channels=1, latent_sizes=(2,),
        ...                                num_filters=2), HasSigma)
        True
    """

    sigma: float


@runtime_checkable
class HasConfig(Protocol):
    """A model with ``config``: its constructor arguments, stored in checkpoints.

    Examples:
        >>> from shortinfer.models import MultiLayerGenerator
        >>> model = MultiLayerGenerator(image_size=28, channels=1, latent_sizes=(2,),
        ...                             num_filters=2)
        >>> isinstance(model, HasConfig), model.config["latent_sizes"]
        (True, [2])
    """

    config: Mapping[str, Any]


def latent_shape_of(model: nn.Module, latent_shape: Any = None) -> Any:
    """The per-example latent shape: ``latent_shape`` if given, else ``model.latent_shapes``.

    A callable ``latent_shapes`` is called. This is how `shortinfer.train.Trainer` and the
    report read the shape of ``z`` that ``log_joint(x, z)`` expects.

    Raises:
        TypeError: If neither is given (the message says how to fix it).

    Examples:
        >>> import torch
        >>> from shortinfer.models import MultiLayerGenerator
        >>> model = MultiLayerGenerator(image_size=28, channels=1, latent_sizes=(2, 3),
        ...                             num_filters=2)
        >>> latent_shape_of(model) == model.latent_shapes, latent_shape_of(model, (5,))
        (True, (5,))
        >>> latent_shape_of(torch.nn.Linear(2, 2))
        Traceback (most recent call last):
        ...
        shortinfer._checks.ArgumentTypeError: cannot tell the latent shape of Linear: ...
    """
    if latent_shape is not None:
        return latent_shape
    shapes = model.latent_shapes if isinstance(model, HasLatentShapes) else None
    if callable(shapes):
        shapes = shapes()
    if shapes is None:
        raise ArgumentTypeError(
            f"cannot tell the latent shape of {type(model).__name__}: it has no attribute "
            "latent_shapes. Pass latent_shape=(D,) (or a dict of block name to shape) to "
            "Trainer, or give the model a latent_shapes attribute."
        )
    return shapes
