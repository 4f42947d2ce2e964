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
