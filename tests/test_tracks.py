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
    """WolfgangLanger's first 288 frames (packets copied) in four 72-frame shards: the reference's
    track ids on those frames."""
    import pyarrow.compute as pc
    from badinputs import cut_mp4
    from conftest import WOLFGANG

    out = tmp_path / "sharded"
    s = run_job(cut_mp4(WOLFGANG, tmp_path / "w.mp4", 288), out, JobConfig(workers=1), use_ray=False, shard_frames=72)
    assert s.ok == 1 and s.frames == 288
    a = open_table(out, "faces").sort_by([("frame_idx", "ascending"), ("face_idx", "ascending")])
    assert len(set(open_table(out, "frames")["shard_idx"].to_pylist())) == 4
    b = open_table(reference_wolfgang, "faces").sort_by([("frame_idx", "ascending"), ("face_idx", "ascending")])
    b = b.filter(pc.less(b["frame_idx"], 288))
    assert a.num_rows > 0.95 * 288 and a["track_id"].to_pylist() == b["track_id"].to_pylist()


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


# ---------------------------------------------------------------- ByteTrack stages on real detections


@pytest.fixture(scope="module")
def low_dets(_cache):
    """The default detector at ByteTrack's low threshold (0.3) over both Intel clips: per clip
    (frame_idx, pts_ms, boxes, scores), 12 fps."""
    from conftest import read_frames

    from ferbatch.models.load import load_models

    m = load_models(JobConfig(score_threshold=0.3, backend="onnxruntime"), threads=2)
    out = {}
    for clip in (INTEL_2FACE, INTEL_3FACE):
        d = m.detector.detect(read_frames(clip))
        out[clip] = (d.frame_pos.astype(np.int64), d.frame_pos * (1000 / 12), d.boxes, d.scores)
    m.close()
    return out


def _labelled_people(clip):
    """{frame: ((T, 4) boxes, (T,) person)} from tests/data/face_boxes.csv."""
    import csv
    from pathlib import Path

    rows: dict[int, list] = {}
    with open(Path(__file__).parent / "data/face_boxes.csv") as fh:
        for r in csv.DictReader(fh):
            if r["source"].endswith(clip.name):
                rows.setdefault(int(r["frame"]), []).append([float(r[k]) for k in ("x1", "y1", "x2", "y2")] + [int(r["person"])])
    return {f: (np.array(v, np.float32)[:, :4], np.array(v)[:, 4].astype(int)) for f, v in rows.items()}


@pytest.mark.parametrize("clip,people", [(INTEL_2FACE, 2), (INTEL_3FACE, 3)])
def test_low_threshold_detections_exact_tracks_and_no_swaps(low_dets, clip, people):
    """With every detection down to 0.3 the tracker still gives one track per person, and each
    hand-labelled person keeps one id on every labelled frame (21 frames, 53 faces)."""
    from ferbatch.vision.boxes import match_boxes

    fi, ts, boxes, scores = low_dets[clip]
    ids = track_boxes(fi, ts, boxes, scores)
    assert len(set(ids[ids >= 0].tolist())) == people
    seen: dict[int, set] = {}
    for frame, (truth, person) in _labelled_people(clip).items():
        sel = np.flatnonzero(fi == frame)
        m = match_boxes(truth, boxes[sel], scores[sel])
        for j, t in enumerate(m):
            if t >= 0:
                seen.setdefault(int(person[t]), set()).add(int(ids[sel[j]]))
    assert len(seen) == people and all(len(s) == 1 and -1 not in s for s in seen.values()), seen
    assert len(set.union(*seen.values())) == people


def test_face_detected_every_frame_below_the_old_birth_score_has_a_track(low_dets):
    """Birth at the row threshold (0.7): faces scored 0.75 in every frame get tracks (the old
    tracker needed 0.8 to start one and gave none)."""
    fi, ts, boxes, scores = low_dets[INTEL_2FACE]
    keep = scores >= 0.7
    ids = track_boxes(fi[keep], ts[keep], boxes[keep], np.full(keep.sum(), 0.75, np.float32))
    assert np.all(ids >= 0) and len(set(ids.tolist())) == 2


def test_low_score_stage_keeps_a_track_through_two_seconds_of_weak_detections(low_dets):
    """ByteTrack's second stage: the middle person's detections scored 0.5 for frames 10-36
    (2.2 s, longer than max_lost_s) stay on the person's track; without the stage the track ends
    and the person comes back as a new one."""
    fi, ts, boxes, scores = low_dets[INTEL_3FACE]
    keep = scores >= 0.7
    fi, ts, boxes, scores = fi[keep], ts[keep], boxes[keep], scores[keep].copy()
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    weak = (cx > 180) & (cx < 290) & (fi >= 10) & (fi <= 36)
    assert weak.sum() >= 20
    scores[weak] = 0.5
    ids = track_boxes(fi, ts, boxes, scores)
    assert len(set(ids.tolist())) == 3 and np.all(ids[weak] >= 0)
    middle = ids[(cx > 180) & (cx < 290)]
    assert len(set(middle.tolist())) == 1
    no_stage = track_boxes(fi, ts, boxes, scores, TrackerConfig(low_score=0.7))
    assert len(set(no_stage[no_stage >= 0].tolist())) == 4 and np.all(no_stage[weak] == -1)


def test_low_score_detection_that_joins_no_track_gets_none():
    box = np.array([[10, 10, 50, 50], [200, 200, 240, 240]], np.float32)
    frames = np.repeat(np.arange(5), 2)
    ids = track_boxes(frames, frames * 40.0, np.tile(box, (5, 1)), np.tile(np.array([0.9, 0.5], np.float32), 5))
    assert ids[0::2].tolist() == [0] * 5 and ids[1::2].tolist() == [-1] * 5  # 0.5 never starts a track
