"""TensorRT runner with pycuda buffers and one stream per runner, a clone per thread (GPU only;
never imported on the CPU path).

The worker's CUDA primary context is retained (``retain_primary_context``, never
``pycuda.autoinit``, so TensorRT and pycuda share one context) and pushed around every call that
touches the GPU, because a Ray actor's method may run on another thread than ``__init__``.
Pagelocked host buffers and device buffers are allocated once at the profile's max batch;
``infer`` sets the input shape, binds addresses (``set_tensor_address``), copies in, runs
``execute_async_v3`` and copies out on the stream. Outputs are copies the caller owns.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

from ferbatch.errors import ModelError

__all__ = ["TrtRunner"]


class TrtRunner:
    """Runs one TensorRT plan (named I/O tensors, TensorRT 10/11).

    Args:
        plan_path: a serialized engine from :func:`ferbatch.models.trt_plans.build_or_load_plan`.
        name: label for logs.

    Threads: ``thread_safe`` is False: the execution context, the stream and the staging buffers
    are one call's state. :meth:`clone` gives another thread its own context, stream and buffers
    over the same deserialized engine (the weights are on the GPU once).

    Raises:
        ConfigError: tensorrt/pycuda missing; ModelError: the plan does not deserialize.
    """

    thread_safe = False

    def __init__(self, plan_path: str | os.PathLike[str], *, name: str | None = None):
        from ferbatch.models.trt_plans import require_tensorrt

        trt, cuda = require_tensorrt()
        cuda.init()
        ctx = cuda.Device(0).retain_primary_context()
        ctx.push()
        try:
            runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            with open(plan_path, "rb") as f:
                engine = runtime.deserialize_cuda_engine(f.read())
        finally:
            cuda.Context.pop()
        if engine is None:
            ctx.detach()
            raise ModelError(f"{plan_path} | TensorRT cannot deserialize this plan")
        self._attach(trt, cuda, ctx, engine, name or f"tensorrt:{os.path.basename(str(plan_path))}")

    def _attach(self, trt, cuda, ctx, engine, name: str) -> None:
        """Take the retained primary context ``ctx`` (this runner detaches it on close) and the
        engine (shared with other clones); make this runner's execution context, stream and buffers."""
        self._trt, self._cuda, self._ctx, self._engine, self.name = trt, cuda, ctx, engine, name
        try:
            self._make_call_state()
        except BaseException:
            self.close()  # what was allocated, and the retained context
            raise

    def _make_call_state(self) -> None:
        trt, cuda = self._trt, self._cuda
        with self._active():
            self._context = self._engine.create_execution_context()
            if self._context is None:
                raise ModelError(f"{self.name} | TensorRT cannot create an execution context (out of GPU memory?)")
            self._stream = cuda.Stream()
            names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
            self.input_names = tuple(n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
            self.output_names = tuple(n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
            first = self.input_names[0]
            self.max_batch = int(self._engine.get_tensor_profile_shape(first, 0)[2][0])
            self._host, self._dev = {}, {}
            for n in names:
                shape = list(self._engine.get_tensor_profile_shape(n, 0)[2]) if n in self.input_names else None
                if shape is None:  # outputs: static except the batch, which is at most max_batch
                    shape = [self.max_batch if d < 0 else d for d in self._engine.get_tensor_shape(n)]
                dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(n)))
                self._host[n] = cuda.pagelocked_empty(tuple(shape), dtype)
                self._dev[n] = cuda.mem_alloc(self._host[n].nbytes)

    @contextlib.contextmanager
    def _active(self):
        self._ctx.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch (dim 0 <= max_batch); see :class:`ferbatch.specs.Runner`."""
        cuda = self._cuda
        n = next(iter(feed.values())).shape[0]
        if n > self.max_batch:
            raise ModelError(f"{self.name} | batch {n} exceeds the engine's profile max {self.max_batch}")
        with self._active():
            for name in self.input_names:
                x = np.ascontiguousarray(feed[name], dtype=self._host[name].dtype)
                if not self._context.set_input_shape(name, x.shape):
                    raise ModelError(
                        f"{self.name} | TensorRT refused input shape {x.shape} for {name!r} (outside the optimization profile?)"
                    )
                host = self._host[name].reshape(-1)[: x.size].reshape(x.shape)
                host[...] = x
                cuda.memcpy_htod_async(self._dev[name], host, self._stream)
            for name in self.input_names + self.output_names:
                self._context.set_tensor_address(name, int(self._dev[name]))
            if not self._context.execute_async_v3(self._stream.handle):
                raise ModelError(f"{self.name} | execute_async_v3 failed")
            outs = {}
            for name in self.output_names:
                shape = tuple(self._context.get_tensor_shape(name))
                size = int(np.prod(shape))
                host = self._host[name].reshape(-1)[:size]
                cuda.memcpy_dtoh_async(host, self._dev[name], self._stream)
                outs[name] = (host, shape)
            self._stream.synchronize()
        return {k: h.reshape(s).copy() for k, (h, s) in outs.items()}

    def clone(self) -> TrtRunner:
        """A runner with its own execution context, stream and buffers over this engine (see
        :class:`ferbatch.specs.Runner`); it retains the primary context once more.

        Raises:
            ModelError: this runner is closed, or TensorRT cannot create another context.
        """
        if getattr(self, "_ctx", None) is None:
            raise ModelError(f"{self.name} | closed: nothing to clone")
        twin = TrtRunner.__new__(TrtRunner)
        twin._attach(self._trt, self._cuda, self._cuda.Device(0).retain_primary_context(), self._engine, self.name)
        return twin

    def close(self) -> None:
        """Free the execution context, engine, stream and device buffers, then release the retained
        primary context. pycuda's ``detach`` of a primary context releases it without popping it,
        so the context is pushed and popped explicitly around the frees and nothing stays current."""
        if getattr(self, "_ctx", None) is None:
            return
        with self._active():
            for d in getattr(self, "_dev", {}).values():
                d.free()
            self._dev = {}
            self._context = None
            self._engine = None
            self._stream = None
        self._ctx.detach()
        self._ctx = None
