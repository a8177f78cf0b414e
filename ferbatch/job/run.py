"""The job: scan the inputs, plan shards, run them on workers, record everything.

Ray only plans, schedules, retries and collects here; the work itself is
:func:`ferbatch.pipeline.run_shard`, which also runs in-process (``use_ray=False``) for tests and
benchmarks. Inputs are found by :mod:`.inputs`, run by :mod:`.workers`, recorded by
:mod:`.manifest` and tracked by :mod:`.tracking`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ferbatch import __version__
from ferbatch.config import JobConfig
from ferbatch.dataset.store import read_manifest, remove_video_parts
from ferbatch.errors import OutputError
from ferbatch.job.inputs import VideoTask, scan_inputs
from ferbatch.job.manifest import DONE, JobLedger, stored_plan
from ferbatch.job.summary import JobSummary
from ferbatch.job.workers import LocalPool, RayPool, ShardWorker, WorkerPool, init_ray
from ferbatch.media.shards import Shard
from ferbatch.models.load import resolve_specs
from ferbatch.models.registry import MIRROR_ENV

__all__ = ["run_job"]


def run_job(
    input_path: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    cfg: JobConfig | None = None,
    *,
    use_ray: bool | None = None,
    address: str | None = None,
    shard_frames: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
) -> JobSummary:
    """Process every video under ``input_path`` into the Parquet dataset at ``out_dir``.

    Args:
        input_path: video files and/or directories (searched recursively), one or a list.
        out_dir: output directory (created); rerunning into it resumes shard by shard.
        cfg: job settings (defaults: registry default models, one worker per core).
        use_ray: run on Ray actors (embedded local Ray unless ``address``); False = in-process (one
            thread per worker sharing one set of models); None = in-process when the job is too
            small to win back Ray's start-up (:func:`wants_ray`), else Ray.
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
    manifest: dict[str, Any] = {
        "ferbatch_version": __version__,
        "config": cfg.to_dict(),
        "config_key": key,
        "models": {
            "detector": {"name": det_spec.name, "sha256": det_spec.sha256, "file": det_spec.file},
            "classifier": {"name": cls_spec.name, "sha256": cls_spec.sha256, "file": cls_spec.file},
        },
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
        plan = stored_plan(out, t, rec)
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
    pool: WorkerPool | None = None
    book = JobLedger(out, manifest, summary, progress, {t.video_id: t for t in tasks}, cfg)
    try:
        for vid in untracked:
            book.track(vid, manifest["videos"][vid])
        if n_items:
            if use_ray is None:
                use_ray, why = wants_ray(address, to_probe, len(resumed))
            else:
                why = "requested"
            summary.runner = f"{'ray' if use_ray else 'in-process'} ({why})"
            if use_ray:
                import ray

                init_ray(address, cfg.resolved_workers())
                # on a cluster: one single-threaded worker per CPU Ray has; locally: per core
                cpus = int(ray.available_resources().get("CPU", 1)) if address else cfg.resolved_workers()
                # one shard per video: no more workers than videos; else the plan is not known yet
                n_workers = max(1, min(cfg.workers or cpus, n_items) if shard_frames <= 0 and not resumed else (cfg.workers or cpus))
                threads = cfg.threads_per_worker or max(1, cfg.resolved_workers() // n_workers if not address else 1)
                pool = RayPool(cfg, n_workers, threads, env)
            else:
                os.environ.update(env)
                pool = LocalPool(lambda: ShardWorker(cfg, cfg.resolved_threads()), n=cfg.resolved_workers())
            summary.backend = ", ".join(pool.backends)
            summary.startup_seconds = time.perf_counter() - t0
            shards = resumed + book.probe_all(pool, to_probe, shard_frames)
            book.run_all(pool, shards)
    finally:
        if pool is not None:
            summary.retried = pool.deaths
            pool.close()
        book.save(force=True)
    summary.seconds = time.perf_counter() - t0
    return summary


# In-process below this many frames in the job. Ray costs ~4-6 s to start and ~1 s per actor to
# load models; the in-process pool runs the same number of workers as threads (docs/performance.md).
LOCAL_MAX_FRAMES = 20_000
LOCAL_MAX_VIDEOS = 16  # estimating frames opens each file: only for a few videos


def wants_ray(address: str | None, to_probe: list[VideoTask], resumed_shards: int) -> tuple[bool, str]:
    """(use Ray, why) for a job whose runner was not chosen: Ray on a cluster or for a big job.

    The frame count is estimated from the container headers (:func:`ferbatch.media.probe.estimate_frames`).
    """
    if address:
        return True, "cluster address given"
    if resumed_shards or len(to_probe) > LOCAL_MAX_VIDEOS:
        return True, f"more than {LOCAL_MAX_VIDEOS} videos or a resumed job"
    from ferbatch.media.probe import estimate_frames

    frames = sum(estimate_frames(t.path) for t in to_probe)
    if frames > LOCAL_MAX_FRAMES:
        return True, f"about {frames} frames > {LOCAL_MAX_FRAMES}"
    return False, f"about {frames} frames <= {LOCAL_MAX_FRAMES}: Ray's start-up would not pay"
