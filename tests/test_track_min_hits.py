"""``TrackerConfig.min_hits`` is honoured: a short spurious detection gets no track id, a face seen
in at least ``min_hits`` frames does, both in :func:`ferbatch.vision.track.track_boxes` (one video at
once) and in the driver's pass over joined shard-local tracks (:func:`ferbatch.job.tracking.track_faces`).

Mutations run (each made these tests fail, then was restored):
- ``confirm_tracks`` ignoring ``min_hits`` (``counts >= 1``): the 2-frame spurious box got a track
  id; 4 of 5 fail (all but the ``min_hits=1`` case);
- ``TrackerConfig.min_hits`` defaulting to 1: the two default-config tests fail;
- ``track_faces`` passing ``1`` instead of ``cfg.min_hits`` to ``confirm_tracks``: the spurious
  shard-local tracks got ids; the two ``track_faces`` tests fail.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from ferbatch.dataset.schema import FACES_SCHEMA, FRAMES_SCHEMA, PROB_COLUMNS
from ferbatch.job.tracking import track_faces
from ferbatch.vision.track import TrackerConfig, track_boxes

FACE = [100.0, 100.0, 200.0, 220.0]  # seen in every frame
LATE = [600.0, 100.0, 700.0, 220.0]  # seen in the last 3 frames (= min_hits)
SPURIOUS = [350.0, 400.0, 420.0, 480.0]  # seen in 2 frames (< min_hits)


def _detections() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """10 frames at 25 fps: FACE on all, SPURIOUS on frames 3-4, LATE on frames 7-9."""
    rows = [(f, FACE, "face") for f in range(10)]
    rows += [(f, SPURIOUS, "spurious") for f in (3, 4)]
    rows += [(f, LATE, "late") for f in (7, 8, 9)]
    rows.sort(key=lambda r: r[0])
    fi = np.array([r[0] for r in rows], np.int64)
    return fi, fi * 40.0, np.array([r[1] for r in rows], np.float32), np.full(len(rows), 0.9, np.float32), [r[2] for r in rows]


def _ids_by_who(ids: np.ndarray, who: list[str]) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for i, w in zip(ids.tolist(), who, strict=True):
        out.setdefault(w, set()).add(i)
    return out


def test_track_boxes_gives_no_id_to_a_detection_shorter_than_min_hits():
    fi, ts, boxes, scores, who = _detections()
    assert TrackerConfig().min_hits == 3
    got = _ids_by_who(track_boxes(fi, ts, boxes, scores, TrackerConfig()), who)
    assert got == {"face": {0}, "spurious": {-1}, "late": {1}}, got


@pytest.mark.parametrize(
    ("min_hits", "want"), [(1, {"face": {0}, "spurious": {1}, "late": {2}}), (4, {"face": {0}, "spurious": {-1}, "late": {-1}})]
)
def test_track_boxes_reads_min_hits_from_the_config(min_hits, want):
    fi, ts, boxes, scores, who = _detections()
    got = _ids_by_who(track_boxes(fi, ts, boxes, scores, TrackerConfig(min_hits=min_hits)), who)
    assert got == want, got


def _staged() -> tuple[pa.Table, pa.Table, list[dict], list[str]]:
    """One video in two shards (frames 0-4, 5-9) as the workers stage it: shard-local track ids and
    the hand-off boxes of frame 5. FACE: shard 0's track 0 on frames 3-4 joined to shard 1's track 0
    on frame 5 (3 rows together); SPURIOUS: shard 0's track 1 on frames 0-1 and shard 1's track 1 on
    frames 7-8 (2 rows each, no join)."""
    rows: list[dict] = []
    who: list[str] = []

    def add(f: int, shard: int, tid: int, box: list[float], name: str) -> None:
        face_idx = sum(r["frame_idx"] == f for r in rows)
        rows.append(
            {"frame_idx": f, "pts_ms": f * 40.0, "face_idx": face_idx, "shard_idx": shard, "track_id": tid, "det_score": 0.9}
            | dict(zip(("x1", "y1", "x2", "y2"), box, strict=True))
            | {c: 1 / len(PROB_COLUMNS) for c in PROB_COLUMNS}
        )
        who.append(name)

    for f in (0, 1):
        add(f, 0, 1, SPURIOUS, "spurious0")
    for f in (3, 4):
        add(f, 0, 0, FACE, "face")
    add(5, 1, 0, FACE, "face")
    for f in (7, 8):
        add(f, 1, 1, LATE, "spurious1")
    faces = pa.Table.from_pylist(rows, schema=FACES_SCHEMA)
    frames = pa.Table.from_pylist(
        [
            {"frame_idx": f, "pts_ms": f * 40.0, "face_count": 0, "shard_idx": int(f >= 5), "shot_idx": 0, "span_ms": 40.0}
            for f in range(10)
        ],
        schema=FRAMES_SCHEMA,
    )
    shards = [
        {"shard_idx": 0, "handoff": {"head": [], "tail": [[0, *FACE]], "tail_cut": False, "last_shot": 0}},
        {"shard_idx": 1, "handoff": {"head": [[0, *FACE]], "tail": [], "tail_cut": False, "last_shot": 0}},
    ]
    return faces, frames, shards, who


def _track_ids(faces: pa.Table) -> list[int]:
    return [-1 if t is None else t for t in faces["track_id"].to_pylist()]


def test_track_faces_counts_min_hits_over_joined_tracks():
    faces, frames, shards, who = _staged()
    out, tracks = track_faces(faces, frames, shards, TrackerConfig())
    assert out["frame_idx"].to_pylist() == sorted(faces["frame_idx"].to_pylist())  # rows already in order: who lines up
    got = _ids_by_who(np.array(_track_ids(out)), who)
    assert got == {"face": {0}, "spurious0": {-1}, "spurious1": {-1}}, got
    assert tracks["track_id"].to_pylist() == [0] and tracks["frames"].to_pylist() == [3]


def test_track_faces_reads_min_hits_from_the_config():
    faces, frames, shards, who = _staged()
    loose = _ids_by_who(np.array(_track_ids(track_faces(faces, frames, shards, TrackerConfig(min_hits=2))[0])), who)
    assert loose == {"spurious0": {0}, "face": {1}, "spurious1": {2}}, loose
    strict = _ids_by_who(np.array(_track_ids(track_faces(faces, frames, shards, TrackerConfig(min_hits=4))[0])), who)
    assert strict == {"spurious0": {-1}, "face": {-1}, "spurious1": {-1}}, strict
