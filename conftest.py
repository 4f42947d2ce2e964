"""Shared pytest setup for the test suite and the docstring examples.

``--device`` and ``--dtype`` run the same suite on CUDA or in float32 (the GPU run is
``pytest --device cuda``). Doctests run with ``torch`` imported and a fixed seed.
"""

from __future__ import annotations

import pytest
import torch


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default="cpu", help="device for the tests, e.g. cuda")
    parser.addoption("--dtype", default="float64", choices=["float32", "float64"])


@pytest.fixture
def device(request: pytest.FixtureRequest) -> torch.device:
    name = request.config.getoption("--device")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("CUDA requested but not available")
    return torch.device(name)


@pytest.fixture
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    return getattr(torch, request.config.getoption("--dtype"))


@pytest.fixture(autouse=True)
def _seeded_doctests(doctest_namespace: dict) -> None:
    torch.manual_seed(0)
    torch.set_printoptions(precision=4)
    doctest_namespace["torch"] = torch


try:  # shortinfer.pyro is an optional adapter: its doctests need Pyro.
    import pyro  # noqa: F401
except ImportError:
    collect_ignore = ["shortinfer/pyro.py"]
