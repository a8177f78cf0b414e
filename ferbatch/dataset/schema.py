"""The dataset's schemas and the Arrow tables a shard's results become (pure: no files).

Tables (see :mod:`ferbatch.dataset.store` for where they live on disk):
- ``faces``: one row per face per frame (:data:`FACES_SCHEMA`);
- ``frames``: one row per decoded frame, ``face_count`` may be 0 (:data:`FRAMES_SCHEMA`);
- ``tracks``: one row per face track (:data:`TRACKS_SCHEMA`);
- ``videos``: one row per input (:data:`VIDEOS_SCHEMA`).
``video_id`` is the hive partition key, stored in the directory name, not in the part files.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ferbatch.faces import BOX_SOURCES, PROB_COLUMNS, FaceBatch, face_columns
from ferbatch.labels import EMOTIONS

__all__ = [
    "FACES_SCHEMA",
    "FRAMES_SCHEMA",
    "TRACKS_SCHEMA",
    "VIDEOS_SCHEMA",
    "PARTITION_SCHEMA",
    "SCHEMA_VERSION",
    "PROB_COLUMNS",
    "SMOOTH_COLUMNS",
    "BOX_SOURCES",
    "faces_table",
    "frames_table",
]

SCHEMA_VERSION = "1"
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
        # where the prob_* columns come from: "classified" (the classifier on this row's crop) or
        # "interpolated" (in time between two classified full detections of the track that agree,
        # --classify-between changes; ferbatch.vision.analysis)
        ("prob_source", pa.string()),
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
        ("classify_between", pa.string()),  # which rows between full detections were classified: "changes" or "every"
        ("prior", pa.string()),  # class prior of the decision: as-trained | balanced | graph (ferbatch.models.prior)
        ("align", pa.bool_()),  # aligned crops (ferbatch.vision.align) or the square box crop
        ("shots", pa.int32()),  # shots found (cuts + 1)
        ("decoder", pa.string()),  # which decoder gave the frames: "pyav" or "nvdec" (the same frames either way)
        # where the detector's inputs were pre-processed: "host", "graph" (the NV12 graph, --preprocess) or
        # "graph,host"; the graph's rows equal the host's up to a rare crop pixel rounding (README, --preprocess)
        ("preprocess", pa.string()),
    ],
    metadata=_META,
)
PARTITION_SCHEMA = pa.schema([("video_id", pa.string())])


def faces_table(batch: FaceBatch, shard_idx: int) -> pa.Table:
    """Arrow table in FACES_SCHEMA from a shard's rows: ``batch.frame_pos`` the video's frame
    indices and ``batch.pts_ms`` their times (:meth:`ferbatch.faces.FaceBatch.at_frames`); the face
    columns written by :func:`ferbatch.faces.face_columns`, the track columns null (the tracking
    pass fills them)."""
    m = len(batch)
    cols = face_columns(batch)
    cols["frame_idx"] = pa.array(batch.frame_pos, pa.int64())
    cols["pts_ms"] = pa.nulls(m, pa.float64()) if batch.pts_ms is None else pa.array(batch.pts_ms, pa.float64())
    cols["shard_idx"] = pa.array(np.full(m, shard_idx, np.int32), pa.int32())
    cols["track_emotion"] = pa.nulls(m, pa.string())
    for c in SMOOTH_COLUMNS:
        cols[c] = pa.nulls(m, pa.float32())
    cols["smooth_emotion"] = pa.nulls(m, pa.string())
    return pa.table([cols[f.name] for f in FACES_SCHEMA], schema=FACES_SCHEMA)


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
