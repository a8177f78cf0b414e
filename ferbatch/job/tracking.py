"""The tracking pass over one finished video's rows: assign track ids
(:func:`ferbatch.vision.track.track_boxes`), smooth probabilities per track, fill the faces rows'
track columns and make the video's ``tracks`` table. Pure on Arrow tables: the driver runs it on
the video's staged rows before they are committed (:class:`ferbatch.job.ledger.JobLedger`).

Which detections are rows: the faces rows are the detector's detections at its score threshold
(``det_score >= 0.7`` for every registry detector, or ``--score-threshold``), one row per face per
frame, whether or not they get a track. The tracker's second stage (scores 0.3 up to the row threshold,
:class:`ferbatch.vision.track.TrackerConfig`) would only ever add rows that joined a track; a job does not
keep sub-threshold detections yet, so here the tracker sees the rows alone and the stage is idle."""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import pyarrow as pa

from ferbatch.dataset.schema import PROB_COLUMNS, SMOOTH_COLUMNS, TRACKS_SCHEMA
from ferbatch.labels import EMOTIONS, argmax_known
from ferbatch.vision.track import TrackerConfig, smooth_probs, track_boxes

__all__ = ["track_faces"]


def track_faces(faces: pa.Table, cfg: TrackerConfig = TrackerConfig()) -> tuple[pa.Table, pa.Table]:
    """Track one video's faces.

    Args:
        faces: the video's rows in :data:`ferbatch.dataset.schema.FACES_SCHEMA` (any order).

    Returns:
        (faces sorted by frame_idx, face_idx with ``track_id``, ``track_emotion`` and the
        ``smooth_prob_*`` columns filled; the ``tracks`` table in TRACKS_SCHEMA, one row per track).
    """
    faces = faces.sort_by([("frame_idx", "ascending"), ("face_idx", "ascending")])
    fi = faces["frame_idx"].to_numpy()
    ts = faces["pts_ms"].to_numpy()
    boxes = (
        np.stack([faces[c].to_numpy() for c in ("x1", "y1", "x2", "y2")], 1).astype(np.float32) if len(fi) else np.empty((0, 4), np.float32)
    )
    scores = faces["det_score"].to_numpy()
    ids = track_boxes(fi, ts, boxes, scores, cfg)
    probs = (
        np.stack([faces[c].to_numpy(zero_copy_only=False) for c in PROB_COLUMNS], 1).astype(np.float32)
        if len(fi)
        else np.empty((0, 8), np.float32)
    )
    # smoothing goes track by track in time order; rows are in frame order already
    sm = smooth_probs(ids, ts, probs, cfg.smooth_half_life_s)
    has = ids >= 0
    names = np.asarray(EMOTIONS, object)[argmax_known(sm)] if len(fi) else np.empty(0, object)
    track_emotion = np.where(has, names, np.asarray(None, object))
    faces = faces.set_column(faces.schema.get_field_index("track_id"), "track_id", pa.array(np.where(has, ids, 0), pa.int64(), mask=~has))
    faces = faces.set_column(faces.schema.get_field_index("track_emotion"), "track_emotion", pa.array(track_emotion, pa.string()))
    for j, c in enumerate(SMOOTH_COLUMNS):
        col = sm[:, j]
        faces = faces.set_column(faces.schema.get_field_index(c), c, pa.array(col, pa.float32(), mask=np.isnan(col) | ~has))
    return faces, _tracks_table(faces, ids, fi, ts, boxes, probs)


def _tracks_table(faces: pa.Table, ids, fi, ts, boxes, probs) -> pa.Table:
    rows: dict[str, list] = {f.name: [] for f in TRACKS_SCHEMA}
    emo = faces["emotion"].to_pylist()
    for tid in np.unique(ids[ids >= 0]):
        sel = np.flatnonzero(ids == tid)
        c = Counter(emo[i] for i in sel)
        with warnings.catch_warnings():  # a class the model lacks is all-NaN: its mean stays NaN (null)
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(probs[sel], 0)
        vals = {
            "track_id": int(tid),
            "first_frame": int(fi[sel[0]]),
            "last_frame": int(fi[sel[-1]]),
            "first_ms": float(ts[sel[0]]),
            "last_ms": float(ts[sel[-1]]),
            "frames": len(sel),
            "mean_box_w": float((boxes[sel, 2] - boxes[sel, 0]).mean()),
            "mean_box_h": float((boxes[sel, 3] - boxes[sel, 1]).mean()),
            "dominant_emotion": c.most_common(1)[0][0],
        }
        for j, e in enumerate(EMOTIONS):
            vals[f"mean_prob_{e}"] = None if np.isnan(mean[j]) else float(mean[j])
            vals[f"share_{e}"] = c[e] / len(sel)
        for k, v in vals.items():
            rows[k].append(v)
    return pa.table(rows, schema=TRACKS_SCHEMA)
