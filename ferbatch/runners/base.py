"""The runner interface shared by ONNX Runtime and TensorRT backends."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Runner"]


@runtime_checkable
class Runner(Protocol):
    """A loaded model that maps named input arrays to named output arrays.

    Attributes:
        name: a short label for logs ("onnxruntime:ultraface-rfb-320").
        max_batch: the largest batch one ``infer`` call takes (0 = unbounded).
        input_names, output_names: tensor names in the graph.
    """

    name: str
    max_batch: int
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch.

        Args:
            feed: input name -> C-contiguous array of the graph's dtype; dim 0 is the batch.

        Returns:
            output name -> array owned by the caller (never a buffer the runner reuses).
        """
        ...

    def close(self) -> None:
        """Free the session or engine; the runner is unusable afterwards."""
        ...
