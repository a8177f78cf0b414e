"""Detection on real images and frames; the in-graph NMS agrees with the NumPy fallback."""

import cv2
import numpy as np
import pytest
from conftest import ASTRONAUT, INTEL_2FACE, MULTI_FACE, WOLFGANG, read_frames
from hypothesis import given, settings
from hypothesis import strategies as st

from ferbatch.models.graphs import prepare_detector
from ferbatch.models.registry import load_registry, resolve_model_file
from ferbatch.models.runners.onnxruntime import OrtRunner
from ferbatch.vision.boxes import iou_matrix, nms
from ferbatch.vision.detect import Detector


def _rgb(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def detectors():
    spec = load_registry().get("ultraface-rfb-320")
    f = resolve_model_file(spec)
    graph = Detector(OrtRunner(prepare_detector(f, spec, in_graph_nms=True), threads=2, max_batch=8), spec, in_graph_nms=True)
    numpy = Detector(OrtRunner(prepare_detector(f, spec, in_graph_nms=False), threads=2, max_batch=8), spec, in_graph_nms=False)
    return graph, numpy


def test_astronaut_one_face_where_upstream_finds_it(detectors):
    d = detectors[0].detect([_rgb(ASTRONAUT)])
    assert len(d) == 1
    assert iou_matrix(np.array([178, 62, 269, 173], np.float32), d.boxes)[0, 0] > 0.8  # PROVENANCE.md sanity box
    assert d.scores[0] > 0.99


def test_in_graph_nms_equals_numpy_nms_on_real_frames(detectors):
    frames = read_frames(WOLFGANG)[::40] + read_frames(INTEL_2FACE)[::8] + [_rgb(MULTI_FACE)]
    a, b = (det.detect(frames) for det in detectors)
    assert len(a) == len(b) and len(a) > len(frames)
    np.testing.assert_array_equal(a.frame_pos, b.frame_pos)
    size = np.array([[f.shape[1], f.shape[0]] * 2 for f in frames], np.float32)[a.frame_pos]
    assert np.abs(a.boxes - b.boxes).max() / size.max() < 1e-3
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


def test_batch_of_frames_equals_one_at_a_time(detectors):
    frames = read_frames(INTEL_2FACE)[:10]
    batched = detectors[0].detect(frames)
    single = [detectors[0].detect([f]) for f in frames]
    assert len(batched) == sum(len(s) for s in single)
    np.testing.assert_allclose(batched.boxes, np.concatenate([s.boxes for s in single]), atol=1e-2)


def test_no_face_in_a_landscape(detectors):
    from conftest import DATA

    d = detectors[0].detect([_rgb(DATA / "face_detection_images/pyfeat/free-mountain-vector-01.jpg")])
    assert len(d) == 0


boxes_strategy = st.integers(1, 40).flatmap(
    lambda n: st.tuples(
        st.lists(st.tuples(*[st.floats(0, 100, allow_nan=False)] * 2, *[st.floats(1, 50, allow_nan=False)] * 2), min_size=n, max_size=n),
        st.lists(st.floats(0, 1, allow_nan=False, width=32), min_size=n, max_size=n),
    )
)


@settings(max_examples=200, deadline=None)
@given(boxes_strategy, st.floats(0.1, 0.9), st.floats(0.0, 0.9))
def test_numpy_nms_properties(data, iou_thr, score_thr):
    raw, scores = data
    xywh = np.array(raw, np.float32)
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
    scores = np.array(scores, np.float32)
    keep = nms(boxes, scores, score_thr, iou_thr, 10)
    assert len(keep) <= 10 and len(set(keep.tolist())) == len(keep)
    assert np.all(scores[keep] > score_thr)
    assert np.all(np.diff(scores[keep]) <= 0)  # sorted by score
    if len(keep) < 10:  # complete: every dropped candidate overlaps a kept box that scores at least as high
        kept = set(keep.tolist())
        for j in np.flatnonzero(scores > score_thr):
            if j not in kept:
                over = iou_matrix(boxes[j], boxes[keep])[0] > iou_thr
                assert np.any(over & (scores[keep] >= scores[j])), (j, keep)
    for i in range(len(keep)):
        assert np.all(iou_matrix(boxes[keep[i]], boxes[keep[i + 1 :]]) <= iou_thr + 1e-6)


@pytest.mark.parametrize("how", ["folded", "gather"])
def test_prepared_yunet_takes_rgb_and_equals_the_bgr_network(tmp_path, how):
    """The prepared uint8 graph takes RGB frames (a BGR network's first convolution has its input
    channels reversed, or a Gather in front when that cannot be folded): its raw outputs equal the
    registry's float32 graph fed the same frame in BGR."""
    import onnx

    from ferbatch.models.graph_input import fold_channel_reversal, prepend_uint8_input

    spec = load_registry().get("yunet-2023mar")
    f = resolve_model_file(spec)
    inp = spec.input
    img = cv2.resize(_rgb(ASTRONAUT), (inp.width, inp.height), interpolation=cv2.INTER_LINEAR)[None]
    ref = OrtRunner(prepare_detector(f, spec, in_graph_nms=False, uint8_input=False), threads=2)
    bgr = np.ascontiguousarray(img[..., ::-1].astype(np.float32).transpose(0, 3, 1, 2)) * (inp.scale / inp.std) - inp.mean / inp.std
    want = ref.infer({inp.name: bgr.astype(np.float32)})
    m = onnx.load(prepare_detector(f, spec, in_graph_nms=False, uint8_input=False))
    if how == "gather":  # a consumer that is no Conv: the reversal cannot be folded into weights
        for n in m.graph.node:
            n.input[:] = ["pre_id" if x == inp.name else x for x in n.input]
        m.graph.node.insert(0, onnx.helper.make_node("Identity", [inp.name], ["pre_id"]))
    assert fold_channel_reversal(m, inp.name) == how
    prepend_uint8_input(m, inp)
    onnx.save(m, tmp_path / "g.onnx")
    got = OrtRunner(tmp_path / "g.onnx", threads=2).infer({inp.name: img})
    for k, v in want.items():
        np.testing.assert_allclose(got[k], v, rtol=1e-4, atol=1e-4, err_msg=k)
    # and the cached prepared graph the Detector uses is the folded one: RGB in, same outputs
    prepared = OrtRunner(prepare_detector(f, spec, in_graph_nms=False), threads=2).infer({inp.name: img})
    for k, v in want.items():
        np.testing.assert_allclose(prepared[k], v, rtol=1e-4, atol=1e-4, err_msg=k)


def test_yunet_candidates_equal_decoding_every_prior():
    """The Detector decodes only YuNet's priors above the score threshold; its faces equal decoding
    every prior (OpenCV FaceDetectorYN's formulas, written out here) and running the same NMS."""
    from ferbatch.vision.detect import preprocess_frames

    spec = load_registry().get("yunet-2023mar")
    runner = OrtRunner(prepare_detector(resolve_model_file(spec), spec, in_graph_nms=False), threads=2, max_batch=8)
    det = Detector(runner, spec, in_graph_nms=False, score_threshold=0.05)  # low: many candidates per frame
    frames = [_rgb(MULTI_FACE)] * 2 + read_frames(WOLFGANG)[:6]
    got = det.detect(frames)
    x, scale = preprocess_frames(frames, spec.input, letterbox=True)
    out = runner.infer({spec.input.name: x})
    w, h = spec.input.width, spec.input.height
    boxes, scores, kps = [], [], []
    for s in (8, 16, 32):  # the registry's outputs.strides
        r, c = np.divmod(np.arange((h // s) * (w // s), dtype=np.float32), w // s)
        bb, kp = out[f"bbox_{s}"], out[f"kps_{s}"]
        cx, cy = (c + bb[..., 0]) * s, (r + bb[..., 1]) * s
        bw, bh = np.exp(bb[..., 2]) * s, np.exp(bb[..., 3]) * s
        boxes.append(np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1))
        scores.append(np.sqrt(np.clip(out[f"cls_{s}"][..., 0], 0, 1) * np.clip(out[f"obj_{s}"][..., 0], 0, 1)))
        kps.append(np.stack([(c[None, :, None] + kp[..., 0::2]) * s, (r[None, :, None] + kp[..., 1::2]) * s], -1))
    b, sc, k = np.concatenate(boxes, 1), np.concatenate(scores, 1), np.concatenate(kps, 1)
    want_pos, want_b, want_s, want_k = [], [], [], []
    for i, f in enumerate(frames):
        keep = nms(b[i], sc[i], 0.05, det.iou_threshold, det.max_faces)
        bi = np.clip(b[i, keep] * np.tile(scale[i], 2), 0, [f.shape[1], f.shape[0]] * 2)  # clipped to the frame, as the Detector does
        ok = ((bi[:, 2] - bi[:, 0]) >= 1) & ((bi[:, 3] - bi[:, 1]) >= 1)
        want_pos += [i] * int(ok.sum())
        want_b.append(bi[ok])
        want_s.append(sc[i, keep][ok])
        want_k.append((k[i, keep] * scale[i])[ok])
    assert len(got) > 8  # faces in every frame, so the comparison means something
    np.testing.assert_array_equal(got.frame_pos, want_pos)
    np.testing.assert_allclose(got.boxes, np.concatenate(want_b), rtol=0, atol=1e-3)
    np.testing.assert_array_equal(got.scores, np.concatenate(want_s))
    np.testing.assert_allclose(got.landmarks, np.concatenate(want_k), rtol=0, atol=1e-3)


def test_export_json_states_the_exported_detector_takes_rgb(tmp_path):
    """``ferbatch export`` writes the prepared graphs; export.json describes their input as it is
    (uint8 NHWC, the YuNet detector RGB, normalised in the graph), and the file behaves so: fed the
    RGB frame it equals the registry's BGR float network."""
    import json

    from ferbatch.config import JobConfig
    from ferbatch.models.export import export_models

    nms_meta = json.loads(
        (export_models(JobConfig(detector="yunet-2023mar"), "onnx", tmp_path / "nms")[0].parent / "export.json").read_text()
    )
    assert set(nms_meta["models"]["yunet-2023mar"]["outputs"]) == {"det_boxes", "det_scores", "det_landmarks"}
    assert "score_threshold" in nms_meta["models"]["yunet-2023mar"]["optional_inputs"]
    cfg = JobConfig(detector="yunet-2023mar", in_graph_nms=False)  # the raw outputs, to compare with the network's
    export_models(cfg, "onnx", tmp_path)
    meta = json.loads((tmp_path / "export.json").read_text())["models"]
    contract = meta["yunet-2023mar"]["input"]
    assert (contract["dtype"], contract["layout"], contract["color"], contract["channels"]) == ("uint8", "NHWC", "RGB", 3)
    assert next(m for m in meta.values() if m["kind"] == "classifier")["input"]["color"] == "GRAY"
    spec = load_registry().get("yunet-2023mar")
    img = cv2.resize(_rgb(ASTRONAUT), (contract["width"], contract["height"]))[None]
    got = OrtRunner(tmp_path / meta["yunet-2023mar"]["file"], threads=2).infer({contract["name"]: img})
    inp = spec.input
    ref = OrtRunner(prepare_detector(resolve_model_file(spec), spec, in_graph_nms=False, uint8_input=False), threads=2)
    bgr = (img[..., ::-1].astype(np.float32).transpose(0, 3, 1, 2) * (inp.scale / inp.std) - inp.mean / inp.std).astype(np.float32)
    for k, v in ref.infer({inp.name: bgr}).items():
        np.testing.assert_allclose(got[k], v, rtol=1e-4, atol=1e-4, err_msg=k)
