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
    "BOX_SOURCES",
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
        # the track's emotion (TRACK_EMOTION_RULE), the same on every row of the track
        ("track_emotion", pa.string()),
        *[(c, pa.float32()) for c in SMOOTH_COLUMNS],
        # which detection pass found the box: "frame" (full-frame detection) or "window" (the detector
        # run on a window around the track's predicted box, --detect-every > 1)
        ("box_source", pa.string()),
        # argmax of the smooth_prob_* columns (per-frame smoothing along the track; null without a track)
        ("smooth_emotion", pa.string()),
        # the detector's five face landmarks in source-frame pixels, x y each: right eye, left eye, nose tip,
        # right and left mouth corner (YuNet's order); null for detectors without landmarks
        ("landmarks", pa.list_(pa.float32(), 10)),
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
        ("shot_idx", pa.int32()),  # the shot the track lies in (a track never crosses a cut)
        ("seconds", pa.float64()),  # video time the track's rows stand for (sum of their frames' span_ms) / 1000
    ],
    metadata=_META,
)
FRAMES_SCHEMA = pa.schema(
    [
        ("frame_idx", pa.int64()),
        ("pts_ms", pa.float64()),
        ("face_count", pa.int16()),
        ("shard_idx", pa.int32()),
        ("shot_idx", pa.int32()),  # shot number in the video, 0-based (a new shot starts at each cut)
        # video time this analysed frame stands for: until the next analysed frame (ferbatch.media.sampling)
        ("span_ms", pa.float64()),
    ],
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
        ("sample_fps", pa.float64()),  # frames analysed per second of video (null = every frame)
        ("detect_every", pa.int32()),  # full-frame detection every N analysed frames
        ("between", pa.string()),  # what found the faces between full detections: "tracked" or "window"
        ("shots", pa.int32()),  # shots found (cuts + 1)
        ("decoder", pa.string()),  # which decoder gave the frames: "pyav" or "nvdec" (the same frames either way)
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
        probs: (M, 8) float32 in FER+ order (NaN = class the model lacks);
        track_id: (M,) int64 provisional track id within the shard (-1 = none) or None (no tracking);
        box_source: (M,) uint8 codes of :data:`BOX_SOURCES` or None (all full-frame).
        landmarks: (M, 5, 2) float32 x y in source-frame pixels, or None (a detector without them).
    """

    frame_idx: np.ndarray
    pts_ms: np.ndarray
    face_idx: np.ndarray
    boxes: np.ndarray
    det_score: np.ndarray
    probs: np.ndarray
    track_id: np.ndarray | None = None
    box_source: np.ndarray | None = None
    landmarks: np.ndarray | None = None

    @classmethod
    def empty(cls) -> FaceRows:
        """No faces."""
        return cls(
            np.empty(0, np.int64),
            np.empty(0, np.float64),
            np.empty(0, np.int16),
            np.empty((0, 4), np.float32),
            np.empty(0, np.float32),
            np.empty((0, 8), np.float32),
            np.empty(0, np.int64),
            np.empty(0, np.uint8),
            None,
        )

    @classmethod
    def merge(cls, parts: list[FaceRows]) -> FaceRows:
        """The rows of ``parts`` one after the other (optional columns kept where every part has them)."""
        if not parts:
            return cls.empty()
        cols: dict = {}
        for k in ("frame_idx", "pts_ms", "face_idx", "boxes", "det_score", "probs", "track_id", "box_source", "landmarks"):
            vals = [getattr(p, k) for p in parts]
            cols[k] = None if any(v is None for v in vals) else np.concatenate(vals)
        return cls(**cols)


BOX_SOURCES = ("frame", "window", "tracked")  # box_source codes (ferbatch.vision.analysis.SOURCE_FRAME, SOURCE_WINDOW, SOURCE_TRACKED)


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
    if rows.track_id is None:
        cols["track_id"] = pa.nulls(m, pa.int64())
    else:  # provisional ids within the shard; the tracking pass joins and renumbers them
        cols["track_id"] = pa.array(rows.track_id, pa.int64(), mask=rows.track_id < 0)
    cols["track_emotion"] = pa.nulls(m, pa.string())
    for c in SMOOTH_COLUMNS:
        cols[c] = pa.nulls(m, pa.float32())
    src = np.zeros(m, np.uint8) if rows.box_source is None else rows.box_source
    cols["box_source"] = pa.array(np.asarray(BOX_SOURCES, dtype=object)[src] if m else np.empty(0, object), pa.string())
    cols["smooth_emotion"] = pa.nulls(m, pa.string())
    lm_type = FACES_SCHEMA.field("landmarks").type
    if rows.landmarks is None:
        cols["landmarks"] = pa.nulls(m, lm_type)
    else:
        flat = pa.array(np.ascontiguousarray(rows.landmarks, np.float32).reshape(-1), pa.float32())
        cols["landmarks"] = pa.FixedSizeListArray.from_arrays(flat, 10)
    return pa.table(cols, schema=FACES_SCHEMA)


def frames_table(
    frame_idx: np.ndarray,
    pts_ms: np.ndarray,
    face_count: np.ndarray,
    shard_idx: int,
    shot_idx: np.ndarray | None = None,
    span_ms: np.ndarray | None = None,
) -> pa.Table:
    """Arrow table in FRAMES_SCHEMA from (F,) int64 / float64 / int16 arrays; ``shot_idx`` (F,) int32
    (None = 0: one shot) and ``span_ms`` (F,) float64 (None = null: unknown)."""
    n = len(frame_idx)
    return pa.table(
        {
            "frame_idx": pa.array(frame_idx, pa.int64()),
            "pts_ms": pa.array(pts_ms, pa.float64()),
            "face_count": pa.array(face_count, pa.int16()),
            "shard_idx": pa.array(np.full(n, shard_idx, np.int32), pa.int32()),
            "shot_idx": pa.array(np.zeros(n, np.int32) if shot_idx is None else shot_idx, pa.int32()),
            "span_ms": pa.nulls(n, pa.float64()) if span_ms is None else pa.array(span_ms, pa.float64()),
        },
        schema=FRAMES_SCHEMA,
    )
