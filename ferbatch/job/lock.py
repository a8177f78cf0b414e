"""An exclusive lock on an output directory, so two runs never write one dataset at once.

``OUT/.ferbatch.lock`` is locked with ``fcntl.flock`` for the whole run and holds the holder's
host, pid and start time. The kernel releases a flock when its process dies, so a lock file left
by a dead run is taken over (with a log line naming the old holder); a live holder makes the new
run stop with a message naming it. flock needs a filesystem that supports it (local disks; NFS
v4 and most cluster filesystems do).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from ferbatch.errors import OutputError

__all__ = ["OutputLock", "LOCK_NAME"]

LOCK_NAME = ".ferbatch.lock"
log = logging.getLogger(__name__)


class OutputLock:
    """Context manager holding the exclusive lock on ``out_dir`` (created if needed).

    Raises:
        OutputError: another live process holds the lock (the message names its host and pid),
            or the lock file cannot be created.
    """

    def __init__(self, out_dir: str | os.PathLike[str]):
        self.path = Path(out_dir) / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise OutputError(f"{self.path} | cannot create the lock file: {e.strerror or e}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            who = f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, since {holder.get('started', '?')}"
            raise OutputError(
                f"{self.path.parent} | another ferbatch run is writing this dataset ({who}); wait for it to finish or use another --out"
            ) from None
        old = _read(fd)
        if old and (old.get("pid") != os.getpid() or old.get("host") != socket.gethostname()):
            log.info("taking over the lock of a run that ended without releasing it (host %s, pid %s)", old.get("host"), old.get("pid"))
        me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # an empty lock file: nobody holds it
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read(fd: int) -> dict:
    try:
        data = os.pread(fd, 4096, 0)
        return json.loads(data) if data.strip() else {}
    except (OSError, ValueError):
        return {}
