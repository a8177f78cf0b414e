"""What crosses the boundary between the model layer and the vision layer: the registry entry
dataclasses (:class:`ModelSpec`, :class:`InputSpec`) and the :class:`Runner` interface.

Pure data and a Protocol: the vision layer (pre/post-processing) reads specs and calls runners
without importing the builder layer (:mod:`ferbatch.models`) that makes them. A detector's
post-processing is a type, its :class:`DetectorDecoder` (implementations in
:mod:`ferbatch.vision.decoders`), chosen once by the registry from the entry's ``decoder`` key;
the properties ``gives_landmarks``, ``nms_in_graph`` and ``letterbox`` read that decoder, and no
module compares family strings (tests/test_architecture.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["DetectorDecoder", "InputSpec", "ModelSpec", "Runner"]


@dataclass(frozen=True)
class InputSpec:
    """How to feed a model.

    Attributes:
        name: input tensor name.
        layout: "NCHW" (the only layout the registry's models use).
        width, height: input size in pixels.
        color: "RGB", "BGR" or "GRAY".
        scale, mean, std: normalisation ``x' = (x * scale - mean) / std`` applied to uint8 pixels.
    """

    name: str
    layout: str
    width: int
    height: int
    color: str
    scale: float = 1.0
    mean: float = 0.0
    std: float = 1.0

    @property
    def channels(self) -> int:
        """1 for GRAY, else 3."""
        return 1 if self.color == "GRAY" else 3


@runtime_checkable
class DetectorDecoder(Protocol):
    """A detector's post-processing: how its frames are fed and its raw outputs become faces.

    Attributes:
        name: the registry's ``decoder`` value ("yunet", "ultraface").
        gives_landmarks: the detector outputs 5 face landmarks per box.
        letterbox: frames are letterboxed (aspect kept, zero padding right/bottom) rather than
            plainly resized into the input.
        nms_in_graph: the prepared graph can get this decoding and ONNX ``NonMaxSuppression``
            appended (:mod:`ferbatch.models.graph_nms`), so a runner returns final boxes.
    """

    @property
    def name(self) -> str: ...

    @property
    def gives_landmarks(self) -> bool: ...

    @property
    def letterbox(self) -> bool: ...

    @property
    def nms_in_graph(self) -> bool: ...

    def decode(
        self, out: dict[str, np.ndarray], spec: ModelSpec, score_threshold: float, iou_threshold: float, k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Raw outputs of one batch -> the kept faces, in input pixels (the NumPy post-processing).

        Args:
            out: the runner's outputs (graph without in-graph NMS), batch of N.
            spec: the detector's registry entry (output names, input size, strides).
            score_threshold: keep scores above this.
            iou_threshold: NMS IoU threshold.
            k: the most faces per frame.

        Returns:
            boxes (N, K, 4) float32 x1 y1 x2 y2 in input pixels, scores (N, K) float32 (0 marks an
            empty slot), landmarks (N, K, 5, 2) float32 or None when ``gives_landmarks`` is False.
        """
        ...


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry (see ferbatch/models/registry.toml for the meaning of each key)."""

    name: str
    kind: str  # "detector" | "classifier"
    family: str  # informational (provenance); detectors route by ``decoder``, never by family
    file: str
    sha256: str
    input: InputSpec
    outputs: dict[str, str]
    license: str = ""
    source: str = ""
    url: str | None = None
    labels: tuple[str, ...] = ()
    output_kind: str = "probs"  # classifiers: "probs" | "logits"
    temperature: float = 1.0  # classifiers with logits: probabilities = softmax(logits / temperature) (Guo et al. 2017)
    crop: dict[str, Any] = field(default_factory=dict)
    # classifiers, logit adjustment (ferbatch.models.prior): the training label prior in ``labels``
    # order; the adjustment and temperature already in the graph; the registry's default setting
    train_prior: tuple[float, ...] = ()
    graph_tau: float = 0.0
    graph_temperature: float = 1.0
    prior: str = "graph"  # "as-trained" | "balanced" | "graph"
    prior_tau: float = 0.0  # tau of the "balanced" setting
    logit_bias: tuple[float, ...] = ()  # set when loaded (prior setting): added to the graph's logits before softmax
    requires_landmarks: bool = False
    boxes_decoded: bool = True
    score_threshold: float = 0.7
    iou_threshold: float = 0.3
    bundled_path: str | None = None  # set for bundled entries: the committed file
    input_max_side: int = 0  # detectors with dynamic H/W: the input follows the frame up to this side (0 = fixed input)
    decoder: DetectorDecoder | None = None  # detectors: the post-processing the registry chose (``decoder`` key)

    @property
    def gives_landmarks(self) -> bool:
        """True for detectors whose decoder outputs 5 face landmarks per box (YuNet)."""
        return self.kind == "detector" and self.decoder is not None and self.decoder.gives_landmarks

    @property
    def nms_in_graph(self) -> bool:
        """True for detectors whose decoder can be appended to the prepared graph with ONNX
        ``NonMaxSuppression`` (UltraFace: priors; YuNet: per-stride priors and landmarks, grid from
        the dynamic input size), so a GPU backend returns final boxes."""
        return self.kind == "detector" and self.decoder is not None and self.decoder.nms_in_graph

    @property
    def letterbox(self) -> bool:
        """True when frames are letterboxed (aspect kept, zero padding right/bottom) rather than
        plainly resized into the detector's input (YuNet; UltraFace was trained on plain resizes)."""
        return self.kind == "detector" and self.decoder is not None and self.decoder.letterbox


@runtime_checkable
class Runner(Protocol):
    """A loaded model that maps named input arrays to named output arrays.

    Threads: a runner whose ``thread_safe`` is True may run ``infer`` from several threads at once
    (an ONNX Runtime session). Otherwise ``infer`` calls must not overlap (an OpenVINO infer
    request, a TensorRT execution context and its stream and buffers are one call's state): each
    thread runs its own :meth:`clone`, which shares the loaded model (weights, compiled graph,
    engine) and owns only that per-call state.

    Attributes:
        name: a short label for logs ("onnxruntime:ultraface-rfb-320").
        max_batch: the largest batch one ``infer`` call takes (0 = unbounded).
        input_names, output_names: tensor names in the graph.
        thread_safe: ``infer`` may be called from several threads at once.
    """

    name: str
    max_batch: int
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    thread_safe: bool

    def clone(self) -> Runner:
        """A runner of the same model for another thread.

        Returns:
            A new runner with its own per-call state over the same loaded model (close it, then
            the runner it came from); the runner itself when ``thread_safe`` (nothing new to close).

        Raises:
            ModelError: the backend cannot make the per-call state (out of device memory).
        """
        ...

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
