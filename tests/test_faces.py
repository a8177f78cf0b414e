"""The one face batch (ferbatch.faces.FaceBatch) and the one writer of face columns (face_columns).

Mutations these tests were seen to catch (each made by hand in ferbatch/faces.py, the tests run,
the change undone):
- ``face_columns`` without the NaN -> null mask on ``prob_*`` (``mask=`` dropped): the null
  contempt column is NaN instead (test_one_writer_nan_to_null_and_codes, test_dataset_and_api_write_the_same_columns);
- ``FaceBatch.merge`` concatenating the parts in reverse order: test_merge_keeps_order_and_shared_columns;
- ``FaceBatch.merge`` keeping a column that only some parts have (``all`` for ``any``): the concatenation
  of a None fails (test_merge_keeps_order_and_shared_columns);
- ``__post_init__`` not checking the optional columns (only frame_pos/boxes/scores): test_shapes_are_checked;
- ``__getitem__`` indexing only the detector's columns (probs, track_id... left whole): the new batch
  is refused by its own shape check (test_mask_and_index_select_every_column);
- ``face_columns`` writing track id -1 as -1 (no mask): test_one_writer_nan_to_null_and_codes;
- ``ranks`` counted from the frame's last face: face_idx differs (test_ranks_and_at_frames).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from conftest import MULTI_FACE

from ferbatch.api import Faces
from ferbatch.dataset.schema import FACES_SCHEMA, PROB_COLUMNS, faces_table
from ferbatch.faces import SOURCE_FRAME, SOURCE_TRACKED, SOURCE_WINDOW, FaceBatch, face_columns
from ferbatch.labels import EMOTIONS


def _batch(n: int = 4, seed: int = 0, **kw) -> FaceBatch:
    """n faces over two frames (positions 0, 0, 1, 1, ...), all columns set, contempt NaN."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(7), n).astype(np.float32)
    probs = np.concatenate([probs, np.full((n, 1), np.nan, np.float32)], 1)
    xy = rng.uniform(0, 100, (n, 2)).astype(np.float32)
    cols = dict(
        frame_pos=np.arange(n, dtype=np.int32) // 2,
        boxes=np.concatenate([xy, xy + 30], 1),
        scores=np.sort(rng.uniform(0.5, 1, n).astype(np.float32))[::-1].copy(),
        landmarks=(xy[:, None, :] + rng.uniform(0, 30, (n, 5, 2))).astype(np.float32),
        probs=probs,
        track_id=np.arange(n, dtype=np.int64) - 1,  # the first has no track
        source=(np.arange(n) % 3).astype(np.uint8),
    )
    cols.update(kw)
    return FaceBatch(**cols)


def test_shapes_are_checked():
    b = _batch()
    for name, bad in [
        ("boxes", np.zeros((4, 3), np.float32)),
        ("scores", np.zeros(3, np.float32)),
        ("landmarks", np.zeros((4, 10), np.float32)),
        ("probs", np.zeros((4, 7), np.float32)),
        ("track_id", np.zeros(5, np.int64)),
        ("source", np.zeros((4, 1), np.uint8)),
        ("pts_ms", np.zeros(3)),
        ("face_idx", np.zeros(2, np.int16)),
    ]:
        with pytest.raises(ValueError, match=f"received {name}"):
            FaceBatch(**{**b._columns(), name: bad})


def test_empty_and_len():
    e = FaceBatch.empty()
    assert len(e) == 0 and e.boxes.shape == (0, 4) and e.frame_pos.dtype == np.int32 and e.landmarks is None
    assert FaceBatch.empty(landmarks=True).landmarks.shape == (0, 5, 2)
    assert e.probs is None and e.track_id is None and e.source is None
    assert len(FaceBatch.merge([])) == 0 and len(_batch(6)) == 6


def test_merge_keeps_order_and_shared_columns():
    a, b = _batch(4, seed=1), _batch(2, seed=2, frame_pos=np.array([5, 5], np.int32))
    m = FaceBatch.merge([a, b])
    assert len(m) == 6
    np.testing.assert_array_equal(m.frame_pos, [0, 0, 1, 1, 5, 5])
    np.testing.assert_array_equal(m.boxes, np.concatenate([a.boxes, b.boxes]))
    np.testing.assert_array_equal(m.probs, np.concatenate([a.probs, b.probs]))
    np.testing.assert_array_equal(m.landmarks, np.concatenate([a.landmarks, b.landmarks]))
    partial = FaceBatch.merge([a, FaceBatch(b.frame_pos, b.boxes, b.scores, None, b.probs)])  # b: no landmarks, tracks, sources
    assert partial.landmarks is None and partial.track_id is None and partial.source is None
    np.testing.assert_array_equal(partial.probs, m.probs)


def test_mask_and_index_select_every_column():
    b = _batch(6)
    sel = b[b.scores > np.median(b.scores)]
    assert len(sel) == 3
    keep = b.scores > np.median(b.scores)
    for name in ("frame_pos", "boxes", "scores", "landmarks", "probs", "track_id", "source"):
        np.testing.assert_array_equal(getattr(sel, name), getattr(b, name)[keep])
    one = b[2]
    assert len(one) == 1 and one.boxes.shape == (1, 4) and one.probs.shape == (1, 8)
    np.testing.assert_array_equal(b[[3, 1]].track_id, b.track_id[[3, 1]])
    assert [len(f) for f in b.per_frame(4)] == [2, 2, 2, 0]


def test_ranks_and_at_frames():
    b = _batch(5, frame_pos=np.array([0, 0, 0, 2, 2], np.int32))
    np.testing.assert_array_equal(b.ranks(), [0, 1, 2, 0, 1])
    rows = b.at_frames(np.array([10, 11, 12], np.int64), np.array([400.0, 440.0, 480.0]))
    np.testing.assert_array_equal(rows.frame_pos, [10, 10, 10, 12, 12])
    np.testing.assert_array_equal(rows.pts_ms, [400, 400, 400, 480, 480])
    np.testing.assert_array_equal(rows.face_idx, [0, 1, 2, 0, 1])


def test_one_writer_nan_to_null_and_codes():
    b = _batch(3, source=np.array([SOURCE_FRAME, SOURCE_WINDOW, SOURCE_TRACKED], np.uint8))
    cols = face_columns(b)
    assert cols["prob_contempt"].null_count == 3 and cols["prob_neutral"].null_count == 0
    assert cols["track_id"].to_pylist() == [None, 0, 1]
    assert cols["box_source"].to_pylist() == ["frame", "window", "tracked"]
    assert cols["emotion"].to_pylist() == [EMOTIONS[int(i)] for i in np.argmax(b.probs[:, :7], 1)]
    assert cols["landmarks"].type == pa.list_(pa.float32(), 10)
    np.testing.assert_array_equal(np.array(cols["landmarks"].to_pylist(), np.float32), b.landmarks.reshape(3, 10))
    bare = face_columns(FaceBatch(b.frame_pos, b.boxes, b.scores))  # nothing but the detector's columns
    assert all(bare[c].null_count == 3 for c in ("emotion", "emotion_prob", *PROB_COLUMNS, "track_id", "landmarks"))
    assert bare["box_source"].to_pylist() == ["frame"] * 3


def _shared(t: pa.Table, other: pa.Table) -> list[str]:
    return [c for c in t.column_names if c in other.column_names]


def test_dataset_and_api_write_the_same_columns():
    """A synthetic batch: the faces table (the dataset's writer) and Faces.to_arrow() agree on every shared column."""
    b = _batch(4, frame_pos=np.zeros(4, np.int32), track_id=None, source=None)
    api = Faces.from_batch(b, (200, 200), {}).to_arrow()
    table = faces_table(b.at_frames(np.array([7], np.int64), np.array([280.0])), 3)
    assert table.schema == FACES_SCHEMA
    shared = _shared(api, table)
    assert shared == api.column_names and len(shared) == 17  # face_idx .. landmarks
    for c in shared:
        assert api.column(c).equals(table.column(c)), c
    assert table.column("prob_contempt").null_count == 4


def test_analyze_and_the_faces_table_write_the_same_values():
    """The real analysis step on one picture: ferbatch.analyze(...).to_arrow() and the dataset's
    faces table of the same analysed batch hold the same values in every shared column."""
    import cv2

    import ferbatch
    from ferbatch.api import _models
    from ferbatch.vision.analysis import analyze_images

    faces = ferbatch.analyze(MULTI_FACE)
    rgb = np.ascontiguousarray(cv2.imread(str(MULTI_FACE), cv2.IMREAD_COLOR)[:, :, ::-1])
    batch = analyze_images(_models(None, None, "onnxruntime", None, 64), [rgb])
    assert len(batch) == len(faces) >= 2
    api = faces.to_arrow()
    table = faces_table(batch.at_frames(np.array([0], np.int64), np.array([0.0])), 0)
    for c in _shared(api, table):
        assert api.column(c).equals(table.column(c)), c
