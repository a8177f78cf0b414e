"""The job's record on disk: the manifest (per-video fingerprint, status and shard plan), the stored
indexes, the ``videos`` table, and the driver-side ledger that keeps them while a job runs.

Resume: the manifest records each video's fingerprint (size, mtime, quick hash) and the config's
result key; a rerun skips videos that completed with the same fingerprint and key, and
reprocesses the rest (their old part files are deleted first, so rows are never duplicated).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa

from ferbatch.atomic import atomic_target, write_json_atomic
from ferbatch.config import JobConfig
from ferbatch.dataset.schema import VIDEOS_SCHEMA
from ferbatch.dataset.store import write_table_atomic
from ferbatch.errors import FerbatchError
from ferbatch.job.inputs import VideoTask, fingerprint
from ferbatch.job.summary import JobSummary
from ferbatch.job.workers import WorkerPool
from ferbatch.media.probe import VideoIndex
from ferbatch.media.shards import Shard, plan_shards
from ferbatch.pipeline import ShardResult

__all__ = ["DONE", "JobLedger", "save_index", "stored_plan", "write_videos_table"]

ProgressFn = Callable[[str, int, int], None]

DONE = ("ok", "partial")  # shard states that a rerun does not repeat


def _index_path(out: Path, video_id: str) -> Path:
    return out / "_index" / f"{video_id}.npz"


def save_index(out: Path, video_id: str, index: VideoIndex) -> None:
    """Keep a video's demux-only index beside the dataset, so a rerun or retry reuses its plan."""
    with atomic_target(_index_path(out, video_id), suffix=".npz") as tmp:
        np.savez(tmp, pts=index.pts, keyframes=index.keyframes, tb=np.array([index.time_base.numerator, index.time_base.denominator]))


def stored_plan(out: Path, t: VideoTask, rec: dict | None) -> list[Shard] | None:
    """The plan an earlier run made for this video, if the file is unchanged and the index kept."""
    if not rec or not rec.get("shards") or any(rec.get(k) != v for k, v in fingerprint(t).items()):
        return None
    p = _index_path(out, t.video_id)
    if not p.is_file():
        return None
    with np.load(p) as z:
        index = VideoIndex(z["pts"], z["keyframes"], Fraction(int(z["tb"][0]), int(z["tb"][1])))
    return [Shard(t.video_id, t.path, s["shard_idx"], s["start"], s["end"], index) for s in rec["shards"]]


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
                "path": task.path,
                "rel_path": task.rel_path,
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
        from ferbatch.job.tracking import track_video

        try:
            rec["tracks"] = track_video(self.out, video_id)
            rec["tracked"] = True
        except (FerbatchError, OSError, ValueError) as e:
            rec["tracked"] = False
            rec["status"] = "partial"
            rec["error"] = "; ".join(x for x in (rec["error"], f"tracking failed: {e}") if x)


def write_videos_table(out: Path, manifest: dict) -> None:
    rows: dict[str, list] = {f.name: [] for f in VIDEOS_SCHEMA}
    m = manifest["models"]
    for vid, r in sorted(manifest["videos"].items()):
        vals = {
            "video_id": vid,
            "path": r["rel_path"],
            "size_bytes": r["size_bytes"],
            "width": r.get("width"),
            "height": r.get("height"),
            "fps": r.get("fps"),
            "duration_s": r.get("duration_s"),
            "frames": r["frames"],
            "faces": r["faces"],
            "status": r["status"],
            "error": r["error"] or None,
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
