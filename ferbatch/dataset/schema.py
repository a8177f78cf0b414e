"""The dataset's schemas and the Arrow tables a shard's results become (pure: no files).

Tables (see :mod:`ferbatch.dataset.store` for where they live on disk):
- ``faces``: one row per face per frame (:data:`FACES_SCHEMA`);
- ``frames``: one row per decoded frame, ``face_count`` may be 0 (:data:`FRAMES_SCHEMA`);
- ``tracks``: one row per face track (:data:`TRACKS_SCHEMA`);
- ``videos``: one row per input (:data:`VIDEOS_SCHEMA`).
``video_id`` is the hive partition key, stored in the directory name, not in the part files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ferbatch.labels import EMOTIONS, argmax_known

__all__ = [
    "FACES_SCHEMA",
    "FRAMES_SCHEMA",
    "TRACKS_SCHEMA",
    "VIDEOS_SCHEMA",
    "PARTITION_SCHEMA",
    "SCHEMA_VERSION",
    "PROB_COLUMNS",
    "SMOOTH_COLUMNS",
    "FaceRows",
    "faces_table",
    "frames_table",
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
        # filled by the tracking pass (ferbatch.job.tracking); null until then or without tracking
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
        ("path", pa.string()),  # relative to the input root, as the user recognises it
        ("abs_path", pa.string()),  # where this run found it
        ("paths", pa.list_(pa.string())),  # every absolute path it was seen under (same content)
        ("content_hash", pa.string()),  # sha256 of size + sampled blocks (the video's identity)
        ("size_bytes", pa.int64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("fps", pa.float64()),
        ("duration_s", pa.float64()),
        ("frames", pa.int64()),
        ("faces", pa.int64()),
        ("status", pa.string()),  # ok | partial | failed | incomplete (the run stopped before it finished)
        ("error", pa.string()),
        ("notes", pa.string()),  # what is unusual but not an error (timestamps restart, size changes)
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
        best = argmax_known(rows.probs)
        emotion = np.asarray(EMOTIONS, dtype=object)[best]
        emotion_prob = rows.probs[np.arange(m), best].astype(np.float32)
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
