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
    if re.search(r"^import pyro\b", code, re.MULTILINE):
        pytest.importorskip("pyro")  # the optional Pyro adapter: shortinfer[pyro]
    exec(compile(code, "<docs>", "exec"), {"__name__": "__docs__"})


def test_site_loads_no_math_or_fonts_from_the_network():
    """The built site must render offline: MathJax is bundled, Google Fonts are off."""
    if not (ROOT / "mkdocs.yml").exists():
        pytest.skip("no mkdocs.yml here (the wheel test copies only tests/ and docs/)")
    config = (ROOT / "mkdocs.yml").read_text()
    scripts = re.findall(r"^\s+- (\S+\.js)\s*$", config, re.MULTILINE)
    assert scripts and not [s for s in scripts if "://" in s]
    assert "assets/mathjax/es5/tex-mml-chtml.js" in scripts
    assert re.search(r"^\s+font: false", config, re.MULTILINE)
    assert (ROOT / "docs" / "_hooks" / "mathjax.py").is_file()
