"""Tests for shortinfer.data._registry (load_dataset) and the package's import contract."""

from __future__ import annotations

import ast
import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import shortinfer.data
from shortinfer.data import DATASETS, load_dataset

from .fixtures import make_synthetic_celeba, write_idx

DATA_DIR = Path(shortinfer.data.__file__).parent


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHORTINFER_CACHE", str(tmp_path / "cache"))


def test_dataset_names() -> None:
    assert DATASETS == ("mnist5k", "mnist", "fashion_mnist", "folder", "celeba", "svhn")


def test_dispatches_to_the_idx_loaders(tmp_path: Path) -> None:
    images = np.full((2, 28, 28), 255, np.uint8)
    for prefix in ("train", "t10k"):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.array([1, 2], np.uint8))
    data = load_dataset("mnist", root=tmp_path, image_size=32)
    assert data.images.shape == (2, 1, 32, 32) and data.images.min().item() == 1.0
    fashion = load_dataset("fashion_mnist", root=tmp_path, split="all")
    assert fashion.labels is not None and fashion.labels.tolist() == [1, 2, 1, 2]


def test_dispatches_to_mnist5k_with_root_as_path(tmp_path: Path) -> None:
    rows = [[0] * 784 + [digit] for digit in range(10) for _ in range(10)]
    path = tmp_path / "mnist_5k.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(",".join(map(str, row)) for row in rows))
    data = load_dataset("mnist5k", root=path, split="test")
    assert data.images.shape == (10, 1, 28, 28)


def test_dispatches_to_celeba_and_folder_with_options(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    root = make_synthetic_celeba(tmp_path / "celeba", num_images=10)
    data = load_dataset("celeba", root=root, image_size=16, crop="148", subset=4)
    assert data.images.shape == (4, 3, 16, 16) and data.labels is None
    default = load_dataset("celeba", root=root, split="test")
    assert default.images.shape == (1, 3, 64, 64)  # CelebA's own default size
    folder = load_dataset("folder", root=root, image_size=8, mode="L")
    assert folder.images.shape == (10, 1, 8, 8)


def test_dispatches_to_svhn(tmp_path: Path) -> None:
    scipy_io = pytest.importorskip("scipy.io")
    pixels = np.zeros((32, 32, 3, 2), np.uint8)
    scipy_io.savemat(tmp_path / "test_32x32.mat", {"X": pixels, "y": np.array([[10], [1]])})
    data = load_dataset("svhn", root=tmp_path, split="test", use_cache=False)
    assert data.labels is not None and data.labels.tolist() == [0, 1]


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="name must be one of 'mnist5k', .* got 'cifar10'"):
        load_dataset("cifar10")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"load_dataset\('celeba'\) needs root="):
        load_dataset("celeba")
    with pytest.raises(
        TypeError, match=r"unexpected option\(s\) \['crop'\].*takes no other options"
    ):
        load_dataset("mnist", root=tmp_path, crop="140")
    with pytest.raises(TypeError, match=r"unexpected option\(s\) \['path'\]"):
        load_dataset("mnist5k", path=tmp_path)
    with pytest.raises(ValueError, match=r"load_dataset\('folder'\) takes no split"):
        load_dataset("folder", root=tmp_path, split="train")


def test_optional_dependencies_are_not_imported_at_module_level() -> None:
    for path in sorted(DATA_DIR.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # top-level statements only
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in {"PIL", "scipy", "mlxtend"}, (path, name)


def test_every_module_declares_all() -> None:
    for path in sorted(DATA_DIR.glob("*.py")):
        tree = ast.parse(path.read_text())
        targets = [
            t.id
            for node in tree.body
            if isinstance(node, ast.Assign)
            for t in node.targets
            if isinstance(t, ast.Name)
        ]
        assert "__all__" in targets, path


def test_imports_with_only_torch_and_numpy() -> None:
    # A fresh interpreter where Pillow, scipy and mlxtend cannot be imported.
    code = (
        "import sys\n"
        "for name in ('PIL', 'scipy', 'mlxtend'):\n"
        "    sys.modules[name] = None\n"
        "import shortinfer.data as d\n"
        "print(len(d.__all__))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=DATA_DIR.parent.parent,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == len(shortinfer.data.__all__)
