"""Face tracks on the real clips: one track per person, no identity swaps against hand-labelled
face positions, stable under sharding, and the hard cases run through."""

import numpy as np
import pyarrow.compute as pc
import pytest
from conftest import FACE_NOFACE, INTEL_2FACE, INTEL_3FACE

from ferbatch.config import JobConfig
from ferbatch.dataset.store import open_table
from ferbatch.job import run_job
from ferbatch.vision.track import TrackerConfig, track_boxes

# face centres (x, y) in pixels, labelled by hand on frames of the 480x270 clips; one list per person
LABELS = {
    INTEL_2FACE: {0: [(110, 90), (355, 85)], 27: [(75, 115), (330, 100)], 55: [(80, 110), (325, 100)]},
    INTEL_3FACE: {0: [(115, 115), (225, 105), (325, 125)], 20: [(80, 100), (230, 95), (370, 120)], 40: [(80, 105), (225, 95), (375, 115)]},
}


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, _cache):
    src = tmp_path_factory.mktemp("clips")
    for p in (INTEL_2FACE, INTEL_3FACE, FACE_NOFACE):
        (src / p.name).symlink_to(p)
    out = tmp_path_factory.mktemp("tracked")
    s = run_job(src, out, JobConfig(workers=1), use_ray=False)
    assert s.ok == 3
    return out


def _video_faces(out, name):
    videos = {v["path"]: v["video_id"] for v in open_table(out, "videos").to_pylist()}
    faces = open_table(out, "faces")
    return faces.filter(pc.equal(faces["video_id"], videos[name])).sort_by([("frame_idx", "ascending"), ("face_idx", "ascending")])


@pytest.mark.parametrize("clip,people", [(INTEL_2FACE, 2), (INTEL_3FACE, 3)])
def test_one_long_track_per_person_and_no_swaps(tracked, clip, people):
    faces = _video_faces(tracked, clip.name).to_pylist()
    n_frames = len({f["frame_idx"] for f in faces})
    lengths = {}
    for f in faces:
        if f["track_id"] is not None:
            lengths[f["track_id"]] = lengths.get(f["track_id"], 0) + 1
    long_tracks = [t for t, n in lengths.items() if n >= 0.5 * n_frames]
    assert len(long_tracks) == people, lengths
    ids_per_person = [[] for _ in range(people)]
    for frame, centres in LABELS[clip].items():
        rows = [f for f in faces if f["frame_idx"] == frame]
        for person, (x, y) in enumerate(centres):
            hit = [f for f in rows if f["x1"] <= x <= f["x2"] and f["y1"] <= y <= f["y2"]]
            assert len(hit) <= 1, (frame, person, rows)
            if hit and hit[0]["track_id"] is not None:  # a detector miss says nothing about the tracker
                ids_per_person[person].append(hit[0]["track_id"])
    assert all(len(ids) >= 2 for ids in ids_per_person), ids_per_person
    ids_per_person = [set(ids) for ids in ids_per_person]
    assert all(len(s) == 1 for s in ids_per_person), ids_per_person  # the same id on every labelled frame
    assert len(set.union(*ids_per_person)) == people  # and different people, different ids


def test_tracks_table_and_smoothed_columns(tracked):
    tracks = open_table(tracked, "tracks")
    faces = _video_faces(tracked, INTEL_2FACE.name)
    vid = faces["video_id"][0].as_py()
    t = tracks.filter(pc.equal(tracks["video_id"], vid)).to_pylist()
    for tr in t:
        rows = faces.filter(pc.equal(faces["track_id"], tr["track_id"]))
        assert tr["frames"] == rows.num_rows
        assert tr["first_frame"] == pc.min(rows["frame_idx"]).as_py() and tr["last_frame"] == pc.max(rows["frame_idx"]).as_py()
        assert abs(tr["mean_prob_happiness"] - np.mean(rows["prob_happiness"].to_numpy())) < 1e-5
    tracked_rows = faces.filter(pc.is_valid(faces["track_id"]))
    sm = tracked_rows["smooth_prob_happiness"].to_numpy()
    raw = tracked_rows["prob_happiness"].to_numpy()
    assert np.all(np.isfinite(sm)) and np.std(np.diff(sm)) < np.std(np.diff(raw))  # smoother than the raw values


def test_face_that_leaves_and_no_crash(tracked):
    faces = _video_faces(tracked, FACE_NOFACE.name)
    assert faces.num_rows > 0 and pc.count(faces["track_id"]).as_py() > 0.9 * faces.num_rows
    assert len(set(faces["track_id"].drop_null().to_pylist())) <= 2


def test_wolfgang_one_track_covers_95_percent(reference_wolfgang):
    faces = open_table(reference_wolfgang, "faces")
    ids = faces["track_id"].drop_null().to_pylist()
    top = max(set(ids), key=ids.count)
    assert ids.count(top) >= 0.95 * 472


def test_sharding_does_not_change_tracks(tmp_path, reference_wolfgang):
    from conftest import WOLFGANG

    out = tmp_path / "sharded"
    run_job(WOLFGANG, out, JobConfig(workers=1), use_ray=False, shard_frames=60)
    a = open_table(out, "faces").sort_by([("frame_idx", "ascending"), ("face_idx", "ascending")])
    b = open_table(reference_wolfgang, "faces").sort_by([("frame_idx", "ascending"), ("face_idx", "ascending")])
    assert a["track_id"].to_pylist() == b["track_id"].to_pylist()


def test_tracker_handles_reappearance_and_empty_input():
    cfg = TrackerConfig(max_lost_s=1.0, min_hits=2)
    box = np.array([[10, 10, 50, 50]], np.float32)
    frames = np.r_[np.arange(10), np.arange(20, 30), np.arange(80, 90)]  # gone 0.4 s, then gone 2 s (25 fps)
    boxes = np.repeat(box, len(frames), 0)
    ids = track_boxes(frames, frames * 40.0, boxes, np.ones(len(frames), np.float32), cfg)
    assert set(ids[:20]) == {0} and set(ids[20:]) == {1}
    assert len(track_boxes(np.empty(0, np.int64), np.empty(0), np.empty((0, 4), np.float32), np.empty(0, np.float32))) == 0


@pytest.mark.parametrize("clip,n", [(INTEL_2FACE, 2), (INTEL_3FACE, 3), (FACE_NOFACE, 1)])
def test_exact_track_counts(tracked, clip, n):
    faces = _video_faces(tracked, clip.name)
    assert len(set(faces["track_id"].drop_null().to_pylist())) == n


def test_wolfgang_and_single_face_have_one_track(reference_wolfgang, tmp_path):
    from conftest import SINGLE_FACE

    assert len(set(open_table(reference_wolfgang, "faces")["track_id"].drop_null().to_pylist())) == 1
    run_job(SINGLE_FACE, tmp_path, JobConfig(workers=1), use_ray=False)
    assert len(set(open_table(tmp_path, "faces")["track_id"].drop_null().to_pylist())) == 1


def test_smooth_probs_by_hand():
    from ferbatch.vision.track import smooth_probs

    # half-life 0.5 s: after 0.5 s a new frame weighs 1 - 0.5 = 0.5, after 1 s 1 - 0.25 = 0.75
    probs = np.array([[1, 0], [0, 1], [0, 1], [1, 0]], np.float32)
    got = smooth_probs(np.array([0, 0, 0, -1]), np.array([0.0, 500.0, 1500.0, 1600.0]), probs, 0.5)
    np.testing.assert_allclose(got, [[1, 0], [0.5, 0.5], [0.125, 0.875], [1, 0]], atol=1e-6)


def test_dataset_smoothing_uses_half_a_second(tracked):
    """The smoothed columns in the rows are the 0.5 s half-life average of the raw ones."""
    faces = _video_faces(tracked, INTEL_2FACE.name)
    tid = faces["track_id"].to_numpy(zero_copy_only=False)
    has = ~np.isnan(tid.astype(float))
    ids = np.where(has, np.nan_to_num(tid.astype(float), nan=-1), -1).astype(np.int64)
    order = np.lexsort((faces["pts_ms"].to_numpy(), ids))
    raw = faces["prob_happiness"].to_numpy()[order][:, None]
    ts = faces["pts_ms"].to_numpy()[order]
    w = np.ones(len(order))
    expect = raw[:, 0].copy()
    for i in range(1, len(order)):
        if ids[order][i] >= 0 and ids[order][i] == ids[order][i - 1]:
            w = 1 - 0.5 ** ((ts[i] - ts[i - 1]) / 1000 / 0.5)
            expect[i] = w * raw[i, 0] + (1 - w) * expect[i - 1]
    got = faces["smooth_prob_happiness"].to_numpy(zero_copy_only=False)[order]
    sel = ids[order] >= 0
    np.testing.assert_allclose(got[sel].astype(float), expect[sel], atol=1e-5)
