"""``TrtRunner.clone()`` over stand-ins for tensorrt and pycuda (CPU machines: the real check of two
threads over TensorRT needs a GPU). A clone owns its execution context, stream, buffers and one
retain of the primary context, shares the engine, and closes without touching the original."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from ferbatch.errors import ModelError


class _Ctx:
    def __init__(self, log: list[str]):
        self.log, self.detached = log, False

    def push(self) -> None:
        self.log.append("push")

    def detach(self) -> None:
        self.detached = True


class _Mem:
    def __init__(self, n: int):
        self.freed = False

    def free(self) -> None:
        self.freed = True

    def __int__(self) -> int:
        return 1


class _ExecCtx:
    def __init__(self):
        self.shapes: dict[str, tuple] = {}

    def set_input_shape(self, name, shape):
        self.shapes[name] = shape
        return True

    def set_tensor_address(self, name, addr):
        pass

    def execute_async_v3(self, handle):
        return True

    def get_tensor_shape(self, name):
        return (self.shapes["in"][0], 2)


class _Engine:
    num_io_tensors = 2

    def get_tensor_name(self, i):
        return ["in", "out"][i]

    def get_tensor_mode(self, name):
        return 0 if name == "in" else 1

    def get_tensor_profile_shape(self, name, profile):
        return [(1, 3), (4, 3), (8, 3)]

    def get_tensor_shape(self, name):
        return (-1, 2)

    def get_tensor_dtype(self, name):
        return "f"

    def create_execution_context(self):
        return _ExecCtx()


@pytest.fixture
def fake_gpu(monkeypatch, tmp_path):
    """tensorrt and pycuda.driver stand-ins; returns (plan path, log of context pushes and pops)."""
    log: list[str] = []
    cuda = types.ModuleType("pycuda.driver")
    cuda.init = lambda: None
    cuda.Device = lambda i: types.SimpleNamespace(retain_primary_context=lambda: _Ctx(log))
    cuda.Context = types.SimpleNamespace(pop=lambda: log.append("pop"))
    cuda.Stream = lambda: types.SimpleNamespace(handle=0, synchronize=lambda: None)
    cuda.pagelocked_empty = lambda shape, dtype: np.zeros(shape, dtype)
    cuda.mem_alloc = _Mem
    cuda.memcpy_htod_async = lambda dev, host, stream: None
    cuda.memcpy_dtoh_async = lambda host, dev, stream: host.fill(7)
    trt = types.ModuleType("tensorrt")
    trt.Runtime = lambda logger: types.SimpleNamespace(deserialize_cuda_engine=lambda b: _Engine())
    trt.Logger = type("Logger", (), {"WARNING": 0, "__init__": lambda self, level: None})
    trt.TensorIOMode = types.SimpleNamespace(INPUT=0, OUTPUT=1)
    trt.nptype = lambda dtype: np.float32
    pycuda = types.ModuleType("pycuda")
    pycuda.driver = cuda
    for name, mod in (("pycuda", pycuda), ("pycuda.driver", cuda), ("tensorrt", trt)):
        monkeypatch.setitem(sys.modules, name, mod)
    plan = tmp_path / "plan.bin"
    plan.write_bytes(b"plan")
    return plan, log


def test_a_clone_has_its_own_call_state_over_the_same_engine(fake_gpu):
    from ferbatch.models.runners.tensorrt import TrtRunner

    plan, log = fake_gpu
    r = TrtRunner(plan, name="tensorrt:fake")
    assert not r.thread_safe
    c = r.clone()
    assert c is not r and c._engine is r._engine
    assert c._context is not r._context and c._stream is not r._stream and c._ctx is not r._ctx
    assert all(c._dev[n] is not r._dev[n] and c._host[n] is not r._host[n] for n in ("in", "out"))
    assert c.infer({"in": np.ones((3, 3), np.float32)})["out"].shape == (3, 2)
    ctx, dev = c._ctx, list(c._dev.values())
    c.close()
    assert ctx.detached and all(d.freed for d in dev) and not r._ctx.detached  # the original untouched
    assert r.infer({"in": np.ones((2, 3), np.float32)})["out"].shape == (2, 2)
    r.close()
    assert log.count("push") == log.count("pop")  # every push popped: nothing left current
    with pytest.raises(ModelError, match="closed"):
        r.clone()
