"""ONNX preparation: batchable graphs, in-graph box decoding + NMS with fixed-size outputs.

The registry's files are exported for batch 1 (RFB-320: IR 4, opset 9, weights listed as graph
inputs). ``prepare_detector`` and ``prepare_classifier`` turn them into graphs with a symbolic
batch dimension ``N`` that both ONNX Runtime and TensorRT accept, and cache the result on disk
keyed by the source sha256 and the parameters, so workers never redo it.

Both prepared graphs take uint8 pixels ``(N, H, W, C)``, and do the
registry's normalisation ``(x * scale - mean) / std`` and the NHWC -> NCHW transpose inside the graph
(Cast, Mul, Add, Transpose prepended), so no float32 image maths runs in Python per frame
(``uint8_input=False`` keeps the registry's float32 NCHW input). The detector takes RGB whatever
its network was trained on: a BGR network's first convolution gets its input channels reversed
(:func:`fold_channel_reversal`), so frames go in as decoded, with no per-frame colour copy.

The detector post-processing appended here (recipe checked in ../shared/docs/DESIGN_NOTES.md
section 3.3; ONNX ``NonMaxSuppression`` is parsed by TensorRT into ``INMSLayer``) outputs
fixed-shape, zero-padded tensors:

    det_boxes  (N, K, 4) float32  x1 y1 x2 y2 normalised to 0..1
    det_scores (N, K)    float32  face score; 0 marks padding

Semantics, mirrored by :func:`ferbatch.vision.boxes.nms`: keep boxes with score > score_threshold,
suppress boxes with IoU > iou_threshold against a kept box, at most K per image, sorted by score.

onnx is imported here; onnxruntime and tensorrt are not.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np

from ferbatch.atomic import atomic_target
from ferbatch.errors import ModelError
from ferbatch.models.graph_input import fold_channel_reversal, prepend_uint8_input
from ferbatch.models.graph_shapes import make_batch_symbolic, make_hw_symbolic
from ferbatch.models.registry import ModelSpec, cache_dir
from ferbatch.vision.detect import DET_BOXES, DET_SCORES

__all__ = [
    "prepare_detector",
    "prepare_classifier",
    "prepend_uint8_input",
    "fold_channel_reversal",
    "ultraface_priors",
    "GRAPHS_VERSION",
    "DET_BOXES",
    "DET_SCORES",
]

GRAPHS_VERSION = 2  # bump when the preparation changes: it invalidates cached graphs
OPSET = 17  # safe for TensorRT 10/11 and ONNX Runtime (DESIGN_NOTES 1.1)

# UltraFace prior layout: vision/ssd/config/fd_config.py in Linzaer/Ultra-Light-Fast-Generic-Face-Detector-1MB
_MIN_BOXES = ((10, 16, 24), (32, 48), (64, 96), (128, 192, 256))
_STRIDES = (8, 16, 32, 64)
_CENTER_VARIANCE, _SIZE_VARIANCE = 0.1, 0.2


def ultraface_priors(width: int, height: int) -> np.ndarray:
    """SSD priors of UltraFace for an input of ``width`` x ``height`` pixels.

    Feature maps are ``ceil(size / stride)`` cells and centres ``(i + 0.5) / fm`` (not
    ``(i + 0.5) * stride / size``, which is wrong when size % stride != 0), as in upstream
    ``generate_priors``.

    Returns:
        (P, 4) float32 cx cy w h normalised to 0..1 (P = 4420 for 320x240), clipped to [0, 1].
    """
    pri = []
    for stride, min_boxes in zip(_STRIDES, _MIN_BOXES, strict=True):
        fw, fh = math.ceil(width / stride), math.ceil(height / stride)
        for j in range(fh):
            for i in range(fw):
                cx, cy = (i + 0.5) / fw, (j + 0.5) / fh
                for m in min_boxes:
                    pri.append([cx, cy, m / width, m / height])
    return np.clip(np.asarray(pri, np.float32), 0.0, 1.0)


def _cache_path(spec: ModelSpec, src_sha: str, params: dict) -> Path:
    key = json.dumps({"src": src_sha, "v": GRAPHS_VERSION, **params}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / "prepared" / f"{spec.name}-{digest}.onnx"


def _save_atomic(model, dst: Path) -> None:
    import onnx

    with atomic_target(dst, wrap_errors=False) as tmp:
        onnx.save(model, str(tmp))


def _load_at_opset(src: Path):
    import onnx
    from onnx import version_converter

    m = onnx.load(str(src))
    ver = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), OPSET)
    if ver < OPSET:
        m = version_converter.convert_version(m, OPSET)
    return m


def _append_nms(model, spec: ModelSpec, k: int, score_threshold: float, iou_threshold: float) -> None:
    """Append (optional) prior decoding + NonMaxSuppression + fixed-size padded outputs."""
    from onnx import TensorProto
    from onnx import helper as oh
    from onnx import numpy_helper as nph

    g = model.graph
    raw_scores, raw_boxes = spec.outputs["scores"], spec.outputs["boxes"]
    del g.output[:]

    def const(name, arr):
        g.initializer.append(nph.from_array(np.asarray(arr), name))

    def node(*a, **kw):
        g.node.append(oh.make_node(*a, **kw))

    i64 = lambda v: np.array(v, np.int64)
    const("pp_s0", i64([0]))
    const("pp_s1", i64([1]))
    const("pp_s2", i64([2]))
    const("pp_s4", i64([4]))
    const("pp_ax2", i64([2]))
    const("pp_k", i64([k]))
    const("pp_iou", np.array([iou_threshold], np.float32))
    const("pp_score", np.array([score_threshold], np.float32))
    const("pp_cols", i64([0, 2]))
    const("pp_four", i64([4]))
    corner = raw_boxes
    if not spec.boxes_decoded:  # SSD deltas -> corner boxes (upstream box_utils.convert_locations_to_boxes)
        pri = ultraface_priors(spec.input.width, spec.input.height)[None]
        const("pp_prior_xy", pri[..., :2])
        const("pp_prior_wh", pri[..., 2:])
        const("pp_cv", np.float32(_CENTER_VARIANCE))
        const("pp_sv", np.float32(_SIZE_VARIANCE))
        const("pp_half", np.float32(0.5))
        node("Slice", [raw_boxes, "pp_s0", "pp_s2", "pp_ax2"], ["pp_lxy"])
        node("Slice", [raw_boxes, "pp_s2", "pp_s4", "pp_ax2"], ["pp_lwh"])
        node("Mul", ["pp_lxy", "pp_cv"], ["pp_a"])
        node("Mul", ["pp_a", "pp_prior_wh"], ["pp_b"])
        node("Add", ["pp_b", "pp_prior_xy"], ["pp_cxy"])
        node("Mul", ["pp_lwh", "pp_sv"], ["pp_c"])
        node("Exp", ["pp_c"], ["pp_d"])
        node("Mul", ["pp_d", "pp_prior_wh"], ["pp_wh"])
        node("Mul", ["pp_wh", "pp_half"], ["pp_hwh"])
        node("Sub", ["pp_cxy", "pp_hwh"], ["pp_x1y1"])
        node("Add", ["pp_cxy", "pp_hwh"], ["pp_x2y2"])
        node("Concat", ["pp_x1y1", "pp_x2y2"], ["pp_corner"], axis=2)
        corner = "pp_corner"
    node("Slice", [raw_scores, "pp_s1", "pp_s2", "pp_ax2"], ["pp_face3"])  # (N, P, 1)
    node("Transpose", ["pp_face3"], ["pp_face_t"], perm=[0, 2, 1])  # (N, 1, P): NMS layout
    node("Squeeze", ["pp_face3", "pp_ax2"], ["pp_face"])  # (N, P)
    node("NonMaxSuppression", [corner, "pp_face_t", "pp_k", "pp_iou", "pp_score"], ["pp_sel"], center_point_box=0)
    node("Gather", ["pp_sel", "pp_cols"], ["pp_bi"], axis=1)  # (M, 2) batch, box
    node("Shape", ["pp_sel"], ["pp_selshape"])
    node("Slice", ["pp_selshape", "pp_s0", "pp_s1"], ["pp_m"])
    node("ConstantOfShape", ["pp_m"], ["pp_ones"], value=nph.from_array(np.array([1.0], np.float32)))
    node("Shape", ["pp_face"], ["pp_fshape"])
    node("ConstantOfShape", ["pp_fshape"], ["pp_zeros"], value=nph.from_array(np.array([0.0], np.float32)))
    node("ScatterND", ["pp_zeros", "pp_bi", "pp_ones"], ["pp_keep"])  # (N, P) 1 where kept
    node("Mul", ["pp_face", "pp_keep"], ["pp_kept"])
    node("TopK", ["pp_kept", "pp_k"], [DET_SCORES, "pp_idx"], axis=1, largest=1, sorted=1)  # (N, K)
    node("Unsqueeze", ["pp_idx", "pp_ax2"], ["pp_idx3"])
    node("Shape", ["pp_idx3"], ["pp_ishape"])
    node("Slice", ["pp_ishape", "pp_s0", "pp_s2"], ["pp_nk"])
    node("Concat", ["pp_nk", "pp_four"], ["pp_nk4"], axis=0)
    node("Expand", ["pp_idx3", "pp_nk4"], ["pp_idx4"])  # (N, K, 4)
    node("GatherElements", [corner, "pp_idx4"], [DET_BOXES], axis=1)  # (N, K, 4)
    g.output.extend(
        [
            oh.make_tensor_value_info(DET_BOXES, TensorProto.FLOAT, ["N", k, 4]),
            oh.make_tensor_value_info(DET_SCORES, TensorProto.FLOAT, ["N", k]),
        ]
    )


def prepare_detector(
    src: str | os.PathLike[str],
    spec: ModelSpec,
    *,
    in_graph_nms: bool = True,
    max_faces: int = 64,
    score_threshold: float | None = None,
    iou_threshold: float | None = None,
    src_sha256: str | None = None,
    precision: str = "fp32",
    uint8_input: bool = True,
) -> Path:
    """Make (or reuse from the cache) the batchable detector graph.

    Args:
        src: the registry's ONNX file (already sha256-checked).
        spec: its registry entry (family "ultraface"; YuNet only gets a symbolic batch).
        in_graph_nms: append decode + NMS with outputs det_boxes (N, K, 4) / det_scores (N, K);
            False keeps the raw outputs (scores (N, P, 2), boxes (N, P, 4)) for the NumPy fallback.
        max_faces: K, the fixed number of output slots per frame.
        score_threshold, iou_threshold: default to the registry entry's.
        src_sha256: the source hash when already known (skips hashing it again).
        precision: "fp32", or "fp16": the backbone converted to float16 with float32 inputs and
            outputs (``onnxruntime.transformers.float16``, keep_io_types), the appended
            post-processing kept in float32 (TensorRT 11 takes precision from the graph's types).
        uint8_input: input uint8 (N, h, w, C) RGB, normalised in the graph (:func:`prepend_uint8_input`;
            a BGR network's channels folded by :func:`fold_channel_reversal`); False keeps the
            registry's float32 (N, C, h, w) in the model's colour order, normalised by the caller.

    Returns:
        Path of the prepared ONNX file in the user cache.
    """
    from ferbatch.models.registry import sha256_file

    src = Path(src)
    score = spec.score_threshold if score_threshold is None else float(score_threshold)
    iou = spec.iou_threshold if iou_threshold is None else float(iou_threshold)
    nms = in_graph_nms and spec.nms_in_graph
    _check_precision(precision)
    params = {
        "kind": "detector",
        "nms": nms,
        "k": max_faces if nms else 0,
        "score": score if nms else 0,
        "iou": iou if nms else 0,
        "precision": precision,
        "uint8": uint8_input,
    }
    params.update({"dynamic_hw": True} if uint8_input and spec.input_max_side else {})  # older caches fixed H/W
    params.update({"rgb": True} if uint8_input else {})  # older caches took the model's colour order
    dst = _cache_path(spec, src_sha256 or sha256_file(src), params)
    if dst.is_file():
        return dst
    import onnx  # only on a cache miss: importing it costs about a second, a prepared graph needs none

    with _parsing(src, spec):
        m = _load_at_opset(src)
        make_batch_symbolic(m)
        if spec.input_max_side:
            make_hw_symbolic(m, spec.input.name)
        if uint8_input and spec.input.color == "BGR":
            fold_channel_reversal(m, spec.input.name)  # before fp16, which puts a Cast in front of the Conv
        if precision == "fp16":
            m = _to_fp16(m)
        if uint8_input:
            prepend_uint8_input(m, spec.input)
        if nms:
            _append_nms(m, spec, max_faces, score, iou)
        onnx.checker.check_model(m)
        m = onnx.shape_inference.infer_shapes(m)
    _save_atomic(m, dst)
    return dst


def prepare_classifier(
    src: str | os.PathLike[str], spec: ModelSpec, *, src_sha256: str | None = None, precision: str = "fp32", uint8_input: bool = True
) -> Path:
    """Make (or reuse) the classifier graph with a symbolic batch dimension.

    Args:
        precision: "fp32" or "fp16" (float16 inside, float32 input and output).
        uint8_input: input uint8 (N, h, w, C) crops, normalised in the graph; False keeps the
            registry's float32 (N, C, h, w) input.

    Returns:
        Path of the prepared ONNX file in the user cache.
    """
    from ferbatch.models.registry import sha256_file

    src = Path(src)
    _check_precision(precision)
    dst = _cache_path(spec, src_sha256 or sha256_file(src), {"kind": "classifier", "precision": precision, "uint8": uint8_input})
    if dst.is_file():
        return dst
    import onnx  # only on a cache miss (see prepare_detector)

    with _parsing(src, spec):
        m = onnx.load(str(src))
        make_batch_symbolic(m)
        if precision == "fp16":
            m = _to_fp16(m)
        if uint8_input:
            prepend_uint8_input(m, spec.input)
        onnx.checker.check_model(m)
    _save_atomic(m, dst)
    return dst


def _check_precision(precision: str) -> None:
    if precision not in ("fp32", "fp16"):
        from ferbatch.errors import ConfigError

        raise ConfigError(f"--precision | received {precision!r}; expected fp32 or fp16")


def _to_fp16(model):
    """float16 copy of a graph with float32 inputs/outputs (the converter inserts the casts).

    ``convert_float_to_float16`` ships inside the onnxruntime wheel (no extra dependency); on
    RFB-320 it changes scores by ~3e-4 (DESIGN_NOTES 1.1).
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16

    m = convert_float_to_float16(model, keep_io_types=True)
    _toposort(m.graph)  # the converter appends its input casts after their consumers
    return m


def _toposort(g) -> None:
    """Reorder ``g.node`` so every node comes after the producers of its inputs (Kahn's algorithm)."""
    available = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    pending = list(g.node)
    ordered = []
    while pending:
        rest = []
        for n in pending:
            if all(i in available for i in n.input):
                ordered.append(n)
                available.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ValueError(f"graph has a cycle or a missing input near node {rest[0].name or rest[0].op_type}")
        pending = rest
    del g.node[:]
    g.node.extend(ordered)


@contextlib.contextmanager
def _parsing(src: Path, spec: ModelSpec):
    """Turn parser/checker failures into a ModelError that names the file and gives the parser's words."""
    try:
        yield
    except (KeyError, IndexError) as e:  # a graph without the outputs/inputs the registry names
        raise ModelError(f"model {spec.name} file {src} | does not match its registry entry: missing {e}") from e
    except Exception as e:  # protobuf DecodeError, onnx ValidationError/InferenceError, converter errors
        raise ModelError(f"model {spec.name} file {src} | not a valid ONNX model: {type(e).__name__}: {e}") from e
