"""Every Python code block in docs/ and README.md runs, so none can go stale."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def _blocks():
    for page in PAGES:
        if not page.exists():
            continue
        for i, match in enumerate(BLOCK.finditer(page.read_text())):
            yield pytest.param(match.group(1), id=f"{page.relative_to(ROOT)}#{i}")


@pytest.mark.parametrize("code", list(_blocks()))
def test_code_block_runs(code, capsys):
    exec(compile(code, "<docs>", "exec"), {"__name__": "__docs__"})
