"""Summary, timeline and moments equal numbers computed independently from the raw rows; the
annotated video and the report are what a person would look at."""

import math
from collections import Counter

import av
import cv2
import numpy as np
import pyarrow as pa
import pytest
from conftest import FACE_NOFACE, read_frames

import ferbatch
from ferbatch.dataset.schema import VIDEOS_SCHEMA, faces_table, frames_table
from ferbatch.dataset.store import LAYOUT, open_table
from ferbatch.dataset.writer import DatasetWriter
from ferbatch.faces import FaceBatch
from ferbatch.labels import EMOTIONS


@pytest.fixture(scope="module")
def face_noface_out(tmp_path_factory, _cache):
    from ferbatch.config import JobConfig
    from ferbatch.job import run_job

    out = tmp_path_factory.mktemp("face_noface")
    run_job(FACE_NOFACE, out, JobConfig(workers=1), use_ray=False)
    return out


def test_summary_equals_raw_rows(reference_wolfgang):
    row = ferbatch.open(reference_wolfgang).summary().to_pylist()[0]
    frames = open_table(reference_wolfgang, "frames")
    faces = open_table(reference_wolfgang, "faces")
    counts = frames["face_count"].to_numpy()
    emos = faces["emotion"].to_pylist()
    assert row["frames"] == len(counts) == 472
    assert row["frames_with_faces"] == int((counts > 0).sum())
    assert math.isclose(row["mean_faces_per_frame"], counts.mean())
    assert row["faces"] == len(emos)
    c = Counter(emos)
    for e in EMOTIONS:
        assert math.isclose(row[f"share_{e}"], c[e] / len(emos), abs_tol=1e-12)
    assert row["dominant_emotion"] == c.most_common(1)[0][0]


def test_timeline_equals_raw_rows(reference_wolfgang):
    t = ferbatch.open(reference_wolfgang).timeline("WolfgangLanger_Pexels.mp4", "1s").to_pylist()
    faces = open_table(reference_wolfgang, "faces").to_pylist()
    bins: dict = {}
    for f in faces:
        if f["track_id"] is not None:  # the video has tracks: the timeline goes per track
            bins.setdefault((math.floor(f["pts_ms"] / 1000), f["track_id"]), []).append(f)
    assert len(t) == len(bins) > 15
    for r in t:
        group = bins[(int(r["t_s"]), r["track_id"])]
        assert r["faces"] == len(group)
        for e in EMOTIONS[:7]:
            assert math.isclose(r[f"share_{e}"], sum(g["emotion"] == e for g in group) / len(group), abs_tol=1e-12)
            assert math.isclose(r[f"mean_prob_{e}"], np.mean([g[f"prob_{e}"] for g in group]), rel_tol=1e-5)


def _planted(root, surprise_frames):
    """A hand-built dataset: two 100-frame videos at 25 fps; video 'a' shows surprise (p=0.9) on
    ``surprise_frames``, neutral elsewhere; video 'b' never shows surprise. Written through the
    real writer (one commit, the manifest as its record)."""
    manifest: dict = {"layout": LAYOUT, "videos": {"a-00000001": {}, "b-00000002": {}}}
    cols = {f.name: [None, None] for f in VIDEOS_SCHEMA}
    cols.update(video_id=["a-00000001", "b-00000002"], path=["a.mp4", "b.mp4"], status=["ok", "ok"], frames=[100, 100], faces=[100, 100])
    with DatasetWriter(root, command="test", force=True, videos=lambda m: pa.table(cols, schema=VIDEOS_SCHEMA)) as writer:
        writer.start(manifest)
        for vid, hits in (("a-00000001", surprise_frames), ("b-00000002", range(0))):
            idx = np.arange(100)
            pts = idx * 40.0
            frames = frames_table(idx, pts, np.ones(100, np.int16), 0)
            probs = np.zeros((100, 8), np.float32)
            probs[:, 0] = 0.9
            probs[list(hits)] = [0.05, 0, 0.9, 0.05, 0, 0, 0, 0]
            probs[:, 7] = np.nan
            box = np.tile(np.float32([1, 1, 20, 20]), (100, 1))
            rows = FaceBatch(idx, box, np.ones(100, np.float32), probs=probs, pts_ms=pts, face_idx=np.zeros(100, np.int16))
            writer.stage(vid, {"frames": frames, "faces": faces_table(rows, 0)})
        writer.commit()
        writer.save()
    return root


def test_moments_finds_the_planted_span_and_nothing_else(tmp_path):
    ds = ferbatch.open(_planted(tmp_path, range(30, 60)))
    m = ds.moments("surprise", min_prob=0.8, min_duration="0.5s").to_pylist()
    assert len(m) == 1
    assert m[0]["path"] == "a.mp4" and m[0]["frames"] == 30
    assert math.isclose(m[0]["start_s"], 1.2) and math.isclose(m[0]["end_s"], 2.4)
    assert ds.moments("surprise", 0.8, "1.5s").num_rows == 0  # shorter than asked
    assert ds.moments("surprise", 0.95, "0.1s").num_rows == 0  # less probable than asked
    assert ds.moments("anger", 0.5, "0s").num_rows == 0


def test_annotated_video_matches_the_source(face_noface_out, tmp_path):
    from ferbatch.dataset.annotate import annotate_video

    dst = tmp_path / "annotated.mp4"
    n = annotate_video(FACE_NOFACE, face_noface_out, dst, crf=12)
    src = read_frames(FACE_NOFACE)
    ann = read_frames(dst)
    assert n == len(src) == len(ann)
    with av.open(str(FACE_NOFACE)) as a, av.open(str(dst)) as b:
        # variable timing: the average rate depends on the last frame's duration; timestamps must match exactly
        assert abs(float(a.streams.video[0].average_rate) / float(b.streams.video[0].average_rate) - 1) < 0.01
        ts_a = [f.time for f in a.decode(a.streams.video[0])]
        ts_b = [f.time for f in b.decode(b.streams.video[0])]
    np.testing.assert_allclose(ts_a, ts_b, atol=1e-3)
    frames = open_table(face_noface_out, "frames").sort_by("frame_idx")
    faces = open_table(face_noface_out, "faces").sort_by("frame_idx").to_pylist()
    f0 = faces[0]
    i = f0["frame_idx"]
    x1, y1, x2, y2 = (int(round(f0[k])) for k in ("x1", "y1", "x2", "y2"))
    edge = np.abs(ann[i][y1 + 1, x1:x2].astype(int) - src[i][y1 + 1, x1:x2].astype(int)).mean()
    assert edge > 30  # the box's top edge was drawn
    empty = [k for k, c in enumerate(frames["face_count"].to_pylist()) if c == 0]
    assert empty
    for k in empty[::10]:
        assert np.abs(ann[k].astype(int) - src[k].astype(int)).mean() < 3  # re-encoded, nothing drawn


def test_report_pngs_and_html(reference_wolfgang, tmp_path):
    from ferbatch.dataset.report import write_report

    index = write_report(reference_wolfgang, tmp_path / "report")
    html = index.read_text()
    pngs = sorted((tmp_path / "report").glob("*.png"))
    assert len(pngs) == 3  # timeline, distribution, tracks
    for p in pngs:
        assert p.name in html
        img = cv2.imread(str(p))
        assert img is not None and img.shape[0] > 200 and img.shape[1] > 400 and p.stat().st_size > 10_000
        assert img.std() > 20  # not a blank canvas
