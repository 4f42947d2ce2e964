r"""The one cache folder of shortinfer, shared by the dataset cache and the FID weights.

``$SHORTINFER_CACHE`` if set and non-empty, else ``~/.cache/shortinfer``. The data loaders
keep their ``.npy`` arrays there (`shortinfer.data`), and `shortinfer.metrics` keeps the
Inception weights it converts there.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV_VAR", "default_cache_dir"]

#: Environment variable that overrides the default cache directory.
CACHE_ENV_VAR = "SHORTINFER_CACHE"


def default_cache_dir() -> Path:
    r"""The cache directory: ``$SHORTINFER_CACHE`` if set and non-empty, else
    ``~/.cache/shortinfer``.

    Examples:
        >>> isinstance(default_cache_dir(), Path)
        True
    """
    env = os.environ.get(CACHE_ENV_VAR, "")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/shortinfer").expanduser()
