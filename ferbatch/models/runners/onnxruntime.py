"""ONNX Runtime runner (CPU execution provider by default)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ferbatch.errors import ModelError

__all__ = ["OrtRunner"]


class OrtRunner:
    """Runs one ONNX graph with ONNX Runtime.

    Args:
        model_path: a prepared ONNX file (symbolic batch).
        threads: intra-op threads for this session (1 per worker is best on small machines
            with one worker per core; 0 lets ONNX Runtime decide).
        providers: execution providers, default ``["CPUExecutionProvider"]``.
        max_batch: the largest batch ``infer`` accepts in one call (callers chunk to it).
        name: label for logs.

    Raises:
        ModelError: onnxruntime cannot load the graph (the message has its reason).
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        threads: int = 1,
        providers: list[str] | None = None,
        max_batch: int = 64,
        name: str | None = None,
    ):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        try:
            self._sess = ort.InferenceSession(str(model_path), so, providers=providers or ["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelError(f"{model_path} | onnxruntime cannot load it: {e}") from e
        self.name = name or f"onnxruntime:{Path(model_path).stem}"
        self.max_batch = int(max_batch)
        self.input_names = tuple(i.name for i in self._sess.get_inputs())
        self.output_names = tuple(o.name for o in self._sess.get_outputs())

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch (see :class:`ferbatch.specs.Runner`). Outputs are fresh arrays."""
        missing = set(self.input_names) - set(feed)
        if missing:
            raise ModelError(f"{self.name} | missing inputs {sorted(missing)}; expected {list(self.input_names)}")
        outs = self._sess.run(None, {k: feed[k] for k in self.input_names})
        return dict(zip(self.output_names, outs, strict=True))

    def close(self) -> None:
        """Drop the session."""
        self._sess = None
