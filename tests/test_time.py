"""Time in the pipeline: shot cuts, tracking inside the frame loop, ``--detect-every``,
``--sample-fps`` and the one per-track emotion.

Mutations run against these tests (each made the named test fail, then was restored):
- ``FrameAnalyzer.analyze`` without ``tracker.reset()`` at a cut -> test_no_track_crosses_a_cut;
- ``_shot_offsets`` ignoring ``tail_cut`` (a cut on a shard boundary) -> test_no_track_crosses_a_cut[scenecut];
- ``_links`` returning no links (tracks not joined across shards) -> test_detect_every_tracks_join_across_shards;
- the analyzer's rows filtered at the tracker's low score instead of the row threshold -> test_detect_every_1_gives_the_frame_by_frame_rows;
- ``sample_mask`` counting frames instead of time bins -> test_sample_fps_picks_frames_by_time;
- ``TrackerConfig.for_rows`` ignoring its argument -> test_tracker_thresholds_follow_the_row_threshold;
- ``tracks.dominant_emotion`` as the mode of the frame labels -> test_every_surface_reports_one_track_emotion;
- the pipeline passing no landmarks to the rows -> test_landmarks_in_the_rows_and_in_analyze;
- tracked rows with the landmarks not moved with the box, with a made-up score (0.99), or at a
  prediction for the wrong time -> test_tracked_rows_follow_the_detections;
- the schedule counted from each shard's start (``first_rank`` ignored) -> test_the_interval_keeps_its_schedule_across_shards;
- an old manifest's missing ``between`` read as "tracked" whatever its interval -> test_detect_every_default_follows_tracking.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from badinputs import encode
from conftest import DATA, SINGLE_FACE, WOLFGANG, read_frames

import ferbatch
from ferbatch.config import JobConfig
from ferbatch.errors import ConfigError
from ferbatch.job import run_job
from ferbatch.labels import EMOTIONS, weighted_emotion
from ferbatch.media.decode import iter_frames
from ferbatch.media.probe import probe_video
from ferbatch.media.sampling import frame_spans_ms, sample_mask
from ferbatch.media.shards import Shard
from ferbatch.pipeline import FrameSettings, process_shard
from ferbatch.vision.classify import extract_crops
from ferbatch.vision.track import TrackerConfig

INTEL = DATA / "videos_faces/intel_sample_videos_mp4"


@pytest.fixture(scope="module")
def three_shots(tmp_path_factory):
    """A woman (23 frames), a man moved so his face lies where hers was (62), the woman again (23):
    cuts at frames 23 and 85 that a tracker without shots would follow (the boxes overlap), encoded
    with a keyframe every 24 frames (cuts inside shards) and with x264's scene-cut keyframes (cuts on
    shard boundaries)."""
    import cv2

    a = read_frames(INTEL / "head-pose-face-detection-female.mp4")
    b = [
        cv2.warpAffine(x, np.float32([[1, 0, -27], [0, 1, 19]]), (480, 270))
        for x in read_frames(INTEL / "head-pose-face-detection-male.mp4")
    ]
    frames = a + b + a
    d = tmp_path_factory.mktemp("shots")
    return {
        "g24": encode(d / "g24.mp4", frames, options={"g": "24", "sc_threshold": "0"}),
        "scenecut": encode(d / "scenecut.mp4", frames),
    }


def _tables(out):
    ds = ferbatch.open(out)
    return ds, ds.sql("SELECT * FROM frames ORDER BY frame_idx").to_arrow_table(), ds.sql("SELECT * FROM faces").to_arrow_table()


@pytest.mark.parametrize("kind", ["g24", "scenecut"])
def test_no_track_crosses_a_cut(three_shots, tmp_path, kind):
    clip = three_shots[kind]
    _, index = probe_video(clip)
    keys = np.searchsorted(index.pts, index.keyframes).tolist()
    assert 23 not in keys and (85 in keys) == (kind == "scenecut")  # x264 keeps 25 frames between keyframes
    for sf in (0, 30):
        out = tmp_path / f"s{sf}"
        s = run_job(clip, out, JobConfig(workers=1, detect_every=3), use_ray=False, shard_frames=sf)
        assert s.ok == 1 and s.frames == 108
        ds, frames, _ = _tables(out)
        if sf:
            sh = frames["shard_idx"].to_pylist()
            starts = {f for f, a, b in zip(frames["frame_idx"].to_pylist(), sh, [None, *sh[:-1]], strict=True) if a != b}
            assert len(starts) >= 2 and (85 in starts) == (kind == "scenecut"), starts
        shot = frames["shot_idx"].to_numpy()
        assert shot.tolist() == [0] * 23 + [1] * 62 + [2] * 23, shot
        per_track = ds.sql(
            "SELECT track_id, count(DISTINCT fr.shot_idx) AS shots, min(fr.shot_idx) AS shot FROM faces f "
            "JOIN frames fr USING (video_id, frame_idx) WHERE track_id IS NOT NULL GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert [r[1] for r in per_track] == [1, 1, 1] and [r[2] for r in per_track] == [0, 1, 2], per_track
        assert ds.sql("SELECT shot_idx FROM tracks ORDER BY track_id").fetchall() == [(0,), (1,), (2,)]
        assert ds.sql("SELECT shots FROM videos").fetchall() == [(3,)]
        ds.close()


def test_detect_every_1_gives_the_frame_by_frame_rows():
    """N = 1: the analyzer's rows are the detector's rows of every frame and their classification
    (frame by frame, without the analyzer), exactly. Row threshold 0.9: the tracker's low stage
    (from 0.5) then sees detections (0.87-0.89 here) that must not become rows. The frames are
    the pipeline's own images (YUV pictures, :mod:`ferbatch.picture`)."""
    from ferbatch.models.load import load_models

    models = load_models(JobConfig(score_threshold=0.9), threads=1)
    clip = INTEL / "face-demographics-walking-and-pause.mp4"
    _, index = probe_video(clip)
    frames = [f.image for f in iter_frames(clip, index, pictures=True)]  # the images the pipeline analyses
    out = process_shard(Shard("eq", str(clip), 0, 0, None, index), models, settings=FrameSettings(row_threshold=0.9))
    dets = models.detector.detect(frames)
    probs = models.classifier.classify(extract_crops(frames, dets, models.classifier.spec))
    assert len(dets) > 100 and len(out.faces.frame_pos) == len(dets)
    assert len(models.detector.detect(frames, 0.5)) > len(dets)  # the low stage has detections to see
    np.testing.assert_array_equal(out.faces.frame_pos, dets.frame_pos)
    np.testing.assert_allclose(out.faces.boxes, dets.boxes, atol=1e-4)
    np.testing.assert_allclose(out.faces.scores, dets.scores, atol=1e-6)
    np.testing.assert_allclose(out.faces.probs, probs, atol=1e-5)
    assert set(out.faces.source.tolist()) == {0}
    models.close()


@pytest.mark.parametrize("between", ["tracked", "window"])
def test_detect_every_tracks_join_across_shards(tmp_path, between, wolfgang_288):
    """--detect-every 3 over 4 shards: one person, one track over the whole clip, the faces between
    full detections found by the track's prediction (the default) or in windows around it."""
    s = run_job(wolfgang_288, tmp_path, JobConfig(workers=1, detect_every=3, between=between), use_ray=False, shard_frames=72)
    assert s.ok == 1 and s.frames == 288
    ds = ferbatch.open(tmp_path)
    assert ds.sql("SELECT count(DISTINCT shard_idx) FROM frames").fetchall()[0][0] >= 4
    tracks = ds.sql("SELECT track_id, frames FROM tracks").fetchall()
    assert len(tracks) == 1 and tracks[0][1] >= 0.95 * 288, tracks
    src = dict(ds.sql("SELECT box_source, count(*) FROM faces GROUP BY 1").fetchall())
    assert set(src) == {"frame", between} and src[between] > src["frame"] > 0, src
    assert ds.sql("SELECT between FROM videos").fetchall() == [(between,)]
    ds.close()


@pytest.mark.parametrize(
    "clip, thr",
    [
        (INTEL / "face-demographics-walking-and-pause.mp4", 0.7),
        (WOLFGANG, 0.95),
        (DATA / "videos_emotion_cremad/mp4/1001_DFA_HAP_XX.mp4", 0.7),
    ],
)
def test_tracked_rows_follow_the_detections(clip, thr):
    """Between full detections (N = 3, tracked; full on ranks 0, 3, 6, ... and the stream's last
    frame): a row comes only from a track that made a row at its last full detection; where the
    same track is found at the next full detection, box, score and landmarks are interpolated in
    time between the two (a row of the interpolation stays while its score is above the row
    threshold); otherwise the row is the track's constant-velocity box with the last
    detection's score and its landmarks moved with the box. Matched to every-frame detection
    (N = 1) on a clip of three walking people, the boxes stay close (median IoU > 0.95) and no
    face is lost. At row threshold 0.95 the face of WolfgangLanger crosses the threshold often: a
    track whose last full detection was below it makes no rows until it is detected above it again
    (its first 288 frames). Probabilities: a row between two detections of its track whose
    classifications agree and between which the box moved little is their interpolation in time
    (``prob_source`` interpolated); every other row is classified, and equals the row of
    ``classify_between="every"`` (same boxes). The actor's clip (CREMA-D, happy) is where the
    classifications at two detections disagree (the expression changes)."""
    from ferbatch.models.load import load_models
    from ferbatch.vision.boxes import iou_matrix, match_boxes

    models = load_models(JobConfig(score_threshold=thr), threads=1)
    _, index = probe_video(clip)
    shard = Shard("eq", str(clip), 0, 0, 288 if clip == WOLFGANG else None, index)
    ref = process_shard(shard, models, settings=FrameSettings(row_threshold=thr)).faces
    got = process_shard(shard, models, settings=FrameSettings(detect_every=3, row_threshold=thr)).faces
    models.close()
    src = got.source
    assert set(src.tolist()) == {0, 2}
    last_frame = int(ref.frame_pos.max())
    full_frames = set(got.frame_pos[src == 0].tolist())
    assert all(f % 3 == 0 or f == last_frame for f in full_frames)  # one shot: every third frame, and the last
    det = {(int(f), int(t)): k for k, (f, t) in enumerate(zip(got.frame_pos, got.track_id, strict=True)) if src[k] == 0}
    interpolated = extrapolated = 0
    for k in np.flatnonzero(src == 2):
        f, tid = int(got.frame_pos[k]), int(got.track_id[k])
        f0 = f - f % 3
        f1 = min(f0 + 3, last_frame)
        assert (f0, tid) in det, "a tracked row whose track made no row at the last full detection"
        k0 = det[f0, tid]
        box0, lm0 = got.boxes[k0], got.landmarks[k0].reshape(5, 2)
        box, lm = got.boxes[k], got.landmarks[k].reshape(5, 2)
        if (f1, tid) in det:  # found again at the next full detection: interpolated
            k1 = det[f1, tid]
            w = (got.pts_ms[k] - got.pts_ms[k0]) / (got.pts_ms[k1] - got.pts_ms[k0])
            np.testing.assert_allclose(box, box0 + w * (got.boxes[k1] - box0), atol=0.05)
            np.testing.assert_allclose(lm, lm0 + w * (got.landmarks[k1].reshape(5, 2) - lm0), atol=0.05)
            assert got.scores[k] == pytest.approx(got.scores[k0] + w * (got.scores[k1] - got.scores[k0]), abs=1e-5)
            interpolated += 1
        elif got.scores[k] != pytest.approx(got.scores[k0]):  # towards a detection of the track below the row threshold
            assert thr < got.scores[k] < got.scores[k0]
        else:
            wh0, wh = box0[2:] - box0[:2], box[2:] - box[:2]
            np.testing.assert_allclose(lm, box[:2] + (lm0 - box0[:2]) / wh0 * wh, atol=0.05)
            extrapolated += 1
    assert interpolated > 10 * extrapolated, (interpolated, extrapolated)
    # probabilities (--classify-between changes, the default): a row between two detections of its
    # track that agree (same argmax, centre moved <= INTERPOLATE_MAX_MOTION of the box) takes their
    # interpolation; every other row is the classifier's, the same as with "every" on the same boxes
    from ferbatch.labels import argmax_known
    from ferbatch.vision.between import INTERPOLATE_MAX_MOTION

    models = load_models(JobConfig(score_threshold=thr), threads=1)
    every = process_shard(shard, models, settings=FrameSettings(detect_every=3, row_threshold=thr, classify_between="every")).faces
    models.close()
    np.testing.assert_array_equal(every.boxes, got.boxes)
    assert set(every.prob_source.tolist()) == {0}
    classified = got.prob_source == 0
    np.testing.assert_allclose(got.probs[classified], every.probs[classified], atol=1e-6)
    n_interp = 0
    for k in np.flatnonzero(src == 2):
        f, tid = int(got.frame_pos[k]), int(got.track_id[k])
        f0 = f - f % 3
        k0, k1 = det.get((f0, tid)), det.get((min(f0 + 3, last_frame), tid))
        agree = k0 is not None and k1 is not None
        if agree:
            b0, b1 = got.boxes[k0], got.boxes[k1]
            moved = np.hypot(*((b1[:2] + b1[2:]) - (b0[:2] + b0[2:])) / 2) / np.sqrt((b0[2] - b0[0]) * (b0[3] - b0[1]))
            agree = argmax_known(got.probs[[k0, k1]]).tolist() in ([0, 0], [1, 1], [2, 2], [3, 3], [4, 4], [5, 5], [6, 6], [7, 7])
            agree = agree and moved <= INTERPOLATE_MAX_MOTION
        assert got.prob_source[k] == int(agree), (f, tid)
        if agree:
            w = (got.pts_ms[k] - got.pts_ms[k0]) / (got.pts_ms[k1] - got.pts_ms[k0])
            np.testing.assert_allclose(got.probs[k], (1 - w) * got.probs[k0] + w * got.probs[k1], atol=1e-5)
            n_interp += 1
    assert n_interp > 0.3 * int((src == 2).sum()), n_interp
    ious, lost = [], 0
    for f in sorted(set(ref.frame_pos.tolist()) - full_frames):
        ia, ib = np.flatnonzero(ref.frame_pos == f), np.flatnonzero(got.frame_pos == f)
        m = match_boxes(ref.boxes[ia], got.boxes[ib], got.scores[ib])
        lost += int((m < 0).sum())
        ious += [float(iou_matrix(ref.boxes[ia[t] : ia[t] + 1], got.boxes[ib[j] : ib[j] + 1])[0, 0]) for j, t in enumerate(m) if t >= 0]
    assert lost <= 0.02 * len(ious) and np.median(ious) > 0.95, (lost, np.median(ious))


def test_the_interval_keeps_its_schedule_across_shards():
    """N = 5: full detections fall on the video's analysed-frame ranks 0, 5, 10, ... whatever the
    shard plan (plus each shard's first frame, which has no tracks yet), so 60-frame shards give
    the full detections of one pass and nearly its tracked rows (a shard's tracks start without a
    velocity: median IoU >= 0.98, labels equal on >= 99 %). The clip's first three planned shards
    (frames 0-215, starting at 0, 72 and 144: multiples of 24, its keyframes, not of 5) against one
    pass over the same frames. At N = 1 the rows are identical whatever the plan: that half is
    tests/test_pipeline.py::test_one_shard_and_many_shards_give_the_same_rows."""
    from ferbatch.faces import FaceBatch
    from ferbatch.media.shards import plan_shards
    from ferbatch.models.load import load_models
    from ferbatch.vision.boxes import iou_matrix

    # the graph's outputs and square crops: the labels' bar (>= 99 % equal) was set on them. The clip's faces sit
    # between happiness and sadness; at N = 5 the cut run's slightly different tracked boxes flip 1 of 472 labels
    # there, 4 with --align, 5 with --prior balanced (issue 31's defaults): the rows' geometry is what this checks
    models = load_models(JobConfig(prior="graph", align=False), threads=1)
    _, index = probe_video(WOLFGANG)
    n = 5
    shards = plan_shards("v", str(WOLFGANG), index, 60)[:3]
    starts = {s.start for s in shards}
    assert starts == {0, 72, 144}  # shard starts off the schedule: the schedule must not restart there
    one = process_shard(Shard("v", str(WOLFGANG), 0, 0, shards[-1].end, index), models, settings=FrameSettings(detect_every=n)).faces
    parts = [process_shard(s, models, settings=FrameSettings(detect_every=n)).faces for s in shards]
    models.close()
    cut = FaceBatch.merge(parts)
    assert {int(p.frame_pos[0]) for p in parts} == starts and cut.frame_pos.tolist() == one.frame_pos.tolist()
    full_one, full_cut = set(one.frame_pos[one.source == 0].tolist()), set(cut.frame_pos[cut.source == 0].tolist())
    assert full_one <= set(range(0, 216, 5)) and len(full_one) >= 40  # the video's schedule: ranks 0, 5, 10, ...
    assert full_cut == full_one | starts, sorted(full_cut ^ (full_one | starts))
    same_box = np.abs(cut.boxes - one.boxes).max(1) < 1e-3
    same_label = np.nanargmax(cut.probs, 1) == np.nanargmax(one.probs, 1)
    iou = np.array([iou_matrix(cut.boxes[k : k + 1], one.boxes[k : k + 1])[0, 0] for k in range(len(one.boxes))])
    # a shard's tracks start without a velocity: their predicted boxes differ a little at first
    on_schedule = np.isin(one.frame_pos, list(full_one))  # detected in both runs
    assert same_box[on_schedule].all() and not same_box[~on_schedule].all()
    assert np.median(iou) >= 0.98 and iou.min() >= 0.8 and same_label.mean() >= 0.99, (np.median(iou), iou.min(), same_label.mean())


def test_detect_every_default_follows_tracking():
    """The interval needs tracks: the default is DEFAULT_DETECT_EVERY with tracking and 1 without;
    asking for an interval without tracking is refused."""
    from ferbatch.config import DEFAULT_DETECT_EVERY

    assert JobConfig().detect_every == DEFAULT_DETECT_EVERY > 1
    assert JobConfig(track=False).detect_every == 1
    assert JobConfig().result_settings()["between"] == "tracked"
    with pytest.raises(ConfigError, match="needs tracking"):
        JobConfig(track=False, detect_every=3)
    with pytest.raises(ConfigError, match="--between"):
        JobConfig(between="kalman")
    from ferbatch.config import resolve_defaults

    # a manifest written before the keys existed: every frame detected, or windows between full detections
    assert resolve_defaults({})["detect_every"] == 1 and resolve_defaults({})["between"] == "tracked"
    assert resolve_defaults({"detect_every": 3})["between"] == "window"
    assert resolve_defaults({"detect_every": 3, "between": "tracked"})["between"] == "tracked"


def test_sample_fps_picks_frames_by_time(tmp_path, wolfgang_288):
    """5 frames per second of video: the first frame of every 200 ms bin, the same frames whatever
    the sharding, each standing for the time until the next; a rerun with another rate is refused."""
    info, index = probe_video(wolfgang_288)
    mask = sample_mask(index, 5)
    t = index.pts * float(index.time_base)
    expect = np.r_[True, np.floor(t[1:] * 5 + 1e-9) != np.floor(t[:-1] * 5 + 1e-9)]
    np.testing.assert_array_equal(mask, expect)
    spans = frame_spans_ms(index, mask)
    got = {}
    for sf in (0, 72):
        out = tmp_path / f"s{sf}"
        s = run_job(wolfgang_288, out, JobConfig(workers=1, sample_fps=5), use_ray=False, shard_frames=sf)
        assert s.ok == 1 and s.frames == int(mask.sum())
        ds = ferbatch.open(out)
        fr = ds.sql("SELECT frame_idx, span_ms FROM frames ORDER BY frame_idx").fetchall()
        got[sf] = [r[0] for r in fr]
        np.testing.assert_allclose([r[1] for r in fr], spans[mask])
        assert abs(sum(r[1] for r in fr) / 1000 - info.duration_s) < 0.1
        assert ds.sql("SELECT sample_fps FROM videos").fetchall()[0][0] == 5.0
        ds.close()
    assert got[0] == got[72] == np.flatnonzero(mask).tolist()
    assert abs(len(got[0]) / info.duration_s - 5) < 0.3
    with pytest.raises(ConfigError, match="sample_fps"):
        run_job(wolfgang_288, tmp_path / "s0", JobConfig(workers=1, sample_fps=2), use_ray=False)


def test_tracker_thresholds_follow_the_row_threshold(models):
    from ferbatch.vision.analysis import FrameAnalyzer

    assert TrackerConfig.for_rows(0.7) == TrackerConfig(high_score=0.7, low_score=pytest.approx(0.3))
    cfg = FrameSettings(row_threshold=0.5).tracker(models)
    assert cfg is not None and cfg.high_score == 0.5 and cfg.low_score == pytest.approx(0.1)
    a = FrameAnalyzer(models, tracker=FrameSettings().tracker(models))
    assert a.row_threshold == 0.7 and a.low == pytest.approx(0.3)  # the low stage is live: the detector is asked for 0.3


@pytest.fixture(scope="module")
def single_job(tmp_path_factory):
    """A default job over single_face.mp4 (72 frames), shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("single")
    run_job(SINGLE_FACE, out, JobConfig(workers=1), use_ray=False)
    return out


def test_landmarks_in_the_rows_and_in_analyze(single_job):
    """The faces table carries the detector's five points (inside the box, the person's right eye
    left of the left eye in the picture, the mouth below the eyes); ``ferbatch.analyze`` returns them."""
    ds = ferbatch.open(single_job)
    rows = ds.sql("SELECT x1, y1, x2, y2, landmarks FROM faces").fetchall()
    assert len(rows) == 72 and all(r[4] is not None and len(r[4]) == 10 for r in rows)
    for x1, y1, x2, y2, lm in rows:
        p = np.array(lm).reshape(5, 2)
        assert np.all((p[:, 0] > x1) & (p[:, 0] < x2) & (p[:, 1] > y1) & (p[:, 1] < y2)), (x1, y1, x2, y2, p)
        assert p[0, 0] < p[1, 0] and p[3:, 1].min() > p[:2, 1].max()
    ds.close()
    frame = read_frames(SINGLE_FACE)[0]
    faces = ferbatch.analyze(frame)
    assert faces.landmarks is not None and faces.landmarks.shape == (len(faces), 5, 2)
    assert faces.to_arrow()["landmarks"].type.list_size == 10


def test_every_surface_reports_one_track_emotion(single_job):
    """The tracks table, the rows' track_emotion, the summary and a whole-video timeline bin give the
    time-weighted mean of the probabilities (labels.weighted_emotion), on a real job; and a track
    whose probabilities say anger says anger everywhere, though most of its frames' labels say neutral
    (a synthetic track through the tracking pass and the same SQL)."""
    ds = ferbatch.open(single_job)
    faces = ds.sql("SELECT f.*, fr.span_ms FROM faces f JOIN frames fr USING (video_id, frame_idx) ORDER BY frame_idx").to_arrow_table()
    probs = np.stack([faces[f"prob_{e}"].to_numpy(zero_copy_only=False) for e in EMOTIONS], 1).astype(np.float32)
    _, expect = weighted_emotion(probs, faces["span_ms"].to_numpy())
    vid = faces["video_id"][0].as_py()
    assert ds.sql("SELECT dominant_emotion FROM tracks").fetchall() == [(expect,)]
    assert set(faces["track_emotion"].to_pylist()) == {expect}
    assert ds.summary()["dominant_emotion"].to_pylist() == [expect]
    tl = ds.timeline(vid, 3600.0, by_face=False).to_pylist()[0]
    assert EMOTIONS[int(np.argmax([tl[f"mean_prob_{e}"] or -1 for e in EMOTIONS]))] == expect
    ds.close()

    import duckdb

    from ferbatch.dataset.api import emotion_sql
    from ferbatch.job.tracking import track_faces
    from ferbatch.vision.track import TrackerConfig as TC

    n = 10
    p = np.full((n, 8), 0.02, np.float32)
    p[:6, 4], p[:6, 0] = 0.40, 0.45  # six frames: neutral by a hair over anger ...
    p[6:, 4], p[6:, 0] = 0.90, 0.02  # ... four frames: clearly anger; the track's time-weighted mean says anger, the label majority neutral
    faces_t = faces.slice(0, n).drop(["span_ms", "video_id"])
    for j, e in enumerate(EMOTIONS):
        faces_t = faces_t.set_column(faces_t.schema.get_field_index(f"prob_{e}"), f"prob_{e}", pa.array(p[:, j]))
    faces_t = faces_t.set_column(faces_t.schema.get_field_index("track_id"), "track_id", pa.array(np.zeros(n, np.int64)))
    fr = ds_frames = pa.table(
        {"frame_idx": faces_t["frame_idx"], "span_ms": pa.array(np.full(n, 40.0)), "shot_idx": pa.array(np.zeros(n, np.int32))}
    )
    tf, tracks = track_faces(faces_t, ds_frames, [{"shard_idx": 0}], TC())
    assert tracks["dominant_emotion"].to_pylist() == ["anger"] and set(tf["track_emotion"].to_pylist()) == {"anger"}
    means = ", ".join(f"sum(w * prob_{e}) / sum(w) AS mean_prob_{e}" for e in EMOTIONS)
    con = duckdb.connect()
    con.register("t", tf.append_column("w", fr["span_ms"]))
    assert con.sql(f"SELECT {emotion_sql()} FROM (SELECT {means} FROM t)").fetchall()[0][0] == "anger"
