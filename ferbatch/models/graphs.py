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

The detector post-processing appended (:mod:`ferbatch.models.graph_nms`; recipe checked in ../shared/docs/DESIGN_NOTES.md
section 3.3; ONNX ``NonMaxSuppression`` is parsed by TensorRT into ``INMSLayer``) outputs
fixed-shape, zero-padded tensors:

    det_boxes     (N, K, 4)    float32  x1 y1 x2 y2 normalised to 0..1 (of the input's W and H)
    det_scores    (N, K)       float32  face score; 0 marks padding
    det_landmarks (N, K, 5, 2) float32  YuNet only: x y of 5 landmarks, normalised likewise

and takes, besides the image, the optional input ``score_threshold`` (float32 (1,); its default,
the registry's or the caller's threshold, is an initializer of the same name: ONNX Runtime lets a
run override it, so ``Detector.detect(min_score=...)`` can lower it per call; TensorRT's parser
folds it into a constant, which stays the floor there).

UltraFace's priors are decoded (or baked into the file); YuNet's per-stride outputs are decoded in
the graph as OpenCV's ``FaceDetectorYN`` does, with the prior grid computed from the dynamic input
size (:func:`_yunet_decode`). Semantics, mirrored by :func:`ferbatch.vision.boxes.nms`: keep boxes
with score > score_threshold, suppress boxes with IoU > iou_threshold against a kept box, at most K
per image, sorted by score (YuNet's NMS runs on input-pixel boxes, as the NumPy path's does).

onnx is imported here; onnxruntime and tensorrt are not.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from ferbatch.atomic import atomic_target
from ferbatch.errors import ModelError
from ferbatch.models.graph_input import NCHW_TENSOR, fold_channel_reversal, prepend_uint8_input
from ferbatch.models.graph_nms import _append_nms, ultraface_priors
from ferbatch.models.graph_shapes import make_batch_symbolic, make_hw_symbolic
from ferbatch.models.registry import ModelSpec, cache_dir
from ferbatch.vision.detect import DET_BOXES, DET_LANDMARKS, DET_SCORES, SCORE_THRESHOLD

__all__ = [
    "prepare_detector",
    "prepare_classifier",
    "prepend_uint8_input",
    "fold_channel_reversal",
    "ultraface_priors",
    "GRAPHS_VERSION",
    "DET_BOXES",
    "DET_LANDMARKS",
    "DET_SCORES",
    "SCORE_THRESHOLD",
]

GRAPHS_VERSION = 3  # bump when the preparation changes: it invalidates cached graphs (3: YuNet NMS in the graph)
OPSET = 17  # safe for TensorRT 10/11 and ONNX Runtime (DESIGN_NOTES 1.1)


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
        spec: its registry entry (family "ultraface" or "yunet").
        in_graph_nms: append decode + NMS (:func:`_append_nms`) with outputs det_boxes (N, K, 4) /
            det_scores (N, K) (+ det_landmarks (N, K, 5, 2) for YuNet) and the optional input
            ``score_threshold`` (float32 (1,), default ``score_threshold``); False keeps the raw
            outputs (UltraFace scores (N, P, 2), boxes (N, P, 4); YuNet cls/obj/bbox/kps per
            stride) for the NumPy fallback.
        max_faces: K, the fixed number of output slots per frame.
        score_threshold, iou_threshold: default to the registry entry's; the score threshold is the
            default of the graph input ``score_threshold`` (a runner that feeds it may lower it).
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
            _append_nms(m, spec, max_faces, score, iou, image=NCHW_TENSOR if uint8_input else spec.input.name)
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
