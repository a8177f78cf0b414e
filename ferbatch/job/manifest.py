"""The job's record on disk: the manifest (per-video fingerprint, status and shard plan), the stored
indexes, the ``videos`` table, and the driver-side ledger that keeps them while a job runs.

Resume: the manifest records each video's fingerprint (size, mtime, quick hash) and the config's
result key; a rerun skips videos that completed with the same fingerprint and key, and
reprocesses the rest (their old part files are deleted first, so rows are never duplicated).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ferbatch.atomic import atomic_target, write_json_atomic
from ferbatch.config import JobConfig
from ferbatch.dataset.schema import VIDEOS_SCHEMA
from ferbatch.dataset.store import part_path, remove_video_parts, write_table_atomic
from ferbatch.errors import FerbatchError
from ferbatch.job.inputs import VideoTask, content_hash, fingerprint, make_video_id
from ferbatch.job.summary import JobSummary
from ferbatch.job.workers import WorkerPool
from ferbatch.media.probe import VideoIndex
from ferbatch.media.shards import Shard, plan_shards
from ferbatch.pipeline import ShardResult

__all__ = [
    "DONE",
    "JobLedger",
    "adopt_ids",
    "record_paths",
    "save_index",
    "shard_intact",
    "stored_plan",
    "tracks_intact",
    "write_videos_table",
]

ProgressFn = Callable[[str, int, int], None]

DONE = ("ok", "partial")  # shard states that a rerun does not repeat


def _index_path(out: Path, video_id: str) -> Path:
    return out / "_index" / f"{video_id}.npz"


def save_index(out: Path, video_id: str, index: VideoIndex) -> None:
    """Keep a video's demux-only index beside the dataset, so a rerun or retry reuses its plan."""
    with atomic_target(_index_path(out, video_id), suffix=".npz") as tmp:
        np.savez(
            tmp,
            pts=index.pts,
            keyframes=index.keyframes,
            tb=np.array([index.time_base.numerator, index.time_base.denominator]),
            key_dts=index.key_dts,
            segment_offsets=index.segment_offsets,
        )


def stored_plan(out: Path, t: VideoTask, rec: dict | None) -> list[Shard] | None:
    """The plan an earlier run made for this video, if the file is unchanged and the index kept."""
    if not rec or not rec.get("shards") or any(rec.get(k) != v for k, v in fingerprint(t).items()):
        return None
    p = _index_path(out, t.video_id)
    if not p.is_file():
        return None
    with np.load(p) as z:
        extra = {k: z[k] for k in ("key_dts", "segment_offsets") if k in z.files}  # absent in older indexes
        index = VideoIndex(z["pts"], z["keyframes"], Fraction(int(z["tb"][0]), int(z["tb"][1])), **extra)
    return [Shard(t.video_id, t.path, s["shard_idx"], s["start"], s["end"], index) for s in rec["shards"]]


def adopt_ids(videos: dict[str, dict], tasks: list[VideoTask]) -> list[VideoTask]:
    """Give each task the id the dataset already has for it: the record with the same content
    hash, else the record of the same absolute path (an older manifest, or the file was
    replaced: it is then reprocessed under its id, never added as another video).

    Args:
        videos: the manifest's video records by id.
        tasks: this run's tasks (ids made from their content).

    Returns:
        The tasks, with ``video_id`` replaced where the dataset knows the video.
    """
    by_hash = {r.get("content_hash"): vid for vid, r in videos.items() if r.get("content_hash")}
    by_path = {r.get("path"): vid for vid, r in videos.items()}
    taken = {by_hash.get(t.content_hash) for t in tasks} - {None}
    out = []
    for t in tasks:
        vid = by_hash.get(t.content_hash)
        if vid is None and by_path.get(t.path) not in taken:
            vid = by_path.get(t.path)
        out.append(dataclasses.replace(t, video_id=vid) if vid and vid != t.video_id else t)
    return out


def record_paths(rec: dict, t: VideoTask) -> None:
    """Add the paths this run saw the video under to its record (``paths``: every one so far)."""
    rec["paths"] = sorted({*rec.get("paths", [rec.get("path")]), t.path, *t.other_paths} - {None})


def _rows(path: Path) -> int:
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (OSError, pa.ArrowException):
        return -1


def shard_intact(out: Path, rec: dict, shard_idx: int) -> bool:
    """True when a shard is done and its part files are there with the row counts recorded."""
    s = rec["shards"][shard_idx]
    if s["status"] not in DONE:
        return False
    return all(
        _rows(part_path(out, table, rec["video_id"], shard_idx)) == s[count] for table, count in (("frames", "frames"), ("faces", "faces"))
    )


def tracks_intact(out: Path, video_id: str) -> bool:
    """True when the video's tracks part file is there and readable."""
    return _rows(part_path(out, "tracks", video_id, 0)) >= 0


class JobLedger:
    """Driver-side bookkeeping: the manifest (saved at most every few seconds and at the end),
    the videos table, the summary and the progress callback."""

    SAVE_EVERY_S = 2.0

    def __init__(
        self, out: Path, manifest: dict, summary: JobSummary, progress: ProgressFn | None, tasks: dict[str, VideoTask], cfg: JobConfig
    ):
        self.out, self.manifest, self.summary, self.progress, self.tasks, self.cfg = out, manifest, summary, progress, tasks, cfg
        self.last_save = 0.0
        self.total_frames = 0
        self.done_frames = 0

    def save(self, force: bool = False) -> None:
        if force or time.monotonic() - self.last_save > self.SAVE_EVERY_S:
            if force:
                write_videos_table(self.out, self.manifest)
            write_json_atomic(self.out / "_manifest.json", self.manifest)
            self.last_save = time.monotonic()

    def probe_all(self, pool: WorkerPool, todo: list[VideoTask], shard_frames: int) -> list[Shard]:
        shards: list[Shard] = []
        for n, (task, res, err) in enumerate(pool.map("probe", todo) if todo else (), 1):
            info, index, msg = res if res is not None else (None, None, str(err))
            rec = {
                "video_id": task.video_id,
                "path": task.path,
                "rel_path": task.rel_path,
                "paths": sorted({task.path, *task.other_paths}),
                "mtime_ns": task.mtime_ns,
                "notes": [],
                **fingerprint(task),
                "status": "failed" if info is None else "pending",
                "error": msg,
                "frames": 0,
                "faces": 0,
                "shards": [],
            }
            if info is not None:
                rec.update(
                    width=info.width, height=info.height, fps=info.fps, duration_s=info.duration_s, codec=info.codec, packets=info.packets
                )
                if info.truncated:
                    rec["warning"] = f"truncated: the container lists {info.declared_frames} frames, only {info.packets} are in the file"
                assert index is not None  # probe returns both or neither
                if index.restarts:
                    rec["notes"].append(
                        f"the timestamps restart {index.restarts} time(s) (concatenated streams); pts_ms continues across them"
                    )
                plan = plan_shards(task.video_id, task.path, index, shard_frames, workers=self.cfg.resolved_workers())
                save_index(self.out, task.video_id, index)
                rec["shards"] = [
                    {
                        "shard_idx": s.shard_idx,
                        "start": s.start,
                        "end": s.end,
                        "status": "pending",
                        "frames": 0,
                        "faces": 0,
                        "error": "",
                        "seconds": 0.0,
                    }
                    for s in plan
                ]
                shards += plan
            else:
                self.summary.failed += 1
                self.summary.errors[task.rel_path] = msg
            self.manifest["videos"][task.video_id] = rec
            if self.progress:
                self.progress("probe", n, len(todo))
            self.save()
        return shards

    def run_all(self, pool: WorkerPool, shards: list[Shard]) -> None:
        self.total_frames = sum(s.frames for s in shards)
        for shard, res, err in pool.map("run", shards, str(self.out)) if shards else ():
            if res is None:
                res = ShardResult(shard.video_id, shard.shard_idx, status="failed", error=str(err))
            rec = self.manifest["videos"][shard.video_id]
            rec["shards"][shard.shard_idx].update(
                status=res.status, frames=res.frames, faces=res.faces, error=res.error, seconds=round(res.seconds, 3)
            )
            if res.frame_size[0] and shard.shard_idx == 0:  # decoded frames are upright: their size wins over the stream's
                rec["width"], rec["height"] = res.frame_size
            for note in res.notes:
                if note not in rec.setdefault("notes", []):
                    rec["notes"].append(note)
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
        changed = self._changed(video_id)
        if changed:  # rows of a file that changed under the job cannot be trusted: drop them
            remove_video_parts(self.out, video_id)
            for s in sh:
                s["status"] = "failed"
            rec.update(status="failed", error=changed, frames=0, faces=0)
        if self.cfg.track and rec["status"] in DONE:
            self.track(video_id, rec)
        status = rec["status"]
        setattr(self.summary, status, getattr(self.summary, status) + 1)
        if rec["error"]:
            self.summary.errors[rec["rel_path"]] = rec["error"]

    def _changed(self, video_id: str) -> str:
        """Why the video's file is not what was indexed any more ("" when it is the same)."""
        t = self.tasks.get(video_id)
        if t is None:
            return ""
        try:
            size = os.stat(t.path).st_size
            same = size == t.size_bytes and content_hash(t.path, size) == t.content_hash
        except OSError as e:
            return f"the file could not be read again after processing ({e.strerror or e}); rerun to process it"
        if same:
            return ""
        return f"the file changed while it was being processed (size {t.size_bytes} -> {size} bytes); rerun to process the new version"

    def track(self, video_id: str, rec: dict) -> None:
        """The tracking pass over a finished video (on the driver: it reads boxes, not images)."""
        from ferbatch.job.tracking import track_video

        try:
            rec["tracks"] = track_video(self.out, video_id)
            rec["tracked"] = True
        except (FerbatchError, OSError, ValueError) as e:
            rec["tracked"] = False
            rec["status"] = "partial"
            rec["error"] = "; ".join(x for x in (rec["error"], f"tracking failed: {e}") if x)


def write_videos_table(out: Path, manifest: dict) -> None:
    """Write ``videos.parquet``: one row per video of the manifest, and one ``failed`` row per input
    the scan skipped (not a regular file, unreadable, undecodable name) with the reason."""
    rows: dict[str, list] = {f.name: [] for f in VIDEOS_SCHEMA}
    m = manifest["models"]
    records = dict(manifest["videos"])
    for path, why in manifest.get("skipped_inputs", {}).items():
        vid = make_video_id(path, hashlib.sha256(path.encode("utf-8", "backslashreplace")).hexdigest())
        records.setdefault(
            vid, {"path": path, "rel_path": path, "size_bytes": None, "frames": 0, "faces": 0, "status": "failed", "error": why}
        )
    for vid, r in sorted(records.items()):
        vals = {
            "video_id": vid,
            "path": r["rel_path"],
            "abs_path": r["path"],
            "paths": r.get("paths") or [r["path"]],
            "content_hash": r.get("content_hash"),
            "size_bytes": r["size_bytes"],
            "width": r.get("width"),
            "height": r.get("height"),
            "fps": r.get("fps"),
            "duration_s": r.get("duration_s"),
            "frames": r["frames"],
            "faces": r["faces"],
            "status": "incomplete" if r["status"] == "pending" else r["status"],
            "error": r["error"]
            or ("the run stopped before all its shards were processed; rerun to resume" if r["status"] == "pending" else None),
            "notes": "; ".join(r.get("notes") or []) or None,
            "detector": m["detector"]["name"],
            "detector_sha256": m["detector"]["sha256"],
            "classifier": m["classifier"]["name"],
            "classifier_sha256": m["classifier"]["sha256"],
            "ferbatch_version": manifest["ferbatch_version"],
            "config_key": manifest["config_key"],
        }
        for k, v in vals.items():
            rows[k].append(v)
    write_table_atomic(out / "videos.parquet", pa.table(rows, schema=VIDEOS_SCHEMA))
