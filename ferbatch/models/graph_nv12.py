"""NV12 frames into the detector graph: the letterboxed RGB input made inside the graph, so frames
NVDEC leaves in GPU memory reach the detector without a host round-trip (issue 33).

:func:`nv12_input_graph` computes, for a batch of NV12 pictures, what
:func:`ferbatch.vision.detect.preprocess_frames` computes on the host for
:class:`ferbatch.picture.YuvPicture` frames with a letterbox (``YuvPicture.resized_rgb``):

1. the luma plane resized to the frame's letterboxed size ``(nh, nw)`` and the chroma planes to
   ``(nh / 2, nw / 2)``, bilinear with half-pixel centres (OpenCV's ``INTER_LINEAR``; ONNX ``Resize``
   ``linear``/``half_pixel``), each rounded to uint8 as OpenCV's are;
2. chroma repeated 2 x 2 (nearest: OpenCV's ``COLOR_YUV2RGB_I420``) and converted to RGB with ITU-R
   BT.601 limited range, ``Y' = max(Y - 16, 0)`` as OpenCV clamps it: ``R = 1.164 Y' + 1.596 (V - 128)``,
   ``G = 1.164 Y' - 0.813 (V - 128) - 0.391 (U - 128)``, ``B = 1.164 Y' + 2.018 (U - 128)``
   (the coefficients of OpenCV's ``cvtColor``; ``ferbatch.picture`` uses the same);
3. rounded, clipped to 0..255, and padded with zeros right and bottom to the input's ``(h, w)``.

Inputs: ``planes`` ``(F, 3 H / 2, W)`` uint8 (NV12: ``H`` luma rows, then ``H / 2`` rows of
interleaved U, V), ``resize_hw`` ``(2,)`` int64 ``(nh, nw)`` (even), ``input_hw`` ``(2,)`` int64
``(h, w)`` (:func:`letterbox_sizes`). Output ``frames_rgb`` ``(F, h, w, 3)`` uint8 RGB, the prepared
detector's input (:func:`ferbatch.models.graph_input.prepend_uint8_input`); :func:`nv12_detector`
joins the two. OpenCV's fixed-point arithmetic differs from the graph's float32 by a level or two
(``tests/test_graph_nv12.py`` bounds the detections' difference).
"""

from __future__ import annotations

import numpy as np

__all__ = ["letterbox_sizes", "nv12_input_graph", "nv12_detector", "prepare_nv12_detector"]

OPSET = 17
NV12_GRAPH_VERSION = 1  # bump when the graph changes: it invalidates prepared files


def letterbox_sizes(frame_wh: tuple[int, int], input_wh: tuple[int, int]) -> dict[str, np.ndarray]:
    """The graph's size inputs for frames of ``frame_wh`` letterboxed into ``input_wh``, as
    ``preprocess_frames(letterbox=True)`` sizes them (``r = min(w / W, h / H)``, rounded), made even
    (4:2:0 chroma).

    Returns:
        ``{"resize_hw": (2,) int64 (nh, nw), "input_hw": (2,) int64 (h, w)}``.

    Raises:
        ValueError: an odd frame side (4:2:0 frames have even sides) or a letterboxed side that
            rounds to an odd number (the host path then converts at full size: not this graph's job).
    """
    from ferbatch.vision.detect import letterbox_size

    fw, fh = frame_wh
    w, h = input_wh
    if fw % 2 or fh % 2:
        raise ValueError(f"letterbox_sizes | frame {fw}x{fh}: NV12 frames have even sides")
    nw, nh = letterbox_size(frame_wh, input_wh)
    if nw % 2 or nh % 2:
        raise ValueError(f"letterbox_sizes | {fw}x{fh} letterboxed into {w}x{h} is {nw}x{nh}: an odd side")
    return {"resize_hw": np.array([nh, nw], np.int64), "input_hw": np.array([h, w], np.int64)}


def nv12_input_graph():
    """The NV12 -> letterboxed RGB graph (module docstring) as an ONNX ModelProto, opset 17."""
    from onnx import TensorProto, helper, numpy_helper

    inits: list = []

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    n = []

    def node(op: str, ins: list[str], out: str, **attrs) -> str:
        n.append(helper.make_node(op, ins, [out], **attrs))
        return out

    shape = node("Shape", ["planes"], "shape")
    frames = node("Slice", [shape, const("i0", np.array([0], np.int64)), const("i1", np.array([1], np.int64))], "nf")  # (1,)
    rows = node("Slice", [shape, const("j1", np.array([1], np.int64)), const("j2", np.array([2], np.int64))], "rows")
    cols = node("Slice", [shape, const("k2", np.array([2], np.int64)), const("k3", np.array([3], np.int64))], "cols")
    luma_rows = node(
        "Div",
        [node("Mul", [rows, const("two_i", np.array([2], np.int64))], "rows2"), const("three_i", np.array([3], np.int64))],
        "luma_rows",
    )
    one_i = const("one_i", np.array([1], np.int64))
    two_i = const("two_only", np.array([2], np.int64))
    pf = node("Cast", ["planes"], "planes_f", to=TensorProto.FLOAT)
    # luma: (F, H, W) -> (F, 1, H, W) -> resized to (nh, nw)
    y = node("Slice", [pf, const("y0", np.array([0], np.int64)), luma_rows, one_i], "y")
    y4 = node("Unsqueeze", [y, one_i], "y4")
    ysize = node("Concat", [frames, one_i, "resize_hw"], "ysize", axis=0)
    resize = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
    yr = node("Round", [node("Resize", [y4, "", "", ysize], "y_resized", **resize)], "y_r")
    # chroma: (F, H/2, W) interleaved -> (F, 2, H/2, W/2) -> (nh/2, nw/2) -> repeated 2 x 2
    uv = node("Slice", [pf, luma_rows, rows, one_i], "uv")
    half_cols = node("Div", [cols, two_i], "half_cols")
    uv_shape = node("Concat", [frames, const("m1", np.array([-1], np.int64)), half_cols, two_i], "uv_shape", axis=0)
    uv4 = node("Transpose", [node("Reshape", [uv, uv_shape], "uv_hw2")], "uv4", perm=[0, 3, 1, 2])
    csize = node("Concat", [frames, two_i, node("Div", ["resize_hw", two_i], "half_hw")], "csize", axis=0)
    cr = node("Round", [node("Resize", [uv4, "", "", csize], "uv_resized", **resize)], "uv_r")
    up = node(
        "Resize",
        [cr, "", const("x2", np.array([1, 1, 2, 2], np.float32))],
        "uv_full",
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )
    u = node("Slice", [up, const("u0", np.array([0], np.int64)), one_i, one_i], "u")
    v = node("Slice", [up, one_i, two_i, one_i], "v")
    y16 = node(
        "Max", [node("Sub", [yr, const("c16", np.float32(16.0))], "y16"), const("y0f", np.float32(0.0))], "y16c"
    )  # OpenCV clamps Y - 16 at 0
    yy = node("Mul", [y16, const("cy", np.float32(1.164))], "yy")
    uu = node("Sub", [u, const("c128u", np.float32(128.0))], "uu")
    vv = node("Sub", [v, const("c128v", np.float32(128.0))], "vv")
    r = node("Add", [yy, node("Mul", [vv, const("crv", np.float32(1.596))], "rv")], "r")
    g = node(
        "Sub",
        [
            node("Sub", [yy, node("Mul", [vv, const("cgv", np.float32(0.813))], "gv")], "g1"),
            node("Mul", [uu, const("cgu", np.float32(0.391))], "gu"),
        ],
        "g",
    )
    b = node("Add", [yy, node("Mul", [uu, const("cbu", np.float32(2.018))], "bu")], "b")
    rgb = node("Concat", [r, g, b], "rgb", axis=1)  # (F, 3, nh, nw)
    rgb = node("Clip", [node("Round", [rgb], "rgb_r"), const("lo", np.float32(0.0)), const("hi", np.float32(255.0))], "rgb_c")
    # zeros right and bottom up to (h, w): pads = [0, 0, 0, 0, 0, 0, h - nh, w - nw]
    extra = node("Sub", ["input_hw", "resize_hw"], "extra")
    pads = node("Concat", [const("pad_lead", np.zeros(6, np.int64)), extra], "pads", axis=0)
    padded = node("Pad", [rgb, pads, const("pad_value", np.float32(0.0))], "padded", mode="constant")
    nhwc = node("Transpose", [padded], "nhwc", perm=[0, 2, 3, 1])
    node("Cast", [nhwc], "frames_rgb", to=TensorProto.UINT8)
    graph = helper.make_graph(
        n,
        "ferbatch_nv12_input",
        [
            helper.make_tensor_value_info("planes", TensorProto.UINT8, ["F", "R", "W"]),
            helper.make_tensor_value_info("resize_hw", TensorProto.INT64, [2]),
            helper.make_tensor_value_info("input_hw", TensorProto.INT64, [2]),
        ],
        [helper.make_tensor_value_info("frames_rgb", TensorProto.UINT8, ["F", "h", "w", 3])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ferbatch")


def nv12_detector(detector, input_name: str):
    """One graph: :func:`nv12_input_graph` feeding a prepared detector (uint8 ``(N, h, w, 3)`` RGB
    input ``input_name``, ``ferbatch.models.graphs.prepare_detector``). Inputs: ``planes``,
    ``resize_hw``, ``input_hw`` and the detector's other inputs (``score_threshold``); outputs the
    detector's.

    Raises:
        ValueError: the detector's input is not uint8 with 3 channels last.
    """
    from onnx import TensorProto, compose, version_converter

    x = next((i for i in detector.graph.input if i.name == input_name), None)
    dims = x.type.tensor_type.shape.dim if x is not None else []
    if x is None or x.type.tensor_type.elem_type != TensorProto.UINT8 or len(dims) != 4 or dims[3].dim_value != 3:
        raise ValueError(f"nv12_detector | input {input_name!r} is not uint8 (N, h, w, 3): a prepared detector?")
    ver = max(o.version for o in detector.opset_import if o.domain in ("", "ai.onnx"))
    if ver != OPSET:
        detector = version_converter.convert_version(detector, OPSET)
    front = compose.add_prefix(nv12_input_graph(), "nv12_", rename_inputs=False, rename_outputs=False)
    front.ir_version = detector.ir_version
    merged = compose.merge_models(front, detector, io_map=[("frames_rgb", input_name)])
    # inputs that are also initializers (score_threshold: a default a run may override) are dropped by the merge
    have = {i.name for i in merged.graph.input}
    merged.graph.input.extend(i for i in detector.graph.input if i.name != input_name and i.name not in have)
    return merged


def prepare_nv12_detector(det_graph, spec):
    """Make (or reuse) the file of :func:`nv12_detector` for a prepared detector graph, in the user
    cache beside it (``ferbatch.models.graphs``).

    Args:
        det_graph: the prepared detector's file (``ferbatch.models.load.prepare_graphs``).
        spec: the detector's registry entry (names the cached file).

    Returns:
        Path of the prepared ONNX file: inputs ``planes``, ``resize_hw``, ``input_hw`` (and the
        detector's ``score_threshold``); the detector's outputs.
    """
    from pathlib import Path

    import onnx

    from ferbatch.models.graphs import _cache_path, _save_atomic
    from ferbatch.models.registry import sha256_file

    det_graph = Path(det_graph)
    dst = _cache_path(spec, sha256_file(det_graph), {"kind": "nv12_detector", "nv12_graph": NV12_GRAPH_VERSION})
    if dst.is_file():
        return dst
    m = nv12_detector(onnx.load(str(det_graph)), spec.input.name)
    onnx.checker.check_model(m)
    _save_atomic(m, dst)
    return dst
