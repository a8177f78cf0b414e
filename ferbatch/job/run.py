"""The job: scan the inputs, plan shards, run them on workers, record everything.

Ray only plans, schedules, retries and collects here; the work itself is
:func:`ferbatch.pipeline.run_shard`, which also runs in-process (``use_ray=False``) for tests and
benchmarks. Inputs are found by :mod:`.inputs`, run by :mod:`.workers`, recorded by
:mod:`.manifest` and tracked by :mod:`.tracking`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ferbatch import __version__
from ferbatch.config import JobConfig, resolve_defaults, with_defaults
from ferbatch.dataset.guards import check_settings
from ferbatch.dataset.store import LAYOUT, dataset_layout, read_manifest
from ferbatch.dataset.videos import videos_table
from ferbatch.dataset.writer import DatasetWriter
from ferbatch.errors import ConfigError, FerbatchError, JobAborted, OutputError
from ferbatch.job.inputs import Inputs, VideoTask, fingerprint, scan_inputs
from ferbatch.job.ledger import JobLedger
from ferbatch.job.manifest import DONE, adopt_ids, record_paths, replaced_videos, shard_intact, stored_plan
from ferbatch.job.preflight import check_inputs, check_out_dir
from ferbatch.job.sizing import NodeResources, plan_placement
from ferbatch.job.summary import JobSummary
from ferbatch.job.workers import LocalPool, RayPool, ShardWorker, WorkerPool, init_ray
from ferbatch.location import open_location
from ferbatch.media.shards import Shard
from ferbatch.models.load import prepare_models
from ferbatch.models.registry import MIRROR_ENV
from ferbatch.specs import ModelSpec

__all__ = ["run_job"]

log = logging.getLogger(__name__)


def run_job(
    input_path: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    cfg: JobConfig | None = None,
    *,
    use_ray: bool | None = None,
    address: str | None = None,
    shard_frames: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
    overwrite: bool = False,
    full_hash: bool = False,
    force: bool = False,
) -> JobSummary:
    """Process every video under ``input_path`` into the Parquet dataset at ``out_dir``.

    Order of work, so that nothing already written is lost by a mistake: the models are resolved,
    sha256-checked, parsed and prepared first (a bad model stops the job with OUT untouched), then
    the inputs are scanned, then the dataset's recorded settings are compared with ``cfg`` (a
    difference stops the job unless ``overwrite``), then the dataset's writer
    (:class:`ferbatch.dataset.writer.DatasetWriter`) locks OUT for the rest of the run, checks
    the folder and the settings again under the lock, and makes every write.

    Args:
        input_path: video files and/or directories (searched recursively), one or a list.
        out_dir: output directory (created), a local path or an ``s3://`` / ``gs://`` URI
            (:mod:`ferbatch.location`); rerunning into it resumes shard by shard.
        cfg: job settings (defaults: registry default models, one worker per core).
        use_ray: run on Ray actors (embedded local Ray unless ``address``); False = in-process (one
            thread per worker sharing one set of models); None = in-process when the job is too
            small to win back Ray's start-up (:func:`wants_ray`), else Ray.
        address: a running Ray cluster ("auto", "ray://..." or host:port).
        shard_frames: target frames per shard for newly planned videos (<= 0: one shard per
            video); a video planned by an earlier run keeps its plan.
        progress: callback(kind, done, total) with kind "probe" (videos) or "frames".
        overwrite: start the dataset afresh when its result-changing settings differ from ``cfg``.
        full_hash: identify videos by the sha256 of the whole file instead of sampled blocks.
        force: write into a non-empty ``out_dir`` that is not a ferbatch dataset.

    Returns:
        JobSummary of this run.

    Raises:
        ConfigError, ModelError: bad settings or models, or settings that differ from the
            dataset's (before anything in OUT is touched).
        OutputError: the output directory cannot be created or written before the job starts
            writing it, or another writer (run, watch, compact) holds its lock.
        JobAborted: an error of the machine (disk full, out of memory, an object store gone) or a
            bug stopped the job once it was writing OUT; what finished is kept.
        KeyboardInterrupt: passed on after the manifest records every shard finished so far.
    """
    t0 = time.perf_counter()
    cfg = cfg or JobConfig()
    out = open_location(out_dir)
    check_inputs(input_path)  # still images, a foreign non-empty OUT: refused before anything starts
    check_out_dir(out, force=force)
    try:
        det_spec, cls_spec = prepare_models(cfg)
    except OSError as e:  # the prepared graphs cannot be written (disk full): the machine's error
        from ferbatch.models.registry import cache_dir

        raise JobAborted(
            f"{cache_dir()} | the models cannot be prepared in the cache: {e.strerror or e}; nothing was run, rerun the same command once there is room"
        ) from e
    # registry defaults filled in, so "default" and the same model named compare equal
    cfg = with_defaults(cfg)
    inputs = scan_inputs(input_path, full_hash=full_hash)
    check_settings(out, read_manifest(out), cfg, overwrite=overwrite)  # before the lock file: a refused run leaves OUT untouched
    writer = DatasetWriter(out, command="run", config=cfg, overwrite=overwrite, force=force, videos=videos_table)
    with writer:  # a refusal here (lock, settings, a folder or bucket that cannot be written) leaves OUT as it was
        try:
            summary = _run_locked(writer, cfg, inputs, det_spec, cls_spec, use_ray, address, shard_frames, progress, t0)
        except OutputError as e:
            # OUT was being written (disk full, an object store gone mid-job): an error of the
            # machine like a worker's (exit 4), not a bad setting
            raise JobAborted(f"{e}; the job stopped, finished shards are kept, rerun the same command to resume") from e
    summary.seconds = time.perf_counter() - t0
    return summary


def _run_locked(
    writer: DatasetWriter,
    cfg: JobConfig,
    inputs: Inputs,
    det_spec: ModelSpec,
    cls_spec: ModelSpec,
    use_ray: bool | None,
    address: str | None,
    shard_frames: int,
    progress: Callable[[str, int, int], None] | None,
    t0: float,
) -> JobSummary:
    out = writer.loc
    tasks = inputs.tasks
    summary = JobSummary(videos=len(tasks) + len(inputs.skipped))
    old = writer.manifest
    same = not cfg.differences(resolve_defaults(old.get("config", {}))) and dataset_layout(out, old) != 1
    manifest: dict[str, Any] = {
        "ferbatch_version": __version__,
        "layout": LAYOUT,
        "config": cfg.to_dict(),
        "config_key": cfg.result_key(),
        "models": {
            "detector": {"name": det_spec.name, "sha256": det_spec.sha256, "file": det_spec.file},
            "classifier": {"name": cls_spec.name, "sha256": cls_spec.sha256, "file": cls_spec.file},
        },
        "videos": dict(old.get("videos", {})) if same else {},
        "commits": dict(old.get("commits", {})) if same else {},
        "skipped_inputs": inputs.skipped,
    }
    if same and old.get("live"):
        manifest["live"] = old["live"]  # watch sessions' records (their rows are commits like a job's)
    # --overwrite with other settings (or an old layout): the old rows cannot be mixed with new ones
    writer.start(manifest, afresh=not same)
    tasks = adopt_ids(manifest["videos"], tasks)
    for path, why in inputs.skipped.items():
        summary.failed += 1
        summary.errors[path] = why
    to_probe, resumed, to_gather = _resume_plan(writer, tasks, cfg, summary)
    env = {}
    if os.environ.get(MIRROR_ENV):
        env[MIRROR_ENV] = str(Path(os.environ[MIRROR_ENV]).expanduser().absolute())
    n_items = len(to_probe) + len(resumed)
    pool: WorkerPool | None = None
    book = JobLedger(writer, summary, progress, {t.video_id: t for t in tasks}, cfg)
    try:
        for vid in to_gather:  # every shard staged, the video not committed: finish it without workers
            book.finish_video(vid, manifest["videos"][vid])
        if n_items:
            if use_ray is None:
                use_ray, why = wants_ray(address, to_probe, resumed)
            else:
                why = "requested"
            if use_ray and not _ray_started(address, cfg.resolved_workers()):
                use_ray, why = False, "Ray could not start"
            summary.runner = f"{'ray' if use_ray else 'in-process'} ({why})"
            if use_ray:
                import ray

                # on a cluster: what Ray has; locally: the cores given to the embedded instance
                have = ray.available_resources()
                node = NodeResources(int(have.get("CPU", 1)) if address else cfg.resolved_workers(), int(have.get("GPU", 0)))
                placement = plan_placement(
                    node,
                    cfg.backend,
                    workers=cfg.workers,
                    workers_per_gpu=cfg.workers_per_gpu,
                    threads_per_worker=cfg.threads_per_worker,
                    # one shard per video: no more workers than videos; else the plan is not known yet
                    items=n_items if shard_frames <= 0 and not resumed else 0,
                )
                pool = RayPool(cfg, placement, env)
            else:
                os.environ.update(env)
                pool = LocalPool(lambda: ShardWorker(cfg, cfg.resolved_threads()), n=cfg.resolved_workers())
            summary.backend = ", ".join(pool.backends)
            summary.startup_seconds = time.perf_counter() - t0
            shards = resumed + book.probe_all(pool, to_probe, shard_frames)
            book.run_all(pool, shards)
        book.commit()
    finally:
        if pool is not None:
            summary.retried = pool.deaths
            pool.close()
        try:
            if sys.exc_info()[0] is KeyboardInterrupt:
                book.commit()  # the videos finished so far, so they need no work on the rerun
            book.save(force=True)
        except FerbatchError as e:
            if sys.exc_info()[0] is None:
                raise
            log.debug("%s", e)  # the error already on its way up (e.g. disk full) is the one to report (one line)
    return summary


def _ray_started(address: str | None, num_cpus: int) -> bool:
    """Start (or connect to) Ray for the job (:func:`init_ray`); False when an embedded Ray
    cannot start (its error said in one warning line: the job then runs in-process).

    Raises:
        ConfigError: the cluster at ``address`` cannot be reached (there is no in-process
            fallback for a cluster job); the message names the address and ``--no-ray``.
    """
    if address:
        _reachable(address)
    try:
        init_ray(address, num_cpus)  # sets Ray's environment before Ray is imported
    except Exception as e:  # Ray's own: ConnectionError, RuntimeError, TimeoutError, OSError, ...
        what = _first_line(e)
        if address:
            raise ConfigError(f"--address {address} | Ray cannot be reached: {what}; check the address, or run with --no-ray") from e
        log.warning("Ray could not start (%s); running in this process instead (--no-ray does so without trying Ray)", what)
        with contextlib.suppress(Exception):
            import ray

            ray.shutdown()  # whatever half-started
        return False
    return True


RAY_CONNECT_TIMEOUT_S = 10.0  # a cluster's port must accept a connection by then


def _reachable(address: str) -> None:
    """Refuse a ``HOST:PORT`` or ``ray://HOST:PORT`` address whose port does not accept a TCP
    connection within :data:`RAY_CONNECT_TIMEOUT_S` (``ray.init`` would retry for minutes, printing
    its C++ warnings); ``auto`` is left to Ray.

    Raises:
        ConfigError: the port cannot be reached (the message names the address and ``--no-ray``).
    """
    import socket

    hostport = address.removeprefix("ray://").rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=RAY_CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise ConfigError(
            f"--address {address} | no Ray cluster answers there ({e.strerror or e}); check the address, or run with --no-ray"
        ) from None


def _first_line(e: BaseException) -> str:
    """``e``'s type and the first non-empty line of its message."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _resume_plan(
    writer: DatasetWriter, tasks: list[VideoTask], cfg: JobConfig, summary: JobSummary
) -> tuple[list[VideoTask], list[Shard], list[str]]:
    """What this run does per video: probe and plan (new or changed files), redo missing shards,
    finish from staging (every shard staged but not committed), or skip (committed, unchanged);
    videos whose files were replaced by other content are released (:func:`replaced_videos`).

    Damaged commits (a part missing or with other row counts) are dropped and their videos redone;
    committed videos that need work are released from their commits first (rows of shards that
    stay go back to staging). Saves the manifest once the releases are recorded.

    Returns:
        (tasks to probe, shards to run, video ids to finish).
    """
    out, manifest = writer.loc, writer.manifest
    videos = manifest["videos"]
    for vid in writer.drop_damaged():  # leftovers (orphan parts, stale staging) went when the writer opened
        rec = videos.get(vid)
        for sh in rec["shards"] if rec else ():
            sh.update(status="pending", frames=0, faces=0)
    to_probe: list[VideoTask] = []
    plans: dict[str, list[Shard]] = {}
    discard = replaced_videos(videos, tasks)  # files now holding other content: their old rows go
    restage: set[str] = set()
    for t in tasks:
        rec = videos.get(t.video_id)
        if rec is not None and rec.get("commit") and _unchanged(rec, t) and not _needs_work(rec, cfg):
            record_paths(rec, t)  # committed and done: no stored index read (100,000 GETs on a rerun otherwise)
            summary.skipped += 1
            continue
        plan = stored_plan(out, t, rec)
        if plan is None or rec is None:
            if rec is not None and rec.get("commit"):
                discard.add(t.video_id)
            else:
                writer.unstage(t.video_id)
                videos.pop(t.video_id, None)
            to_probe.append(t)
            continue
        record_paths(rec, t)
        if rec.get("commit"):  # committed, but with failed shards or without the tracks asked for
            restage.add(t.video_id)
        plans[t.video_id] = plan
    if discard or restage:
        writer.release(discard | restage, to_staging=restage)
        for vid in discard:
            writer.unstage(vid)
            videos.pop(vid, None)
        # readers' snapshot without the old commits, before their parts go
        writer.save(snapshot=writer.has_snapshot())
    resumed: list[Shard] = []
    to_gather: list[str] = []
    for vid, plan in plans.items():
        rec = videos[vid]
        missing = [s for s in plan if not shard_intact(out, rec, s.shard_idx)]
        for s in missing:
            rec["shards"][s.shard_idx].update(status="pending", frames=0, faces=0)
        if missing:
            rec["status"] = "pending"
            resumed += missing
        else:
            to_gather.append(vid)
    return to_probe, resumed, to_gather


def _unchanged(rec: dict, t: VideoTask) -> bool:
    """True when the record's fingerprint is this task's (the file is the one processed)."""
    return all(rec.get(k) == v for k, v in fingerprint(t).items())


def _needs_work(rec: dict, cfg: JobConfig) -> bool:
    """True when a committed video has shards to redo, or lacks the tracks this run asks for."""
    return any(s["status"] not in DONE for s in rec.get("shards", [])) or (cfg.track and not rec.get("tracked"))


# In-process below this many frames in the job. Ray costs ~4-6 s to start and ~1 s per actor to
# load models; the in-process pool runs the same number of workers as threads (docs/performance.md).
LOCAL_MAX_FRAMES = 20_000
LOCAL_MAX_VIDEOS = 16  # estimating frames opens each file: only for a few videos


def wants_ray(address: str | None, to_probe: list[VideoTask], resumed: list[Shard]) -> tuple[bool, str]:
    """(use Ray, why) for a job whose runner was not chosen: Ray on a cluster or for a big job.

    A resumed job is sized like a fresh one: its resumed shards count their planned frames (their
    stored index says how many, no file is opened) and its new videos are estimated from their
    container headers (:func:`ferbatch.media.probe.estimate_frames`), so resuming four short clips
    after Ctrl-C runs in-process as their first run did.

    Args:
        address: a Ray cluster address, or None for this machine.
        to_probe: videos still to probe and plan.
        resumed: shards planned by an earlier run and still to do.

    Returns:
        (True, why) for a cluster, more than :data:`LOCAL_MAX_VIDEOS` videos to open or more than
        :data:`LOCAL_MAX_FRAMES` frames in all; else (False, why).
    """
    if address:
        return True, "cluster address given"
    if len(to_probe) > LOCAL_MAX_VIDEOS:
        return True, f"more than {LOCAL_MAX_VIDEOS} videos to probe"
    from ferbatch.media.probe import estimate_frames

    frames = sum(s.frames for s in resumed) + sum(estimate_frames(t.path) for t in to_probe)
    what = f"about {frames} frames" + (f" ({len(resumed)} resumed shards)" if resumed else "")
    if frames > LOCAL_MAX_FRAMES:
        return True, f"{what} > {LOCAL_MAX_FRAMES}"
    return False, f"{what} <= {LOCAL_MAX_FRAMES}: Ray's start-up would not pay"
