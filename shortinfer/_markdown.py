r"""Markdown pieces shared by the two report writers: the training report's ``summary.md``
(`shortinfer.train._report`) and the benchmark's ``results.md`` (`shortinfer.bench._results`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from shortinfer._step_size import delta_of

__all__ = ["cell", "grid_with_deltas", "image_section", "table"]


def cell(value: Any) -> str:
    r"""One table cell: floats with 4 significant digits, ``|`` escaped, ``None`` as a dash.

    Examples:
        >>> cell(0.0123456), cell("a|b"), cell(None)
        ('0.01235', 'a\\|b', '—')
    """
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    r"""The lines of a Markdown table; strings are kept as they are, other values go through
    `cell`.

    Examples:
        >>> table(["L", "MSE"], [[1, 0.0201]])
        ['| L | MSE |', '|---|---|', '| 1 | 0.0201 |']
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        texts = [value if isinstance(value, str) else cell(value) for value in row]
        lines.append("| " + " | ".join(texts) + " |")
    return lines


def image_section(caption: str, path: str, *, text: str | None = None) -> list[str]:
    r"""A ``## caption`` heading, the embedded image and an optional line under it.

    Examples:
        >>> image_section("Samples", "samples.png")
        ['', '## Samples', '', '![Samples](samples.png)']
    """
    lines = ["", f"## {caption}", "", f"![{caption}]({path})"]
    return lines + (["", text] if text else [])


def grid_with_deltas(grid: Sequence[float]) -> str:
    r"""A step-size grid in both units: ``s = [...] (δ = √(2s) = [...])``.

    Examples:
        >>> grid_with_deltas([0.005, 0.02])
        's = [0.005, 0.02] (δ = √(2s) = [0.1, 0.2])'
    """
    deltas = [float(f"{delta:.3g}") for delta in delta_of(list(grid))]  # type: ignore[union-attr]
    return f"s = {list(grid)} (δ = √(2s) = {deltas})"
