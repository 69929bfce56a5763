"""Advisory file locks (``flock``) shared by the artifact store and the MLflow store set-up.

The kernel drops a ``flock`` when its process dies, ``kill -9`` included, so a lock
that can be taken means its owner is gone: that is how leftovers of killed
publishes are told apart from publishes still running.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed) for the ``with`` block; waits for other holders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def create_locked(path: Path) -> IO[str]:
    """Create ``path`` already locked and return the open handle that holds the lock.

    The file appears under its name only once locked (it is locked under a temporary
    name, then renamed), so nobody can see it unlocked while its owner lives.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    handle = os.fdopen(fd, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        os.replace(tmp, path)
    except BaseException:
        handle.close()
        Path(tmp).unlink(missing_ok=True)
        raise
    return handle


@contextmanager
def owner_gone(path: Path) -> Iterator[bool]:
    """Yield True when nobody holds the lock on ``path`` (or it does not exist), holding it for the block."""
    try:
        handle = open(path, "r+")
    except FileNotFoundError:
        yield True
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
