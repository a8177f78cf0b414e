"""The job's record in its dataset: the manifest (per-video fingerprint, status, shard plan and
commit) and the stored indexes (the ``videos`` table made from the manifest is
:func:`ferbatch.dataset.videos.videos_table`). The driver-side ledger that keeps them
while a job runs is :mod:`ferbatch.job.ledger`; every write goes through :mod:`ferbatch.dataset.writer`.

Resume: the manifest records each video's fingerprint (size, content hash) and the config's
result key; a rerun skips videos that are committed with the same fingerprint and key, redoes
the missing shards of the rest (their staged shards are kept), and reprocesses changed files
afresh (their old rows released first, so rows are never duplicated).
"""

from __future__ import annotations

import dataclasses
import io
from fractions import Fraction

import numpy as np

from ferbatch.dataset.store import parquet_rows, staging_rel
from ferbatch.errors import OutputError
from ferbatch.job.inputs import VideoTask, fingerprint
from ferbatch.location import Location
from ferbatch.media.probe import VideoIndex
from ferbatch.media.shards import Shard

__all__ = [
    "DONE",
    "adopt_ids",
    "record_paths",
    "save_index",
    "shard_intact",
    "stored_plan",
]

DONE = ("ok", "partial")  # shard states that a rerun does not repeat


def _index_rel(video_id: str) -> str:
    return f"_index/{video_id}.npz"


def save_index(loc: Location, video_id: str, index: VideoIndex) -> None:
    """Keep a video's demux-only index beside the dataset, so a rerun or retry reuses its plan."""
    buf = io.BytesIO()
    np.savez(
        buf,
        pts=index.pts,
        keyframes=index.keyframes,
        tb=np.array([index.time_base.numerator, index.time_base.denominator]),
        key_dts=index.key_dts,
        segment_offsets=index.segment_offsets,
    )
    loc.write_bytes(_index_rel(video_id), buf.getvalue())


def stored_plan(loc: Location, t: VideoTask, rec: dict | None) -> list[Shard] | None:
    """The plan an earlier run made for this video, if the file is unchanged and the index kept."""
    if not rec or not rec.get("shards") or any(rec.get(k) != v for k, v in fingerprint(t).items()):
        return None
    try:
        data = loc.read_bytes(_index_rel(t.video_id))
    except OutputError:
        return None
    with np.load(io.BytesIO(data)) as z:
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


def shard_intact(loc: Location, rec: dict, shard_idx: int) -> bool:
    """True when a shard of a video not yet committed is done and its staged files are there
    with the row counts recorded."""
    s = rec["shards"][shard_idx]
    if s["status"] not in DONE:
        return False
    return all(parquet_rows(loc, staging_rel(rec["video_id"], table, shard_idx)) == s[table] for table in ("frames", "faces"))
