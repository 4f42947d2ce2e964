"""mkdocs hook: bundle MathJax into the built site, so the math renders offline.

The site loads ``assets/mathjax/es5/tex-mml-chtml.js`` (and its CHTML fonts) from itself, not
from a CDN. The files come from the npm registry's ``mathjax`` package, pinned below, fetched
once with ``npm pack`` into a cache folder and checked against a pinned SHA-256 before use.
Set ``SHORTINFER_MATHJAX_DIR`` to a folder holding an unpacked ``mathjax`` package (one with
``es5/tex-mml-chtml.js``) to build without npm.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

#: The MathJax release bundled (npm package ``mathjax``, Apache-2.0).
VERSION = "3.2.2"
#: SHA-256 of that release's ``es5/tex-mml-chtml.js``, the one file the pages load.
SHA256 = "300480069078b5892d2363a2b65e2dfbbf30fe5c80f83edbfecf4610fd093862"
#: What the site needs from the package: the combined TeX/MathML-to-CHTML build and its fonts.
FILES = ("es5/tex-mml-chtml.js", "es5/output/chtml/fonts/woff-v2", "LICENSE")

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / f"mathjax-{VERSION}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fetch(destination: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            f"bundling MathJax {VERSION} needs npm (apt-get install npm), or set "
            "SHORTINFER_MATHJAX_DIR to an unpacked copy of the mathjax package."
        )
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [npm, "pack", f"mathjax@{VERSION}", "--pack-destination", tmp, "--silent"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        (tarball,) = Path(tmp).glob("mathjax-*.tgz")
        with tarfile.open(tarball) as archive:
            members = [
                m
                for m in archive.getmembers()
                if m.isfile() and any(m.name.startswith(f"package/{f}") for f in FILES)
            ]
            archive.extractall(tmp, members=members, filter="data")
        staging = destination.with_name(destination.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.move(str(Path(tmp) / "package"), staging)
        staging.replace(destination)


def _source() -> Path:
    given = os.environ.get("SHORTINFER_MATHJAX_DIR")
    source = Path(given) if given else CACHE
    if not given and not (source / FILES[0]).is_file():
        source.parent.mkdir(parents=True, exist_ok=True)
        _fetch(source)
    script = source / FILES[0]
    if not script.is_file():
        raise RuntimeError(f"{script} is missing: SHORTINFER_MATHJAX_DIR must hold es5/.")
    if _sha256(script) != SHA256:
        raise RuntimeError(
            f"{script} does not match the pinned MathJax {VERSION} (SHA-256 {SHA256}); "
            f"delete {CACHE} and rebuild."
        )
    return source


def on_post_build(config: Any, **kwargs: Any) -> None:
    """Copy the pinned MathJax files into ``site/assets/mathjax/``."""
    source = _source()
    target = Path(config["site_dir"]) / "assets" / "mathjax"
    for name in FILES:
        path = source / name
        if path.is_dir():
            shutil.copytree(path, target / name, dirs_exist_ok=True)
        elif path.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / name)
