"""The driver's bookkeeping while a job runs: probing results become shard plans, shard results
update the manifest, a finished video's staged rows are tracked and gathered into commits, and
the manifest is saved often enough to resume, rarely enough not to dominate a 100,000-video job.
Every write to the dataset goes through the job's :class:`ferbatch.dataset.writer.DatasetWriter`."""

from __future__ import annotations

import time
from collections.abc import Callable

import pyarrow as pa

from ferbatch.config import JobConfig
from ferbatch.dataset.store import read_staging
from ferbatch.dataset.writer import DatasetWriter
from ferbatch.errors import FerbatchError
from ferbatch.job.inputs import VideoTask, content_hash, fingerprint
from ferbatch.job.manifest import DONE, save_index
from ferbatch.job.summary import JobSummary
from ferbatch.job.workers import WorkerPool
from ferbatch.location import is_uri, stat_input
from ferbatch.media.shards import Shard, plan_shards
from ferbatch.pipeline import ShardResult
from ferbatch.vision.track import TrackerConfig

__all__ = ["JobLedger", "ProgressFn"]

ProgressFn = Callable[[str, int, int], None]


class JobLedger:
    """Driver-side bookkeeping: the manifest (saved every :data:`SAVE_EVERY_S` seconds or 20x
    as long as the last save took, and at each commit and the end), commits, the videos table,
    the summary and the progress callback.

    Args:
        writer: the open writer of the job's dataset; its manifest is the job's, updated in place.
        tasks: this run's videos by id (to check a file did not change while processed).
    """

    SAVE_EVERY_S = 2.0

    def __init__(
        self,
        writer: DatasetWriter,
        summary: JobSummary,
        progress: ProgressFn | None,
        tasks: dict[str, VideoTask],
        cfg: JobConfig,
    ):
        self.writer, self.summary, self.progress, self.tasks, self.cfg = writer, summary, progress, tasks, cfg
        self.loc, self.manifest = writer.loc, writer.manifest
        self.last_save = 0.0
        self.save_cost = 0.0
        self.total_frames = 0
        self.done_frames = 0

    def save(self, force: bool = False) -> None:
        """Save the manifest when due; with ``force`` the whole transaction (manifest, videos
        table, clean-up: :meth:`ferbatch.dataset.writer.DatasetWriter.save`)."""
        if force or time.monotonic() - self.last_save > max(self.SAVE_EVERY_S, 20 * self.save_cost):
            t = time.monotonic()
            if force:  # the manifest first: the readers' snapshot never lists a commit the manifest lacks
                self.writer.save()
            else:
                self.writer.save_manifest()
            self.last_save = time.monotonic()
            self.save_cost = self.last_save - t

    def commit(self) -> None:
        """Commit the gathered videos: parts written, manifest and videos table saved, staging removed."""
        if self.writer.commit():
            self.save(force=True)

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
                save_index(self.loc, task.video_id, index)
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
        for shard, res, err in pool.map("run", shards, self.loc.uri) if shards else ():
            if res is None:
                res = ShardResult(shard.video_id, shard.shard_idx, status="failed", error=str(err))
            rec = self.manifest["videos"][shard.video_id]
            rec["shards"][shard.shard_idx].update(
                status=res.status, frames=res.frames, faces=res.faces, error=res.error, seconds=round(res.seconds, 3), handoff=res.handoff
            )
            if res.frame_size[0] and shard.shard_idx == 0:  # decoded frames are upright: their size wins over the stream's
                rec["width"], rec["height"] = res.frame_size
            _add_used(rec, "decoder", res.decoder)  # "pyav" or "nvdec"; both if shards differed
            _add_used(rec, "preprocess", res.preprocess)  # "host", "graph" or "graph,host"
            for note in res.notes:
                if note not in rec.setdefault("notes", []):
                    rec["notes"].append(note)
            self.done_frames += res.frames
            self.summary.frames += res.frames
            self.summary.faces += res.faces
            if all(s["status"] != "pending" for s in rec["shards"]):
                self.finish_video(shard.video_id, rec)
            if self.progress:
                self.progress("frames", self.done_frames, max(self.total_frames, self.done_frames))
            self.save()
        if self.progress and shards:
            self.progress("frames", self.done_frames, self.done_frames)  # packets that did not decode never come

    def finish_video(self, video_id: str, rec: dict) -> None:
        sh = rec["shards"]
        bad = [s for s in sh if s["status"] != "ok"]
        status = "ok" if not bad else ("failed" if all(s["status"] == "failed" for s in sh) else "partial")
        error = "; ".join(f"shard {s['shard_idx']}: {s['error']}" if len(sh) > 1 else s["error"] for s in bad)
        if rec.get("warning") and status == "ok":  # the frames that exist are done; the rest is missing
            status, error = "partial", rec["warning"]
        rec.update(status=status, frames=sum(s["frames"] for s in sh), faces=sum(s["faces"] for s in sh), error=error)
        changed = self._changed(video_id)
        if changed:  # rows of a file that changed under the job cannot be trusted: drop them
            self.writer.unstage(video_id)
            for s in sh:
                s["status"] = "failed"
            rec.update(status="failed", error=changed, frames=0, faces=0)
        if rec["status"] in DONE:
            self.gather(video_id, rec)
        status = rec["status"]
        setattr(self.summary, status, getattr(self.summary, status) + 1)
        if rec["error"]:
            self.summary.errors[rec["rel_path"]] = rec["error"]

    def _changed(self, video_id: str) -> str:
        """Why the video's file is not what was indexed any more ("" when it is the same).

        A local file is hashed again the way the scan hashed it (sampled blocks, or every byte
        with ``--full-hash``: a hash is only compared with one of its own kind); an object in
        object storage is replaced whole by a PUT, so its size and LastModified (one HEAD) tell,
        without 18 more ranged GETs.
        """
        t = self.tasks.get(video_id)
        if t is None:
            return ""
        try:
            size, mtime_ns = stat_input(t.path)
            if is_uri(t.path):
                same = size == t.size_bytes and mtime_ns == t.mtime_ns
            else:
                same = size == t.size_bytes and content_hash(t.path, size, full=t.full_hash) == t.content_hash
        except OSError as e:
            return f"the file could not be read again after processing ({e.strerror or e}); rerun to process it"
        if same:
            return ""
        sizes = (
            f"size {t.size_bytes} -> {size} bytes"
            if size != t.size_bytes
            else f"same size {size} bytes, {'modified again' if is_uri(t.path) else 'other content'}"
        )
        return f"the file changed while it was being processed ({sizes}); rerun to process the new version"

    def gather(self, video_id: str, rec: dict) -> None:
        """A finished video's staged rows, tracked (with tracking on), into the next commit;
        the commit is written when it is due.

        A failed tracking pass makes the video ``partial`` (its rows are kept without tracks).
        """
        from ferbatch.job.tracking import join_shots, track_faces

        done = [s for s in rec["shards"] if s["status"] in DONE]
        tables = {n: read_staging(self.loc, video_id, n, [s["shard_idx"] for s in done]) for n in ("faces", "frames")}
        tables["frames"] = join_shots(tables["frames"], done)
        rec["shots"] = int(tables["frames"]["shot_idx"][-1].as_py()) + 1 if tables["frames"].num_rows else 0
        rec["tracked"] = False
        if self.cfg.track:
            try:
                thr = self.cfg.score_threshold if self.cfg.score_threshold is not None else 0.7
                tables["faces"], tables["tracks"] = track_faces(tables["faces"], tables["frames"], done, TrackerConfig.for_rows(thr))
                rec["tracks"] = tables["tracks"].num_rows
                rec["tracked"] = True
            except (FerbatchError, ValueError, pa.ArrowException) as e:
                rec["status"] = "partial"
                rec["error"] = "; ".join(x for x in (rec["error"], f"tracking failed: {e}") if x)
        self.writer.stage(video_id, tables)
        if self.writer.due():
            self.commit()


def _add_used(rec: dict, key: str, used: str) -> None:
    """Merge a shard's comma-separated ``used`` (e.g. "graph,host") into the video record's ``key``: the sorted union."""
    if used:
        rec[key] = ",".join(sorted({x for x in str(rec.get(key) or "").split(",") if x} | set(used.split(","))))
