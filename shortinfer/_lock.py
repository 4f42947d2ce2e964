r"""An exclusive lock on an output folder, so that two runs never write into one folder.

`folder_lock` takes ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``<folder>/.shortinfer.lock`` and writes
the holder (PID, host, command, start time) into it; a second process is refused with a
`FolderLockedError` that names the holder. The kernel drops the lock when the holder exits,
however it exits (a SIGKILL included), so a stale lock file never blocks a later run; the file
itself is left in place (removing it would race with a process about to lock it). Within one
process the lock is re-entrant (the command line takes it before ``--overwrite`` deletes files,
the trainer again when it starts). Where ``fcntl`` does not exist (Windows) it does nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from shortinfer._checks import ShortinferError

__all__ = ["LOCK_NAME", "FolderLockedError", "folder_lock"]

#: The lock file inside a locked output folder.
LOCK_NAME = ".shortinfer.lock"

# Folders this process holds, with their open lock files and nesting depth.
_HELD: dict[Path, tuple[int, int]] = {}


class FolderLockedError(ShortinferError, RuntimeError):
    """Another process holds the output folder's lock."""


def _holder(handle: int) -> str:
    os.lseek(handle, 0, os.SEEK_SET)
    raw = os.read(handle, 4096).decode("utf-8", "replace")
    try:
        info = json.loads(raw)
        return f"PID {info['pid']} on {info['host']}, started {info['started']}: {info['command']}"
    except (ValueError, KeyError, TypeError):
        return "a process that has not yet written its details"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str]) -> Iterator[Path]:
    r"""Hold an exclusive lock on ``folder`` (created if missing) for the ``with`` block.

    Arguments:
        folder: The output folder.

    Yields:
        The lock file's path.

    Raises:
        FolderLockedError: If another process holds it; the message names that process.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp, folder_lock(tmp) as lock:
        ...     lock.name
        '.shortinfer.lock'
    """
    path = Path(folder).resolve()
    lock_path = path / LOCK_NAME
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here
        yield lock_path
        return
    if path in _HELD:
        handle, depth = _HELD[path]
        _HELD[path] = (handle, depth + 1)
        try:
            yield lock_path
        finally:
            handle, depth = _HELD[path]
            _HELD[path] = (handle, depth - 1)
        return
    path.mkdir(parents=True, exist_ok=True)
    handle = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(handle)
        os.close(handle)
        raise FolderLockedError(
            f"output folder {str(path)!r} is in use by another run ({holder}). Two runs in one "
            "folder would overwrite each other's checkpoints; wait for it to finish, stop it, "
            "or choose another output folder (--output-dir)."
        ) from None
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join(sys.argv) or sys.executable,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    os.ftruncate(handle, 0)
    os.lseek(handle, 0, os.SEEK_SET)
    os.write(handle, json.dumps(info).encode("utf-8"))
    _HELD[path] = (handle, 1)
    try:
        yield lock_path
    finally:
        depth = _HELD[path][1] - 1
        if depth == 0:
            del _HELD[path]
            os.close(handle)  # releases the flock
        else:
            _HELD[path] = (handle, depth)
