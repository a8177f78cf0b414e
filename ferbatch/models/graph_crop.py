"""Aligned grey face crops inside an ONNX graph: the frames stay where the decoder left them (a GPU's
memory, bound with :meth:`ferbatch.models.runners.onnxruntime.OrtRunner.infer_bound`); only the
faces' warps travel, 64 bytes a face.

The graph computes what :func:`ferbatch.vision.align.aligned_crops` and
:func:`ferbatch.vision.classify.extract_crops` compute on the CPU for a grey classifier fed from a
picture's luma plane: the similarity warp onto :data:`ferbatch.vision.align.FER48_TEMPLATE`
(bilinear, replicated border), for a large face warped at ``k`` times the size and area-averaged
down, then limited-range luma mapped to full-range grey (:data:`ferbatch.picture.LUMA_TO_GRAY`); for NV12
pictures of another matrix (BT.709, full range) the grey of :func:`ferbatch.vision.align.aligned_grey`,
which takes the chroma too (:func:`_chroma_grey`).

Inputs (:func:`crop_graph`):

- ``planes`` ``(F, R, W)`` uint8: the batch's frames as planes of ``R`` rows. The first ``H`` rows
  of each are its luma: ``H = R`` for a luma plane, ``H = 2 R / 3`` for an NV12 picture
  (``nv12=True``; NVDEC's output, ``ferbatch.media.nvdec``), whose chroma rows are read only for
  pictures of another matrix than BT.601 limited range.
- ``warps`` ``(N, 2, 3)`` float32: per face, the map from a crop pixel ``(u, v, 1)`` (0..47, pixel
  indices as in ``cv2.warpAffine``) to its source point ``(x, y)`` in frame pixels: the inverse of
  the similarity (:func:`crop_inputs`).
- ``taps`` ``(N, 4)`` float32 and ``tap_weights`` ``(N, 4)`` float32: per axis, the sub-pixel offsets
  (crop pixels) and weights of the samples averaged into each crop pixel: ``j / k`` and ``1 / k`` for
  ``j < k``, weight 0 for the rest, ``k`` the CPU path's supersampling
  (:func:`ferbatch.vision.align.supersampling`): its ``k``-times warp and area average
  (:func:`crop_inputs`).
- ``frame_pos`` ``(N,)`` int64: each face's frame in ``planes``.
- ``colour`` ``(13,)`` int32 (``nv12=True`` only): the pictures' matrix, :func:`ferbatch.colour.fixed_point`;
  ``colour[0] > 0`` (BT.601 limited range) takes the luma as grey.

Output ``crops`` ``(N, 48, 48, 1)`` uint8, the classifier's uint8 input
(:func:`ferbatch.models.graph_input.prepend_uint8_input`); :func:`crop_classifier` joins the two.

How: the planes are read as one tall image ``(1, 1, F R, W)`` (a reshape of the planes cast to float32: one float copy of the batch), each face's
4 x 4 sample points per crop pixel are clamped into its own frame's luma (the replicated border: a point
never reads the next frame), offset by ``frame_pos * R`` rows and normalised, and one ``GridSample``
(bilinear, ``align_corners=0``; ONNX opset 16) reads them all. Each sample is rounded half up to an integer, as
``cv2.warpAffine`` rounds its uint8 output; their weighted sum per crop pixel (the outer product of
the two axes' weights, then a 4 x 4 sum pool) is the area average, rounded as ``cv2.resize``
(``INTER_AREA``) rounds it (half up for k = 2, half to even for k = 4). The crops then equal the
CPU path's but for < 0.2 % of pixels, by a grey level or two where OpenCV's fixed-point bilinear
weights tip a rounding (``tests/test_graph_crop.py``; before the per-sample rounding 5-16 % of
pixels differed at k >= 2).
"""

from __future__ import annotations

import numpy as np

from ferbatch.vision.align import TAPS, crop_inputs  # the graph's per-face inputs are host math (re-exported)

__all__ = ["TAPS", "crop_graph", "crop_inputs", "crop_classifier", "prepare_crop_classifier"]

OPSET = 17
CROP_GRAPH_VERSION = 3  # bump when the crop graph changes: it invalidates prepared files (3: chroma, the colour input)


def crop_graph(size: int = 48, nv12: bool = False):
    """The crop graph (module docstring) as an ONNX ModelProto, opset 17.

    Args:
        size: the crop side in pixels.
        nv12: ``planes`` are NV12 pictures (``R = 3 H / 2`` rows, luma first) instead of luma planes.

    Returns:
        onnx.ModelProto with inputs ``planes``, ``warps``, ``taps``, ``tap_weights``, ``frame_pos`` (and
        ``colour`` when ``nv12``) and output ``crops``.
    """
    from onnx import TensorProto, helper, numpy_helper

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    inits: list = []
    n = []
    side = size * TAPS
    # sample coordinates along one axis, per face: (N, size, TAPS) -> (N, side); i-major, so a crop
    # pixel's TAPS samples are adjacent and AveragePool(TAPS) averages exactly them
    n.append(helper.make_node("Unsqueeze", ["taps", const("ax1", np.array([1], np.int64))], ["taps3"]))  # (N, 1, T)
    n.append(helper.make_node("Add", ["taps3", const("idx", np.arange(size, dtype=np.float32)[:, None])], ["coord3"]))  # (N, S, T)
    n.append(helper.make_node("Reshape", ["coord3", const("flat", np.array([0, side], np.int64))], ["coord"]))  # (N, side)
    n.append(helper.make_node("Unsqueeze", ["coord", const("ax_u", np.array([1], np.int64))], ["u"]))  # (N, 1, side): columns
    n.append(helper.make_node("Unsqueeze", ["coord", const("ax_v", np.array([2], np.int64))], ["v"]))  # (N, side, 1): rows

    def coeff(r: int, c: int) -> str:  # warps[:, r, c] as (N, 1, 1)
        out = f"w{r}{c}"
        n.append(
            helper.make_node(
                "Slice",
                [
                    "warps",
                    const(f"s{r}{c}", np.array([r, c], np.int64)),
                    const(f"e{r}{c}", np.array([r + 1, c + 1], np.int64)),
                    const(f"a{r}{c}", np.array([1, 2], np.int64)),
                ],
                [out],
            )
        )  # (N, 1, 1)
        return out

    shape = ["planes_shape"]
    n.append(helper.make_node("Shape", ["planes"], shape))
    for name, i in (("nf", 0), ("rows", 1), ("cols", 2)):
        n.append(helper.make_node("Gather", ["planes_shape", const(f"i_{name}", np.array(i, np.int64))], [f"{name}_i"]))
        n.append(helper.make_node("Cast", [f"{name}_i"], [f"{name}_f"], to=TensorProto.FLOAT))
    if nv12:
        # integer 2 R / 3 (exact), then float: a float 2/3 could land a hair above H
        n.append(helper.make_node("Mul", ["rows_i", const("two_i", np.array(2, np.int64))], ["rows2_i"]))
        n.append(helper.make_node("Div", ["rows2_i", const("three_i", np.array(3, np.int64))], ["luma_i"]))
        n.append(helper.make_node("Cast", ["luma_i"], ["luma_f"], to=TensorProto.FLOAT))
    else:
        n.append(helper.make_node("Identity", ["rows_f"], ["luma_f"]))
    one = const("one", np.float32(1.0))
    zero = const("zero", np.float32(0.0))
    half = const("half", np.float32(0.5))

    def node_add(x: str, y: str) -> str:
        n.append(helper.make_node("Add", [x, y], [f"{x}_plus"]))
        return f"{x}_plus"

    for axis, (cu, cv, ct), hi in (("x", ((0, 0), (0, 1), (0, 2)), "cols_f"), ("y", ((1, 0), (1, 1), (1, 2)), "luma_f")):
        n.append(helper.make_node("Mul", [coeff(*cu), "u"], [f"{axis}_a"]))
        n.append(helper.make_node("Mul", [coeff(*cv), "v"], [f"{axis}_b"]))
        n.append(helper.make_node("Add", [f"{axis}_a", f"{axis}_b"], [f"{axis}_ab"]))
        n.append(helper.make_node("Add", [f"{axis}_ab", coeff(*ct)], [f"{axis}_px"]))  # (N, side, side) frame pixels
        n.append(helper.make_node("Sub", [hi, one], [f"{axis}_max"]))
        n.append(helper.make_node("Max", [f"{axis}_px", zero], [f"{axis}_lo"]))
        n.append(helper.make_node("Min", [f"{axis}_lo", f"{axis}_max"], [f"{axis}_in"]))  # the replicated border
    # rows of the tall image: frame_pos * R + y; normalised for align_corners=0: (2 p + 1) / size - 1
    n.append(helper.make_node("Cast", ["frame_pos"], ["fp_f"], to=TensorProto.FLOAT))
    n.append(helper.make_node("Mul", ["fp_f", "rows_f"], ["fp_rows"]))
    n.append(helper.make_node("Reshape", ["fp_rows", const("col3", np.array([-1, 1, 1], np.int64))], ["fp_rows3"]))
    n.append(helper.make_node("Add", ["y_in", "fp_rows3"], ["y_tall"]))
    n.append(helper.make_node("Mul", ["nf_f", "rows_f"], ["tall_f"]))
    two = const("two", np.float32(2.0))
    for axis, src, extent in (("x", "x_in", "cols_f"), ("y", "y_tall", "tall_f")):
        n.append(helper.make_node("Mul", [src, two], [f"{axis}_2"]))
        n.append(helper.make_node("Add", [f"{axis}_2", one], [f"{axis}_21"]))
        n.append(helper.make_node("Div", [f"{axis}_21", extent], [f"{axis}_q"]))
        n.append(helper.make_node("Sub", [f"{axis}_q", one], [f"{axis}_n"]))
        n.append(helper.make_node("Unsqueeze", [f"{axis}_n", const(f"ax_{axis}n", np.array([3], np.int64))], [f"{axis}_n4"]))
    n.append(helper.make_node("Concat", ["x_n4", "y_n4"], ["grid4"], axis=3))  # (N, side, side, 2)
    n.append(helper.make_node("Reshape", ["grid4", const("tall_grid", np.array([1, -1, side, 2], np.int64))], ["grid"]))
    n.append(helper.make_node("Cast", ["planes"], ["planes_f"], to=TensorProto.FLOAT))
    n.append(helper.make_node("Unsqueeze", ["cols_i", const("ax_cols", np.array([0], np.int64))], ["cols_1"]))
    n.append(helper.make_node("Concat", [const("tall_lead", np.array([1, 1, -1], np.int64)), "cols_1"], ["tall_shape"], axis=0))
    n.append(helper.make_node("Reshape", ["planes_f", "tall_shape"], ["tall"]))  # (1, 1, F R, W)
    n.append(helper.make_node("GridSample", ["tall", "grid"], ["sampled"], mode="bilinear", padding_mode="border", align_corners=0))
    # each sample rounded half up to uint8 as cv2.warpAffine's is, before the area average
    n.append(helper.make_node("Floor", [node_add("sampled", half)], ["sampled_r"]))
    n.append(helper.make_node("Reshape", ["sampled_r", const("per_face", np.array([-1, 1, side, side], np.int64))], ["sampled4"]))
    # per-sample weight: the outer product of the axes' tap weights, tiled over the crop pixels
    n.append(helper.make_node("Tile", ["tap_weights", const("reps", np.array([1, size], np.int64))], ["w_axis"]))  # (N, side)
    n.append(helper.make_node("Unsqueeze", ["w_axis", const("ax_wr", np.array([2], np.int64))], ["w_rows"]))  # (N, side, 1)
    n.append(helper.make_node("Unsqueeze", ["w_axis", const("ax_wc", np.array([1], np.int64))], ["w_cols"]))  # (N, 1, side)
    n.append(helper.make_node("Mul", ["w_rows", "w_cols"], ["w2"]))
    n.append(helper.make_node("Unsqueeze", ["w2", const("ax_w1", np.array([1], np.int64))], ["w4"]))  # (N, 1, side, side)
    n.append(helper.make_node("Mul", ["sampled4", "w4"], ["weighted"]))
    n.append(helper.make_node("AveragePool", ["weighted"], ["mean16"], kernel_shape=[TAPS, TAPS], strides=[TAPS, TAPS]))
    n.append(helper.make_node("Mul", ["mean16", const("taps2", np.float32(TAPS * TAPS))], ["luma"]))
    # limited-range luma -> full-range grey, truncated (ferbatch.picture.LUMA_TO_GRAY) after rounding as the CPU path does
    # the area average rounded as cv2.resize(INTER_AREA) rounds it: half up for k = 2 ((sum + 2) >> 2),
    # half to even for k = 4 (cvRound); k = 1 and 3 never tie. k = 4 where the tap weight is 1/4
    n.append(helper.make_node("Floor", [node_add("luma", half)], ["luma_up"]))
    n.append(helper.make_node("Round", ["luma"], ["luma_even"]))
    n.append(
        helper.make_node(
            "Slice",
            [
                "tap_weights",
                const("w0_s", np.array([0], np.int64)),
                const("w0_e", np.array([1], np.int64)),
                const("w0_a", np.array([1], np.int64)),
            ],
            ["w_first"],
        )
    )  # (N, 1): 1 / k
    n.append(helper.make_node("Less", ["w_first", const("k4", np.float32(0.3))], ["is_k4"]))
    n.append(helper.make_node("Reshape", ["is_k4", const("col4", np.array([-1, 1, 1, 1], np.int64))], ["is_k4_4"]))
    n.append(helper.make_node("Where", ["is_k4_4", "luma_even", "luma_up"], ["luma_r"]))
    n.append(helper.make_node("Sub", ["luma_r", const("y16", np.float32(16.0))], ["luma_0"]))
    n.append(helper.make_node("Mul", ["luma_0", const("range", np.float32(255.0 / 219.0))], ["grey_f"]))
    n.append(helper.make_node("Floor", ["grey_f"], ["grey_fl"]))
    n.append(helper.make_node("Clip", ["grey_fl", zero, const("max255", np.float32(255.0))], ["grey_c"]))
    if nv12:  # other matrices' grey takes the chroma (colour[0] > 0: BT.601 limited range, grey is the luma)
        n.extend(_chroma_grey(const, size))
        n.append(helper.make_node("Gather", ["colour", const("col_ylo", np.array(0, np.int64))], ["col_ylo_v"]))
        n.append(helper.make_node("Greater", ["col_ylo_v", const("col_zero", np.int32(0))], ["luma_is_grey"]))
        n.append(helper.make_node("Where", ["luma_is_grey", "grey_c", "grey_rgb"], ["grey_any"]))
    n.append(helper.make_node("Transpose", ["grey_any" if nv12 else "grey_c"], ["grey_nhwc"], perm=[0, 2, 3, 1]))
    n.append(helper.make_node("Cast", ["grey_nhwc"], ["crops"], to=TensorProto.UINT8))
    inputs = [
        helper.make_tensor_value_info("planes", TensorProto.UINT8, ["F", "R", "W"]),
        helper.make_tensor_value_info("warps", TensorProto.FLOAT, ["N", 2, 3]),
        helper.make_tensor_value_info("taps", TensorProto.FLOAT, ["N", TAPS]),
        helper.make_tensor_value_info("tap_weights", TensorProto.FLOAT, ["N", TAPS]),
        helper.make_tensor_value_info("frame_pos", TensorProto.INT64, ["N"]),
    ]
    if nv12:
        inputs.append(helper.make_tensor_value_info("colour", TensorProto.INT32, [13]))
    g = helper.make_graph(
        n,
        "ferbatch_face_crop",
        inputs,
        [helper.make_tensor_value_info("crops", TensorProto.UINT8, ["N", size, size, 1])],
        inits,
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ferbatch")


# OpenCV's uint8 RGB2GRAY (imgproc color: R2GRAY, G2GRAY, B2GRAY in 15 bits, rounded): equal on 262,144 random pixels
RGB2GRAY_FIXED = (9798, 19235, 3735)


def _chroma_grey(const, size: int) -> list:
    """Nodes that turn the rounded luma crops ``luma_r`` ``(N, 1, size, size)`` into ``grey_rgb``, the grey
    :func:`ferbatch.vision.align.aligned_grey` computes for a picture of another matrix than BT.601 limited
    range: the U and V planes of the NV12 pictures sampled once per crop pixel (bilinear, replicated
    border, rounded half up as ``cv2.warpAffine``'s uint8) at the luma's supersampled pixel centre
    ``i + (k - 1) / 2k`` mapped to chroma coordinates ``x / 2 - 0.25``; then ``colour``'s conversion
    (:func:`ferbatch.colour.fixed_point`, 20-bit integers) and OpenCV's RGB2GRAY (:data:`RGB2GRAY_FIXED`)."""
    from onnx import TensorProto, helper

    n = []

    def node(op: str, ins: list[str], out: str, **attrs) -> str:
        n.append(helper.make_node(op, ins, [out], **attrs))
        return out

    f32, i32 = {"to": TensorProto.FLOAT}, {"to": TensorProto.INT32}
    # the crop pixel centres per face: i + d, d = (1 - 1/k) / 2 from the first tap weight (1 / k)
    d = node("Mul", [node("Sub", [const("c_one", np.float32(1.0)), "w_first"], "c_1mw"), const("c_half", np.float32(0.5))], "c_d")
    at = node("Add", [const("c_idx", np.arange(size, dtype=np.float32)[None]), d], "c_at")  # (N, size)
    cu = node("Unsqueeze", [at, const("c_axu", np.array([1], np.int64))], "c_u")  # (N, 1, size): columns
    cv = node("Unsqueeze", [at, const("c_axv", np.array([2], np.int64))], "c_v")  # (N, size, 1): rows
    h_i = node("Div", ["luma_i", const("c_two_i", np.array(2, np.int64))], "c_h_i")  # chroma rows H / 2
    w_i = node("Div", ["cols_i", const("c_two_w", np.array(2, np.int64))], "c_w_i")  # chroma columns W / 2
    h_f, w_f = node("Cast", [h_i], "c_h_f", **f32), node("Cast", [w_i], "c_w_f", **f32)
    coords = {}
    for axis, (a, b, t), hi in (("x", ("w00", "w01", "w02"), w_f), ("y", ("w10", "w11", "w12"), h_f)):
        px = node(
            "Add", [node("Add", [node("Mul", [a, cu], f"c_{axis}a"), node("Mul", [b, cv], f"c_{axis}b")], f"c_{axis}ab"), t], f"c_{axis}px"
        )
        c = node(
            "Sub",
            [node("Mul", [px, const(f"c_{axis}h", np.float32(0.5))], f"c_{axis}2"), const(f"c_{axis}q", np.float32(0.25))],
            f"c_{axis}c",
        )
        top = node("Sub", [hi, const(f"c_{axis}1", np.float32(1.0))], f"c_{axis}top")
        coords[axis] = node("Min", [node("Max", [c, const(f"c_{axis}0", np.float32(0.0))], f"c_{axis}lo"), top], f"c_{axis}in")
    fp = node("Reshape", [node("Mul", ["fp_f", h_f], "c_fp_rows"), const("c_col3", np.array([-1, 1, 1], np.int64))], "c_fp3")
    ys = node("Add", [coords["y"], fp], "c_ytall")
    tall = node("Mul", ["nf_f", h_f], "c_tall")
    grid = []
    for axis, src, extent in (("x", coords["x"], w_f), ("y", ys, tall)):  # normalised for align_corners=0
        q = node(
            "Sub",
            [node("Div", [node("Add", [node("Mul", [src, "two"], f"c_{axis}n2"), "one"], f"c_{axis}n21"), extent], f"c_{axis}nq"), "one"],
            f"c_{axis}n",
        )
        grid.append(node("Unsqueeze", [q, const(f"c_ax{axis}4", np.array([3], np.int64))], f"c_{axis}n4"))
    g = node("Reshape", [node("Concat", grid, "c_grid4", axis=3), const("c_grid_shape", np.array([1, -1, size, 2], np.int64))], "c_grid")
    # the chroma rows of every picture as one two-channel tall image (1, 2, F H / 2, W / 2): U, V
    ax0 = const("c_ax0", np.array([0], np.int64))
    first, last = (node("Unsqueeze", [x, ax0], f"c_{x}1") for x in ("luma_i", "rows_i"))
    uv = node("Slice", ["planes", first, last, const("c_ax1", np.array([1], np.int64))], "c_uv")  # (F, H/2, W)
    uv4 = node("Reshape", [uv, const("c_uv4", np.array([0, 0, -1, 2], np.int64))], "c_uv4r")  # (F, H/2, W/2, 2)
    chw = node("Transpose", [uv4], "c_uvt", perm=[3, 0, 1, 2])  # (2, F, H/2, W/2)
    shape = node(
        "Concat",
        [const("c_lead", np.array([1, 2, -1], np.int64)), node("Unsqueeze", [w_i, const("c_axw", np.array([0], np.int64))], "c_w1")],
        "c_tall_shape",
        axis=0,
    )
    img = node("Reshape", [node("Cast", [chw], "c_uvf", **f32), shape], "c_img")
    s = node("GridSample", [img, g], "c_sampled", mode="bilinear", padding_mode="border", align_corners=0)  # (1, 2, N size, size)
    s = node("Floor", [node("Add", [s, "half"], "c_s_h")], "c_s_r")
    s = node("Reshape", [s, const("c_per_face", np.array([2, -1, 1, size, size], np.int64))], "c_s5")  # (2, N, 1, size, size)
    uu, vv = (
        node(
            "Sub",
            [
                node("Cast", [node("Gather", [s, const(f"c_ch{j}", np.array(j, np.int64))], f"c_{nm}f", axis=0)], f"c_{nm}i", **i32),
                const(f"c_{nm}128", np.int32(128)),
            ],
            f"c_{nm}",
        )
        for j, nm in ((0, "uu"), (1, "vv"))
    )
    coef = [node("Gather", ["colour", const(f"c_k{j}", np.array(j, np.int64))], f"c_k{j}v") for j in range(13)]
    yy = node(
        "Max", [node("Sub", [node("Cast", ["luma_r"], "c_yi", **i32), coef[0]], "c_y_minus"), const("c_i0", np.int32(0))], "c_y_clamped"
    )
    grey = None
    for j, (name, wgt) in enumerate(zip("rgb", RGB2GRAY_FIXED, strict=True)):
        terms = [node("Mul", [x, coef[1 + 3 * j + q]], f"c_{name}{q}") for q, x in enumerate((yy, uu, vv))]
        ch = node("Add", [node("Add", [node("Add", terms[:2], f"c_{name}01"), terms[2]], f"c_{name}012"), coef[10 + j]], f"c_{name}sum")
        ch = node(
            "Min",
            [
                node("Max", [node("Div", [ch, const(f"c_{name}s", np.int32(1 << 20))], f"c_{name}sh"), "c_i0"], f"c_{name}lo"),
                const(f"c_{name}255", np.int32(255)),
            ],
            f"c_{name}",
        )
        term = node("Mul", [ch, const(f"c_{name}w", np.int32(wgt))], f"c_{name}g")
        grey = term if grey is None else node("Add", [grey, term], f"c_grey_acc{j}")
    assert grey is not None
    out = node("Div", [node("Add", [grey, const("c_g_half", np.int32(1 << 14))], "c_g_r"), const("c_g_s", np.int32(1 << 15))], "c_grey_i")
    node("Cast", [out], "grey_rgb", **f32)
    return n


def crop_classifier(classifier, input_name: str, size: int = 48, nv12: bool = False):
    """One graph: :func:`crop_graph` feeding a prepared grey classifier (uint8 ``(N, 48, 48, 1)``
    input ``input_name``, ``ferbatch.models.graphs.prepare_classifier``). Inputs are the crop
    graph's; outputs the classifier's.

    Args:
        classifier: the prepared classifier's onnx.ModelProto (opset <= 17).

    Raises:
        ValueError: the classifier's input is not uint8 ``(N, size, size, 1)``.
    """
    from onnx import TensorProto, compose, version_converter

    x = next((i for i in classifier.graph.input if i.name == input_name), None)
    dims = [d.dim_value for d in x.type.tensor_type.shape.dim][1:] if x is not None else []
    if x is None or x.type.tensor_type.elem_type != TensorProto.UINT8 or dims != [size, size, 1]:
        raise ValueError(f"crop_classifier | input {input_name!r} is not uint8 (N, {size}, {size}, 1): a prepared grey classifier?")
    ver = max(o.version for o in classifier.opset_import if o.domain in ("", "ai.onnx"))
    if ver != OPSET:
        classifier = version_converter.convert_version(classifier, OPSET)
    crop = compose.add_prefix(
        crop_graph(size, nv12), "crop_", rename_inputs=False, rename_outputs=False
    )  # no clash with the classifier's names
    crop.ir_version = classifier.ir_version
    return compose.merge_models(crop, classifier, io_map=[("crops", input_name)])


def prepare_crop_classifier(src, spec, *, nv12: bool = False, precision: str = "fp32"):
    """Make (or reuse) the file of :func:`crop_classifier` for a registry grey classifier, in the
    user cache beside the other prepared graphs (``ferbatch.models.graphs``).

    Args:
        src: the classifier's ONNX file (``ferbatch.models.registry.resolve_model_file``).
        spec: its registry entry: ``input.color`` "GRAY", square input.
        nv12, precision: as :func:`crop_graph` and :func:`ferbatch.models.graphs.prepare_classifier`.

    Returns:
        Path of the prepared ONNX file: inputs ``planes``, ``warps``, ``taps``, ``tap_weights``,
        ``frame_pos`` (and ``colour`` when ``nv12``); the classifier's outputs.

    Raises:
        ValueError: a colour classifier or a non-square input.
    """
    from pathlib import Path

    import onnx

    from ferbatch.models.graphs import _cache_path, _save_atomic, prepare_classifier
    from ferbatch.models.registry import sha256_file

    if spec.input.color != "GRAY" or spec.input.width != spec.input.height:
        raise ValueError(
            f"classifier {spec.name} | the crop graph cuts square grey crops; this input is {spec.input.color} {spec.input.width}x{spec.input.height}"
        )
    sha = sha256_file(Path(src))
    dst = _cache_path(spec, sha, {"kind": "crop_classifier", "nv12": nv12, "precision": precision, "crop_graph": CROP_GRAPH_VERSION})
    if dst.is_file():
        return dst
    cls = onnx.load(str(prepare_classifier(src, spec, src_sha256=sha, precision=precision)))
    m = crop_classifier(cls, spec.input.name, spec.input.width, nv12)
    onnx.checker.check_model(m)
    _save_atomic(m, dst)
    return dst
