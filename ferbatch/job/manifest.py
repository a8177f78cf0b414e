"""The job's record in its dataset: the manifest (per-video fingerprint, status, shard plan and
commit), the stored indexes and the ``videos`` table. The driver-side ledger that keeps them
while a job runs is :mod:`ferbatch.job.ledger`; every write goes through :mod:`ferbatch.dataset.writer`.

Resume: the manifest records each video's fingerprint (size, content hash) and the config's
result key; a rerun skips videos that are committed with the same fingerprint and key, redoes
the missing shards of the rest (their staged shards are kept), and reprocesses changed files
afresh (their old rows released first, so rows are never duplicated).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from fractions import Fraction

import numpy as np
import pyarrow as pa

from ferbatch.dataset.schema import VIDEOS_SCHEMA
from ferbatch.dataset.store import parquet_rows, staging_rel
from ferbatch.errors import OutputError
from ferbatch.job.inputs import VideoTask, fingerprint, make_video_id
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
    "videos_table",
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


def _uncommitted(manifest: dict, rec: dict) -> bool:
    """A finished video whose rows wait in staging (layout 2): not in the dataset yet."""
    return bool(manifest.get("layout")) and rec["status"] in DONE and not rec.get("commit") and rec.get("video_id") is not None


def videos_table(manifest: dict) -> pa.Table:
    """The ``videos`` table of a manifest: one row per video record, one ``failed`` row per input
    the scan skipped (not a regular file, unreadable, undecodable name) with the reason, and one
    row per live session (``ferbatch watch``). The dataset writer saves it as ``videos.parquet``
    with the readers' snapshot of the commits (:meth:`ferbatch.dataset.writer.DatasetWriter.save`)."""
    rows: dict[str, list] = {f.name: [] for f in VIDEOS_SCHEMA}
    m = manifest.get("models", {})
    records = dict(manifest.get("videos", {}))
    for path, why in manifest.get("skipped_inputs", {}).items():
        vid = make_video_id(path, hashlib.sha256(path.encode("utf-8", "backslashreplace")).hexdigest())
        records.setdefault(
            vid, {"path": path, "rel_path": path, "size_bytes": None, "frames": 0, "faces": 0, "status": "failed", "error": why}
        )
    common = {
        "detector": m.get("detector", {}).get("name"),
        "detector_sha256": m.get("detector", {}).get("sha256"),
        "classifier": m.get("classifier", {}).get("name"),
        "classifier_sha256": m.get("classifier", {}).get("sha256"),
        "ferbatch_version": manifest.get("ferbatch_version"),
        "config_key": manifest.get("config_key"),
    }
    for vid, r in sorted(records.items()):
        uncommitted = _uncommitted(manifest, r)
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
            "status": "incomplete" if r["status"] == "pending" or uncommitted else r["status"],
            "error": (r["error"] if not uncommitted else "")
            or ("the run stopped before all its shards were processed; rerun to resume" if r["status"] == "pending" else None)
            or ("processed, its rows not committed yet (a running job commits them; rerun a stopped one)" if uncommitted else None),
            "notes": "; ".join(r.get("notes") or []) or None,
            **common,
        }
        for k, v in vals.items():
            rows[k].append(v)
    for vid, st in sorted(manifest.get("live", {}).items()):
        if vid in records:
            continue
        for k, v in {**{f.name: None for f in VIDEOS_SCHEMA}, **_live_row(vid, st), **common}.items():
            rows[k].append(v)
    return pa.table(rows, schema=VIDEOS_SCHEMA)


def _live_row(video_id: str, st: dict) -> dict:
    """A live session's ``videos`` row from its record (:class:`ferbatch.live.watch.WatchStats` fields)."""
    status = st.get("status", "running")
    source = st.get("source")
    return {
        "video_id": video_id,
        "path": source,
        "abs_path": source,
        "paths": [source] if source else None,
        "frames": st.get("received", 0),
        "faces": st.get("faces", 0),
        "status": {"running": "incomplete", "stopped": "ok", "ended": "ok"}.get(status, "partial"),
        "error": st.get("last_error", "") if status == "source lost" else "",
        "notes": f"live: {st.get('analysed', 0)} frames analysed, {st.get('dropped', 0)} dropped (models behind), "
        f"{st.get('reconnects', 0)} reconnects",
        "duration_s": st.get("duration_s"),
    }
