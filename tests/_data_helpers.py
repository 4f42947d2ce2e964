"""Checks shared by the loader tests (tests/test_data_*.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from shortinfer.data import ImageData, _images


def assert_second_load_reads_the_cache(
    load: Callable[[], ImageData], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Load twice, the second time with image decoding broken: the cache must serve it.

    Decoding stays broken afterwards, so a further load that must decode raises
    ``AssertionError("... the cache was not used")``.
    """
    first = load()

    def broken(path: str, **kwargs: object) -> None:
        raise AssertionError(f"decoder called for {path}; the cache was not used")

    monkeypatch.setattr(_images, "_decode_one", broken)
    second = load()
    torch.testing.assert_close(first.images, second.images, atol=0, rtol=0)
