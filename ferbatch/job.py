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
from fractions import Fraction
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
STARTUP_TIMEOUT_S = 120  # worker actors must be placed and have loaded their models by then


@dataclass(frozen=True)
class VideoTask:
    """One input video.

    Attributes:
        video_id: path-safe partition key.
        path: absolute path.
        rel_path: path relative to the input root (what the user recognises).
        size_bytes, mtime_ns, quick_hash: fingerprint for resume (quick_hash: sha256 of the first
            and last MiB, so a file rewritten with the same size and mtime is still noticed).
    """

    video_id: str
    path: str
    rel_path: str
    size_bytes: int
    mtime_ns: int
    quick_hash: str = ""


@dataclass
class JobSummary:
    """The outcome of :func:`run_job`.

    Attributes:
        videos: inputs found; skipped: already complete from an earlier run;
        ok, partial, failed: videos by status in this run; frames, faces: rows written this run;
        seconds: wall time; retried: shards re-run because their worker process died;
        errors: video rel_path -> message.
    """

    videos: int = 0
    skipped: int = 0
    ok: int = 0
    partial: int = 0
    failed: int = 0
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    retried: int = 0
    backend: str = ""
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
                size, mtime, qh = st.st_size, st.st_mtime_ns, _quick_hash(p, st.st_size)
            except OSError:  # dangling symlink, unreadable: reported when processed
                size, mtime, qh = -1, -1, ""
            vid = make_video_id(rel, hashlib.sha256(rel.encode()).hexdigest())
            tasks.append(VideoTask(vid, str(p.absolute()), rel, size, mtime, qh))
    if not tasks:
        names = ", ".join(str(r) for r in roots)
        raise ConfigError(f"{names} | no video files found (extensions: {', '.join(sorted(VIDEO_EXTENSIONS))})")
    return tasks


def _quick_hash(p: Path, size: int, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        h.update(f.read(block))
        if size > 2 * block:
            f.seek(size - block)
            h.update(f.read(block))
    return h.hexdigest()[:16]


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
        import cv2

        cv2.setNumThreads(threads)  # resize/colour conversion stay within this worker's share of cores
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

    def ping(self) -> str:
        """The backend this worker runs and why (returned once the models are loaded)."""
        return f"{self.models.backend} ({self.models.backend_reason})"


class _LocalPool:
    """Runs worker calls in this process, one at a time (no Ray)."""

    def __init__(self, make_worker: Callable[[], ShardWorker]):
        self.worker = make_worker()
        self.backends = [self.worker.ping()]

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
        # a TensorRT worker owns one whole GPU; an ONNX Runtime worker one CPU
        gpus = ray.available_resources().get("GPU", 0)
        use_gpu = cfg.backend == "tensorrt" or (cfg.backend == "auto" and gpus >= 1)
        if use_gpu:
            n = max(1, min(n, int(gpus))) if gpus else n
        self.actor_cls = ray.remote(num_cpus=1, num_gpus=1 if use_gpu else 0, max_restarts=0, max_task_retries=0)(ShardWorker)
        self.args = (cfg, threads, env)
        self.actors = [self.actor_cls.remote(*self.args) for _ in range(n)]
        self.deaths = 0  # worker processes that died under a call
        # surface model errors before any work; a worker that cannot be placed is an error too
        ready, waiting = ray.wait([a.ping.remote() for a in self.actors], num_returns=n, timeout=STARTUP_TIMEOUT_S)
        if waiting:
            free = ray.available_resources().get("CPU", 0)
            self.close()
            raise ConfigError(f"--workers {n} | only {len(ready)} worker actors started within {STARTUP_TIMEOUT_S} s "
                              f"(the cluster has {free:g} free CPUs); lower --workers")
        from ray.exceptions import RayTaskError

        try:
            self.backends = sorted(set(ray.get(ready)))
        except RayTaskError as e:  # ModelError, ConfigError from a worker's __init__: same message here
            self.close()
            cause = getattr(e, "cause", None)
            raise cause if isinstance(cause, FerbatchError) else FerbatchError(f"worker start-up failed: {e}") from e

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
                    self.deaths += 1
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
        # address="local": always a new embedded instance, never a cluster that happens to run on
        # this machine. No dashboard; Ray 2.6x token authentication is on by default and stays on.
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, object_store_memory=256 * 2**20,
                 configure_logging=False, log_to_driver=True)


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
        out_dir: output directory (created); rerunning into it resumes shard by shard.
        cfg: job settings (defaults: registry default models, one worker per core).
        use_ray: run on Ray actors (embedded local Ray unless ``address``); False = in-process.
        address: a running Ray cluster ("auto", "ray://..." or host:port).
        shard_frames: target frames per shard for newly planned videos (<= 0: one shard per
            video); a video planned by an earlier run keeps its plan.
        progress: callback(kind, done, total) with kind "probe" (videos) or "frames".

    Returns:
        JobSummary of this run.

    Raises:
        ConfigError, ModelError: bad settings or models (before any video is touched).
        OutputError: the output directory cannot be written.
        KeyboardInterrupt: passed on after the manifest records every shard finished so far.
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
    same_config = old.get("config_key") == key
    manifest = {
        "ferbatch_version": __version__,
        "config": cfg.to_dict(),
        "config_key": key,
        "models": {"detector": {"name": det_spec.name, "sha256": det_spec.sha256, "file": det_spec.file},
                   "classifier": {"name": cls_spec.name, "sha256": cls_spec.sha256, "file": cls_spec.file}},
        "videos": dict(old.get("videos", {})) if same_config else {},
    }
    if not same_config:  # other models or thresholds: the old rows cannot be mixed with new ones
        for table in ("faces", "frames"):
            if (out / table).is_dir():
                for sub in (out / table).iterdir():
                    if sub.is_dir() and sub.name.startswith("video_id="):
                        remove_video_parts(out, sub.name.split("=", 1)[1])
    to_probe: list[VideoTask] = []
    resumed: list[Shard] = []
    untracked: list[str] = []
    for t in tasks:
        rec = manifest["videos"].get(t.video_id)
        plan = _stored_plan(out, t, rec)
        if plan is None:
            remove_video_parts(out, t.video_id)
            manifest["videos"].pop(t.video_id, None)
            to_probe.append(t)
            continue
        missing = [s for s in plan if rec["shards"][s.shard_idx]["status"] not in DONE]
        if missing:
            resumed += missing
        elif cfg.track and rec.get("status") in DONE and not rec.get("tracked"):
            untracked.append(t.video_id)  # interrupted between its last shard and the tracking pass
        else:
            summary.skipped += 1
    env = {}
    if os.environ.get(MIRROR_ENV):
        env[MIRROR_ENV] = str(Path(os.environ[MIRROR_ENV]).expanduser().absolute())
    n_items = len(to_probe) + len(resumed)
    pool = None
    book = _Book(out, manifest, summary, progress, {t.video_id: t for t in tasks}, cfg)
    try:
        for vid in untracked:
            book.track(vid, manifest["videos"][vid])
        if n_items:
            if use_ray:
                import ray

                _init_ray(address, cfg.resolved_workers())
                # on a cluster: one single-threaded worker per CPU Ray has; locally: per core
                cpus = int(ray.available_resources().get("CPU", 1)) if address else cfg.resolved_workers()
                # one shard per video: no more workers than videos; else the plan is not known yet
                n_workers = max(1, min(cfg.workers or cpus, n_items) if shard_frames <= 0 and not resumed else (cfg.workers or cpus))
                threads = cfg.threads_per_worker or max(1, cfg.resolved_workers() // n_workers if not address else 1)
                pool = _RayPool(cfg, n_workers, threads, env)
            else:
                os.environ.update(env)
                pool = _LocalPool(lambda: ShardWorker(cfg, cfg.threads_per_worker or cfg.resolved_workers()))
            summary.backend = ", ".join(pool.backends)
            shards = resumed + book.probe_all(pool, to_probe, shard_frames)
            book.run_all(pool, shards)
    finally:
        if pool is not None:
            summary.retried = getattr(pool, "deaths", 0)
            pool.close()
        book.save(force=True)
    summary.seconds = time.perf_counter() - t0
    return summary


DONE = ("ok", "partial")  # shard states that a rerun does not repeat


def _fingerprint(t: VideoTask) -> dict:
    return {"size_bytes": t.size_bytes, "mtime_ns": t.mtime_ns, "quick_hash": t.quick_hash}


def _index_path(out: Path, video_id: str) -> Path:
    return out / "_index" / f"{video_id}.npz"


def _stored_plan(out: Path, t: VideoTask, rec: dict | None) -> list[Shard] | None:
    """The plan an earlier run made for this video, if the file is unchanged and the index kept."""
    if not rec or not rec.get("shards") or any(rec.get(k) != v for k, v in _fingerprint(t).items()):
        return None
    p = _index_path(out, t.video_id)
    if not p.is_file():
        return None
    with np.load(p) as z:
        index = VideoIndex(z["pts"], z["keyframes"], Fraction(int(z["tb"][0]), int(z["tb"][1])))
    return [Shard(t.video_id, t.path, s["shard_idx"], s["start"], s["end"], index) for s in rec["shards"]]


class _Book:
    """Driver-side bookkeeping: the manifest (saved at most every few seconds and at the end),
    the videos table, the summary and the progress callback."""

    SAVE_EVERY_S = 2.0

    def __init__(self, out: Path, manifest: dict, summary: JobSummary, progress, tasks: dict[str, VideoTask], cfg: JobConfig):
        self.out, self.manifest, self.summary, self.progress, self.tasks, self.cfg = out, manifest, summary, progress, tasks, cfg
        self.last_save = 0.0
        self.total_frames = 0
        self.done_frames = 0

    def save(self, force: bool = False) -> None:
        if force or time.monotonic() - self.last_save > self.SAVE_EVERY_S:
            if force:
                _write_videos_table(self.out, self.manifest)
            write_json_atomic(self.out / "_manifest.json", self.manifest)
            self.last_save = time.monotonic()

    def probe_all(self, pool, todo: list[VideoTask], shard_frames: int) -> list[Shard]:
        shards: list[Shard] = []
        for n, (task, res, err) in enumerate(pool.map("probe", todo) if todo else (), 1):
            info, index, msg = res if res is not None else (None, None, str(err))
            rec = {"path": task.path, "rel_path": task.rel_path, **_fingerprint(task), "status": "failed" if info is None else "pending",
                   "error": msg, "frames": 0, "faces": 0, "shards": []}
            if info is not None:
                rec.update(width=info.width, height=info.height, fps=info.fps, duration_s=info.duration_s, codec=info.codec,
                           packets=info.packets)
                if info.truncated:
                    rec["warning"] = (f"truncated: the container lists {info.declared_frames} frames, "
                                      f"only {info.packets} are in the file")
                plan = plan_shards(task, index, shard_frames)
                p = _index_path(self.out, task.video_id)
                p.parent.mkdir(exist_ok=True)
                tmp = p.with_name(f".{p.name}.tmp.npz")
                np.savez(tmp, pts=index.pts, keyframes=index.keyframes, tb=np.array([index.time_base.numerator, index.time_base.denominator]))
                os.replace(tmp, p)
                rec["shards"] = [{"shard_idx": s.shard_idx, "start": s.start, "end": s.end, "status": "pending", "frames": 0,
                                  "faces": 0, "error": "", "seconds": 0.0} for s in plan]
                shards += plan
            else:
                self.summary.failed += 1
                self.summary.errors[task.rel_path] = msg
            self.manifest["videos"][task.video_id] = rec
            if self.progress:
                self.progress("probe", n, len(todo))
            self.save()
        return shards

    def run_all(self, pool, shards: list[Shard]) -> None:
        self.total_frames = sum(_shard_len(s) for s in shards)
        for shard, res, err in pool.map("run", shards, str(self.out)) if shards else ():
            if res is None:
                res = ShardResult(shard.video_id, shard.shard_idx, status="failed", error=str(err))
            rec = self.manifest["videos"][shard.video_id]
            rec["shards"][shard.shard_idx].update(status=res.status, frames=res.frames, faces=res.faces, error=res.error,
                                                  seconds=round(res.seconds, 3))
            if res.frame_size[0]:  # decoded frames are upright: their size wins over the stream's
                rec["width"], rec["height"] = res.frame_size
            self.done_frames += res.frames
            self.summary.frames += res.frames
            self.summary.faces += res.faces
            if all(s["status"] != "pending" for s in rec["shards"]):
                self._finish_video(shard.video_id, rec)
            if self.progress:
                self.progress("frames", self.done_frames, max(self.total_frames, self.done_frames))
            self.save()
        if self.progress and shards:
            self.progress("frames", self.done_frames, self.done_frames)  # packets that did not decode never come

    def _finish_video(self, video_id: str, rec: dict) -> None:
        sh = rec["shards"]
        bad = [s for s in sh if s["status"] != "ok"]
        status = "ok" if not bad else ("failed" if all(s["status"] == "failed" for s in sh) else "partial")
        error = "; ".join(f"shard {s['shard_idx']}: {s['error']}" if len(sh) > 1 else s["error"] for s in bad)
        if rec.get("warning") and status == "ok":  # the frames that exist are done; the rest is missing
            status, error = "partial", rec["warning"]
        rec.update(status=status, frames=sum(s["frames"] for s in sh), faces=sum(s["faces"] for s in sh), error=error)
        if self.cfg.track and status in DONE:
            self.track(video_id, rec)
        status = rec["status"]
        setattr(self.summary, status, getattr(self.summary, status) + 1)
        if rec["error"]:
            self.summary.errors[rec["rel_path"]] = rec["error"]

    def track(self, video_id: str, rec: dict) -> None:
        """The tracking pass over a finished video (on the driver: it reads boxes, not images)."""
        from ferbatch.track_video import track_video

        try:
            rec["tracks"] = track_video(self.out, video_id)
            rec["tracked"] = True
        except (FerbatchError, OSError, ValueError) as e:
            rec["tracked"] = False
            rec["status"] = "partial"
            rec["error"] = "; ".join(x for x in (rec["error"], f"tracking failed: {e}") if x)


def _shard_len(s: Shard) -> int:
    return (s.end if s.end is not None else len(s.index.pts)) - s.start


def _write_videos_table(out: Path, manifest: dict) -> None:
    rows = {f.name: [] for f in VIDEOS_SCHEMA}
    m = manifest["models"]
    for vid, r in sorted(manifest["videos"].items()):
        vals = {
            "video_id": vid, "path": r["rel_path"], "size_bytes": r["size_bytes"], "width": r.get("width"), "height": r.get("height"),
            "fps": r.get("fps"), "duration_s": r.get("duration_s"), "frames": r["frames"], "faces": r["faces"], "status": r["status"],
            "error": r["error"] or None, "detector": m["detector"]["name"], "detector_sha256": m["detector"]["sha256"],
            "classifier": m["classifier"]["name"], "classifier_sha256": m["classifier"]["sha256"],
            "ferbatch_version": manifest["ferbatch_version"], "config_key": manifest["config_key"],
        }
        for k, v in vals.items():
            rows[k].append(v)
    write_table_atomic(out / "videos.parquet", pa.table(rows, schema=VIDEOS_SCHEMA))
