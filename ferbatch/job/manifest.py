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
import os
from fractions import Fraction

import numpy as np

from ferbatch.dataset.store import parquet_rows, staging_rel
from ferbatch.errors import OutputError
from ferbatch.job.inputs import VideoTask, fingerprint
from ferbatch.location import Location, is_uri
from ferbatch.media.probe import VideoIndex
from ferbatch.media.shards import Shard

__all__ = [
    "DONE",
    "adopt_ids",
    "record_paths",
    "replaced_videos",
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
    """Give each task the id the dataset already has for its content, and never another content's.

    A task takes the id of the record with the same content hash (the same video, wherever the
    file is now). A record without a content hash (an older manifest) is taken by the task of
    its path. Otherwise the task keeps the id made from its own content, made longer (more hex of
    the hash) while a record of other content or another task of this run holds it: a file
    replaced by other content is a new video (:func:`replaced_videos` releases the old one), and
    the old content coming back at another path is a video of its own, never written over the
    rows of the content its id was once given to.

    Args:
        videos: the manifest's video records by id.
        tasks: this run's tasks (ids made from their content; one task per content).

    Returns:
        The tasks, with ``video_id`` replaced where the dataset knows the video or the id is
        taken; every id distinct.
    """
    by_hash = {r.get("content_hash"): vid for vid, r in videos.items() if r.get("content_hash")}
    by_path = {r.get("path"): vid for vid, r in videos.items() if not r.get("content_hash")}
    adopted = {t.content_hash: by_hash[t.content_hash] for t in tasks if t.content_hash in by_hash}
    used = set(adopted.values())
    out = []
    for t in tasks:
        vid = adopted.get(t.content_hash)
        if vid is None and by_path.get(t.path) not in (None, *used):
            vid = by_path[t.path]
        if vid is None:
            vid = _free_id(t, videos, used)
        used.add(vid)
        out.append(dataclasses.replace(t, video_id=vid) if vid != t.video_id else t)
    return out


def _free_id(t: VideoTask, videos: dict[str, dict], used: set[str]) -> str:
    """The task's own id, or the same with more of its content hash (then a counter) when a
    record of other content or another task of this run has it."""
    stem = t.video_id.rsplit("-", 1)[0]
    candidates = [t.video_id, *(f"{stem}-{t.content_hash[:n]}" for n in (12, 16, 24, 32, 64))]
    candidates += [f"{stem}-{t.content_hash}-{i}" for i in range(2, len(videos) + len(used) + 3)]
    for vid in candidates:
        if vid not in used and (vid not in videos or videos[vid].get("content_hash") == t.content_hash):
            return vid
    raise AssertionError("unreachable: more candidate ids than records and tasks")


def replaced_videos(videos: dict[str, dict], tasks: list[VideoTask]) -> set[str]:
    """Videos whose files now hold other content: records no task of this run took (see
    :func:`adopt_ids`) whose every recorded path was scanned in this run with other content or
    no longer exists. Their rows are released (the file was replaced: its old rows must not stay
    as a video nobody has); a record with a path this run did not scan and that still exists is
    kept (the content may live on there).

    Args:
        videos: the manifest's video records by id.
        tasks: this run's tasks, after :func:`adopt_ids`.
    """
    taken = {t.video_id for t in tasks}
    scanned = {p for t in tasks for p in (t.path, *t.other_paths)}
    out = set()
    for vid, r in videos.items():
        paths = set(r.get("paths") or [r.get("path")]) - {None}
        if vid in taken or not r.get("content_hash") or not paths & scanned:
            continue
        if all(p in scanned or (not is_uri(p) and not os.path.lexists(p)) for p in paths):
            out.add(vid)
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
