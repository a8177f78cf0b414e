"""The ``videos`` table of a dataset, made from its manifest: one row per video a job recorded,
per input its scan skipped, and per live session (``ferbatch watch``). Every writer saves the
same table (:meth:`ferbatch.dataset.writer.DatasetWriter.save`), so a run keeps a watch's rows
and a watch keeps a run's."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pyarrow as pa

from ferbatch.dataset.schema import VIDEOS_SCHEMA
from ferbatch.location import open_input

__all__ = ["SAMPLED_SPAN", "content_hash", "make_video_id", "videos_table"]

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_FINISHED = ("ok", "partial")  # a video's statuses once every shard is processed


_BLOCK = 1 << 20  # head and tail sampled for the content hash
_SAMPLES, _SAMPLE = 16, 1 << 16  # evenly spaced blocks between them
SAMPLED_SPAN = 2 * _BLOCK + _SAMPLES * _SAMPLE  # files up to this size are hashed whole (3 MiB)


def content_hash(path: str | os.PathLike[str], size: int, *, full: bool = False) -> str:
    """sha256 hex (64 characters) of a file's size and content: the whole content when ``full``
    or when ``size`` <= :data:`SAMPLED_SPAN`, else the first and last MiB and 16 blocks of 64 KiB
    evenly spread between them (bytes elsewhere do not count: see the module docstring).

    Args:
        path: a local path or an object-storage URI.
        size: the file's size in bytes (part of the hash; the sampled offsets depend on it).
        full: hash every byte.

    Raises:
        OSError: the file cannot be read.
    """
    h = hashlib.sha256(size.to_bytes(8, "little"))
    with open_input(os.fspath(path)) as f:
        if full or size <= SAMPLED_SPAN:
            while block := f.read(_BLOCK):
                h.update(block)
            return h.hexdigest()
        h.update(f.read(_BLOCK))
        span = size - 2 * _BLOCK - _SAMPLE
        for i in range(_SAMPLES):
            f.seek(_BLOCK + span * i // (_SAMPLES - 1))
            h.update(f.read(_SAMPLE))
        f.seek(size - _BLOCK)
        h.update(f.read(_BLOCK))
    return h.hexdigest()


def make_video_id(rel_path: str, digest: str) -> str:
    """Path-safe id of a video: its stem reduced to ``[A-Za-z0-9._-]`` plus the first 8 hex of
    ``digest``, e.g. ``WolfgangLanger_Pexels-1a2b3c4d``. Never contains ``/``, ``=`` or starts
    with ``.``."""
    stem = _SAFE.sub("_", Path(rel_path).stem).strip("._-")[:60] or "video"
    return f"{stem}-{digest[:8]}"


def _uncommitted(manifest: dict, rec: dict) -> bool:
    """A finished video whose rows wait in staging (layout 2): not in the dataset yet."""
    return bool(manifest.get("layout")) and rec["status"] in _FINISHED and not rec.get("commit") and rec.get("video_id") is not None


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
        "sample_fps": manifest.get("config", {}).get("sample_fps"),
        "detect_every": manifest.get("config", {}).get("detect_every", 1),
        "between": manifest.get("config", {}).get("between", "tracked"),
        "classify_between": manifest.get("config", {}).get("classify_between", "every"),  # absent: every row classified
        "prior": manifest.get("config", {}).get("prior", "graph"),  # absent: written before the setting (graph outputs)
        "align": manifest.get("config", {}).get("align", False),
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
            "shots": r.get("shots"),
            "decoder": r.get("decoder"),
            "preprocess": r.get("preprocess"),
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
