"""An exclusive lock on a dataset, so two writers (``run``, ``compact``, ``watch``) never write it at
once; taken by :class:`ferbatch.dataset.writer.DatasetWriter`, and naming the holder's command.

Object storage has no flock: there :class:`ObjectLock` keeps ``_lock.json`` (holder, heartbeat
every minute) and a new run refuses while the heartbeat is fresh (see its docstring).

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
import threading
import time
from pathlib import Path
from types import TracebackType

from ferbatch.errors import OutputError
from ferbatch.location import Location

__all__ = ["OutputLock", "ObjectLock", "LOCK_NAME", "lock_output"]

LOCK_NAME = ".ferbatch.lock"
log = logging.getLogger(__name__)


class OutputLock:
    """Context manager holding the exclusive lock on ``out_dir`` (created if needed).

    Raises:
        OutputError: another live process holds the lock (the message names its host and pid),
            or the lock file cannot be created.
    """

    def __init__(self, out_dir: str | os.PathLike[str], command: str = "run"):
        self.path = Path(out_dir) / LOCK_NAME
        self.command = command
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
                f"{self.path.parent} | another ferbatch {holder.get('command', 'run')} is writing this dataset ({who}); "
                "wait for it to finish or use another --out"
            ) from None
        old = _read(fd)
        if old and (old.get("pid") != os.getpid() or old.get("host") != socket.gethostname()):
            log.info("taking over the lock of a run that ended without releasing it (host %s, pid %s)", old.get("host"), old.get("pid"))
        me = {"host": socket.gethostname(), "pid": os.getpid(), "command": self.command, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
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


class ObjectLock:
    """Advisory lock on a dataset in object storage: the object ``_lock.json`` names the holder
    (host, pid, start) and a heartbeat rewritten every :data:`BEAT_S` seconds by a daemon thread;
    it is deleted at the end.

    A new run refuses while another holder's heartbeat is younger than :data:`STALE_S`; it takes
    the lock over when the holder is a dead process of this host, or the heartbeat is stale (the
    holder's machine went away). Without conditional writes two runs starting within the same
    second could both take it: the lock guards against the usual mistake, not a race.

    Raises:
        OutputError: another live run holds the lock (the message names it and how old its heartbeat is).
    """

    BEAT_S = 60.0
    STALE_S = 600.0
    NAME = "_lock.json"

    def __init__(self, loc: Location, command: str = "run"):
        self.loc = loc
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.me = {"host": socket.gethostname(), "pid": os.getpid(), "command": command, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def __enter__(self) -> ObjectLock:
        holder = self._holder()
        if holder:
            age = time.time() - float(holder.get("beat", 0))
            dead_here = holder.get("host") == self.me["host"] and not _alive(int(holder.get("pid", 0)))
            if not dead_here and age < self.STALE_S:
                raise OutputError(
                    f"{self.loc.uri} | another ferbatch {holder.get('command', 'run')} is writing this dataset (host {holder.get('host', '?')}, "
                    f"pid {holder.get('pid', '?')}, heartbeat {age:.0f} s ago); wait for it to finish or use another --out "
                    f"(a lock whose heartbeat is over {self.STALE_S:.0f} s old is taken over)"
                )
            log.info(
                "taking over the lock of a run that ended without releasing it (host %s, pid %s)", holder.get("host"), holder.get("pid")
            )
        self._beat()
        self._thread = threading.Thread(target=self._run, name="ferbatch-lock-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _holder(self) -> dict:
        if not self.loc.is_file(self.NAME):
            return {}
        try:
            return dict(json.loads(self.loc.read_bytes(self.NAME)))
        except (OutputError, ValueError):
            return {}

    def _beat(self) -> None:
        self.loc.write_bytes(self.NAME, json.dumps({**self.me, "beat": time.time()}).encode())

    def _run(self) -> None:
        while not self._stop.wait(self.BEAT_S):
            try:
                self._beat()
            except OutputError as e:
                log.warning("%s", e)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.loc.delete(self.NAME)
        except OutputError:
            if exc_type is None:
                raise
            # the store failed the job already (that error is the one to report); the lock's
            # heartbeat stops, so the next run takes the lock over once it is stale


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid > 0


def lock_output(loc: Location, command: str = "run") -> OutputLock | ObjectLock:
    """The lock for a dataset: flock on a local folder, :class:`ObjectLock` in object storage.

    Args:
        loc: the dataset.
        command: what takes it ("run", "watch", "compact"): recorded, and named to a writer refused.
    """
    return OutputLock(loc.root, command) if loc.local else ObjectLock(loc, command)
