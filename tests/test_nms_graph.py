"""The in-graph post-processing (ONNX NonMaxSuppression -> fixed-size outputs) equals the NumPy
fallback on random inputs (property test), including boxes that overlap around the threshold."""

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto
from onnx import helper as oh

from ferbatch.models.graphs import DET_BOXES, DET_SCORES, OPSET, _append_nms
from ferbatch.models.registry import load_registry
from ferbatch.models.runners.onnxruntime import OrtRunner
from ferbatch.vision.detect import postprocess_raw

P, K = 60, 8


@pytest.fixture(scope="module")
def nms_graph(tmp_path_factory):
    """A graph that passes raw (scores, boxes) through the same appended post-processing."""
    spec = load_registry().get("ultraface-rfb-320")
    g = oh.make_graph(
        [oh.make_node("Identity", ["raw_scores"], ["scores"]), oh.make_node("Identity", ["raw_boxes"], ["boxes"])],
        "nms_only",
        [
            oh.make_tensor_value_info("raw_scores", TensorProto.FLOAT, ["N", P, 2]),
            oh.make_tensor_value_info("raw_boxes", TensorProto.FLOAT, ["N", P, 4]),
        ],
        [
            oh.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", P, 2]),
            oh.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", P, 4]),
        ],
    )
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", OPSET)], ir_version=8)
    _append_nms(m, spec, K, 0.5, 0.3)
    onnx.checker.check_model(m)
    path = tmp_path_factory.mktemp("nms") / "nms.onnx"
    onnx.save(m, path)
    return OrtRunner(path, threads=1)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 3))
def test_graph_nms_equals_numpy(nms_graph, seed, n):
    rng = np.random.default_rng(seed)
    # clustered boxes so that many pairs overlap near the IoU threshold
    centers = rng.uniform(0.2, 0.8, (n, 5, 2))[:, rng.integers(0, 5, P)]
    cxy = centers + rng.normal(0, 0.03, (n, P, 2))
    wh = rng.uniform(0.05, 0.2, (n, P, 2))
    boxes = np.concatenate([cxy - wh / 2, cxy + wh / 2], -1).astype(np.float32)
    face = rng.uniform(0, 1, (n, P)).astype(np.float32)
    scores = np.stack([1 - face, face], -1)
    out = nms_graph.infer({"raw_scores": scores, "raw_boxes": boxes})
    ref_b, ref_s = postprocess_raw(scores, boxes, 0.5, 0.3, K)
    np.testing.assert_allclose(out[DET_SCORES], ref_s, atol=1e-6)
    kept = ref_s > 0
    np.testing.assert_allclose(out[DET_BOXES][kept], ref_b[kept], atol=1e-6)
