"""The README's two commands are what CI runs: keep them well-formed."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_starts_with_install_and_test_commands():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.DOTALL)
    assert len(blocks) >= 2
    install, tests = (b.strip() for b in blocks[:2])
    assert install.startswith("pip install torch==2.13.0")
    assert "pytest" in tests
    # The first two bash blocks come before any other section of the README.
    assert text.index(blocks[1]) < text.index("\n## ")


def test_ci_reads_the_commands_from_the_readme():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "README.md" in ci and "torch==2.13.0" in ci and "pytest" in ci


def test_ci_runs_the_code_health_checks_with_evidence_lines():
    ci = (ROOT / ".ci" / "run").read_text()
    lines = ci.splitlines()
    for command in ("ruff check .", "ruff format --check .", "pyright"):
        assert command in lines, f".ci/run no longer runs {command!r} on a line of its own"
    for evidence in (
        'echo "CI: ruff check passed"',
        'echo "CI: ruff format --check passed"',
        'echo "CI: pyright passed (0 errors)"',
        'echo "CI: mkdocs build --strict passed"',
        'echo "CI: wheel test passed (${passed} tests)"',
    ):
        assert evidence in lines, f".ci/run no longer prints {evidence!r}"
    # The tools are pinned (a new release must not turn CI red on its own), and pyright comes
    # with node as a wheel so that it runs without a system node or a download.
    pins = re.search(r'pip install --quiet "ruff==([\d.]+)" "pyright\[nodejs\]==([\d.]+)"', ci)
    assert pins is not None
