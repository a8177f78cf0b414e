"""The image input of a prepared graph: uint8 ``(N, H, W, C)`` RGB pixels, normalised inside the graph.

:func:`prepend_uint8_input` puts Cast -> Mul -> Add -> Transpose in front of the network's float32
NCHW input; :func:`fold_channel_reversal` makes a network trained on BGR take RGB by reversing its first
convolution's input channels. Used by :mod:`ferbatch.models.graphs`; onnx is imported, nothing else.
"""

from __future__ import annotations

import numpy as np

from ferbatch.specs import InputSpec, ModelSpec

__all__ = ["NCHW_TENSOR", "fold_channel_reversal", "prepared_input_contract", "prepend_uint8_input"]

NCHW_TENSOR = "pre_nchw"  # the float32 (N, C, H, W) tensor that prepend_uint8_input feeds the network


def fold_channel_reversal(model, input_name: str) -> str:
    """Make a graph trained on BGR take RGB (or the reverse) at no cost per frame.

    When every consumer of ``input_name`` (N, C, H, W) is a Conv with ``group=1`` and its weight
    (O, C, kh, kw) an initializer, reversing the weight's input channels is exactly reversing the
    input's channels (a convolution sums over input channels; the registry's normalisation before it
    is the same scalar for every channel). Otherwise a ``Gather`` on the channel axis is inserted in
    front of the consumers (a copy of the image on the device).

    Args:
        model: an ONNX ModelProto (edited in place), input still float32 NCHW.
        input_name: the image input.

    Returns:
        "folded" or "gather" (how it was done).
    """
    from onnx import numpy_helper as nph

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    users = [n for n in g.node if input_name in n.input]

    def foldable(n) -> bool:
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        return n.op_type == "Conv" and group == 1 and n.input[0] == input_name and n.input[1] in inits

    weights = {n.input[1] for n in users} if users and all(foldable(n) for n in users) else set()
    if weights and not any(w in n.input for n in g.node if n not in users for w in weights):
        for name in weights:
            w = nph.to_array(inits[name])
            inits[name].CopyFrom(nph.from_array(np.ascontiguousarray(w[:, ::-1]), name))
        return "folded"
    from onnx import helper as oh

    g.initializer.append(nph.from_array(np.array([2, 1, 0], np.int64), "pre_rev_idx"))
    for n in users:
        for j, name in enumerate(n.input):
            if name == input_name:
                n.input[j] = "pre_rev"
    old = list(g.node)
    del g.node[:]
    g.node.extend([oh.make_node("Gather", [input_name, "pre_rev_idx"], ["pre_rev"], axis=1)] + old)
    return "gather"


def prepend_uint8_input(model, inp: InputSpec) -> None:
    """Make the graph's image input uint8 ``(N, H, W, C)`` and normalise it inside the graph.

    Prepends Cast(float32) -> Mul(scale / std) -> Add(-mean / std) -> Transpose(0, 3, 1, 2) in front
    of the original ``(N, C, H, W)`` float32 input, which keeps its consumers; Mul/Add are left out
    when they are the identity. The arithmetic and its order are those of the float32 NumPy
    pre-processing it replaces (float32 constants), so the values reaching the network are the same.

    Args:
        model: an ONNX ModelProto whose first graph input is ``inp.name`` (edited in place).
        inp: the registry's input spec (size, channels, scale, mean, std); symbolic H and W of the
            graph (yunet-2026may, or yunet-frame once prepared) stay symbolic, so the input can follow the frame.
    """
    from onnx import TensorProto
    from onnx import helper as oh
    from onnx import numpy_helper as nph

    g = model.graph
    x = next(i for i in g.input if i.name == inp.name)
    src = x.type.tensor_type.shape.dim
    h, w = ((src[k].dim_param or fixed) if len(src) == 4 else fixed for k, fixed in ((2, inp.height), (3, inp.width)))
    inner = NCHW_TENSOR
    for n in g.node:
        for j, name in enumerate(n.input):
            if name == inp.name:
                n.input[j] = inner
    a = np.float32(inp.scale / inp.std)
    b = np.float32(-inp.mean / inp.std)
    nodes = [oh.make_node("Cast", [inp.name], ["pre_f"], to=TensorProto.FLOAT)]
    cur = "pre_f"
    if a != 1.0:
        g.initializer.append(nph.from_array(np.array(a, np.float32), "pre_a"))
        nodes.append(oh.make_node("Mul", [cur, "pre_a"], ["pre_m"]))
        cur = "pre_m"
    if b != 0.0:
        g.initializer.append(nph.from_array(np.array(b, np.float32), "pre_b"))
        nodes.append(oh.make_node("Add", [cur, "pre_b"], ["pre_n"]))
        cur = "pre_n"
    nodes.append(oh.make_node("Transpose", [cur], [inner], perm=[0, 3, 1, 2]))
    old = list(g.node)
    del g.node[:]
    g.node.extend(nodes + old)
    x.CopyFrom(oh.make_tensor_value_info(inp.name, TensorProto.UINT8, ["N", h, w, inp.channels]))


def prepared_input_contract(spec: ModelSpec) -> dict:
    """What a prepared graph (``uint8_input=True``) takes, for people who run it themselves
    (``ferbatch export``'s ``export.json``).

    Returns:
        name; dtype "uint8"; layout "NHWC"; height, width (the registry's size; a detector with
        ``input_max_side`` accepts any multiple of 32 up to it); channels; color (a detector takes
        RGB whatever its network's order, :func:`fold_channel_reversal`; a classifier its own);
        normalisation "in the graph" with the registry's scale, mean, std it applies.
    """
    inp = spec.input
    color = "RGB" if spec.kind == "detector" and inp.color == "BGR" else inp.color
    return {
        "name": inp.name,
        "dtype": "uint8",
        "layout": "NHWC",
        "height": inp.height,
        "width": inp.width,
        "channels": inp.channels,
        "color": color,
        "normalisation": {"where": "in the graph", "scale": inp.scale, "mean": inp.mean, "std": inp.std},
    }
