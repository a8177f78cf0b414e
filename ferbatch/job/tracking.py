"""The driver's pass over one finished video's staged rows: shots and tracks joined across shard
boundaries, per-track smoothing and emotion, the ``tracks`` table. Pure on Arrow tables; the driver
runs it before the video's rows are committed (:class:`ferbatch.job.ledger.JobLedger`).

Tracking itself runs in the shards' frame loops (:class:`ferbatch.vision.analysis.FrameAnalyzer`):
each shard writes provisional track ids of its own and a hand-off record (``ShardResult.handoff``):
the tracked boxes of its first frame (``head``) and of the next shard's first frame as it saw it
(``tail``, with ``tail_cut``: that frame starts a new shot), and its last shot number. Here:

- **shots**: a shard's shot numbers are offset by the shots before it, plus one where the boundary
  frame is a cut (or the previous shard is missing), so ``shot_idx`` counts the video's shots;
- **tracks**: a track of shard ``s`` and one of shard ``s + 1`` are one track when their boxes on the
  boundary frame match (the same frame, full-frame detection in both: IoU >= ``JOIN_IOU``) and the
  frame is no cut; the joined tracks count when they reach ``min_hits`` rows
  (:func:`ferbatch.vision.track.confirm_tracks`) and are numbered by first appearance;
- **emotion**: :data:`ferbatch.labels.EMOTION_RULE` per track (``track_emotion`` on its rows,
  ``tracks.dominant_emotion``); ``smooth_prob_*`` / ``smooth_emotion`` are the per-frame smoothing
  along the track (:func:`ferbatch.vision.track.smooth_probs`), a separate, named view.

Which detections are rows: those above the detector's row threshold; weaker ones down to the
tracker's low score kept tracks alive inside the shard and are not stored.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ferbatch.dataset.schema import PROB_COLUMNS, SMOOTH_COLUMNS, TRACKS_SCHEMA
from ferbatch.labels import EMOTIONS, argmax_known, weighted_emotion
from ferbatch.vision.boxes import iou_matrix
from ferbatch.vision.track import TrackerConfig, confirm_tracks, smooth_probs

__all__ = ["JOIN_IOU", "join_shots", "track_faces"]

JOIN_IOU = 0.5  # boxes of one face on one frame from two full-frame detections are identical; 0.5 leaves room


def join_shots(frames: pa.Table, shards: list[dict]) -> pa.Table:
    """The video's frames with ``shot_idx`` counted over the whole video.

    Args:
        frames: staged frames rows (FRAMES_SCHEMA; ``shot_idx`` within each shard).
        shards: the video's shard records (manifest), with their ``handoff`` where known.

    Returns:
        The frames sorted by ``frame_idx`` with ``shot_idx`` offset per shard.
    """
    frames = frames.sort_by([("frame_idx", "ascending")])
    if frames.num_rows == 0:
        return frames
    offsets = _shot_offsets(shards)
    sh = frames["shard_idx"].to_numpy()
    local = frames["shot_idx"].fill_null(0).to_numpy()
    glob = (local + np.array([offsets.get(int(s), 0) for s in sh], np.int64)).astype(np.int32)
    return frames.set_column(frames.schema.get_field_index("shot_idx"), "shot_idx", pa.array(glob, pa.int32()))


def _shot_offsets(shards: list[dict]) -> dict[int, int]:
    offsets: dict[int, int] = {}
    nxt = 0
    prev: dict | None = None
    for s in sorted(shards, key=lambda r: r["shard_idx"]):
        h = s.get("handoff") or {}
        if prev is not None:
            ph = prev.get("handoff") or {}
            joined = prev["shard_idx"] == s["shard_idx"] - 1 and "tail" in ph and not ph.get("tail_cut")
            nxt += 0 if joined else 1
        offsets[int(s["shard_idx"])] = nxt
        nxt += int(h.get("last_shot", 0))
        prev = s
    return offsets


class _Union:
    def __init__(self) -> None:
        self.parent: dict[tuple[int, int], tuple[int, int]] = {}

    def find(self, k: tuple[int, int]) -> tuple[int, int]:
        p = self.parent.setdefault(k, k)
        if p != k:
            p = self.parent[k] = self.find(p)
        return p

    def join(self, a: tuple[int, int], b: tuple[int, int]) -> None:
        self.parent[self.find(b)] = self.find(a)


def _links(shards: list[dict]) -> _Union:
    """Provisional tracks (shard, id) that are one across shard boundaries."""
    u = _Union()
    by_idx = {int(s["shard_idx"]): s for s in shards}
    for i, s in by_idx.items():
        nxt = by_idx.get(i + 1)
        h = s.get("handoff") or {}
        if nxt is None or h.get("tail_cut") or not h.get("tail") or not (nxt.get("handoff") or {}).get("head"):
            continue
        tail = np.array(h["tail"], np.float64).reshape(-1, 5)
        head = np.array(nxt["handoff"]["head"], np.float64).reshape(-1, 5)
        iou = iou_matrix(tail[:, 1:], head[:, 1:])
        used_r: set[int] = set()
        used_c: set[int] = set()
        for flat in np.argsort(-iou, axis=None, kind="stable"):
            r, c = divmod(int(flat), iou.shape[1])
            if iou[r, c] < JOIN_IOU:
                break
            if r in used_r or c in used_c:
                continue
            used_r.add(r)
            used_c.add(c)
            u.join((i, int(tail[r, 0])), (i + 1, int(head[c, 0])))
    return u


def track_faces(faces: pa.Table, frames: pa.Table, shards: list[dict], cfg: TrackerConfig = TrackerConfig()) -> tuple[pa.Table, pa.Table]:
    """Join one video's shard-local tracks and fill the track columns.

    Args:
        faces: the video's staged rows (FACES_SCHEMA; ``track_id`` = the shard's provisional id or null).
        frames: the video's frames (FRAMES_SCHEMA), for ``span_ms`` (the rows' time weights) and ``shot_idx``.
        shards: the video's shard records with their ``handoff``.
        cfg: tracker settings (``min_hits``, ``smooth_half_life_s``).

    Returns:
        (faces sorted by frame_idx, face_idx with ``track_id`` (0, 1, ... by first appearance),
        ``track_emotion``, ``smooth_prob_*`` and ``smooth_emotion`` filled; the ``tracks`` table,
        one row per track).
    """
    faces = faces.sort_by([("frame_idx", "ascending"), ("face_idx", "ascending")])
    m = faces.num_rows
    fi = faces["frame_idx"].to_numpy()
    ts = faces["pts_ms"].to_numpy()
    local = faces["track_id"].fill_null(-1).to_numpy().astype(np.int64)
    shard = faces["shard_idx"].to_numpy().astype(np.int64)
    u = _links(shards)
    keys: dict[tuple[int, int], int] = {}
    provisional = np.full(m, -1, np.int64)
    for i in range(m):
        if local[i] >= 0:
            root = u.find((int(shard[i]), int(local[i])))
            provisional[i] = keys.setdefault(root, len(keys))
    ids = confirm_tracks(provisional, frames.num_rows, cfg.min_hits)
    probs = (
        np.stack([faces[c].to_numpy(zero_copy_only=False) for c in PROB_COLUMNS], 1).astype(np.float32)
        if m
        else np.empty((0, 8), np.float32)
    )
    frame_no = frames["frame_idx"].to_numpy()
    span = frames["span_ms"].fill_null(0.0).to_numpy() if frames.num_rows else np.empty(0)
    shot = frames["shot_idx"].fill_null(0).to_numpy() if frames.num_rows else np.empty(0, np.int32)
    pos = np.clip(np.searchsorted(frame_no, fi), 0, max(len(frame_no) - 1, 0))
    weight = span[pos] if len(frame_no) else np.zeros(m)
    row_shot = shot[pos] if len(frame_no) else np.zeros(m, np.int32)
    sm = smooth_probs(ids, ts, probs, cfg.smooth_half_life_s)
    has = ids >= 0
    per_track: dict[int, tuple[np.ndarray, str | None]] = {}
    for tid in np.unique(ids[has]):
        sel = ids == tid
        per_track[int(tid)] = weighted_emotion(probs[sel], weight[sel])
    track_emotion = np.array([per_track[int(t)][1] if t >= 0 else None for t in ids], object)
    smooth_names = np.asarray(EMOTIONS, object)[argmax_known(sm)] if m else np.empty(0, object)
    faces = _set(faces, "track_id", pa.array(np.where(has, ids, 0), pa.int64(), mask=~has))
    faces = _set(faces, "track_emotion", pa.array(track_emotion, pa.string()))
    faces = _set(faces, "smooth_emotion", pa.array(np.where(has, smooth_names, np.asarray(None, object)), pa.string()))
    for j, c in enumerate(SMOOTH_COLUMNS):
        col = sm[:, j]
        faces = _set(faces, c, pa.array(col, pa.float32(), mask=np.isnan(col) | ~has))
    boxes = np.stack([faces[c].to_numpy() for c in ("x1", "y1", "x2", "y2")], 1).astype(np.float32) if m else np.empty((0, 4), np.float32)
    return faces, _tracks_table(ids, fi, ts, boxes, probs, weight, row_shot, per_track)


def _set(t: pa.Table, name: str, col: pa.Array) -> pa.Table:
    return t.set_column(t.schema.get_field_index(name), name, col)


def _tracks_table(ids, fi, ts, boxes, probs, weight, row_shot, per_track) -> pa.Table:
    rows: dict[str, list] = {f.name: [] for f in TRACKS_SCHEMA}
    labels = argmax_known(probs) if len(probs) else np.empty(0, np.int64)
    for tid in np.unique(ids[ids >= 0]):
        sel = np.flatnonzero(ids == tid)
        mean, emotion = per_track[int(tid)]
        w = weight[sel] if np.any(weight[sel] > 0) else np.ones(len(sel))
        vals = {
            "track_id": int(tid),
            "first_frame": int(fi[sel[0]]),
            "last_frame": int(fi[sel[-1]]),
            "first_ms": float(ts[sel[0]]),
            "last_ms": float(ts[sel[-1]]),
            "frames": len(sel),
            "mean_box_w": float((boxes[sel, 2] - boxes[sel, 0]).mean()),
            "mean_box_h": float((boxes[sel, 3] - boxes[sel, 1]).mean()),
            "dominant_emotion": emotion,
            "shot_idx": int(row_shot[sel[0]]),
            "seconds": float(weight[sel].sum()) / 1000.0,
        }
        for j, e in enumerate(EMOTIONS):
            vals[f"mean_prob_{e}"] = None if np.isnan(mean[j]) else float(mean[j])
            vals[f"share_{e}"] = float(w[labels[sel] == j].sum() / w.sum())
        for k, v in vals.items():
            rows[k].append(v)
    return pa.table(rows, schema=TRACKS_SCHEMA)
