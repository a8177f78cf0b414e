"""The main job end to end: real clips, real models, real Ray; bad files recorded; reruns."""

import os
import shutil

import numpy as np
import pyarrow.compute as pc
import pytest
from conftest import FACE_NOFACE, INTEL_2FACE, NO_FACE, WOLFGANG, read_frames

from ferbatch.config import JobConfig
from ferbatch.dataset.query import connect, run_sql
from ferbatch.dataset.store import open_table
from ferbatch.job import run_job

CLIPS = {
    "pyfeat/WolfgangLanger_Pexels.mp4": WOLFGANG,
    "pyfeat/no_face.mp4": NO_FACE,
    "pyfeat/face_noface.mov": FACE_NOFACE,
    "intel/two faces=x.mp4": INTEL_2FACE,
}


@pytest.fixture(scope="module")
def job(ray_session, tmp_path_factory):
    src = tmp_path_factory.mktemp("videos")
    for rel, p in CLIPS.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, src / rel)
    (src / "broken").mkdir()
    (src / "broken/empty.mp4").write_bytes(b"")
    (src / "broken/notes.mp4").write_text("not a video at all\n" * 20)
    out = tmp_path_factory.mktemp("out")
    summary = run_job(src, out, JobConfig(workers=2), use_ray=True, shard_frames=200)
    return src, out, summary


def _by_video(out, table):
    t = open_table(out, table)
    videos = open_table(out, "videos").to_pylist()
    ids = {v["path"]: v["video_id"] for v in videos}
    return t, ids


def test_summary_counts_good_and_bad_files(job):
    _, out, s = job
    assert (s.videos, s.ok, s.failed) == (6, 4, 2)
    videos = {v["path"]: v for v in open_table(out, "videos").to_pylist()}
    assert "empty" in videos["broken/empty.mp4"]["error"]
    assert "not a video" in videos["broken/notes.mp4"]["error"]
    assert videos["pyfeat/WolfgangLanger_Pexels.mp4"]["status"] == "ok"


def test_wolfgang_every_frame_once_and_one_face(job):
    _, out, _ = job
    frames, ids = _by_video(out, "frames")
    f = frames.filter(pc.equal(frames["video_id"], ids["pyfeat/WolfgangLanger_Pexels.mp4"])).sort_by("frame_idx")
    assert f["frame_idx"].to_pylist() == list(range(472))
    assert np.all(np.diff(f["pts_ms"].to_numpy()) > 0)
    assert (f["face_count"].to_numpy() == 1).mean() >= 0.95
    assert len(set(f["shard_idx"].to_pylist())) > 1  # the video really was split into shards


def test_no_face_has_frames_and_no_faces(job):
    _, out, _ = job
    frames, ids = _by_video(out, "frames")
    faces = open_table(out, "faces")
    vid = ids["pyfeat/no_face.mp4"]
    assert frames.filter(pc.equal(frames["video_id"], vid)).num_rows == len(read_frames(NO_FACE))
    assert faces.filter(pc.equal(faces["video_id"], vid)).num_rows == 0


def test_face_noface_frame_count_and_faces_then_none(job):
    _, out, _ = job
    frames, ids = _by_video(out, "frames")
    f = frames.filter(pc.equal(frames["video_id"], ids["pyfeat/face_noface.mov"])).sort_by("frame_idx")
    assert f.num_rows == len(read_frames(FACE_NOFACE))
    counts = f["face_count"].to_numpy()
    assert counts[: len(counts) // 4].mean() > 0.9 and counts[-len(counts) // 4 :].mean() < 0.1


def test_two_faces_in_most_intel_frames(job):
    _, out, _ = job
    frames, ids = _by_video(out, "frames")
    f = frames.filter(pc.equal(frames["video_id"], ids["intel/two faces=x.mp4"]))
    assert (f["face_count"].to_numpy() == 2).mean() > 0.8


def test_faces_rows_are_consistent(job):
    _, out, _ = job
    con = connect(out)
    bad = run_sql(
        con,
        """
        SELECT count(*) FROM faces f JOIN frames fr USING (video_id, frame_idx)
        WHERE f.x2 <= f.x1 OR f.y2 <= f.y1 OR f.face_idx >= fr.face_count
           OR f.emotion_prob <> greatest(f.prob_neutral, f.prob_happiness, f.prob_surprise, f.prob_sadness, f.prob_anger,
                                          f.prob_disgust, f.prob_fear, coalesce(f.prob_contempt, 0))
           OR abs(f.prob_neutral + f.prob_happiness + f.prob_surprise + f.prob_sadness + f.prob_anger + f.prob_disgust
                  + f.prob_fear + coalesce(f.prob_contempt, 0) - 1) > 1e-3""",
    ).fetchall()[0][0]
    assert bad == 0
    per_frame = run_sql(
        con,
        "SELECT count(*) FROM (SELECT video_id, frame_idx, count(*) n FROM faces GROUP BY ALL) a "
        "JOIN frames b USING (video_id, frame_idx) WHERE a.n <> b.face_count",
    ).fetchall()[0][0]
    assert per_frame == 0
    # face_idx 0 is the highest detector score of its frame, and the order follows the score
    misordered = run_sql(
        con,
        "SELECT count(*) FROM faces a JOIN faces b USING (video_id, frame_idx) WHERE a.face_idx < b.face_idx AND a.det_score < b.det_score",
    ).fetchall()[0][0]
    assert misordered == 0
    multi = run_sql(con, "SELECT count(*) FROM frames WHERE face_count >= 2").fetchall()[0][0]
    assert multi > 10  # the check above had frames to bite on
    types = dict(run_sql(con, "SELECT column_name, column_type FROM (DESCRIBE faces)").fetchall())
    assert types["video_id"] == "VARCHAR"


def test_rerun_skips_done_videos_and_reprocessing_does_not_duplicate(job, ray_session):
    src, out, first = job
    before = {t: open_table(out, t).num_rows for t in ("faces", "frames")}
    again = run_job(src, out, JobConfig(workers=2), use_ray=True, shard_frames=200)
    assert again.skipped == 4 and again.frames == 0  # failed files are retried, done ones skipped
    st = os.stat(src / "pyfeat/WolfgangLanger_Pexels.mp4")
    os.utime(src / "pyfeat/WolfgangLanger_Pexels.mp4", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    touched = run_job(src, out, JobConfig(workers=2), use_ray=True, shard_frames=200)
    assert touched.skipped == 4 and touched.frames == 0  # identity is the content: a new mtime changes nothing
    with open(src / "pyfeat/WolfgangLanger_Pexels.mp4", "ab") as f:  # the same path, other bytes: reprocessed in place
        f.write(b"\0" * 4096)
    third = run_job(src, out, JobConfig(workers=2), use_ray=True, shard_frames=100)
    assert third.frames == 472 and third.skipped == 3
    after = {t: open_table(out, t).num_rows for t in ("faces", "frames")}
    assert after == before
    assert open_table(out, "videos").num_rows == 6
