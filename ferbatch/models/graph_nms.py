"""Detector post-processing inside the prepared graph: prior decoding (UltraFace's SSD priors,
YuNet's per-stride grid from the dynamic input size), ONNX ``NonMaxSuppression`` and fixed-size,
zero-padded outputs (the contract of :mod:`ferbatch.vision.detect`: ``det_boxes``, ``det_scores``,
``det_landmarks``; optional input ``score_threshold``). Used by :func:`ferbatch.models.graphs.prepare_detector`;
onnx is imported, nothing else. Recipe and TensorRT notes: ../shared/docs/DESIGN_NOTES.md section 3.
"""

from __future__ import annotations

import math

import numpy as np

from ferbatch.specs import ModelSpec
from ferbatch.vision.decoders import UltraFaceDecoder, YuNetDecoder
from ferbatch.vision.detect import DET_BOXES, DET_LANDMARKS, DET_SCORES, SCORE_THRESHOLD

__all__ = ["ultraface_priors"]

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


def _append_nms(model, spec: ModelSpec, k: int, score_threshold: float, iou_threshold: float, *, image: str | None = None) -> None:
    """Append prior decoding (when the file's boxes need it), ONNX ``NonMaxSuppression`` and
    fixed-size zero-padded outputs to a detector graph (edited in place; its outputs replaced).

    Args:
        model: the detector's ONNX ModelProto, opset >= 10 (``OPSET``), batch dimension symbolic.
        spec: its registry entry: UltraFace outputs ``scores`` (N, P, 2) softmaxed and ``boxes``
            (N, P, 4) (corner form 0..1, or SSD deltas when not ``boxes_decoded``); YuNet outputs
            ``cls_s``, ``obj_s`` (N, P_s, 1), ``bbox_s`` (N, P_s, 4), ``kps_s`` (N, P_s, 10) per stride s.
        k: K, output slots per image (any K: fewer candidates than K are padded with zeros).
        score_threshold: the default of the graph input ``score_threshold`` (float32 (1,); an
            initializer of the same name, so ONNX Runtime may override it per run while parsers
            that fold initializers, TensorRT's, take the default as a constant).
        iou_threshold: suppression IoU (built in).
        image: YuNet only: the (N, 3, H, W) float32 tensor the network reads, whose dynamic H and W
            give the prior grid (Shape/Range in the graph, so the input may follow the frame).

    Outputs: ``det_boxes`` (N, K, 4) float32 x1 y1 x2 y2 normalised to 0..1 (YuNet: input pixels
    divided by the input's W and H), ``det_scores`` (N, K) float32 descending, 0 marks padding (a
    padding slot's boxes and landmarks are those of some prior: ignore them), and for YuNet
    ``det_landmarks`` (N, K, 5, 2) float32 x y normalised likewise.

    Raises:
        ValueError: a YuNet spec without ``image``, or a decoder with no in-graph form.
    """
    from onnx import TensorProto
    from onnx import helper as oh
    from onnx import numpy_helper as nph

    g = model.graph
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
    const("pp_cols", i64([0, 2]))
    # the score threshold: a graph input with a default (ONNX IR >= 4: an initializer of the same name)
    const(SCORE_THRESHOLD, np.array([score_threshold], np.float32))
    g.input.append(oh.make_tensor_value_info(SCORE_THRESHOLD, TensorProto.FLOAT, [1]))
    extra = None
    if not isinstance(spec.decoder, UltraFaceDecoder | YuNetDecoder):  # each decoder's graph form is written out below
        raise ValueError(f"_append_nms | {spec.name}: decoder {spec.decoder!r} has no in-graph form")
    if isinstance(spec.decoder, YuNetDecoder):
        if image is None:
            raise ValueError(f"_append_nms | {spec.name}: YuNet needs the image tensor for its prior grid")
        corner, face3, extra = _yunet_decode(g, spec, image, const, node)
    else:
        raw_scores, corner = spec.outputs["scores"], spec.outputs["boxes"]
        if not spec.boxes_decoded:  # SSD deltas -> corner boxes (upstream box_utils.convert_locations_to_boxes)
            pri = ultraface_priors(spec.input.width, spec.input.height)[None]
            const("pp_prior_xy", pri[..., :2])
            const("pp_prior_wh", pri[..., 2:])
            const("pp_cv", np.float32(_CENTER_VARIANCE))
            const("pp_sv", np.float32(_SIZE_VARIANCE))
            const("pp_half", np.float32(0.5))
            node("Slice", [corner, "pp_s0", "pp_s2", "pp_ax2"], ["pp_lxy"])
            node("Slice", [corner, "pp_s2", "pp_s4", "pp_ax2"], ["pp_lwh"])
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
        face3 = "pp_face3"
    node("Transpose", [face3], ["pp_face_t"], perm=[0, 2, 1])  # (N, 1, P): NMS layout
    node("Squeeze", [face3, "pp_ax2"], ["pp_face"])  # (N, P)
    node("NonMaxSuppression", [corner, "pp_face_t", "pp_k", "pp_iou", SCORE_THRESHOLD], ["pp_sel"], center_point_box=0)
    node("Gather", ["pp_sel", "pp_cols"], ["pp_bi"], axis=1)  # (M, 2) batch, box
    node("Shape", ["pp_sel"], ["pp_selshape"])
    node("Slice", ["pp_selshape", "pp_s0", "pp_s1"], ["pp_m"])
    node("ConstantOfShape", ["pp_m"], ["pp_ones"], value=nph.from_array(np.array([1.0], np.float32)))
    node("Shape", ["pp_face"], ["pp_fshape"])
    node("ConstantOfShape", ["pp_fshape"], ["pp_zeros"], value=nph.from_array(np.array([0.0], np.float32)))
    node("ScatterND", ["pp_zeros", "pp_bi", "pp_ones"], ["pp_keep"])  # (N, P) 1 where kept
    node("Mul", ["pp_face", "pp_keep"], ["pp_kept"])
    # K zero-score slots appended, so TopK has K candidates even when P < K (a small YuNet input)
    node("Slice", ["pp_fshape", "pp_s0", "pp_s1"], ["pp_n"])
    node("Concat", ["pp_n", "pp_k"], ["pp_nk_pad"], axis=0)
    node("ConstantOfShape", ["pp_nk_pad"], ["pp_pad"], value=nph.from_array(np.array([0.0], np.float32)))
    node("Concat", ["pp_kept", "pp_pad"], ["pp_kept_pad"], axis=1)  # (N, P + K)
    node("TopK", ["pp_kept_pad", "pp_k"], [DET_SCORES, "pp_idx"], axis=1, largest=1, sorted=1)  # (N, K)
    # a pad slot's index (>= P) points at the last prior: its score says 0, its rows are not read
    node("Slice", ["pp_fshape", "pp_s1", "pp_s2"], ["pp_p"])
    node("Sub", ["pp_p", "pp_s1"], ["pp_plast"])
    node("Min", ["pp_idx", "pp_plast"], ["pp_idxc"])
    node("Unsqueeze", ["pp_idxc", "pp_ax2"], ["pp_idx3"])
    node("Shape", ["pp_idx3"], ["pp_ishape"])
    node("Slice", ["pp_ishape", "pp_s0", "pp_s2"], ["pp_nk"])

    def gather(src: str, width: int, dst: str) -> None:
        """dst (N, K, width) = the rows of src (N, P, width) at the kept indices."""
        const(f"pp_w{width}", i64([width]))
        node("Concat", ["pp_nk", f"pp_w{width}"], [f"pp_nkw{width}"], axis=0)
        node("Expand", ["pp_idx3", f"pp_nkw{width}"], [f"pp_idxw{width}"])  # (N, K, width)
        node("GatherElements", [src, f"pp_idxw{width}"], [dst], axis=1)

    if extra is None:
        gather(corner, 4, DET_BOXES)
    else:
        gather(corner, 4, "pp_box_px")
        gather(extra, 10, "pp_lm_px")
        node("Div", ["pp_box_px", "yn_wh4"], [DET_BOXES])  # input pixels -> 0..1
        const("pp_lm_shape", i64([0, 0, 5, 2]))
        node("Reshape", ["pp_lm_px", "pp_lm_shape"], ["pp_lm52"])
        node("Div", ["pp_lm52", "yn_wh2"], [DET_LANDMARKS])
    g.output.extend(
        [
            oh.make_tensor_value_info(DET_BOXES, TensorProto.FLOAT, ["N", k, 4]),
            oh.make_tensor_value_info(DET_SCORES, TensorProto.FLOAT, ["N", k]),
        ]
    )
    if extra is not None:
        g.output.append(oh.make_tensor_value_info(DET_LANDMARKS, TensorProto.FLOAT, ["N", k, 5, 2]))


def _yunet_decode(g, spec: ModelSpec, image: str, const, node) -> tuple[str, str, str]:
    """Append YuNet's prior decoding; returns the names of corner boxes (N, P, 4), scores (N, P, 1)
    and landmarks (N, P, 10), P = sum over strides of (H / s) * (W / s), in input pixels.

    Formulas of OpenCV's ``FaceDetectorYN`` (modules/objdetect/src/face_detect.cpp,
    ``FaceDetectorYNImpl::postProcess``), mirrored by :func:`ferbatch.vision.decoders._decode_yunet`:
    per stride s, prior a sits at row r = a // cols, column c = a % cols with cols = W // s;
    score = sqrt(clip(cls, 0, 1) * clip(obj, 0, 1)); cx = (c + dx) * s, cy = (r + dy) * s,
    w = exp(dw) * s, h = exp(dh) * s, box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2);
    landmark j = ((c + lx_j) * s, (r + ly_j) * s). The grid comes from the image's dynamic shape
    (Shape, Gather, Range, Div, Mod), so one graph serves every input size. Priors are ordered
    stride by stride, row-major within a stride, as in the NumPy decoding.
    """
    i64 = lambda v: np.array(v, np.int64)
    strides = tuple(int(s) for s in spec.outputs.get("strides", "8,16,32").split(","))
    const("yn_i2", i64([2]))
    const("yn_i3", i64([3]))
    const("yn_zero", np.array(0, np.int64))
    const("yn_one", np.array(1, np.int64))
    const("yn_ax1", i64([1]))
    const("yn_f0", np.array(0.0, np.float32))
    const("yn_f1", np.array(1.0, np.float32))
    const("yn_f2", np.array(2.0, np.float32))
    const("yn_tile5", i64([1, 5]))
    node("Shape", [image], ["yn_shape"])  # (4,) N C H W
    node("Gather", ["yn_shape", "yn_i2"], ["yn_h"], axis=0)  # (1,)
    node("Gather", ["yn_shape", "yn_i3"], ["yn_w"], axis=0)
    node("Cast", ["yn_w"], ["yn_wf"], to=1)
    node("Cast", ["yn_h"], ["yn_hf"], to=1)
    node("Concat", ["yn_wf", "yn_hf", "yn_wf", "yn_hf"], ["yn_wh4"], axis=0)  # (4,) for normalising boxes
    node("Concat", ["yn_wf", "yn_hf"], ["yn_wh2"], axis=0)
    boxes, scores, lms = [], [], []
    for s in strides:
        p = f"yn{s}_"
        const(p + "s", i64([s]))
        const(p + "sf", np.array(s, np.float32))
        node("Div", ["yn_w", p + "s"], [p + "cols1"])  # (1,) W // s (int64 division)
        node("Squeeze", [p + "cols1"], [p + "cols"])  # scalar
        node("Shape", [f"cls_{s}"], [p + "shape"])
        node("Gather", [p + "shape", "yn_one"], [p + "n"], axis=0)  # scalar P_s
        node("Range", ["yn_zero", p + "n", "yn_one"], [p + "a"])  # (P_s,) prior index
        node("Div", [p + "a", p + "cols"], [p + "r"])
        node("Mod", [p + "a", p + "cols"], [p + "c"])
        node("Cast", [p + "r"], [p + "rf"], to=1)
        node("Cast", [p + "c"], [p + "cf"], to=1)
        node("Unsqueeze", [p + "cf", "yn_ax1"], [p + "c2"])
        node("Unsqueeze", [p + "rf", "yn_ax1"], [p + "r2"])
        node("Concat", [p + "c2", p + "r2"], [p + "grid"], axis=1)  # (P_s, 2) column, row
        node("Clip", [f"cls_{s}", "yn_f0", "yn_f1"], [p + "cls"])
        node("Clip", [f"obj_{s}", "yn_f0", "yn_f1"], [p + "obj"])
        node("Mul", [p + "cls", p + "obj"], [p + "co"])
        node("Sqrt", [p + "co"], [p + "score"])  # (N, P_s, 1)
        node("Slice", [f"bbox_{s}", "pp_s0", "pp_s2", "pp_ax2"], [p + "dxy"])
        node("Slice", [f"bbox_{s}", "pp_s2", "pp_s4", "pp_ax2"], [p + "dwh"])
        node("Add", [p + "grid", p + "dxy"], [p + "gxy"])
        node("Mul", [p + "gxy", p + "sf"], [p + "cxy"])
        node("Exp", [p + "dwh"], [p + "ewh"])
        node("Mul", [p + "ewh", p + "sf"], [p + "wh"])
        node("Div", [p + "wh", "yn_f2"], [p + "half"])
        node("Sub", [p + "cxy", p + "half"], [p + "x1y1"])
        node("Add", [p + "cxy", p + "half"], [p + "x2y2"])
        node("Concat", [p + "x1y1", p + "x2y2"], [p + "box"], axis=2)  # (N, P_s, 4)
        # (P_s, 10) c r c r ...: the landmarks' x y layout; a trailing-axes broadcast (ONNX Runtime's
        # broadcast over (P_s, 1, 2) against (N, P_s, 5, 2) took 1 ms per batch of 8 at 512x288)
        node("Tile", [p + "grid", "yn_tile5"], [p + "grid10"])
        node("Add", [p + "grid10", f"kps_{s}"], [p + "gkp"])
        node("Mul", [p + "gkp", p + "sf"], [p + "lm"])  # (N, P_s, 10)
        boxes.append(p + "box")
        scores.append(p + "score")
        lms.append(p + "lm")
    node("Concat", boxes, ["yn_boxes"], axis=1)
    node("Concat", scores, ["yn_scores"], axis=1)
    node("Concat", lms, ["yn_lms"], axis=1)
    return "yn_boxes", "yn_scores", "yn_lms"
