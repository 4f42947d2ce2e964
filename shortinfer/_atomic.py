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

__all__ = ["atomic_write", "remove_stale_temporaries"]


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
    # The name encodes the writer's PID, so `remove_stale_temporaries` can tell a leftover of a
    # killed writer from a live one's.
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's), or cannot tell: keep its file
    return True


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    r"""Delete the temporary files that killed writers of ``path`` left behind.

    A writer killed (SIGKILL, power loss) between creating its temporary file and the rename
    leaves ``.<name>.<pid>.<token>.tmp`` next to ``path``. Those whose PID is not a live process
    (and this process's own are never in flight between calls) are removed.

    Arguments:
        path: The destination file whose temporaries to clean.

    Returns:
        The files removed.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = (Path(tmp) / ".latest.pt.999999999.ab12.tmp").write_bytes(b"partial")
        ...     [p.name for p in remove_stale_temporaries(Path(tmp) / "latest.pt")]
        ['.latest.pt.999999999.ab12.tmp']
    """
    path = Path(path)
    removed = []
    for candidate in path.parent.glob(f".{path.name}.*.tmp"):
        pid_text = candidate.name[len(path.name) + 2 :].split(".", 1)[0]
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if pid != os.getpid() and _alive(pid):
            continue
        with contextlib.suppress(FileNotFoundError):
            candidate.unlink()
            removed.append(candidate)
    return removed
