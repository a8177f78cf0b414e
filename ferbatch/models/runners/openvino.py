"""OpenVINO runner (CPU): the same prepared ONNX graphs as ONNX Runtime, read by OpenVINO's ONNX
front end, or an IR (``.xml`` + ``.bin``) written by :func:`save_ir`. Needs the ``openvino`` extra."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ferbatch.errors import ConfigError, ModelError

__all__ = ["OvRunner", "save_ir", "openvino_available"]


def openvino_available() -> tuple[bool, str]:
    """(usable, why): whether the OpenVINO runtime imports and has a CPU device."""
    try:
        import openvino as ov
    except ImportError as e:
        return False, f"the openvino package is not installed (pip install 'ferbatch[openvino]'): {e}"
    devs = ov.Core().available_devices
    return ("CPU" in devs, f"OpenVINO {ov.get_version()} devices {devs}")


class OvRunner:
    """Runs one graph with OpenVINO on the CPU.

    Args:
        model_path: a prepared ONNX file (symbolic batch) or an OpenVINO IR ``.xml``.
        threads: inference threads (0 = OpenVINO's choice).
        max_batch: the largest batch ``infer`` accepts in one call (callers chunk to it).
        name: label for logs.

    Threads: ``thread_safe`` is False. The compiled model may be shared, but an infer request holds
    one call's input and output tensors, so two threads on one request read each other's outputs
    (or a tensor of another call's shape). :meth:`clone` gives another thread its own request over
    the same compiled model (no second compilation).

    Raises:
        ConfigError: the openvino package is missing.
        ModelError: OpenVINO cannot read or compile the graph (the message has its reason).
    """

    thread_safe = False

    def __init__(self, model_path: str | os.PathLike[str], *, threads: int = 1, max_batch: int = 64, name: str | None = None):
        try:
            import openvino as ov
        except ImportError as e:
            raise ConfigError(f"--backend openvino | needs the openvino package (pip install 'ferbatch[openvino]'): {e}") from e
        core = ov.Core()
        cfg: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            cfg["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            self._compiled = core.compile_model(core.read_model(str(model_path)), "CPU", cfg)
        except Exception as e:  # OpenVINO raises RuntimeError with the front end's message
            raise ModelError(f"{model_path} | OpenVINO cannot read or compile it: {e}") from e
        self._attach(self._compiled, name or f"openvino:{Path(model_path).stem}", max_batch)

    def _attach(self, compiled, name: str, max_batch: int) -> None:
        """Take ``compiled`` (shared with other clones) and make this runner's own infer request."""
        self._compiled = compiled
        self._req = compiled.create_infer_request()
        self.name = name
        self.max_batch = int(max_batch)
        self.input_names = tuple(_name(i) for i in compiled.inputs)
        self.output_names = tuple(_name(o) for o in compiled.outputs)

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch (see :class:`ferbatch.specs.Runner`). Outputs are copies (the request's
        buffers are reused by the next call)."""
        missing = set(self.input_names) - set(feed)
        if missing:
            raise ModelError(f"{self.name} | missing inputs {sorted(missing)}; expected {list(self.input_names)}")
        res = self._req.infer({k: feed[k] for k in self.input_names})
        return {_name(o): np.array(res[o], copy=True) for o in self._compiled.outputs}

    def clone(self) -> OvRunner:
        """A runner with its own infer request over this compiled model (see :class:`ferbatch.specs.Runner`).

        Raises:
            ModelError: this runner is closed.
        """
        if self._compiled is None:
            raise ModelError(f"{self.name} | closed: nothing to clone")
        twin = OvRunner.__new__(OvRunner)
        twin._attach(self._compiled, self.name, self.max_batch)
        return twin

    def close(self) -> None:
        """Drop the infer request and this runner's reference to the compiled model (freed with the
        last clone's)."""
        self._req = None
        self._compiled = None


def save_ir(model_path: str | os.PathLike[str], xml_path: str | os.PathLike[str]) -> Path:
    """Convert an ONNX graph to OpenVINO IR (``xml_path`` and the ``.bin`` beside it), fp32 weights.

    Raises:
        ConfigError: the openvino package is missing. ModelError: the conversion fails.
    """
    try:
        import openvino as ov
    except ImportError as e:
        raise ConfigError(f"--to openvino | needs the openvino package (pip install 'ferbatch[openvino]'): {e}") from e
    xml = Path(xml_path)
    xml.parent.mkdir(parents=True, exist_ok=True)
    try:
        ov.save_model(ov.convert_model(str(model_path)), str(xml), compress_to_fp16=False)
    except Exception as e:
        raise ModelError(f"{model_path} | OpenVINO cannot convert it: {e}") from e
    return xml


def _name(port) -> str:
    """The graph's own name of a port: OpenVINO keeps every name a tensor had in the ONNX file (YuNet's
    ``cls_8`` is also ``291``) and ``get_any_name`` may return the internal numeric one."""
    names = sorted(port.get_names(), key=lambda n: (n.isdigit(), n))
    return names[0] if names else port.get_any_name()
