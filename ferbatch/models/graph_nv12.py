"""NV12 frames into the detector graph: the letterboxed RGB input made inside the graph, so frames
NVDEC leaves in GPU memory reach the detector without a host round-trip (issue 33).

:func:`nv12_input_graph` computes, for a batch of NV12 pictures, exactly what
:func:`ferbatch.vision.detect.preprocess_frames` computes on the host for
:class:`ferbatch.picture.YuvPicture` frames with a letterbox (``YuvPicture.resized_rgb``: OpenCV's
resize of each plane, then ``COLOR_YUV2RGB_I420``), bit for bit, in OpenCV's own integer arithmetic:

1. the luma plane resized to the frame's letterboxed size ``(nh, nw)`` and the chroma planes to
   ``(nh / 2, nw / 2)`` as ``cv2.resize(INTER_LINEAR)`` resizes uint8 (imgproc/src/resize.cpp): two
   taps per output pixel with 11-bit fixed-point weights along each axis
   (:func:`ferbatch.picture.linear_taps`, computed on the host and fed as inputs), the
   horizontal sum in int32, then the vertical pass as OpenCV's vector kernel rounds it
   (``VResizeLinearVec_32s8u``: ``(((b0 (S0 >> 4)) >> 16) + ((b1 (S1 >> 4)) >> 16) + 2) >> 2``);
2. chroma repeated 2 x 2 and converted in 20-bit fixed point with the coefficients of the ``colour`` input
   (:func:`ferbatch.colour.fixed_point`: ``Y' = max(Y - ylo, 0)``,
   ``R = (cRY Y' + cRU (U - 128) + cRV (V - 128) + bR) >> 20``, likewise G and B, clipped to 0..255): for
   BT.601 limited range OpenCV's ``COLOR_YUV2RGB_I420`` (imgproc color_yuv), for BT.709 and full range
   the uint8 ``cv2.transform`` of :mod:`ferbatch.colour` (10 fractional bits), each bit for bit;
3. padded with zeros right and bottom to the input's ``(h, w)``.

Inputs: ``planes`` ``(F, 3 H / 2, W)`` uint8 (NV12: ``H`` luma rows, then ``H / 2`` rows of
interleaved U, V); ``luma_cols``, ``luma_rows``, ``chroma_cols``, ``chroma_rows`` ``(n, 2)`` int64
source indices and their ``_w`` twins ``(n, 2)`` int32 weights; ``input_hw`` ``(2,)`` int64 ``(h, w)``
(:func:`letterbox_sizes`); ``colour`` ``(13,)`` int32 (the frames' matrix). Output ``frames_rgb`` ``(F, h, w, 3)`` uint8 RGB, the prepared detector's
input (:func:`ferbatch.models.graph_input.prepend_uint8_input`); :func:`nv12_detector` joins the two.
``tests/test_graph_nv12.py`` checks the input equal to the host path's and the detections equal.
(The first version resized in float32 with ONNX ``Resize``: inputs up to 4 levels off, and a face
YuNet places unstably moved up to 15 px.)
"""

from __future__ import annotations

import numpy as np

from ferbatch.colour import BT601
from ferbatch.vision.detect import NV12_COLOUR, NV12_PLANES, NV12_TABLES

__all__ = ["letterbox_sizes", "nv12_input_graph", "nv12_detector", "prepare_nv12_detector"]

OPSET = 17
NV12_GRAPH_VERSION = 3  # bump when the graph changes: it invalidates prepared files (3: the colour input)


def letterbox_sizes(frame_wh: tuple[int, int], input_wh: tuple[int, int], matrix: str = BT601) -> dict[str, np.ndarray]:
    """The graph's inputs besides ``planes`` for frames of ``frame_wh`` letterboxed into ``input_wh``
    (:func:`ferbatch.vision.detect.nv12_letterbox_inputs`: OpenCV's resize taps and weights, and the
    ``matrix``'s coefficients).

    Raises:
        ValueError: an odd frame side (4:2:0 frames have even sides) or a letterboxed side that
            rounds to an odd number (the host path then converts at full size: not this graph's job).
    """
    from ferbatch.vision.detect import letterbox_size, nv12_letterbox_inputs

    if frame_wh[0] % 2 or frame_wh[1] % 2:
        raise ValueError(f"letterbox_sizes | frame {frame_wh[0]}x{frame_wh[1]}: NV12 frames have even sides")
    out = nv12_letterbox_inputs(frame_wh, input_wh, matrix)
    if out is None:
        nw, nh = letterbox_size(frame_wh, input_wh)
        raise ValueError(
            f"letterbox_sizes | {frame_wh[0]}x{frame_wh[1]} letterboxed into {input_wh[0]}x{input_wh[1]} is {nw}x{nh}: an odd side"
        )
    return out


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

    i32 = {"to": TensorProto.INT32}
    c: dict[str, str] = {}
    for k, val in (
        ("i0", 0),
        ("i2", 2),
        ("i4", 4),
        ("i16", 16),
        ("i128", 128),
        ("i255", 255),
        ("i2_16", 1 << 16),
        ("i2_20", 1 << 20),
    ):
        c[k] = const(k, np.int32(val))

    cols_made: dict[tuple[str, int], str] = {}

    def col(name: str, j: int) -> str:  # (n,) column j of an (n, 2) input, made once
        if (name, j) not in cols_made:
            cols_made[name, j] = node("Gather", [name, const(f"{name}_j{j}", np.array(j, np.int64))], f"{name}_{j}", axis=1)
        return cols_made[name, j]

    def resize(x: str, plane: str, ndim: int) -> str:
        """OpenCV's INTER_LINEAR of uint8 ``x`` (F, rows, cols[, 2]) as int32: per output row, the two
        source rows it reads (gathered first: only those are cast and summed), their horizontal taps
        (scale 2048), then OpenCV's vertical vector kernel:
        ``(((b0 (S0 >> 4)) >> 16) + ((b1 (S1 >> 4)) >> 16) + 2) >> 2``."""
        cols, cw, rows, rw = f"{plane}_cols", f"{plane}_cols_w", f"{plane}_rows", f"{plane}_rows_w"
        cw_shape = [-1] + [1] * (ndim - 3)  # weights along axis 2
        rw_shape = [-1] + [1] * (ndim - 2)  # along axis 1
        cws = [node("Reshape", [col(cw, k), const(f"{plane}_cws{k}", np.array(cw_shape, np.int64))], f"{plane}_cw{k}") for k in (0, 1)]
        v = []
        for j in (0, 1):
            src = node("Cast", [node("Gather", [x, col(rows, j)], f"{plane}_r{j}", axis=1)], f"{plane}_r{j}_i", **i32)
            h = [
                node("Mul", [node("Gather", [src, col(cols, k)], f"{plane}_r{j}c{k}", axis=2), cws[k]], f"{plane}_r{j}w{k}") for k in (0, 1)
            ]
            s4 = node("Div", [node("Add", h, f"{plane}_h{j}"), c["i16"]], f"{plane}_h{j}_4")
            w = node("Reshape", [col(rw, j), const(f"{plane}_rws{j}", np.array(rw_shape, np.int64))], f"{plane}_rw{j}")
            v.append(node("Div", [node("Mul", [s4, w], f"{plane}_vw{j}"), c["i2_16"]], f"{plane}_vs{j}"))
        out = node("Div", [node("Add", [node("Add", v, f"{plane}_vsum"), c["i2"]], f"{plane}_vr"), c["i4"]], f"{plane}_r")
        return node("Min", [node("Max", [out, c["i0"]], f"{plane}_lo"), c["i255"]], f"{plane}_out")

    shape = node("Shape", [NV12_PLANES], "shape")
    rows = node("Slice", [shape, const("j1", np.array([1], np.int64)), const("j2", np.array([2], np.int64))], "rows")
    cols = node("Slice", [shape, const("k2", np.array([2], np.int64)), const("k3", np.array([3], np.int64))], "cols")
    luma_rows = node(
        "Div",
        [node("Mul", [rows, const("two_i", np.array([2], np.int64))], "rows2"), const("three_i", np.array([3], np.int64))],
        "luma_rows_n",
    )
    one_i = const("one_i", np.array([1], np.int64))
    y = node("Slice", [NV12_PLANES, const("y0", np.array([0], np.int64)), luma_rows, one_i], "y")  # (F, H, W)
    yr = resize(y, "luma", 3)  # (F, nh, nw)
    uv = node("Slice", [NV12_PLANES, luma_rows, rows, one_i], "uv")  # (F, H/2, W) interleaved
    uv_shape = node(
        "Concat",
        [
            const("uv_lead", np.array([0, 0], np.int64)),
            node("Div", [cols, const("two_c", np.array([2], np.int64))], "half_cols"),
            const("uv_two", np.array([2], np.int64)),
        ],
        "uv_shape",
        axis=0,
    )
    uv4 = node("Reshape", [uv, uv_shape], "uv4")  # (F, H/2, W/2, 2): U, V
    uvr = resize(uv4, "chroma", 4)  # (F, nh/2, nw/2, 2)
    # chroma repeated 2 x 2 (COLOR_YUV2RGB_I420): row i and column j read chroma i // 2, j // 2
    nh = node("Gather", [node("Shape", ["luma_rows"], "lr_shape"), const("d0", np.array(0, np.int64))], "nh")
    nw = node("Gather", [node("Shape", ["luma_cols"], "lc_shape"), const("d0c", np.array(0, np.int64))], "nw")
    zero64, one64, two64 = const("z64", np.array(0, np.int64)), const("o64", np.array(1, np.int64)), const("t64", np.array(2, np.int64))
    up_r = node("Div", [node("Range", [zero64, nh, one64], "range_r"), two64], "up_r")
    up_c = node("Div", [node("Range", [zero64, nw, one64], "range_c"), two64], "up_c")
    full = node("Gather", [node("Gather", [uvr, up_r], "uv_rows", axis=1), up_c], "uv_full", axis=2)  # (F, nh, nw, 2)
    u = node("Sub", [node("Gather", [full, const("ch_u", np.array(0, np.int64))], "u_raw", axis=3), c["i128"]], "u")
    v = node("Sub", [node("Gather", [full, const("ch_v", np.array(1, np.int64))], "v_raw", axis=3), c["i128"]], "v")
    coef = [node("Gather", [NV12_COLOUR, const(f"colour_{j}", np.array(j, np.int64))], f"colour_k{j}") for j in range(13)]  # scalars
    yc = node("Max", [node("Sub", [yr, coef[0]], "y_lo"), c["i0"]], "y_c")  # OpenCV clamps Y - 16 at 0 (BT.601 limited)
    chans_i = []
    for j, name in enumerate("rgb"):  # cY Y' + cU U' + cV V' + bias (the bias holds the rounding half)
        t = [node("Mul", [x, coef[1 + 3 * j + q]], f"{name}{q}") for q, x in enumerate((yc, u, v))]
        chans_i.append(node("Add", [node("Add", [node("Add", t[:2], f"{name}01"), t[2]], f"{name}012"), coef[10 + j]], name))
    chans = []
    for name in chans_i:  # >> 20; a negative sum truncates towards 0 instead of down: both clip to 0
        sh = node("Div", [name, c["i2_20"]], f"{name}_s")
        chans.append(
            node(
                "Unsqueeze",
                [
                    node("Min", [node("Max", [sh, c["i0"]], f"{name}_lo"), c["i255"]], f"{name}_c"),
                    const(f"{name}_ax", np.array([3], np.int64)),
                ],
                f"{name}_4",
            )
        )
    rgb = node(
        "Cast", [node("Concat", chans, "rgb_i", axis=3)], "rgb_f", to=TensorProto.FLOAT
    )  # (F, nh, nw, 3); padded in float (every provider has a float Pad)
    # zeros right and bottom up to (h, w): pads = [0, 0, 0, 0, 0, h - nh, w - nw, 0]
    hw = node(
        "Concat",
        [
            node("Unsqueeze", [nh, const("ax_nh", np.array([0], np.int64))], "nh1"),
            node("Unsqueeze", [nw, const("ax_nw", np.array([0], np.int64))], "nw1"),
        ],
        "resize_hw",
        axis=0,
    )
    extra = node("Sub", ["input_hw", hw], "extra")
    pads = node("Concat", [const("pad_lead", np.zeros(5, np.int64)), extra, const("pad_tail", np.zeros(1, np.int64))], "pads", axis=0)
    node(
        "Cast", [node("Pad", [rgb, pads, const("pad_value", np.float32(0))], "padded", mode="constant")], "frames_rgb", to=TensorProto.UINT8
    )
    inputs = [helper.make_tensor_value_info(NV12_PLANES, TensorProto.UINT8, ["F", "R", "W"])]
    for name in NV12_TABLES:  # each with a "_w" twin: (n, 2) indices, weights (the contract is ferbatch.vision.detect's)
        inputs.append(helper.make_tensor_value_info(name, TensorProto.INT64, [f"{name}_n", 2]))
        inputs.append(helper.make_tensor_value_info(f"{name}_w", TensorProto.INT32, [f"{name}_n", 2]))
    inputs.append(helper.make_tensor_value_info("input_hw", TensorProto.INT64, [2]))
    inputs.append(helper.make_tensor_value_info(NV12_COLOUR, TensorProto.INT32, [13]))
    graph = helper.make_graph(
        n, "ferbatch_nv12_input", inputs, [helper.make_tensor_value_info("frames_rgb", TensorProto.UINT8, ["F", "h", "w", 3])], inits
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ferbatch")


def nv12_detector(detector, input_name: str):
    """One graph: :func:`nv12_input_graph` feeding a prepared detector (uint8 ``(N, h, w, 3)`` RGB
    input ``input_name``, ``ferbatch.models.graphs.prepare_detector``). Inputs: ``planes``,
    the resize tables of :data:`ferbatch.vision.detect.NV12_TABLES` (and their ``_w`` weights), ``input_hw``,
    ``colour`` and the detector's other inputs (``score_threshold``); outputs the detector's.

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
        Path of the prepared ONNX file: inputs ``planes``, the resize tables, ``input_hw``, ``colour``
        (and the detector's ``score_threshold``); the detector's outputs.
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
