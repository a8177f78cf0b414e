"""The Parquet dataset: Arrow schemas, atomic part files, the manifest, and reading it back.

Layout under OUT_DIR::

    faces/video_id=<id>/shard-<NNNNN>.parquet    one row per face per frame
    frames/video_id=<id>/shard-<NNNNN>.parquet   one row per decoded frame (face_count may be 0)
    tracks/video_id=<id>/shard-00000.parquet     one row per face track
    videos.parquet                               one row per input video (status, error, models, ...)
    _manifest.json                               job config, models, per-video status and shards

Part files are written as ``.<name>.<random>.tmp`` then ``os.replace``d to a deterministic name,
so a retried shard replaces its rows instead of duplicating them and readers (pyarrow datasets,
DuckDB globs on ``*.parquet``) never see a half-written file. ``video_id`` is a path-safe
partition key stored in the directory name only; read it back with an explicit string
partition schema (an inferred one turns ``0012`` into 12).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from ferbatch.errors import OutputError
from ferbatch.labels import EMOTIONS

__all__ = [
    "FACES_SCHEMA",
    "FRAMES_SCHEMA",
    "TRACKS_SCHEMA",
    "VIDEOS_SCHEMA",
    "PARTITION_SCHEMA",
    "SCHEMA_VERSION",
    "faces_table",
    "frames_table",
    "write_part",
    "remove_video_parts",
    "write_json_atomic",
    "write_table_atomic",
    "atomic_target",
    "read_manifest",
    "open_table",
    "make_video_id",
]

SCHEMA_VERSION = "1"
PROB_COLUMNS = tuple(f"prob_{e}" for e in EMOTIONS)
SMOOTH_COLUMNS = tuple(f"smooth_prob_{e}" for e in EMOTIONS)
_META = {b"ferbatch.schema_version": SCHEMA_VERSION.encode(), b"ferbatch.emotions": ",".join(EMOTIONS).encode()}

FACES_SCHEMA = pa.schema(
    [
        ("frame_idx", pa.int64()),
        ("pts_ms", pa.float64()),
        ("face_idx", pa.int16()),
        ("x1", pa.float32()),
        ("y1", pa.float32()),
        ("x2", pa.float32()),
        ("y2", pa.float32()),
        ("det_score", pa.float32()),
        ("emotion", pa.string()),
        ("emotion_prob", pa.float32()),
        *[(c, pa.float32()) for c in PROB_COLUMNS],
        ("shard_idx", pa.int32()),
        # filled by the tracking pass (ferbatch.track_video); null until then or without tracking
        ("track_id", pa.int64()),
        ("track_emotion", pa.string()),
        *[(c, pa.float32()) for c in SMOOTH_COLUMNS],
    ],
    metadata=_META,
)
TRACKS_SCHEMA = pa.schema(
    [
        ("track_id", pa.int64()),
        ("first_frame", pa.int64()),
        ("last_frame", pa.int64()),
        ("first_ms", pa.float64()),
        ("last_ms", pa.float64()),
        ("frames", pa.int64()),
        ("mean_box_w", pa.float32()),
        ("mean_box_h", pa.float32()),
        *[(f"mean_prob_{e}", pa.float32()) for e in EMOTIONS],
        ("dominant_emotion", pa.string()),
        *[(f"share_{e}", pa.float32()) for e in EMOTIONS],
    ],
    metadata=_META,
)
FRAMES_SCHEMA = pa.schema(
    [("frame_idx", pa.int64()), ("pts_ms", pa.float64()), ("face_count", pa.int16()), ("shard_idx", pa.int32())],
    metadata=_META,
)
VIDEOS_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("path", pa.string()),
        ("size_bytes", pa.int64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("fps", pa.float64()),
        ("duration_s", pa.float64()),
        ("frames", pa.int64()),
        ("faces", pa.int64()),
        ("status", pa.string()),  # ok | partial | failed
        ("error", pa.string()),
        ("detector", pa.string()),
        ("detector_sha256", pa.string()),
        ("classifier", pa.string()),
        ("classifier_sha256", pa.string()),
        ("ferbatch_version", pa.string()),
        ("config_key", pa.string()),
    ],
    metadata=_META,
)
PARTITION_SCHEMA = pa.schema([("video_id", pa.string())])
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def make_video_id(rel_path: str, digest: str) -> str:
    """Path-safe, stable id of a video: its stem reduced to ``[A-Za-z0-9._-]`` plus 8 hex of a hash
    of its relative path, e.g. ``WolfgangLanger_Pexels-1a2b3c4d``. Never contains ``/``, ``=`` or
    starts with ``.``."""
    stem = _SAFE.sub("_", Path(rel_path).stem).strip("._-")[:60] or "video"
    return f"{stem}-{digest[:8]}"


@dataclass
class FaceRows:
    """Per-face results of one shard, column arrays of equal length M.

    Attributes:
        frame_idx: (M,) int64; pts_ms: (M,) float64; face_idx: (M,) int16 (0 = highest score in frame);
        boxes: (M, 4) float32 x1 y1 x2 y2 in source-frame pixels; det_score: (M,) float32;
        probs: (M, 8) float32 in FER+ order (NaN = class the model lacks).
    """

    frame_idx: np.ndarray
    pts_ms: np.ndarray
    face_idx: np.ndarray
    boxes: np.ndarray
    det_score: np.ndarray
    probs: np.ndarray


def faces_table(rows: FaceRows, shard_idx: int) -> pa.Table:
    """Arrow table in FACES_SCHEMA; ``emotion`` = argmax over the non-null probabilities."""
    m = len(rows.frame_idx)
    if m:
        filled = np.where(np.isnan(rows.probs), -np.inf, rows.probs)
        best = filled.argmax(axis=1)
        emotion = np.asarray(EMOTIONS, dtype=object)[best]
        emotion_prob = filled[np.arange(m), best].astype(np.float32)
    else:
        emotion, emotion_prob = np.empty(0, object), np.empty(0, np.float32)
    cols = {
        "frame_idx": pa.array(rows.frame_idx, pa.int64()),
        "pts_ms": pa.array(rows.pts_ms, pa.float64()),
        "face_idx": pa.array(rows.face_idx, pa.int16()),
        "x1": pa.array(rows.boxes[:, 0], pa.float32()),
        "y1": pa.array(rows.boxes[:, 1], pa.float32()),
        "x2": pa.array(rows.boxes[:, 2], pa.float32()),
        "y2": pa.array(rows.boxes[:, 3], pa.float32()),
        "det_score": pa.array(rows.det_score, pa.float32()),
        "emotion": pa.array(emotion, pa.string()),
        "emotion_prob": pa.array(emotion_prob, pa.float32()),
    }
    for j, c in enumerate(PROB_COLUMNS):
        col = rows.probs[:, j]
        cols[c] = pa.array(col, pa.float32(), mask=np.isnan(col))
    cols["shard_idx"] = pa.array(np.full(m, shard_idx, np.int32), pa.int32())
    cols["track_id"] = pa.nulls(m, pa.int64())
    cols["track_emotion"] = pa.nulls(m, pa.string())
    for c in SMOOTH_COLUMNS:
        cols[c] = pa.nulls(m, pa.float32())
    return pa.table(cols, schema=FACES_SCHEMA)


def frames_table(frame_idx: np.ndarray, pts_ms: np.ndarray, face_count: np.ndarray, shard_idx: int) -> pa.Table:
    """Arrow table in FRAMES_SCHEMA from (F,) int64 / float64 / int16 arrays."""
    return pa.table(
        {
            "frame_idx": pa.array(frame_idx, pa.int64()),
            "pts_ms": pa.array(pts_ms, pa.float64()),
            "face_count": pa.array(face_count, pa.int16()),
            "shard_idx": pa.array(np.full(len(frame_idx), shard_idx, np.int32), pa.int32()),
        },
        schema=FRAMES_SCHEMA,
    )


def _part_path(out_dir: Path, table: str, video_id: str, shard_idx: int) -> Path:
    return out_dir / table / f"video_id={video_id}" / f"shard-{shard_idx:05d}.parquet"


@contextlib.contextmanager
def atomic_target(dst: Path, suffix: str = ".tmp"):
    """Yield a hidden temp path beside ``dst``; on success it replaces ``dst`` atomically
    (``os.replace``), on failure it is removed. Readers never see a half-written file: temp names
    start with "." and end in ``suffix`` (not ".parquet").

    Raises:
        OutputError: the folder cannot be created or the file written (disk full, permissions).
    """
    dst = Path(dst)
    tmp = dst.parent / f".{dst.name}.{uuid.uuid4().hex[:8]}.tmp{'' if suffix == '.tmp' else suffix}"
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, dst)
    except OSError as e:
        raise OutputError(f"{dst} | cannot write: {e.strerror or e}") from e
    finally:
        if tmp.exists():
            tmp.unlink()


def _fsync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def write_part(out_dir: str | os.PathLike[str], table_name: str, video_id: str, shard_idx: int, table: pa.Table) -> Path:
    """Write one shard's table atomically to its deterministic path (replacing an earlier attempt).

    Raises:
        OutputError: the directory cannot be created or written (disk full, permissions).
    """
    dst = _part_path(Path(out_dir), table_name, video_id, shard_idx)
    with atomic_target(dst) as tmp:
        pq.write_table(table, tmp, compression="zstd", write_statistics=True)
        _fsync(tmp)
    return dst


def remove_video_parts(out_dir: str | os.PathLike[str], video_id: str) -> None:
    """Delete every part file of a video (before it is reprocessed with a new plan)."""
    for table in ("faces", "frames", "tracks"):
        d = Path(out_dir) / table / f"video_id={video_id}"
        if d.is_dir():
            for f in d.iterdir():
                f.unlink()
            d.rmdir()


def write_json_atomic(path: str | os.PathLike[str], obj) -> None:
    """Write JSON atomically (see :func:`atomic_target`)."""
    with atomic_target(Path(path)) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=True, default=str)
            f.flush()
            os.fsync(f.fileno())


def write_table_atomic(path: str | os.PathLike[str], table: pa.Table) -> None:
    """Write a single Parquet file atomically (see :func:`atomic_target`)."""
    with atomic_target(Path(path)) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_manifest(out_dir: str | os.PathLike[str]) -> dict | None:
    """The job manifest of ``out_dir``, or None if there is none yet.

    Raises:
        OutputError: the manifest exists but is not valid JSON.
    """
    p = Path(out_dir) / "_manifest.json"
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise OutputError(f"{p} | unreadable manifest: {e}") from e


def open_table(out_dir: str | os.PathLike[str], name: str) -> pa.Table:
    """Read ``faces``, ``frames`` or ``videos`` of a dataset into one Arrow table (``video_id``
    as a string column).

    Raises:
        OutputError: unknown table or no such dataset.
    """
    root = Path(out_dir)
    if name == "videos":
        p = root / "videos.parquet"
        if not p.is_file():
            raise OutputError(f"{p} | no videos table: is {root} a ferbatch output directory?")
        return pq.read_table(p)
    if name not in ("faces", "frames", "tracks"):
        raise OutputError(f"table {name!r} | expected faces, frames, tracks or videos")
    schema = {"faces": FACES_SCHEMA, "frames": FRAMES_SCHEMA, "tracks": TRACKS_SCHEMA}[name]
    d = root / name
    if not d.is_dir():
        return schema.append(pa.field("video_id", pa.string())).empty_table()
    part = pads.partitioning(PARTITION_SCHEMA, flavor="hive")
    full = schema.append(pa.field("video_id", pa.string()))
    return pads.dataset(d, format="parquet", partitioning=part, schema=full).to_table()
