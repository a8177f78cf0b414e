"""Bad and unusual inputs, generated from the real clips: each is processed correctly or recorded
with an error a user understands; the rest of the job completes; nothing escapes OUT_DIR."""

from pathlib import Path

import badinputs
import numpy as np
import pyarrow.compute as pc
import pytest
from typer.testing import CliRunner

from ferbatch.cli import app
from ferbatch.dataset.store import open_table

FAILED = {  # case -> words the recorded error must contain
    "zero-byte": "empty",
    "text": "a text file, not a video",
    "jpeg renamed": "still image",
    "audio only": "no video stream",
    "unknown codec": "decod",
    "cover art only": "only a cover picture",
    "moov missing": "without its index (moov atom)",
    "typescript": "a text file",
}
OK = ["rotated 90", "variable frame rate", "single frame", "4K", "grayscale", "10-bit yuv444", "17x9", "odd path", "animated gif"]


@pytest.fixture(scope="module")
def bad_job(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    cases = badinputs.build(root / "in")
    out = root / "out"
    res = CliRunner().invoke(app, ["run", str(root / "in"), "--out", str(out), "--no-ray", "-q"])
    videos = {v["path"]: v for v in open_table(out, "videos").to_pylist()}
    rel = {name: p.relative_to(root / "in").as_posix() for name, p in cases.items()}
    return res, out, videos, rel


def _frames(out, vid):
    t = open_table(out, "frames")
    return t.filter(pc.equal(t["video_id"], vid)).sort_by("frame_idx")


def _faces(out, vid):
    t = open_table(out, "faces")
    return t.filter(pc.equal(t["video_id"], vid))


def test_exit_status_and_summary_count_failures(bad_job):
    res, _, videos, _ = bad_job
    assert res.exit_code == 1, res.output
    assert sum(v["status"] == "failed" for v in videos.values()) == len(FAILED)
    assert "failed" in res.output and str(len(FAILED)) in res.output
    assert len(videos) == len(FAILED) + len(OK) + 1  # + truncated; the symlink loop added nothing


@pytest.mark.parametrize("case", sorted(FAILED))
def test_bad_file_recorded_with_its_cause(bad_job, case):
    _, _, videos, rel = bad_job
    v = videos[rel[case]]
    assert v["status"] == "failed" and FAILED[case] in v["error"], v


def test_truncated_keeps_decodable_frames_and_is_partial(bad_job):
    _, out, videos, rel = bad_job
    v = videos[rel["truncated"]]
    assert v["status"] == "partial" and "truncated" in v["error"]
    f = _frames(out, v["video_id"])
    assert 100 < f.num_rows < 472 and f["frame_idx"].to_pylist() == list(range(f.num_rows))


@pytest.mark.parametrize("case", OK)
def test_unusual_but_valid_inputs_are_processed(bad_job, case):
    _, out, videos, rel = bad_job
    v = videos[rel[case]]
    assert v["status"] == "ok", v
    assert _frames(out, v["video_id"]).num_rows == v["frames"] > 0


def test_rotation_is_applied(bad_job):
    _, out, videos, rel = bad_job
    v = videos[rel["rotated 90"]]
    faces = _faces(out, v["video_id"])
    assert faces.num_rows >= 20  # the face is upright again, so the detector finds it
    assert (v["width"], v["height"]) == (640, 360)  # stored 360x640, displayed 640x360
    assert pc.max(faces["x2"]).as_py() > 360 and pc.max(faces["y2"]).as_py() <= 360


def test_vfr_timestamps_follow_pts(bad_job):
    _, out, videos, rel = bad_job
    ts = _frames(out, videos[rel["variable frame rate"]]["video_id"])["pts_ms"].to_numpy()
    assert sorted(set(np.round(np.diff(ts)).astype(int).tolist())) == [42, 104]


def test_4k_boxes_are_in_source_pixels(bad_job):
    _, out, videos, rel = bad_job
    faces = _faces(out, videos[rel["4K"]]["video_id"])
    assert faces.num_rows == 3 and pc.min(pc.subtract(faces["x2"], faces["x1"])).as_py() > 500


def test_no_path_escapes_the_output_directory(bad_job):
    _, out, videos, _ = bad_job
    for p in Path(out).rglob("*"):
        assert p.resolve().is_relative_to(Path(out).resolve())
    for vid in (v["video_id"] for v in videos.values()):
        assert vid == Path(vid).name and "=" not in vid and not vid.startswith(".")


def test_directory_without_videos(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "readme.txt").write_text("nothing here")
    res = CliRunner().invoke(app, ["run", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--no-ray"])
    assert res.exit_code == 2 and "no video files" in res.output


def test_output_directory_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    from conftest import SINGLE_FACE

    res = CliRunner().invoke(app, ["run", str(SINGLE_FACE), "--out", str(blocker / "out"), "--no-ray"])
    assert res.exit_code == 2 and "cannot create the folder: Not a directory" in res.output
