r"""Atomic file writes: a reader sees the old file or the new one, never a partial one.

Checkpoints, benchmark results, the data cache and the converted Inception weights all go
through `atomic_write`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write"]


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> Path:
    r"""Create or replace the file ``path`` so that a reader never sees a partial file.

    ``write`` fills a temporary file in the same folder, which is flushed, ``fsync``-ed and
    then renamed over ``path`` with `os.replace` (atomic on POSIX and Windows); the rename is
    ``fsync``-ed too where the platform allows. If anything fails, the temporary file is
    removed and the exception propagates. The file gets the usual permissions of a new file
    (``0o666`` less the umask), unlike `tempfile.mkstemp`'s private ``0o600``.

    Arguments:
        path: The destination file; missing parent folders are created.
        write: Called once with the temporary file opened for binary writing.

    Returns:
        ``path`` as a `pathlib.Path`.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = atomic_write(Path(tmp) / "a" / "note.txt", lambda s: s.write(b"hi"))
        ...     path.read_bytes()
        b'hi'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    handle = os.open(temporary, flags, 0o666)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    # Persist the rename itself (POSIX); not every platform can open a directory.
    with contextlib.suppress(OSError):
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    return path
