"""The Python API: ferbatch.run (the CLI's defaults), ferbatch.analyze (one image), Dataset niceties."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import typer.main
from conftest import ASTRONAUT, MULTI_FACE, SINGLE_FACE

import ferbatch
from ferbatch.errors import ConfigError, OutputError
from ferbatch.labels import EMOTIONS


def test_run_has_the_cli_defaults_and_runs(tmp_path, capsys):
    from ferbatch.api import run
    from ferbatch.cli import app

    cli = {p.name: p.default for p in typer.main.get_command(app).commands["run"].params}
    assert inspect.signature(run).parameters["shard_frames"].default == cli["shard_frames"] == 1500
    s = ferbatch.run(SINGLE_FACE, tmp_path / "out", use_ray=False, workers=1)
    assert (s.videos, s.ok, s.frames, s.faces) == (1, 1, 72, 72)
    assert capsys.readouterr() == ("", "")  # standard error is not a terminal: no progress bar
    lines = repr(s).splitlines()  # a few readable lines, not one 600-character dataclass repr
    assert 4 <= len(lines) <= 8 and str(s) == repr(s), repr(s)
    assert lines[0] == "JobSummary: 1 video: 1 ok, 0 partial, 0 failed" and "72 frames, 72 faces" in lines[1], repr(s)
    from ferbatch.models.load import gpu_visible

    if not gpu_visible():  # a CPU machine: no list of the GPU packages it lacks
        assert "  backend: onnxruntime (no GPU)" in lines and max(map(len, lines)) <= 100, repr(s)
    with pytest.raises(ConfigError, match="unknown option shard_frame"):
        ferbatch.run(SINGLE_FACE, tmp_path / "out", use_ray=False, shard_frame=10)
    with pytest.raises(ConfigError, match="is a still image"):
        ferbatch.run(ASTRONAUT, tmp_path / "o2", use_ray=False)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(OutputError, match="not a ferbatch dataset"):
        ferbatch.run(SINGLE_FACE, tmp_path / "mine", use_ray=False)


def test_analyze_an_image_file_and_an_array():
    import cv2

    faces = ferbatch.analyze(MULTI_FACE)
    assert len(faces) == 5 and faces.image_size == (1000, 667)
    assert faces.boxes.dtype == np.float32 and faces.boxes.shape == (5, 4)
    assert faces.scores.dtype == np.float32 and faces.scores.shape == (5,) and np.all(np.diff(faces.scores) <= 0)
    assert faces.probs.dtype == np.float32 and faces.probs.shape == (5, 8)
    np.testing.assert_allclose(faces.probs.sum(1), 1.0, atol=1e-4)
    b = faces.boxes
    assert np.all((b[:, 0] < b[:, 2]) & (b[:, 1] < b[:, 3]) & (b >= 0).all(1) & (b[:, 2] <= 1000) & (b[:, 3] <= 667))
    assert all(e in EMOTIONS for e in faces.emotions) and faces.emotions.count("happiness") >= 4
    # the same image as an RGB array gives the same faces; gray arrays work too
    rgb = cv2.imread(str(MULTI_FACE))[:, :, ::-1]
    again = ferbatch.analyze(rgb)
    np.testing.assert_allclose(again.boxes, faces.boxes, atol=1e-3)
    assert len(ferbatch.analyze(rgb.mean(2).astype(np.uint8))) >= 1


def test_analyze_loads_the_models_once():
    from ferbatch.api import _models

    ferbatch.analyze(MULTI_FACE)
    before = _models.cache_info()
    ferbatch.analyze(MULTI_FACE)
    after = _models.cache_info()
    assert after.hits == before.hits + 1 and after.misses == before.misses


def test_faces_to_arrow_and_pandas():
    faces = ferbatch.analyze(MULTI_FACE)
    t = faces.to_arrow()
    assert t.num_rows == 5
    assert t.column_names[:9] == ["face_idx", "x1", "y1", "x2", "y2", "det_score", "emotion", "emotion_prob", "prob_neutral"]
    assert t.column("emotion").to_pylist() == list(faces.emotions)
    df = faces.to_pandas()
    assert list(df["emotion"]) == list(faces.emotions) and df.shape == (5, 17)


def test_analyze_refuses_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="nope.jpg | does not exist"):
        ferbatch.analyze(tmp_path / "nope.jpg")
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(ConfigError, match="bad.png | cannot be read as an image"):
        ferbatch.analyze(bad)
    with pytest.raises(ConfigError, match=r"shape \(4, 4, 2\)"):
        ferbatch.analyze(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ConfigError, match="dtype float64"):
        ferbatch.analyze(np.zeros((4, 4, 3)))


def test_dataset_repr_context_manager_and_pandas(tmp_path):
    ferbatch.run(SINGLE_FACE, tmp_path / "out", use_ray=False, workers=1)
    with ferbatch.open(tmp_path / "out") as ds:
        assert repr(ds) == f"<ferbatch.Dataset {str(tmp_path / 'out')!r}: 1 videos (1 ok), 72 face rows>"
        df = ds.summary().to_pandas()
        assert df.loc[0, "frames"] == 72
        assert ds.faces.df().shape[0] == 72  # DuckDB relation -> pandas
        one = ds.video_df("single_face")  # one video's rows for a notebook, in frame order, time in seconds
        assert one.shape[0] == 72 and list(one.columns[:3]) == ["t_s", "video_id", "frame_idx"]
        assert one["frame_idx"].is_monotonic_increasing and one["t_s"].iloc[-1] == ds.video_faces(str(SINGLE_FACE))["t_s"][-1].as_py()
    assert repr(ds).endswith("(closed)>")
    with pytest.raises(Exception):  # noqa: B017 - DuckDB's own "connection closed" error
        ds.summary()


def test_faces_to_supervision_and_its_extra(monkeypatch):
    """Faces.to_supervision(): supervision imported only when called; without it, the message names the extra."""
    import sys
    import tomllib
    import types

    from conftest import REPO

    probs = np.zeros((2, 8), np.float32)
    probs[0, 1], probs[1, 4] = 0.9, 0.6
    faces = ferbatch.api.Faces(
        boxes=np.float32([[1, 2, 30, 40], [50, 60, 90, 99]]),
        scores=np.float32([0.99, 0.8]),
        probs=probs,
        emotions=("happiness", "anger"),
        image_size=(100, 100),
        models={},
    )
    monkeypatch.setitem(sys.modules, "supervision", None)
    with pytest.raises(ImportError, match=r"pip install 'ferbatch\[supervision\]'"):
        faces.to_supervision()
    fake = types.ModuleType("supervision")
    fake.Detections = lambda **kw: kw  # what supervision.Detections is given
    monkeypatch.setitem(sys.modules, "supervision", fake)
    det = faces.to_supervision()
    np.testing.assert_array_equal(det["xyxy"], faces.boxes)
    np.testing.assert_array_equal(det["confidence"], faces.scores)
    assert det["class_id"].tolist() == [1, 4] and det["data"]["class_name"].tolist() == ["happiness", "anger"]
    np.testing.assert_allclose(det["data"]["emotion_prob"], [0.9, 0.6])
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(r.startswith("supervision") for r in extras["supervision"])
