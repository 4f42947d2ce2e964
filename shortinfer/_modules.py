r"""Calling the duck-typed methods of the models (``log_joint``, ``decode``, ...) in typed code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from torch import nn

__all__ = ["model_method"]


def model_method(model: nn.Module, name: str) -> Callable[..., Any]:
    """``getattr(model, name)``, typed as a callable.

    The models here are duck-typed ``nn.Module`` subclasses (``log_joint``, ``decode``, ...),
    but torch annotates ``nn.Module.__getattr__`` as returning ``Tensor | Module``, which a
    type checker does not accept as a function. A missing method still raises
    ``AttributeError``, exactly as ``model.name`` would.

    Examples:
        >>> model_method(nn.Linear(2, 3), "forward")(torch.zeros(1, 2)).shape
        torch.Size([1, 3])
    """
    return cast(Callable[..., Any], getattr(model, name))
