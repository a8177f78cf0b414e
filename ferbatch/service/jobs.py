"""Directory jobs behind the HTTP API: one at a time on a background thread, each a
:func:`ferbatch.job.run_job` into its own output directory under the service's jobs directory.

Inputs are confined to the service's data root: a client names a path relative to it and cannot
reach anything outside (``..``, absolute paths and symlinks out of it are refused).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ferbatch.config import JobConfig
from ferbatch.errors import ConfigError, FerbatchError

__all__ = ["JobRecord", "JobManager", "resolve_under"]


@dataclass
class JobRecord:
    """One submitted job.

    Attributes:
        id: 32 hex characters; input: the path relative to the data root; out: its dataset.
        status: "queued", "running", "done" (every video ok), "partial" (some partial/failed
            videos; rows of the others are there) or "failed" (the job itself stopped; ``error``).
        progress: kind ("probe" = videos indexed, "frames" = frames processed) -> [done, total].
        summary: the :class:`ferbatch.job.summary.JobSummary` fields once finished.
        created, started, finished: Unix times in seconds (0 = not yet).
    """

    id: str
    input: str
    out: Path
    status: str = "queued"
    error: str = ""
    progress: dict[str, list[int]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0
    started: float = 0.0
    finished: float = 0.0

    def public(self) -> dict[str, Any]:
        """What ``GET /v1/jobs/{id}`` shows (no server paths)."""
        frames = self.progress.get("frames", [0, 0])
        return {
            "id": self.id,
            "input": self.input,
            "status": self.status,
            "error": self.error,
            "progress": {k: {"done": v[0], "total": v[1]} for k, v in self.progress.items()},
            "fraction": round(frames[0] / frames[1], 4) if frames[1] else (1.0 if self.status in ("done", "partial") else 0.0),
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
        }


class JobManager:
    """Runs directory jobs one after another on a background thread.

    Args:
        data_root: the directory whose sub-paths clients may submit.
        jobs_dir: where each job's dataset goes (``<jobs_dir>/<id>``).
        cfg: the job settings (models, backend, workers).
        use_ray: run each job on Ray (local, or the cluster at ``address``); False = in-process.
        address: a running Ray cluster.
    """

    def __init__(self, data_root: Path, jobs_dir: Path, cfg: JobConfig, *, use_ray: bool = False, address: str | None = None):
        self.data_root = Path(os.path.realpath(data_root))
        self.jobs_dir = jobs_dir
        self.cfg = cfg
        self.use_ray = use_ray
        self.address = address
        self.jobs: dict[str, JobRecord] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ferbatch-job")

    def resolve_input(self, rel: str) -> Path:
        """The data-root path a client named (see :func:`resolve_under`; relative only).

        Raises:
            ConfigError: see :func:`resolve_under`.
        """
        return resolve_under(self.data_root, rel)

    def submit(self, rel: str) -> JobRecord:
        """Queue a job over ``rel`` (a file or directory under the data root).

        Raises:
            ConfigError: see :meth:`resolve_input`.
        """
        src = self.resolve_input(rel)
        jid = uuid.uuid4().hex
        rec = JobRecord(jid, rel, self.jobs_dir / jid, created=time.time())
        with self._lock:
            self.jobs[jid] = rec
        self._pool.submit(self._run, rec, src)
        return rec

    def get(self, jid: str) -> JobRecord | None:
        """The job with id ``jid``, or None."""
        with self._lock:
            return self.jobs.get(jid)

    def dataset_summary(self, rec: JobRecord) -> list[dict[str, Any]]:
        """Per-video rows of the finished job's dataset (``ferbatch summary``; ``path`` relative to
        the job's input), NaN as None."""
        from ferbatch.dataset.api import open as open_dataset

        rows = open_dataset(rec.out).summary().to_pylist()
        return [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in rows]

    def close(self) -> None:
        """Wait for the running job; drop the queued ones."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self, rec: JobRecord, src: Path) -> None:
        from ferbatch.job import run_job

        rec.status, rec.started = "running", time.time()

        def progress(kind: str, done: int, total: int) -> None:
            rec.progress[kind] = [int(done), int(total)]

        try:
            # checked again when it starts: a link added to the data root meanwhile is refused too
            src = self.resolve_input(rec.input)
            s = run_job(src, rec.out, self.cfg, use_ray=self.use_ray, address=self.address, progress=progress)
            rec.summary = dataclasses.asdict(s)
            rec.status = "partial" if (s.failed or s.partial) else "done"
        except FerbatchError as e:
            rec.status, rec.error = "failed", str(e).replace(str(self.data_root), "<data>").replace(str(self.jobs_dir), "<jobs>")
        except Exception as e:  # a bug or a machine error: reported on the job, the service goes on
            rec.status, rec.error = "failed", f"{type(e).__name__}: {e}"
        finally:
            rec.finished = time.time()


def resolve_under(root: Path, rel: str, *, field: str = "input", absolute: bool = False, file_only: bool = False) -> Path:
    """The path a client named under the data root ``root`` (already a real path), its real path
    (symlinks resolved) checked to lie under ``root``, and every symlink under it too.

    Args:
        root: the data root's real path (``os.path.realpath``).
        rel: the client's path, relative to ``root`` (or absolute where ``absolute``).
        field: the request field named in messages.
        absolute: accept an absolute path (it must still lie under ``root``).
        file_only: refuse a directory (before anything under it is looked at).

    Raises:
        ConfigError: empty, absolute (unless allowed), a null byte, too long, outside the data root
            (``..`` or a symlink out of it, here or anywhere under it), missing, or a directory
            where ``file_only``.
    """
    if not rel or not rel.strip():
        raise ConfigError(f"{field} | empty; expected a path relative to the service's data root")
    shown = rel if len(rel) <= 80 else rel[:77] + "..."
    if "\x00" in rel:
        raise ConfigError(f"{field} {shown!r} | contains a null byte; expected a path relative to the data root")
    if len(rel) > 4096:
        raise ConfigError(f"{field} {shown!r} | {len(rel)} characters is longer than a path can be (4096)")
    if Path(rel).is_absolute() and not absolute:
        raise ConfigError(f"{field} {shown!r} | absolute paths are refused; give a path relative to the data root")
    try:
        p = Path(os.path.realpath(root / rel))  # an absolute rel replaces root here
        if not _inside(root, p):
            raise ConfigError(f"{field} {shown!r} | points outside the data root")
        if not p.exists():
            raise ConfigError(f"{field} {shown!r} | no such file or directory under the data root")
        if file_only and p.is_dir():
            raise ConfigError(f"{field} {shown!r} | a directory, not a regular file; give one image or clip")
        _check_links(root, p, f"{field} {shown!r}")
    except OSError as e:
        raise ConfigError(f"{field} {shown!r} | cannot be read under the data root: {e.strerror or type(e).__name__}") from None
    return p


def _inside(root: Path, real: Path) -> bool:
    return real == root or root in real.parents


def _check_links(root: Path, p: Path, shown: str) -> None:
    """Refuse ``p`` when a symlink under it (file or directory) leads outside ``root``.

    Raises:
        ConfigError: naming the first such link (relative to the data root; not its target).
    """
    if not p.is_dir():
        return
    for d, dirs, names in os.walk(p, followlinks=False):
        dirs.sort()
        for n in sorted(dirs) + sorted(names):
            q = Path(d) / n
            if q.is_symlink() and not _inside(root, Path(os.path.realpath(q))):
                rel_q = q.relative_to(root).as_posix()
                raise ConfigError(f"{shown} | {rel_q} is a symlink to a path outside the data root; refused")
