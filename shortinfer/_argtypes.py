r"""argparse pieces shared by ``shortinfer`` and ``shortinfer bench``: value types, the help
formatter, and `library_default`, which reads a default from the library so that the command
line never types it a second time."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
from collections.abc import Iterable
from typing import Any

__all__ = [
    "HelpFormatter",
    "add_library_options",
    "floats",
    "ints",
    "library_default",
    "positive_float",
    "positive_int",
]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    r"""`argparse.ArgumentDefaultsHelpFormatter` that shows a default only when it says
    something: ``None`` defaults and on/off flags are left out, since the help text already
    says what happens without the option.

    Examples:
        >>> parser = argparse.ArgumentParser(prog="x", formatter_class=HelpFormatter)
        >>> _ = parser.add_argument("--n", type=int, default=3, help="count")
        >>> "count (default: 3)" in parser.format_help()
        True
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.nargs == 0:  # nargs 0: a store_true/false flag
            return action.help
        return super()._get_help_string(action)


def library_default(owner: Any, name: str) -> Any:
    r"""The default value of ``name`` in a NamedTuple, dataclass or callable's signature.

    Arguments:
        owner: A `typing.NamedTuple` class, a dataclass, or a function or class whose
            signature has a parameter ``name``.
        name: The field or parameter.

    Returns:
        Its default value (a dataclass ``default_factory`` is called).

    Raises:
        KeyError: If ``owner`` has no such field or parameter, or it has no default.

    Examples:
        >>> from typing import NamedTuple
        >>> class Options(NamedTuple):
        ...     interval: int = 100
        >>> library_default(Options, "interval")
        100
    """
    defaults = getattr(owner, "_field_defaults", None)
    if isinstance(defaults, dict) and name in defaults:
        return defaults[name]
    if dataclasses.is_dataclass(owner):
        for field in dataclasses.fields(owner):
            if field.name == name:
                if field.default is not dataclasses.MISSING:
                    return field.default
                if field.default_factory is not dataclasses.MISSING:
                    return field.default_factory()
    else:
        parameter = inspect.signature(owner).parameters.get(name)
        if parameter is not None and parameter.default is not inspect.Parameter.empty:
            return parameter.default
    raise KeyError(f"{getattr(owner, '__qualname__', owner)!r} has no default for {name!r}")


def add_library_options(group: Any, rows: Iterable[tuple[Any, ...]]) -> None:
    r"""Add one option per row ``(flags, owner, field, kind, help)``, its default read by
    `library_default` from ``owner``'s ``field``; ``kind`` is the ``type=`` callable, or a
    tuple of ``choices``.

    Examples:
        >>> from typing import NamedTuple
        >>> class Options(NamedTuple):
        ...     interval: int = 100
        >>> parser = argparse.ArgumentParser()
        >>> add_library_options(parser, [(("--interval",), Options, "interval", int, "every")])
        >>> parser.parse_args([]).interval
        100
    """
    for flags, owner, field, kind, text in rows:
        kind_option = {"choices": kind} if isinstance(kind, tuple) else {"type": kind}
        group.add_argument(*flags, default=library_default(owner, field), help=text, **kind_option)


def _comma_separated(text: str, convert: Any, example: str) -> tuple[Any, ...]:
    try:
        return tuple(convert(v) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated {example}; received {text!r}"
        ) from err


def floats(text: str) -> tuple[float, ...]:
    r"""argparse ``type=`` for comma-separated numbers such as ``0.01,0.05``.

    Examples:
        >>> floats("0.01,0.05")
        (0.01, 0.05)
    """
    values = _comma_separated(text, float, "numbers such as 0.01,0.05,0.1")
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one number; received {text!r}")
    return values


def ints(text: str) -> tuple[int, ...]:
    r"""argparse ``type=`` for comma-separated positive integers such as ``32,64,128``.

    Examples:
        >>> ints("32,64,128")
        (32, 64, 128)
    """
    values = _comma_separated(text, int, "integers such as 32,64,128")
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers; received {text!r}")
    return values


def positive_int(text: str) -> int:
    """argparse ``type=`` for counts such as ``--threads``: an int >= 1.

    Examples:
        >>> positive_int("4")
        4
    """
    try:
        value = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer; received {text!r}"
        ) from err
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; received {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse ``type=`` for a number > 0, such as ``--lr``.

    Examples:
        >>> positive_float("1e-4")
        0.0001
    """
    try:
        value = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a positive number; received {text!r}") from err
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number; received {text!r}")
    return value
