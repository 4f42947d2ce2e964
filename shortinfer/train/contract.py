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

from torch import Tensor

__all__ = ["Decodes", "HasConfig", "HasLatentShapes", "HasSigma", "LogJointModel"]


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
