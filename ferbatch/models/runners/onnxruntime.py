"""ONNX Runtime runner: the CPU execution provider, or the CUDA provider of ``onnxruntime-gpu``.

On CUDA the inputs are bound with I/O binding (:meth:`OrtRunner.infer_bound`): from host memory
(uint8 frames cross to the device, not float32) or, for arrays already in GPU memory (an NVDEC
frame, a CuPy/PyTorch tensor), in place through DLPack; outputs come back to host arrays or stay
on the device. The CUDA/cuDNN libraries that PyTorch's wheels ship are found with
``onnxruntime.preload_dlls()`` (ORT >= 1.21) when the system has none.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ferbatch.errors import ModelError

__all__ = ["OrtRunner", "cuda_provider_available", "CUDA_PROVIDER", "onnxruntime_module"]

CUDA_PROVIDER = "CUDAExecutionProvider"
log = logging.getLogger(__name__)


def onnxruntime_module():
    """The ``onnxruntime`` module with its telemetry off, for every session this process creates.

    ONNX Runtime (1.2x+ on Linux too) starts a 1DS telemetry uploader when its library loads,
    which looks up and contacts Microsoft's telemetry service about 30 s later, and
    ``disable_telemetry_events()`` does not stop it: only ``ORT_DISABLE_TELEMETRY=1`` in the
    environment before the import does. Both are done here (the variable stays set, so the
    processes this one starts, Ray's workers among them, inherit it). Import onnxruntime
    through this function, never directly.

    Raises:
        ImportError: onnxruntime is not installed.
    """
    if "onnxruntime" not in sys.modules:
        os.environ["ORT_DISABLE_TELEMETRY"] = "1"
    elif os.environ.get("ORT_DISABLE_TELEMETRY") != "1":
        log.warning("onnxruntime was imported before ferbatch could turn its telemetry off (ORT_DISABLE_TELEMETRY=1)")
        os.environ["ORT_DISABLE_TELEMETRY"] = "1"
    import onnxruntime as ort

    disable = getattr(ort, "disable_telemetry_events", None)
    if disable is not None:
        disable()
    return ort


def cuda_provider_available() -> tuple[bool, str]:
    """(True, device description) when ONNX Runtime's CUDA provider can run here; else (False, why)."""
    ort = onnxruntime_module()

    if CUDA_PROVIDER not in ort.get_available_providers():
        return False, "this onnxruntime has no CUDA provider (pip install 'ferbatch[gpu-ort]', which replaces onnxruntime)"
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        try:
            preload()
        except Exception as e:  # missing CUDA/cuDNN libraries: the session creation below says so too
            return False, f"the CUDA provider cannot load its libraries: {e}"
    try:
        import ctypes

        cudart = ctypes.CDLL("libcuda.so.1")
        count = ctypes.c_int()
        if cudart.cuInit(0) != 0 or cudart.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
            return False, "no CUDA device (the driver reports none)"
    except OSError:
        return False, "no NVIDIA driver (libcuda.so.1 not found)"
    return True, f"{count.value} CUDA device(s)"


class OrtRunner:
    """Runs one ONNX graph with ONNX Runtime.

    Args:
        model_path: a prepared ONNX file (symbolic batch).
        threads: intra-op threads for this session (1 per worker is best on small machines
            with one worker per core; 0 lets ONNX Runtime decide).
        providers: execution providers, default ``["CPUExecutionProvider"]``; with
            ``"CUDAExecutionProvider"`` first, inputs go through I/O binding.
        io_binding: run :meth:`infer` through :meth:`infer_bound` (host arrays in and out); None
            (default) = on the CUDA provider only, where it saves the float32 copies ``run`` makes.
        max_batch: the largest batch ``infer`` accepts in one call (callers chunk to it).
        name: label for logs.

    Attributes:
        input_names: the inputs every ``infer`` feed must hold.
        optional_input_names: inputs with a default in the graph (ONNX initializers a run may
            override, such as the detector's ``score_threshold``): fed when the feed holds them.

    Class attributes:
        cudnn_conv_algo_search: the CUDA provider's cuDNN convolution algorithm search.
            "HEURISTIC" (cuDNN's heuristic, no benchmarking) by default: the classifier's batch
            is the number of faces in a detector batch, a new shape on most calls, and ONNX
            Runtime's default "EXHAUSTIVE" benchmarks every algorithm for every new shape
            (ONNX Runtime docs, CUDA execution provider, ``cudnn_conv_algo_search``).

    Threads: ``thread_safe`` is True: ONNX Runtime's ``InferenceSession.run`` may be called from
    several threads at once (each call has its own state; on CUDA, each call binds its own I/O
    binding), so :meth:`clone` returns the runner itself.

    Raises:
        ModelError: onnxruntime cannot load the graph (the message has its reason).
    """

    cudnn_conv_algo_search = "HEURISTIC"
    thread_safe = True

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        threads: int = 1,
        providers: list[str] | None = None,
        io_binding: bool | None = None,
        max_batch: int = 64,
        name: str | None = None,
    ):
        ort = onnxruntime_module()

        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        cuda_options = {"cudnn_conv_algo_search": self.cudnn_conv_algo_search}
        ort_providers = [(p, cuda_options) if p == CUDA_PROVIDER else p for p in providers or ["CPUExecutionProvider"]]
        try:
            self._sess = ort.InferenceSession(str(model_path), so, providers=ort_providers)
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelError(f"{model_path} | onnxruntime cannot load it: {e}") from e
        self.name = name or f"onnxruntime:{Path(model_path).stem}"
        self.max_batch = int(max_batch)
        self.input_names = tuple(i.name for i in self._sess.get_inputs())
        # inputs with a default (initializers a run may override: the detector's score_threshold)
        self.optional_input_names = tuple(i.name for i in self._sess.get_overridable_initializers())
        self.output_names = tuple(o.name for o in self._sess.get_outputs())
        self.on_cuda = self._sess.get_providers()[0] == CUDA_PROVIDER
        if providers and providers[0] == CUDA_PROVIDER and not self.on_cuda:
            raise ModelError(f"{self.name} | ONNX Runtime did not start its CUDA provider (providers: {self._sess.get_providers()})")
        self.io_binding = self.on_cuda if io_binding is None else bool(io_binding)

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch (see :class:`ferbatch.specs.Runner`). Outputs are fresh arrays."""
        missing = set(self.input_names) - set(feed)
        if missing:
            raise ModelError(f"{self.name} | missing inputs {sorted(missing)}; expected {list(self.input_names)}")
        names = self.input_names + tuple(k for k in self.optional_input_names if k in feed)
        if not self.io_binding:
            outs = self._sess.run(None, {k: feed[k] for k in names})
            return dict(zip(self.output_names, outs, strict=True))
        return self.infer_bound(feed)

    def infer_bound(self, feed: Mapping[str, Any], *, outputs: str = "cpu") -> dict[str, Any]:
        """Run one batch through ONNX Runtime's I/O binding (``session.io_binding()``).

        What it buys on CUDA: ``session.run`` takes host arrays only, so a frame decoded by NVDEC
        into GPU memory would have to be copied to the host and back before the detector sees it.
        Bound here through DLPack, the NVDEC frame (or a CuPy/PyTorch CUDA tensor made from it) is
        the detector's input where it lies: no host round-trip, no copy; and with
        ``outputs="device"`` the outputs stay in GPU memory for a next graph. A host (numpy) input
        is copied to the device once, as uint8 for frames. On the CPU provider the results are
        those of ``session.run`` (bit for bit: the same kernels run).

        Args:
            feed: input name -> a numpy array (host memory, bound from host), or any array with
                ``__dlpack__`` (CUDA or CPU memory: bound in place through
                ``onnxruntime.OrtValue.from_dlpack``, no copy; it must stay alive and unchanged
                until this call returns). Dtype and shape as the graph's input (uint8 NHWC frames
                for the detector).
            outputs: "cpu": outputs copied to host and returned as numpy arrays; "device": left in
                the memory of the session's provider (GPU memory on CUDA) and returned as
                ``onnxruntime.OrtValue`` (``.numpy()`` copies to host; ``__dlpack__`` hands them
                on without a copy).

        Returns:
            output name -> numpy array (``outputs="cpu"``) or ``onnxruntime.OrtValue``.

        Raises:
            ModelError: a missing input, an input that is neither numpy nor DLPack, an unknown
                ``outputs``, or ONNX Runtime refusing the bound inputs (wrong dtype, shape or
                device: its message says which).
        """
        missing = set(self.input_names) - set(feed)
        if missing:
            raise ModelError(f"{self.name} | missing inputs {sorted(missing)}; expected {list(self.input_names)}")
        if outputs not in ("cpu", "device"):
            raise ModelError(f"{self.name} | outputs={outputs!r}; expected 'cpu' or 'device'")
        ort = onnxruntime_module()
        io = self._sess.io_binding()
        held = []  # the bound host arrays and DLPack values must outlive the run
        for k in self.input_names + tuple(k for k in self.optional_input_names if k in feed):
            x = feed[k]
            if isinstance(x, np.ndarray):
                x = np.ascontiguousarray(x)
                io.bind_cpu_input(k, x)
            elif hasattr(x, "__dlpack__"):
                try:
                    x = ort.OrtValue.from_dlpack(x)
                except (TypeError, RuntimeError, ValueError) as e:
                    raise ModelError(f"{self.name} | input {k}: {type(x).__name__} cannot be bound through DLPack: {e}") from e
                io.bind_ortvalue_input(k, x)
            else:
                raise ModelError(f"{self.name} | input {k}: a {type(x).__name__} is neither a numpy array nor a DLPack array")
            held.append(x)
        device = "cuda" if self.on_cuda and outputs == "device" else "cpu"
        for k in self.output_names:
            io.bind_output(k, device)
        try:
            self._sess.run_with_iobinding(io)
        except Exception as e:  # onnxruntime's own Fail/InvalidArgument types
            raise ModelError(f"{self.name} | onnxruntime refused the bound inputs: {str(e).strip().splitlines()[0]}") from e
        if outputs == "cpu":
            return dict(zip(self.output_names, io.copy_outputs_to_cpu(), strict=True))
        return dict(zip(self.output_names, io.get_outputs(), strict=True))

    def clone(self) -> OrtRunner:
        """This runner (see :class:`ferbatch.specs.Runner`): threads share one session."""
        return self

    def close(self) -> None:
        """Drop the session."""
        self._sess = None
