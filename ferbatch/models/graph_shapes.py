"""Shape edits of ONNX graphs: a symbolic batch dimension, and symbolic H/W for detectors whose
operators already follow any input size."""

from __future__ import annotations

import numpy as np

__all__ = ["make_batch_symbolic", "make_hw_symbolic"]


def make_batch_symbolic(model) -> None:
    """Drop weights from graph inputs, name dim 0 'N', and turn Reshape targets [1, ...] into [0, ...]."""
    from onnx import numpy_helper as nph

    g = model.graph
    init_names = {i.name for i in g.initializer}
    real_inputs = [i for i in g.input if i.name not in init_names]
    del g.input[:]
    g.input.extend(real_inputs)
    for i in g.input:
        i.type.tensor_type.shape.dim[0].dim_param = "N"
    for o in g.output:
        dims = o.type.tensor_type.shape.dim
        if len(dims):
            dims[0].dim_param = "N"
    del g.value_info[:]
    inits = {i.name: i for i in g.initializer}
    consts = {n.output[0]: n for n in g.node if n.op_type == "Constant"}
    for n in g.node:
        if n.op_type != "Reshape":
            continue
        name = n.input[1]
        tensor = inits[name] if name in inits else (consts[name].attribute[0].t if name in consts else None)
        if tensor is None:
            continue
        arr = nph.to_array(tensor).copy()
        if arr.ndim == 1 and arr.size > 1 and arr[0] == 1:
            arr[0] = 0  # "copy the input's dim": keeps the batch
            tensor.CopyFrom(nph.from_array(arr.astype(np.int64), tensor.name))


def make_hw_symbolic(model, input_name: str) -> None:
    """Name the input's H and W (and the outputs' anchor dimension) symbolic, for a detector whose
    operators already follow any input size (YuNet: scale-based Resize, ``[1, -1, C]`` Reshapes):
    OpenCV Zoo's 2023mar file only declares a fixed 640x640 input. Intermediate shapes were cleared
    by :func:`make_batch_symbolic` and are inferred again after preparation."""
    g = model.graph
    x = next(i for i in g.input if i.name == input_name)
    dims = x.type.tensor_type.shape.dim
    if len(dims) == 4:
        for k, name in ((2, "height"), (3, "width")):
            if not dims[k].dim_param:
                dims[k].Clear()
                dims[k].dim_param = name
    for o in g.output:
        od = o.type.tensor_type.shape.dim
        if len(od) == 3 and not od[1].dim_param:  # (N, anchors, C): anchors follow H x W
            od[1].Clear()
            od[1].dim_param = f"anchors_{o.name}"
