"""One queen per data directory: an flock on ``DATA_DIR/queen.lock`` held for the queen's whole life.

Two queens on one data dir would each start an embedded store over the same
files and each dispatch the same jobs. The lock is taken before anything else
starts; the kernel drops it when the queen's process ends, however it ends
(SIGKILL included), so a stale lock file never stops the next queen. The file
holds the holder's process id, for the message the second queen prints.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from apiary.core.errors import ApiaryError

log = logging.getLogger(__name__)

LOCK_FILE = "queen.lock"


class DataDirInUse(ApiaryError):
    """Another live queen holds the data directory's lock (CLI: one line, exit 1)."""


@contextlib.contextmanager
def data_dir_lock(data_path: Path) -> Iterator[Path]:
    """Hold the lock on `data_path`/queen.lock until the block ends; yield the lock file's path.

    Raises DataDirInUse, naming the data dir, the lock file and the holder's pid
    when it wrote one, if another process holds it.
    """
    path = data_path.absolute() / LOCK_FILE
    # Not inherited by children (Python's default): a store or job outliving the queen must not keep the lock.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            by = f" (pid {holder})" if holder.isdigit() else ""
            raise DataDirInUse(f"the data dir {data_path.absolute()} is in use by another queen{by}: "
                               f"it holds the lock {path}; stop it, or give this one another --data-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        log.debug("holding %s", path)
        yield path
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race with a queen starting)
