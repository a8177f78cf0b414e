"""``--backend openvino``: the same prepared graphs on the OpenVINO runtime, parity with ONNX
Runtime on real frames, and ``ferbatch export --to openvino``."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import INTEL_3FACE, WOLFGANG, read_frames

pytest.importorskip("openvino")

from ferbatch.config import JobConfig
from ferbatch.labels import argmax_known
from ferbatch.live.infer import infer_images, split_by_frame
from ferbatch.models.load import load_models


@pytest.fixture(scope="module")
def ov_models(_cache):
    m = load_models(JobConfig(backend="openvino"), threads=2)
    yield m
    m.close()


@pytest.fixture(scope="module")
def frames():
    return read_frames(WOLFGANG)[::6] + read_frames(INTEL_3FACE)


def compare(a, b, frames):
    """Per frame: the same number of faces, boxes within 1 px; labels equal on a share of faces."""
    fa = split_by_frame(infer_images(a, frames), len(frames))
    fb = split_by_frame(infer_images(b, frames), len(frames))
    same, total = 0, 0
    for x, y in zip(fa, fb, strict=True):
        assert len(x.boxes) == len(y.boxes)
        if len(x.boxes):
            assert np.abs(x.boxes - y.boxes).max() <= 1.0
            same += int((argmax_known(x.probs) == argmax_known(y.probs)).sum())
            total += len(x.boxes)
    return same, total


def test_openvino_matches_onnxruntime_on_real_frames(models, ov_models, frames):
    assert ov_models.backend == "openvino" and ov_models.detector.runner.name.startswith("openvino:")
    same, total = compare(models, ov_models, frames)
    assert total >= len(frames) * 0.9
    assert same / total >= 0.99, f"{same}/{total} labels equal"


def test_export_to_openvino_ir_runs_like_the_onnx_graph(tmp_path, models, frames):
    from typer.testing import CliRunner

    from ferbatch.cli import app
    from ferbatch.models.runners.openvino import OvRunner

    r = CliRunner().invoke(app, ["export", "--to", "openvino", "--out", str(tmp_path / "ir")])
    assert r.exit_code == 0, r.output
    xmls = sorted((tmp_path / "ir").glob("*.xml"))
    assert len(xmls) == 2 and all(x.with_suffix(".bin").stat().st_size > 1000 for x in xmls)
    assert (tmp_path / "ir" / "export.json").is_file()
    # the IR, loaded by itself, gives the detector's boxes of the ONNX Runtime run
    det = next(x for x in xmls if x.stem == models.detector.spec.name)
    from ferbatch.vision.detect import Detector
    from ferbatch.vision.tiling import FrameSizedDetector

    d_ir = Detector(OvRunner(det, threads=2, max_batch=8), models.detector.spec)
    if isinstance(models.detector, FrameSizedDetector):  # the default YuNet: the input follows the frame on both sides
        d_ir = FrameSizedDetector(d_ir, max_side=models.detector.spec.input_max_side)
    a, b = models.detector.detect(frames[:16]), d_ir.detect(frames[:16])
    assert len(a) == len(b) > 0 and np.abs(a.boxes - b.boxes).max() <= 1.0


def test_export_refuses_an_unknown_target(tmp_path):
    from typer.testing import CliRunner

    from ferbatch.cli import app

    r = CliRunner().invoke(app, ["export", "--to", "tflite", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--to" in r.output
