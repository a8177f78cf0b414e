"""The job: scan a directory, plan shards, run them on worker actors, record everything.

Ray only plans, schedules, retries and collects here; the work itself is
:func:`ferbatch.pipeline.run_shard`, which also runs in-process (``use_ray=False``) for tests and
benchmarks.

Scheduling is a hand-rolled ``ray.wait`` loop over explicit actors rather than ``ActorPool`` or
Ray Data: each actor owns its models (loaded once in ``__init__``), takes one shard per call and
writes that shard's part files itself, and the loop sees which actor died with which shard so it
can start a replacement and retry the shard a bounded number of times (DESIGN_NOTES 5.1-5.2).

Resume: the manifest records each video's fingerprint (size, mtime) and the config's result key;
a rerun skips videos that completed with the same fingerprint and key, and reprocesses the rest
(its old part files are deleted first, so rows are never duplicated).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from ferbatch import __version__
from ferbatch.config import JobConfig
from ferbatch.errors import ConfigError, DecodeError, FerbatchError, OutputError
from ferbatch.loaders import Models, load_models, resolve_specs
from ferbatch.output import (
    VIDEOS_SCHEMA,
    make_video_id,
    read_manifest,
    remove_video_parts,
    write_json_atomic,
    write_table_atomic,
)
from ferbatch.pipeline import Shard, ShardResult, run_shard
from ferbatch.registry import MIRROR_ENV
from ferbatch.video import VIDEO_EXTENSIONS, VideoIndex, VideoInfo, probe_video

__all__ = ["VideoTask", "JobSummary", "scan_inputs", "plan_shards", "run_job", "ShardWorker"]

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3  # tries per shard when its worker process dies


@dataclass(frozen=True)
class VideoTask:
    """One input video.

    Attributes:
        video_id: path-safe partition key.
        path: absolute path.
        rel_path: path relative to the input root (what the user recognises).
        size_bytes, mtime_ns: fingerprint for resume.
    """

    video_id: str
    path: str
    rel_path: str
    size_bytes: int
    mtime_ns: int


@dataclass
class JobSummary:
    """The outcome of :func:`run_job`.

    Attributes:
        videos: inputs found; skipped: already complete from an earlier run;
        ok, partial, failed: videos by status in this run; frames, faces: rows written this run;
        seconds: wall time; errors: video rel_path -> message.
    """

    videos: int = 0
    skipped: int = 0
    ok: int = 0
    partial: int = 0
    failed: int = 0
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def frames_per_s(self) -> float:
        """Frames processed per second of wall time (0 if nothing ran)."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def scan_inputs(input_paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[VideoTask]:
    """Find videos: files given directly, and every file with a video extension under the given
    directories (recursively; symlinked directories are not followed, so a symlink loop cannot
    trap the scan). With one input, ``rel_path`` is relative to it; with several, it starts with
    each input's own name.

    Raises:
        ConfigError: an input does not exist, or no video file is found at all.
    """
    roots = [input_paths] if isinstance(input_paths, (str, os.PathLike)) else list(input_paths)
    if not roots:
        raise ConfigError("input | no video file or directory given")
    tasks, seen = [], set()
    for r in roots:
        root = Path(r).expanduser()
        if not root.exists():
            raise ConfigError(f"{root} | does not exist")
        if root.is_file():
            files, base = [root], root.parent
        else:
            base = root if len(roots) == 1 else root.parent
            files = []
            for d, dirs, names in os.walk(root, followlinks=False):
                dirs.sort()
                for n in sorted(names):
                    p = Path(d) / n
                    if p.suffix.lower() in VIDEO_EXTENSIONS and not n.startswith("."):
                        files.append(p)
        for p in files:
            rel = p.relative_to(base).as_posix()
            if p.absolute() in seen:
                continue
            seen.add(p.absolute())
            try:
                st = p.stat()
                size, mtime = st.st_size, st.st_mtime_ns
            except OSError:  # dangling symlink: reported when processed
                size, mtime = -1, -1
            vid = make_video_id(rel, hashlib.sha256(rel.encode()).hexdigest())
            tasks.append(VideoTask(vid, str(p.absolute()), rel, size, mtime))
    if not tasks:
        names = ", ".join(str(r) for r in roots)
        raise ConfigError(f"{names} | no video files found (extensions: {', '.join(sorted(VIDEO_EXTENSIONS))})")
    return tasks


def plan_shards(task: VideoTask, index: VideoIndex, target_frames: int) -> list[Shard]:
    """Split a video into keyframe-aligned half-open frame ranges of about ``target_frames``.

    A shard ends at the first keyframe at or after ``start + target_frames``, so no shard decodes
    a GOP it then throws away, and every frame falls in exactly one shard. ``target_frames`` <= 0
    gives one shard for the whole video.
    """
    n = len(index.pts)
    if target_frames <= 0 or n <= target_frames:
        return [Shard(task.video_id, task.path, 0, 0, None, index)]
    key_idx = np.searchsorted(index.pts, index.keyframes)
    bounds = [0]
    while True:
        nxt = key_idx[key_idx >= bounds[-1] + target_frames]
        if nxt.size == 0 or nxt[0] >= n:
            break
        bounds.append(int(nxt[0]))
    return [Shard(task.video_id, task.path, i, s, (bounds[i + 1] if i + 1 < len(bounds) else None), index)
            for i, s in enumerate(bounds)]


class ShardWorker:
    """Owns one detector + classifier and processes shards (a Ray actor, or a plain object).

    Args:
        cfg: the job config.
        threads: ONNX Runtime threads for this worker.
        env: environment variables to set first (the model mirror, made absolute by the driver).
    """

    def __init__(self, cfg: JobConfig, threads: int, env: dict[str, str] | None = None):
        os.environ.update(env or {})
        self.cfg = cfg
        self.models: Models = load_models(cfg, threads=threads)

    def probe(self, task: VideoTask) -> tuple[VideoInfo | None, VideoIndex | None, str]:
        """Index a video; returns (info, index, "") or (None, None, error message)."""
        try:
            info, index = probe_video(task.path)
        except DecodeError as e:
            return None, None, e.reason
        return info, index, ""

    def run(self, shard: Shard, out_dir: str) -> ShardResult:
        """Process one shard and write its part files."""
        c = self.cfg
        return run_shard(shard, self.models, out_dir, detect_batch=c.detect_batch, prefetch=c.prefetch, decode_threads=c.decode_threads)

    def ping(self) -> bool:
        """True once the models are loaded (used to wait for start-up)."""
        return True


class _LocalPool:
    """Runs worker calls in this process, one at a time (no Ray)."""

    def __init__(self, make_worker: Callable[[], ShardWorker]):
        self.worker = make_worker()

    def map(self, method: str, items: Iterable, *args) -> Iterable[tuple[object, object, Exception | None]]:
        for it in items:
            try:
                res = getattr(self.worker, method)(it, *args)
            except Exception as e:  # noqa: BLE001 - one video's failure never stops the job
                yield it, None, _describe(e)
                continue
            yield it, res, None

    def close(self):
        self.worker.models.close()


class _RayPool:
    """Runs worker calls on Ray actors; replaces an actor that dies and retries its item."""

    def __init__(self, cfg: JobConfig, n: int, threads: int, env: dict[str, str]):
        import ray

        self.ray = ray
        self.actor_cls = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(ShardWorker)
        self.args = (cfg, threads, env)
        self.actors = [self.actor_cls.remote(*self.args) for _ in range(n)]
        ray.get([a.ping.remote() for a in self.actors])  # surface model errors before any work

    def map(self, method: str, items: Iterable, *args):
        ray = self.ray
        from ray.exceptions import RayActorError, RayTaskError

        pending = deque((it, 1) for it in items)
        idle = list(self.actors)
        running: dict = {}
        while pending or running:
            while idle and pending:
                it, attempt = pending.popleft()
                a = idle.pop()
                running[getattr(a, method).remote(it, *args)] = (a, it, attempt)
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                a, it, attempt = running.pop(ref)
                try:
                    yield it, ray.get(ref), None
                    idle.append(a)
                except RayActorError as e:
                    log.warning("worker died on %s (attempt %d/%d): %s", _label(it), attempt, MAX_ATTEMPTS, e)
                    self.actors.remove(a)
                    new = self.actor_cls.remote(*self.args)
                    self.actors.append(new)
                    idle.append(new)
                    if attempt < MAX_ATTEMPTS:
                        pending.append((it, attempt + 1))
                    else:
                        yield it, None, FerbatchError(f"the worker process died {attempt} times on it")
                except RayTaskError as e:
                    # an exception inside the worker concerns this item only: record it, go on
                    idle.append(a)
                    yield it, None, _describe(e.cause if getattr(e, "cause", None) is not None else e)

    def close(self):
        for a in self.actors:
            self.ray.kill(a)


def _describe(e: BaseException) -> FerbatchError:
    """A per-item error as a FerbatchError whose text a user can act on."""
    if isinstance(e, FerbatchError):
        return e
    return FerbatchError(f"unexpected {type(e).__name__}: {e}")


def _label(item) -> str:
    if isinstance(item, Shard):
        return f"{item.path} shard {item.shard_idx}"
    return getattr(item, "path", str(item))


def _init_ray(address: str | None, num_cpus: int) -> None:
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, configure_logging=False, log_to_driver=True)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, object_store_memory=256 * 2**20,
                 configure_logging=False, log_to_driver=True, _node_ip_address="127.0.0.1")


def run_job(
    input_path: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    cfg: JobConfig | None = None,
    *,
    use_ray: bool = True,
    address: str | None = None,
    shard_frames: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
) -> JobSummary:
    """Process every video under ``input_path`` into the Parquet dataset at ``out_dir``.

    Args:
        input_path: video files and/or directories (searched recursively), one or a list.
        out_dir: output directory (created); rerunning into it resumes.
        cfg: job settings (defaults: registry default models, one worker per core).
        use_ray: run on Ray actors (embedded local Ray unless ``address``); False = in-process.
        address: a running Ray cluster ("auto", "ray://..." or host:port).
        shard_frames: target frames per shard (<= 0: one shard per video).
        progress: callback(kind, done, total) with kind "probe" (videos) or "frames".

    Returns:
        JobSummary of this run.

    Raises:
        ConfigError, ModelError: bad settings or models (before any video is touched).
        OutputError: the output directory cannot be written.
    """
    t0 = time.perf_counter()
    cfg = cfg or JobConfig()
    out = Path(out_dir)
    det_spec, cls_spec = resolve_specs(cfg)
    tasks = scan_inputs(input_path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out} | cannot create the output directory: {e.strerror or e}") from e
    summary = JobSummary(videos=len(tasks))
    old = read_manifest(out) or {}
    key = cfg.result_key()
    prev = old.get("videos", {}) if old.get("config_key") == key else {}
    manifest = {
        "ferbatch_version": __version__,
        "config": cfg.to_dict(),
        "config_key": key,
        "models": {"detector": {"name": det_spec.name, "sha256": det_spec.sha256, "file": det_spec.file},
                   "classifier": {"name": cls_spec.name, "sha256": cls_spec.sha256, "file": cls_spec.file}},
        "videos": {vid: rec for vid, rec in old.get("videos", {}).items()} if prev else {},
    }
    todo = []
    for t in tasks:
        rec = prev.get(t.video_id)
        if rec and rec.get("status") in ("ok", "partial") and rec.get("size_bytes") == t.size_bytes and rec.get("mtime_ns") == t.mtime_ns:
            summary.skipped += 1
        else:
            todo.append(t)
    if not prev:  # different models or settings: start the dataset afresh
        for table in ("faces", "frames"):
            d = out / table
            if d.is_dir():
                for sub in d.iterdir():
                    if sub.is_dir() and sub.name.startswith("video_id="):
                        remove_video_parts(out, sub.name.split("=", 1)[1])
    for t in todo:
        remove_video_parts(out, t.video_id)
        manifest["videos"].pop(t.video_id, None)
    env = {}
    if os.environ.get(MIRROR_ENV):
        env[MIRROR_ENV] = str(Path(os.environ[MIRROR_ENV]).expanduser().absolute())
    n_workers = max(1, min(cfg.resolved_workers(), len(todo) or 1))
    threads = cfg.threads_per_worker or max(1, cfg.resolved_workers() // n_workers)
    pool = None
    try:
        if todo:
            if use_ray:
                _init_ray(address, cfg.resolved_workers())
                pool = _RayPool(cfg, n_workers, threads, env)
            else:
                os.environ.update(env)
                pool = _LocalPool(lambda: ShardWorker(cfg, threads))
        _process(pool, todo, out, cfg, shard_frames, manifest, summary, progress) if todo else None
    finally:
        if pool is not None:
            pool.close()
        _write_videos_table(out, manifest)
        write_json_atomic(out / "_manifest.json", manifest)
    summary.seconds = time.perf_counter() - t0
    return summary


def _process(pool, todo, out, cfg, shard_frames, manifest, summary, progress) -> None:
    by_id = {t.video_id: t for t in todo}
    plans: dict[str, list[Shard]] = {}
    infos: dict[str, VideoInfo] = {}
    total_frames = 0
    for n, (task, res, err) in enumerate(pool.map("probe", todo), 1):
        info, index, msg = res if res is not None else (None, None, str(err))
        if info is None:
            _record(manifest, summary, task, None, "failed", msg, 0, 0)
        else:
            infos[task.video_id] = info
            plans[task.video_id] = plan_shards(task, index, shard_frames)
            total_frames += info.packets
        if progress:
            progress("probe", n, len(todo))
        write_json_atomic(out / "_manifest.json", manifest)
    shards = [s for vid in plans for s in plans[vid]]
    left = {vid: len(p) for vid, p in plans.items()}
    acc: dict[str, list[ShardResult]] = {vid: [] for vid in plans}
    done_frames = 0
    for shard, res, err in pool.map("run", shards, str(out)):
        if res is None:
            res = ShardResult(shard.video_id, shard.shard_idx, status="failed", error=str(err))
        acc[shard.video_id].append(res)
        done_frames += res.frames
        summary.frames += res.frames
        summary.faces += res.faces
        if progress:
            progress("frames", done_frames, max(total_frames, done_frames))
        left[shard.video_id] -= 1
        if left[shard.video_id] == 0:
            results = sorted(acc.pop(shard.video_id), key=lambda r: r.shard_idx)
            bad = [r for r in results if r.status != "ok"]
            status = "ok" if not bad else ("failed" if all(r.status == "failed" for r in results) else "partial")
            error = "; ".join(f"shard {r.shard_idx}: {r.error}" if len(results) > 1 else r.error for r in bad)
            task = by_id[shard.video_id]
            _record(manifest, summary, task, infos[shard.video_id], status, error,
                    sum(r.frames for r in results), sum(r.faces for r in results),
                    shards=[{"shard_idx": s.shard_idx, "start": s.start, "end": s.end, "status": r.status,
                             "frames": r.frames, "faces": r.faces, "error": r.error}
                            for s, r in zip(plans[shard.video_id], results)])
            write_json_atomic(out / "_manifest.json", manifest)
    if progress:
        progress("frames", done_frames, done_frames)  # packets that did not decode never come


def _record(manifest, summary, task: VideoTask, info: VideoInfo | None, status: str, error: str, frames: int, faces: int, shards=None) -> None:
    manifest["videos"][task.video_id] = {
        "path": task.path,
        "rel_path": task.rel_path,
        "size_bytes": task.size_bytes,
        "mtime_ns": task.mtime_ns,
        "status": status,
        "error": error,
        "frames": frames,
        "faces": faces,
        "width": info.width if info else None,
        "height": info.height if info else None,
        "fps": info.fps if info else None,
        "duration_s": info.duration_s if info else None,
        "codec": info.codec if info else None,
        "shards": shards or [],
    }
    setattr(summary, status, getattr(summary, status) + 1)
    if error:
        summary.errors[task.rel_path] = error


def _write_videos_table(out: Path, manifest: dict) -> None:
    rows = {f.name: [] for f in VIDEOS_SCHEMA}
    m = manifest["models"]
    for vid, r in sorted(manifest["videos"].items()):
        vals = {
            "video_id": vid, "path": r["rel_path"], "size_bytes": r["size_bytes"], "width": r["width"], "height": r["height"],
            "fps": r["fps"], "duration_s": r["duration_s"], "frames": r["frames"], "faces": r["faces"], "status": r["status"],
            "error": r["error"] or None, "detector": m["detector"]["name"], "detector_sha256": m["detector"]["sha256"],
            "classifier": m["classifier"]["name"], "classifier_sha256": m["classifier"]["sha256"],
            "ferbatch_version": manifest["ferbatch_version"], "config_key": manifest["config_key"],
        }
        for k, v in vals.items():
            rows[k].append(v)
    write_table_atomic(out / "videos.parquet", pa.table(rows, schema=VIDEOS_SCHEMA))
