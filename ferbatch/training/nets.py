"""The classifier networks ``ferbatch train`` builds (PyTorch; plain Conv/BN/ReLU/pool/Add/Gemm
so they export to ONNX opset 17 and TensorRT without custom ops).

- ``vgg`` (v1): conv3x3/BN/ReLU blocks [w, w] pool [2w, 2w] pool [4w, 4w] pool [8w] pool, global
  average pooling, dropout 0.3, linear (VGG-style, Simonyan & Zisserman 2015).
- ``res``: ``vgg`` with one residual basic block (He et al. 2016: two conv3x3/BN and an identity
  shortcut) of 8w channels at 6x6 instead of the last max-pool, where extra capacity is cheapest;
  3x the parameters of ``vgg`` at w=16 and about 1.6x its cost per face (ONNX Runtime, 1 thread).

Every network maps (N, 1, S, S) float32 = (gray / 255 - 0.5) / 0.5 to (N, 8) float32 logits in
FER+ order; S is 48 or 64 (global average pooling makes the head size-free).
"""

from __future__ import annotations

__all__ = ["build_model", "ARCHS", "calibrated", "init_from_onnx", "require_torch"]

ARCHS = ("vgg", "res")


def require_torch():
    """The ``torch`` module.

    Raises:
        ConfigError: PyTorch is not installed (the optional extra ``train``).
    """
    from ferbatch.errors import ConfigError

    try:
        import torch
    except ImportError as e:
        raise ConfigError(f"ferbatch train | needs PyTorch: pip install 'ferbatch[train]' (torch==2.13.0); {e}") from e
    return torch


_torch = require_torch


def build_model(width: int = 16, arch: str = "vgg"):
    """A fresh network (``torch.nn.Module``) of family ``arch`` with first-block width ``width``.

    Raises:
        ConfigError: unknown ``arch``.
    """
    from ferbatch.errors import ConfigError

    torch = _torch()
    nn = torch.nn

    def block(i, o):
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

    w = width
    if arch == "vgg":
        return nn.Sequential(
            *block(1, w),
            *block(w, w),
            nn.MaxPool2d(2),
            *block(w, 2 * w),
            *block(2 * w, 2 * w),
            nn.MaxPool2d(2),
            *block(2 * w, 4 * w),
            *block(4 * w, 4 * w),
            nn.MaxPool2d(2),
            *block(4 * w, 8 * w),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(0.3),
            nn.Linear(8 * w, 8),
        )
    if arch != "res":
        raise ConfigError(f"ferbatch train | unknown --arch {arch!r}; expected one of {', '.join(ARCHS)}")

    class Basic(nn.Module):  # type: ignore[name-defined]
        """conv-BN-ReLU-conv-BN + identity, ReLU (He et al. 2016, 'basic block')."""

        def __init__(self, c):
            super().__init__()
            self.body = nn.Sequential(*block(c, c), nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
            self.act = nn.ReLU(inplace=True)

        def forward(self, x):
            return self.act(x + self.body(x))

    return nn.Sequential(
        *block(1, w),
        *block(w, w),
        nn.MaxPool2d(2),
        *block(w, 2 * w),
        *block(2 * w, 2 * w),
        nn.MaxPool2d(2),
        *block(2 * w, 4 * w),
        *block(4 * w, 4 * w),
        nn.MaxPool2d(2),
        *block(4 * w, 8 * w),
        Basic(8 * w),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(8 * w, 8),
    )


def calibrated(model, temperature: float = 1.0, bias=None):
    """``model`` followed by ``(logits + bias) / temperature``, so the exported graph's softmax is the
    calibrated probability: temperature scaling (Guo et al. 2017) after an optional per-class
    logit bias (post-hoc logit adjustment, Menon et al. 2021). Input as ``model``'s, output (N, 8)
    float32; ``bias`` (8,) float or None."""
    import numpy as np

    torch = _torch()
    b = torch.from_numpy(np.zeros(8, np.float32) if bias is None else np.asarray(bias, np.float32))

    class _Calibrated(torch.nn.Module):  # type: ignore[name-defined]
        def __init__(self):
            super().__init__()
            self.inner = model
            self.register_buffer("bias", b.clone())
            self.register_buffer("inv_t", torch.tensor(1.0 / float(temperature)))

        def forward(self, x):
            return (self.inner(x) + self.bias) * self.inv_t

    return _Calibrated()


def raw_logits_graph(path) -> bytes:
    """The exported ``vgg``/``res`` graph at ``path``, serialised, with the output of its last ``Gemm`` (the linear
    layer) as its only output: the raw logits, before any logit adjustment or temperature a release baked in after it
    (``(z + bias) * inv_t``, ``scripts/release_model.py``).

    Raises:
        ValueError: the graph has no ``Gemm`` node (not a ``vgg``/``res`` export).
    """
    import onnx

    m = onnx.load(str(path))
    gemms = [n for n in m.graph.node if n.op_type == "Gemm"]
    if not gemms:
        raise ValueError(f"{path} | no Gemm node: not an exported vgg/res classifier")
    name = gemms[-1].output[0]
    del m.graph.output[:]
    m.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return bytes(m.SerializeToString())


def init_from_onnx(model, path, x_sample) -> float:
    """Load the weights of an exported ``vgg``/``res`` graph (BatchNorm folded into the convs by
    the export) into ``model`` of the same architecture and width, in place, for fine-tuning.

    Folding leaves a conv weight W' and bias b' per conv. The conv gets W'; its BatchNorm is set
    from the statistics (mean mu, variance var) of the conv's outputs over ``x_sample``: running
    stats mu, var, gamma = sqrt(var + eps), beta = mu + b', so in eval mode BN(W'x) = W'x + b'
    exactly, and in train mode nearly so (batch statistics ~ mu, var).

    Growing a ``res`` network from a ``vgg`` graph of the same width (its convs are the ``res``
    network's first ones): the graph's convs and linear layer are loaded into that prefix and the
    residual block's last BatchNorm scale is zeroed, so the block starts as the identity
    (function-preserving growth in the spirit of Net2Net, Chen et al. 2016, ICLR; zero-init of the
    last BN per Goyal et al. 2017). The grown network is not the graph (``res`` has no max-pool
    before the global average), so fine-tune it; the returned difference is then NaN.

    Args:
        model: a ``build_model`` network; path: the ONNX file; x_sample: (N, 1, S, S) float32 inputs.

    Returns:
        max |model(x) - onnx(x)| over the first 64 of ``x_sample``, onnx(x) being the graph's raw logits
        (:func:`raw_logits_graph`: a release's baked adjustment and temperature are not the network's): ~1e-5; NaN
        when grown.

    Raises:
        ConfigError: the graph's weights match neither the network's convs and linear layer nor
        their prefix (``res`` grown from ``vgg``).
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from ferbatch.errors import ConfigError
    from ferbatch.models.runners.onnxruntime import onnxruntime_module

    ort = onnxruntime_module()

    torch = _torch()
    nn = torch.nn
    g = onnx.load(str(path)).graph
    inits = {i.name: np.array(numpy_helper.to_array(i)) for i in g.initializer}
    pairs = [(inits[n.input[1]], inits[n.input[2]]) for n in g.node if n.op_type == "Conv"]
    gemm = [n for n in g.node if n.op_type == "Gemm"]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    lin = [m for m in model.modules() if isinstance(m, nn.Linear)]
    grown = 0 < len(pairs) < len(convs)
    if (
        len(gemm) != 1
        or (len(pairs) != len(convs) and not grown)
        or any(c.weight.shape != w.shape for c, (w, _) in zip(convs, pairs, strict=False))
    ):
        raise ConfigError(
            f"{path} | its {len(pairs)} convs do not match the network's {len(convs)} "
            "(arch and width must be the same, or a res network grown from a vgg graph of its width)"
        )
    stats: dict[int, tuple] = {}

    def hook(i):
        def f(_m, _inp, out):
            stats[i] = (out.mean((0, 2, 3)), out.var((0, 2, 3)))

        return f

    with torch.no_grad():
        for c, bn, (w, b) in zip(convs, bns, pairs, strict=False):
            c.weight.copy_(torch.from_numpy(np.array(w)))
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(np.array(b)))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
        lin[-1].weight.copy_(torch.from_numpy(inits[gemm[0].input[1]]))
        lin[-1].bias.copy_(torch.from_numpy(inits[gemm[0].input[2]]))
        hooks = [c.register_forward_hook(hook(i)) for i, c in enumerate(convs)]
        model.eval()
        model(x_sample)
        for h in hooks:
            h.remove()
        for i, (bn, (_, b)) in enumerate(zip(bns, pairs, strict=False)):
            mu, var = stats[i]
            bn.running_mean.copy_(mu)
            bn.running_var.copy_(var)
            bn.weight.copy_(torch.sqrt(var + bn.eps))
            bn.bias.copy_(mu + torch.from_numpy(b))
        if grown:
            # the residual branch's output BN (the last one of each block) starts at zero: identity block
            for blk in (m for m in model.modules() if hasattr(m, "body")):
                blk.body[-1].weight.zero_()
                blk.body[-1].bias.zero_()
            return float("nan")
        raw = ort.InferenceSession(raw_logits_graph(path), providers=["CPUExecutionProvider"])
        ref = raw.run(None, {g.input[0].name: x_sample[:64].numpy()})[0]
        return float(np.abs(model(x_sample[:64]).numpy() - ref).max())
