"""YuNet's decoding + NMS inside the prepared graph equals the NumPy fallback (the reference,
OpenCV FaceDetectorYN's formulas in ``ferbatch.vision.decoders._decode_yunet`` + ``boxes.nms``): same
faces, same order, boxes and landmarks within 0.01 px, on real clips at several frame sizes (the
graph's input follows the frame: dynamic H/W), with the score threshold fed per call."""

import cv2
import numpy as np
import onnx
import pytest
from conftest import INTEL_2FACE, INTEL_3FACE, MULTI_FACE, WOLFGANG, read_frames

from ferbatch.faces import FaceBatch
from ferbatch.models.graphs import prepare_detector
from ferbatch.models.registry import load_registry, resolve_model_file
from ferbatch.models.runners.onnxruntime import OrtRunner
from ferbatch.vision.detect import DET_BOXES, DET_LANDMARKS, DET_SCORES, SCORE_THRESHOLD, Detector
from ferbatch.vision.tiling import FrameSizedDetector

SIZES = [(480, 270), (640, 360), (1280, 720)]
PX = 0.01  # boxes and landmarks agree within this many frame pixels


def _rgb(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def spec():
    return load_registry().get("yunet-frame")


@pytest.fixture(scope="module")
def graph_and_numpy(spec):
    """(graph NMS, NumPy NMS) detectors over yunet-frame, each wrapped to follow the frame size."""
    f = resolve_model_file(spec)
    out = []
    for nms in (True, False):
        runner = OrtRunner(prepare_detector(f, spec, in_graph_nms=nms), threads=2, max_batch=8)
        plain = Detector(runner, spec, in_graph_nms=nms)
        assert plain.in_graph_nms is nms
        out.append(FrameSizedDetector(plain, max_side=spec.input_max_side))
    return tuple(out)


@pytest.fixture(scope="module")
def clip_frames():
    """Real frames with 1-3 faces: every 40th of Wolfgang (640x360), every 8th of the two Intel clips
    (480x270), and the 5-face photo."""
    frames = read_frames(WOLFGANG)[::40] + read_frames(INTEL_2FACE)[::8] + read_frames(INTEL_3FACE)[::25]
    return frames + [_rgb(MULTI_FACE)]


def rows_differ(a: FaceBatch, b: FaceBatch, px: float = PX) -> str | None:
    """Why two detection sets are not the same rows (None when they are): frame, order, scores,
    boxes and landmarks within ``px`` pixels."""
    if len(a) != len(b):
        return f"{len(a)} faces against {len(b)}"
    if not np.array_equal(a.frame_pos, b.frame_pos):
        return "faces in different frames"
    if len(a) == 0:
        return None
    if np.abs(a.scores - b.scores).max() > 1e-6:
        return f"scores differ by {np.abs(a.scores - b.scores).max():.3g}"
    if np.abs(a.boxes - b.boxes).max() > px:
        return f"boxes differ by {np.abs(a.boxes - b.boxes).max():.3g} px"
    if (a.landmarks is None) != (b.landmarks is None):
        return "landmarks on one side only"
    if a.landmarks is not None and b.landmarks is not None and np.abs(a.landmarks - b.landmarks).max() > px:
        return f"landmarks differ by {np.abs(a.landmarks - b.landmarks).max():.3g} px"
    return None


@pytest.mark.parametrize("wh", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
@pytest.mark.parametrize("min_score", [None, 0.3], ids=["default", "low-stage"])
def test_graph_rows_equal_numpy_rows(graph_and_numpy, clip_frames, wh, min_score):
    graph, numpy_ = graph_and_numpy
    frames = [cv2.resize(f, wh, interpolation=cv2.INTER_AREA) for f in clip_frames]
    a = graph.detect(frames, min_score=min_score)
    b = numpy_.detect(frames, min_score=min_score)
    assert len(b) >= len(frames)  # faces in (nearly) every frame, so the comparison means something
    assert rows_differ(a, b) is None, rows_differ(a, b)
    if wh == (1280, 720):
        assert graph.input_for(wh) == (512, 288)  # the input followed the frame (dynamic H/W)


def test_low_stage_threshold_finds_more(graph_and_numpy, clip_frames):
    """min_score below the graph's default reaches the graph (its score_threshold input): weaker
    faces come back, as on the NumPy path; above it, fewer."""
    graph, numpy_ = graph_and_numpy
    hi, lo = graph.detect(clip_frames), graph.detect(clip_frames, min_score=0.05)
    assert len(lo) > len(hi) and lo.scores.min() <= graph.score_threshold
    assert rows_differ(lo, numpy_.detect(clip_frames, min_score=0.05)) is None
    strict = graph.detect(clip_frames, min_score=0.9)
    assert len(strict) < len(hi) and rows_differ(strict, numpy_.detect(clip_frames, min_score=0.9)) is None


def test_comparison_fails_on_a_wrong_graph(spec, clip_frames, tmp_path):
    """The comparison can fail: a graph whose grid is off by one column (the NumPy path's formula
    with c + 1), or with another IoU threshold, gives rows the comparison rejects."""
    f = resolve_model_file(spec)
    ref = FrameSizedDetector(Detector(OrtRunner(prepare_detector(f, spec, in_graph_nms=False), threads=2), spec, in_graph_nms=False))
    want = ref.detect(clip_frames)
    m = onnx.load(prepare_detector(f, spec, in_graph_nms=True))
    for n in m.graph.node:  # shift stride 8's column index by one prior
        if n.op_type == "Mod" and n.output[0] == "yn8_c":
            n.output[0] = "yn8_c0"
            m.graph.node.append(onnx.helper.make_node("Add", ["yn8_c0", "yn_one"], ["yn8_c"]))
    m = _toposorted(m)
    onnx.save(m, tmp_path / "shifted.onnx")
    shifted = FrameSizedDetector(Detector(OrtRunner(tmp_path / "shifted.onnx", threads=2), spec))
    assert rows_differ(shifted.detect(clip_frames), want) is not None
    loose = prepare_detector(f, spec, in_graph_nms=True, iou_threshold=0.9, score_threshold=0.3)
    other = FrameSizedDetector(Detector(OrtRunner(loose, threads=2), spec, iou_threshold=0.9))
    assert rows_differ(other.detect(clip_frames, min_score=0.3), ref.detect(clip_frames, min_score=0.3)) is not None


def _toposorted(m):
    from ferbatch.models.graphs import _toposort

    _toposort(m.graph)
    return m


def test_prepared_graph_contract_and_cache_key(spec):
    f = resolve_model_file(spec)
    with_nms, raw = prepare_detector(f, spec, in_graph_nms=True), prepare_detector(f, spec, in_graph_nms=False)
    assert with_nms != raw
    m = onnx.load(with_nms)
    assert [o.name for o in m.graph.output] == [DET_BOXES, DET_SCORES, DET_LANDMARKS]
    assert SCORE_THRESHOLD in {i.name for i in m.graph.input} and SCORE_THRESHOLD in {t.name for t in m.graph.initializer}
    assert prepare_detector(f, spec, in_graph_nms=True, max_faces=8) != with_nms
    assert prepare_detector(f, spec, in_graph_nms=True, score_threshold=0.5) != with_nms
    runner = OrtRunner(with_nms, threads=2)
    assert runner.input_names == (spec.input.name,) and runner.optional_input_names == (SCORE_THRESHOLD,)
    out = runner.infer({spec.input.name: np.zeros((2, 192, 320, 3), np.uint8)})  # no face: zero-size NMS selection
    assert out[DET_BOXES].shape == (2, 64, 4) and out[DET_LANDMARKS].shape == (2, 64, 5, 2)
    assert not out[DET_SCORES].any()


def test_small_input_with_fewer_priors_than_slots(spec, graph_and_numpy):
    """A 32x32 input has 21 priors, fewer than K = 64 slots: the graph pads (TopK needs K)."""
    graph, numpy_ = graph_and_numpy
    crop = cv2.resize(_rgb(MULTI_FACE), (32, 32))
    a = graph.sized((32, 32)).detect([crop], min_score=0.01)
    b = numpy_.sized((32, 32)).detect([crop], min_score=0.01)
    assert rows_differ(a, b) is None


def test_threshold_floor_without_the_input(spec, clip_frames):
    """A runner that cannot feed score_threshold (TensorRT folds it) keeps the graph's as the floor:
    a higher min_score is applied by the Detector and gives the NumPy path's rows."""
    f = resolve_model_file(spec)
    runner = OrtRunner(prepare_detector(f, spec, in_graph_nms=True), threads=2)
    runner.optional_input_names = ()  # as a TensorRT engine shows it
    det = FrameSizedDetector(Detector(runner, spec))
    ref = FrameSizedDetector(Detector(OrtRunner(prepare_detector(f, spec, in_graph_nms=False), threads=2), spec, in_graph_nms=False))
    assert rows_differ(det.detect(clip_frames, min_score=0.9), ref.detect(clip_frames, min_score=0.9)) is None
    assert len(det.detect(clip_frames, min_score=0.05)) == len(det.detect(clip_frames))  # the floor


def test_fixed_size_yunet_in_graph(clip_frames):
    """yunet-2023mar (640x640 registry input, no frame following) also decodes in the graph."""
    spec = load_registry().get("yunet-2023mar")
    f = resolve_model_file(spec)
    a = Detector(OrtRunner(prepare_detector(f, spec), threads=2, max_batch=8), spec).detect(clip_frames[:6])
    b = Detector(OrtRunner(prepare_detector(f, spec, in_graph_nms=False), threads=2, max_batch=8), spec, in_graph_nms=False)
    assert rows_differ(a, b.detect(clip_frames[:6])) is None


def test_check_engines_compares_yunet_graph_with_numpy():
    """check-engines' default reference runs YuNet's NumPy path; the candidate's in-graph NMS agrees
    to float noise, and a candidate that keeps other faces (a lower score threshold) fails."""
    from ferbatch.checks import check_engines
    from ferbatch.config import JobConfig

    rep = check_engines(JobConfig(in_graph_nms=False), JobConfig(), INTEL_2FACE, frames=16)
    assert rep.passed, rep
    assert "yunet-frame, NMS in NumPy" in rep.reference and "yunet-frame, NMS in the graph" in rep.candidate
    assert rep.faces_reference >= 30 and rep.min_iou > 0.9999 and rep.max_score_diff <= 1e-6
    bad = check_engines(JobConfig(in_graph_nms=False), JobConfig(score_threshold=0.05, iou_threshold=0.6), INTEL_2FACE, frames=16)
    assert not bad.passed and bad.unmatched > 0


def test_graphs_cached_before_the_score_threshold_input_are_not_reused(monkeypatch):
    """The cache key changed with the new post-processing (GRAPHS_VERSION 3): an UltraFace graph
    cached by version 2 (its parameters unchanged, no score_threshold input) is not picked up."""
    import ferbatch.models.graphs as graphs

    spec = load_registry().get("ultraface-rfb-320")
    f = resolve_model_file(spec)
    new = prepare_detector(f, spec)
    assert graphs._cache_path(spec, spec.sha256, _detector_params(spec)) == new  # the parameters below are the real ones
    monkeypatch.setattr(graphs, "GRAPHS_VERSION", 2)
    old_key = graphs._cache_path(spec, spec.sha256, _detector_params(spec))
    monkeypatch.undo()
    assert old_key != new and old_key.parent == new.parent
    assert SCORE_THRESHOLD in {i.name for i in onnx.load(new).graph.input}


def _detector_params(spec):
    """prepare_detector's cache parameters for the defaults (kept in step with graphs.prepare_detector)."""
    return {
        "kind": "detector",
        "nms": True,
        "k": 64,
        "score": spec.score_threshold,
        "iou": spec.iou_threshold,
        "precision": "fp32",
        "uint8": True,
        "rgb": True,
    }
