"""The ONNX Runtime runner's I/O binding path (``OrtRunner.infer_bound``) on the CPU provider, with
the real registry models and real frames: outputs equal ``session.run``'s, from numpy inputs, from
DLPack inputs (numpy's own ``__dlpack__``: bound in place), with outputs left as OrtValues, and
through ``infer`` with ``io_binding=True``. The CUDA side (NVDEC frames bound on the device) is
measured by ``scripts/gpu_check.py``."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest
from conftest import INTEL_2FACE

from ferbatch.config import JobConfig
from ferbatch.errors import ModelError
from ferbatch.models.load import prepare_graphs
from ferbatch.models.runners.onnxruntime import OrtRunner


@pytest.fixture(scope="module")
def graphs():
    (_, det), (_, cls) = prepare_graphs(JobConfig())
    return det, cls


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """(4, 224, 320, 3) uint8 RGB: real frames, resized to a detector-friendly size."""
    with av.open(str(INTEL_2FACE)) as c:
        imgs = [f.to_ndarray(format="rgb24") for _, f in zip(range(4), c.decode(video=0), strict=False)]
    return np.stack([cv2.resize(i, (320, 224), interpolation=cv2.INTER_AREA) for i in imgs])


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), k


def _feed(runner: OrtRunner, frames: np.ndarray) -> dict[str, np.ndarray]:
    inp = runner._sess.get_inputs()[0]
    if inp.shape[1] == "height":  # the detector: NHWC uint8 frames
        return {inp.name: frames}
    h, w = inp.shape[1], inp.shape[2]  # the classifier: gray crops of the frames
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    crops = [cv2.resize(g[y : y + 96, x : x + 96], (w, h)) for g in gray for x, y in ((40, 20), (150, 60), (200, 100))]
    return {inp.name: np.stack(crops)[..., None].astype(np.uint8)}


@pytest.mark.parametrize("which", ["detector", "classifier"])
def test_io_binding_equals_session_run(graphs, frames, which):
    path = graphs[0] if which == "detector" else graphs[1]
    plain = OrtRunner(path, threads=1)
    bound = OrtRunner(path, threads=1, io_binding=True)
    assert not plain.io_binding and bound.io_binding
    feed = _feed(plain, frames)
    ref = plain.infer(feed)  # session.run
    assert len(ref) == len(plain.output_names) and all(v.size for v in ref.values())
    _same(bound.infer(feed), ref)
    _same(plain.infer_bound(feed), ref)
    # DLPack input: numpy's own __dlpack__ (a CUDA array takes the same path on the GPU), bound in place
    dl = {k: _DLPackOnly(v) for k, v in feed.items()}
    _same(plain.infer_bound(dl), ref)
    # outputs left where the provider put them (host memory on the CPU provider), as OrtValues
    dev = plain.infer_bound(feed, outputs="device")
    assert all(type(v).__name__ == "OrtValue" for v in dev.values())
    _same({k: v.numpy() for k, v in dev.items()}, ref)


class _DLPackOnly:
    """A real array seen only through the DLPack protocol (not an ndarray), as a CuPy or PyTorch
    tensor or an NVDEC frame is seen by the runner."""

    def __init__(self, a: np.ndarray):
        self.a = a

    def __dlpack__(self, **kw):
        return self.a.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()


def test_io_binding_errors_are_clear(graphs, frames):
    r = OrtRunner(graphs[0], threads=1, name="det")
    name = r.input_names[0]
    with pytest.raises(ModelError, match=r"^det \| missing inputs \['input'\]"):
        r.infer_bound({})
    with pytest.raises(ModelError, match=r"^det \| input input: a list is neither a numpy array nor a DLPack array"):
        r.infer_bound({name: [1, 2]})
    with pytest.raises(ModelError, match=r"^det \| outputs='gpu'; expected 'cpu' or 'device'"):
        r.infer_bound({name: frames}, outputs="gpu")
    with pytest.raises(ModelError, match=r"^det \| onnxruntime refused the bound inputs: .*"):
        r.infer_bound({name: frames.astype(np.float32)})
