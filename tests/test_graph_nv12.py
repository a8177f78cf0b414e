"""NV12 frames into the detector graph (``ferbatch.models.graph_nv12``, issue 33's device-side
letterbox and colour conversion), run on ONNX Runtime's CPU provider against the host path
(``preprocess_frames`` on decoded pictures, the same prepared detector).

Frames: the 3-person walking clip scaled to 160x120 and 256x144 (scaled up: the border rows keep
their weights), 320x180 (padded, not resized), 640x360, 854x480 (its 480 rows resized to 288:
weights not exact in 11 bits), 1280x720 and 1920x1080 (resized to 512x288), converted to 4:2:0 by
OpenCV; NV12 = its luma, then U and V interleaved.

Mutations run against these tests (each made both comparison tests fail, then was restored): U and V swapped
in the interleaved plane; chroma upsampled bilinearly instead of repeated 2 x 2; no padding to the input size;
the luma offset 16 left out; (integer graph) the vertical pass rounded as OpenCV's scalar kernel
(``(b0 S0 + b1 S1 + 2^21) >> 22``) instead of its vector kernel; the weights' 0.5 rounding dropped; the rows' border weights zeroed as the columns' are.
"""

from __future__ import annotations

import av
import cv2
import numpy as np
import onnx
import pytest
from conftest import DATA

from ferbatch.colour import BT601_FULL, BT709, BT709_FULL
from ferbatch.config import JobConfig
from ferbatch.models.graph_nv12 import letterbox_sizes, nv12_detector, nv12_input_graph, prepare_nv12_detector
from ferbatch.models.load import prepare_graphs
from ferbatch.models.runners.onnxruntime import OrtRunner
from ferbatch.picture import YuvPicture
from ferbatch.vision.detect import preprocess_frames

SIZES = ((160, 120), (256, 144), (320, 180), (640, 360), (854, 480), (1280, 720), (1920, 1080))  # 854x480: weights not exact in 11 bits


def to_nv12(i420: np.ndarray, w: int, h: int) -> np.ndarray:
    """(3 h / 2, w) uint8 NV12 of an OpenCV I420 picture (the layout NVDEC decodes to)."""
    flat, q = i420.reshape(-1), h * w // 4
    u, v = flat[h * w : h * w + q].reshape(h // 2, w // 2), flat[h * w + q :].reshape(h // 2, w // 2)
    return np.concatenate([flat[: h * w].reshape(h, w), np.stack([u, v], -1).reshape(h // 2, w)])


@pytest.fixture(scope="module")
def batches(models):
    """Per size: (NV12 planes (F, 3h/2, w), pictures, the detector's input (w, h) for that size)."""
    with av.open(str(DATA / "videos_faces/intel_sample_videos_mp4/face-demographics-walking-and-pause.mp4")) as c:
        rgb = [f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(video=0)) if i % 10 == 0][:6]
    out = {}
    for w, h in SIZES:
        i420 = [cv2.cvtColor(cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2YUV_I420) for f in rgb]
        out[(w, h)] = (
            np.stack([to_nv12(x, w, h) for x in i420]),
            [YuvPicture.from_i420(x) for x in i420],
            models.detector.input_for((w, h)),
        )
    return out


def test_nv12_input_is_the_host_letterbox(models, batches, tmp_path):
    """The graph's letterboxed RGB is ``preprocess_frames``' of the same pictures bit for bit (OpenCV's
    fixed-point resize and conversion, in the graph's integers); padding zero."""
    path = tmp_path / "nv12.onnx"
    onnx.save(nv12_input_graph(), str(path))
    runner = OrtRunner(str(path), threads=1)
    for (w, h), (planes, pics, wh) in batches.items():
        want, _ = preprocess_frames(pics, models.detector.sized(wh).spec.input, letterbox=True)
        got = runner.infer({"planes": planes, **letterbox_sizes((w, h), wh)})["frames_rgb"]
        assert got.shape == want.shape and got.dtype == np.uint8, (w, h)
        diff = np.abs(got.astype(int) - want.astype(int))
        assert diff.max() == 0, ((w, h), diff.max(), (diff > 0).mean())


@pytest.mark.parametrize("matrix", [BT709, BT601_FULL, BT709_FULL])
def test_nv12_input_converts_every_matrix(models, batches, tmp_path, matrix):
    """Pictures tagged BT.709 or full range: the graph, fed the matrix's coefficients
    (``ferbatch.colour.fixed_point``), gives the host path's letterboxed RGB bit for bit (OpenCV's uint8
    ``cv2.transform`` in 10 fractional bits, in the graph's integers). Mutation: the rounding half (512) left
    out of the bias -> fails."""
    path = tmp_path / "nv12.onnx"
    onnx.save(nv12_input_graph(), str(path))
    runner = OrtRunner(str(path), threads=1)
    for w, h in ((640, 360), (1280, 720)):
        planes, pics, wh = batches[(w, h)]
        pics = [YuvPicture(p.y, p.u, p.v, matrix) for p in pics]
        want, _ = preprocess_frames(pics, models.detector.sized(wh).spec.input, letterbox=True)
        got = runner.infer({"planes": planes, **letterbox_sizes((w, h), wh, matrix)})["frames_rgb"]
        assert np.abs(got.astype(int) - want.astype(int)).max() == 0, (matrix, w, h)
        other = runner.infer({"planes": planes, **letterbox_sizes((w, h), wh)})["frames_rgb"]  # as BT.601: not the picture
        assert np.abs(other.astype(int) - want.astype(int)).max() > 2


def test_nv12_detector_finds_the_host_faces(models, batches):
    """NV12 planes through the prepared detector (the GPU backends' graph: decoding and NMS inside)
    give the host path's detections exactly (the same input: the same arithmetic after it); the score
    threshold stays an input a run can feed."""
    cfg = JobConfig(backend="onnxruntime")
    (spec, graph), _ = prepare_graphs(cfg, backend="onnxruntime-cuda")
    host = OrtRunner(str(graph), threads=1)
    both = OrtRunner(str(prepare_nv12_detector(graph, spec)), threads=1)
    assert "score_threshold" in both.optional_input_names
    low = {"score_threshold": np.array([0.5], np.float32)}
    for (w, h), (planes, pics, wh) in batches.items():
        x, scale = preprocess_frames(pics, models.detector.sized(wh).spec.input, letterbox=True)
        a = both.infer({"planes": planes, **letterbox_sizes((w, h), wh), **low})
        b = host.infer({spec.input.name: x, **low})
        keep = b["det_scores"] > spec.score_threshold
        assert keep.sum() >= len(pics), (w, h)  # every frame shows a face
        for k in ("det_scores", "det_boxes", "det_landmarks"):
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{k} {w}x{h}")


def test_nv12_sizes_and_inputs_are_checked(models):
    with pytest.raises(ValueError, match="even sides"):
        letterbox_sizes((641, 360), (512, 288))
    cfg = JobConfig(backend="onnxruntime")
    (spec, graph), _ = prepare_graphs(cfg, backend="onnxruntime-cuda")
    m = onnx.load(str(graph))
    with pytest.raises(ValueError, match="not uint8"):
        nv12_detector(m, "no_such_input")


def test_nv12_colour_conversion_is_opencvs_below_black(tmp_path):
    """Luma under 16 (footage outside the limited range) with strong chroma: the graph clamps Y - 16 at 0 as
    OpenCV's COLOR_YUV2RGB_NV12 does (without the clamp a dark red pixel came out 13 levels darker)."""
    rng = np.random.default_rng(0)
    w, h = 320, 180  # fits the 320x192 input: no resize, only conversion and padding
    y = rng.integers(0, 32, (h, w), dtype=np.uint8)
    uv = rng.choice(np.array([16, 128, 200, 240], np.uint8), (h // 2, w))
    planes = np.concatenate([y, uv])[None]
    path = tmp_path / "nv12.onnx"
    onnx.save(nv12_input_graph(), str(path))
    got = OrtRunner(str(path), threads=1).infer({"planes": planes, **letterbox_sizes((w, h), (320, 192))})["frames_rgb"][0]
    want = cv2.cvtColor(planes[0], cv2.COLOR_YUV2RGB_NV12)
    assert not got[h:].any()  # the padding
    assert np.array_equal(got[:h], want)
