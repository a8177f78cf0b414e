"""Build the detector and classifier a worker owns: registry lookup, file resolution, graph
preparation and runner creation. Expensive; a worker calls :func:`load_models` once."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ferbatch.config import GPU_BACKENDS, JobConfig
from ferbatch.errors import ConfigError
from ferbatch.models.frame_graphs import frame_graphs, graph_runners
from ferbatch.models.graphs import prepare_classifier, prepare_detector
from ferbatch.models.prior import configure_classifier
from ferbatch.models.registry import ModelSpec, load_registry, resolve_model_file
from ferbatch.specs import Runner
from ferbatch.vision.classify import Classifier
from ferbatch.vision.detect import Detector
from ferbatch.vision.tiling import AnyDetector, FrameSizedDetector, TiledDetector

__all__ = [
    "Models",
    "ModelRef",
    "gpu_visible",
    "load_models",
    "prepare_models",
    "prepare_graphs",
    "resolve_specs",
    "resolve_backend",
]


@dataclass(frozen=True)
class ModelRef:
    """Which model file a result came from (recorded in the manifest and the videos table)."""

    name: str
    file: str
    sha256: str


Wrap = Callable[[Runner, Runner], tuple[AnyDetector, Classifier]]


@dataclass
class Models:
    """A worker's loaded models.

    Threads: the detector and classifier wrappers may be shared by threads; their runners only when
    ``thread_safe`` (see :class:`ferbatch.specs.Runner`). A thread that runs beside others takes
    :meth:`for_thread`.

    Attributes:
        backend: "onnxruntime", "onnxruntime-cuda", "tensorrt" or "openvino"; backend_reason: why it was picked.
        graph_runners: the runners of the in-graph pre-processing (NV12 detector, crop classifier;
            ONNX Runtime, thread-safe), freed with the detector's.
        wrap: builds the detector and classifier around two runners as :func:`load_models` did
            (None: :meth:`for_thread` cannot clone).
        owned: which of (detector runner, classifier runner) ``close`` frees: a thread's models
            share the runners that are thread-safe with the models they came from.
    """

    detector: AnyDetector
    classifier: Classifier
    refs: dict[str, ModelRef]
    backend: str = "onnxruntime"
    backend_reason: str = ""
    detect_batch: int = 8  # frames per detector call, resolved for the backend
    wrap: Wrap | None = field(default=None, repr=False, compare=False)
    owned: tuple[bool, bool] = (True, True)
    graph_runners: tuple[Runner, ...] = field(default=(), repr=False, compare=False)

    @property
    def takes_nv12(self) -> bool:
        """True when the detector (and an aligned grey classifier) run the in-graph pre-processing
        on :class:`ferbatch.picture.Nv12Picture` frames (``--preprocess``: :func:`ferbatch.models.frame_graphs.frame_graphs`):
        decoders should then yield those."""
        return bool(self.graph_runners)

    @property
    def thread_safe(self) -> bool:
        """True when several threads may run these models at once (both runners thread-safe)."""
        return bool(self.detector.runner.thread_safe and self.classifier.runner.thread_safe)

    def for_thread(self) -> Models:
        """Models another thread runs beside the threads running these: these models when
        ``thread_safe``; else the same loaded models behind the runners' clones (OpenVINO: an
        infer request each; TensorRT: an execution context, stream and buffers each). Close the
        result (it frees its clones only) before these.

        Raises:
            ModelError: a runner cannot be cloned (closed; out of device memory), or these models
                were not made by :func:`load_models` (no ``wrap``).
        """
        if self.thread_safe:
            return self
        from ferbatch.errors import ModelError

        if self.wrap is None:
            raise ModelError(f"{self.detector.runner.name} | not thread-safe, and these models cannot be cloned for another thread")
        runners = (self.detector.runner, self.classifier.runner)
        clones: list[Runner] = []
        try:
            for r in runners:
                clones.append(r if r.thread_safe else r.clone())
        except BaseException:
            for r, c in zip(runners, clones, strict=False):
                if c is not r:
                    c.close()
            raise
        det, cls = self.wrap(clones[0], clones[1])
        owned = (clones[0] is not runners[0], clones[1] is not runners[1])
        return dataclasses.replace(self, detector=det, classifier=cls, owned=owned)

    def close(self) -> None:
        """Free the runners these models own (both, unless they came from :meth:`for_thread`)."""
        if self.owned[0]:
            self.detector.runner.close()
            for r in self.graph_runners:
                r.close()
        if self.owned[1]:
            self.classifier.runner.close()


def resolve_specs(cfg: JobConfig) -> tuple[ModelSpec, ModelSpec]:
    """The detector and classifier registry entries for ``cfg`` (defaults filled in; the classifier
    with ``cfg.prior`` and ``cfg.align`` applied: :func:`ferbatch.models.prior.configure_classifier`).

    Raises:
        ConfigError: unknown model, wrong kind, or a classifier that needs landmarks paired with a
            detector that gives none.
    """
    reg = load_registry()
    det = reg.get(cfg.detector or reg.default_detector, "detector")
    cls = configure_classifier(reg.get(cfg.classifier or reg.default_classifier, "classifier"), cfg.prior, cfg.align)
    if cls.requires_landmarks and not det.gives_landmarks:
        with_lm = ", ".join(sorted(n for n, s in reg.models.items() if s.gives_landmarks))
        raise ConfigError(
            f"classifier {cls.name} | needs 5 face landmarks; pair it with a detector that gives them ({with_lm}), got {det.name}"
        )
    return det, cls


def resolve_backend(requested: str) -> tuple[str, str]:
    """(backend, reason) for ``requested`` = auto | tensorrt | onnxruntime-cuda | onnxruntime | openvino,
    probed in this process (a worker decides in its own environment).

    ``auto`` takes TensorRT when a GPU, tensorrt and pycuda are present, else ONNX Runtime's CUDA
    provider when onnxruntime-gpu sees a GPU, else ONNX Runtime on the CPU.

    Raises:
        ConfigError: a GPU backend requested but unusable here (the reason is in the message).
    """
    if requested in ("onnxruntime", "openvino"):
        return requested, "requested"
    from ferbatch.models.runners.onnxruntime import cuda_provider_available

    if requested == "onnxruntime-cuda":
        ok, why = cuda_provider_available()
        if not ok:
            raise ConfigError(f"--backend onnxruntime-cuda | not usable on this machine: {why}")
        return "onnxruntime-cuda", f"requested, {why}"
    from ferbatch.models.trt_plans import gpu_available

    ok, why = gpu_available()
    if requested == "tensorrt" and not ok:
        raise ConfigError(f"--backend tensorrt | not usable on this machine: {why}")
    if ok:
        return "tensorrt", f"GPU {why}"
    cuda_ok, cuda_why = cuda_provider_available()
    if cuda_ok:
        return "onnxruntime-cuda", f"no TensorRT ({why}); ONNX Runtime CUDA: {cuda_why}"
    if not gpu_visible():  # a CPU machine: which GPU packages are missing is beside the point
        return "onnxruntime", "no GPU"
    return "onnxruntime", f"no TensorRT GPU ({why}); no ONNX Runtime CUDA ({cuda_why})"


def gpu_visible() -> bool:
    """True when this machine shows an NVIDIA GPU (the driver's ``/proc/driver/nvidia/gpus``
    entries, ``/dev/nvidia0``..., or WSL's ``/dev/dxg``) that ``CUDA_VISIBLE_DEVICES`` does not
    hide, whether or not the packages to use it are installed."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    with contextlib.suppress(OSError):
        if gpus.is_dir() and any(gpus.iterdir()):
            return True
    return os.path.exists("/dev/dxg") or any(Path("/dev").glob("nvidia[0-9]*"))


def _trt_plan(graph, spec: ModelSpec, precision: str, max_batch: int):
    """The TensorRT plan for a prepared graph on this node's GPU (built under a file lock when missing)."""
    from ferbatch.models.trt_plans import build_or_load_plan, engine_key

    inp = spec.input
    # the prepared graphs take uint8 NHWC (models.graphs.prepend_uint8_input)
    key = engine_key(spec.name, graph, precision, inp.name, (inp.height, inp.width, inp.channels), max_batch)
    return build_or_load_plan(graph, key)


def _trt_runner(graph, spec: ModelSpec, precision: str, max_batch: int):
    from ferbatch.models.runners.tensorrt import TrtRunner

    return TrtRunner(_trt_plan(graph, spec, precision, max_batch), name=f"tensorrt:{spec.name}")


def prepare_models(cfg: JobConfig) -> tuple[ModelSpec, ModelSpec]:
    """Resolve, verify (sha256, ONNX parse) and prepare both models of ``cfg`` in this process,
    so a job refuses bad models before it touches its output or starts a worker; the prepared
    graphs land in the user cache, where the workers find them.

    Returns:
        The detector and classifier specs.

    Raises:
        ConfigError, ModelError: one line naming the model, the file, what is wrong and the fix.
    """
    (det_spec, det_graph), (cls_spec, cls_graph) = prepare_graphs(cfg, resolve_backend(cfg.backend)[0])
    _build_engines_here(cfg, det_graph, det_spec, cls_graph, cls_spec)
    return det_spec, cls_spec


def detector_nms_in_graph(cfg: JobConfig, det_spec: ModelSpec, backend: str) -> bool:
    """Whether the detector graph a worker on ``backend`` runs has the post-processing inside.

    YuNet's in-graph post-processing decodes all its priors; NumPy decodes only the candidates above
    the threshold: on a CPU backend the NumPy path is 0.2-0.4 ms/frame cheaper
    (scripts/bench_yunet_postproc.py) with the same rows (tests/test_yunet_nms_graph.py), so YuNet's
    graph post-processing is used where the graph runs on a GPU backend; UltraFace's NMS is in the
    graph everywhere. ``cfg.in_graph_nms`` False (``--numpy-nms``) turns it off for both."""
    return cfg.in_graph_nms and (backend in GPU_BACKENDS or not det_spec.gives_landmarks)


def prepare_graphs(cfg: JobConfig, backend: str | None = None) -> tuple[tuple[ModelSpec, Path], tuple[ModelSpec, Path]]:
    """((detector spec, prepared graph), (classifier spec, prepared graph)) for ``cfg``: resolved,
    sha256-checked, parsed and prepared (cached in the user cache).

    Args:
        cfg: the job config.
        backend: the resolved backend the graphs are prepared for (the detector's post-processing
            follows it: :func:`detector_nms_in_graph`); None = as ``cfg.in_graph_nms`` says (export).

    Raises:
        ConfigError, ModelError: see :func:`prepare_models`.
    """
    det_spec, cls_spec = resolve_specs(cfg)
    nms = cfg.in_graph_nms if backend is None else detector_nms_in_graph(cfg, det_spec, backend)
    det_graph = _detector_graph(cfg, det_spec, resolve_model_file(det_spec, cfg.detector_file), nms)
    cls_graph = prepare_classifier(
        resolve_model_file(cls_spec, cfg.classifier_file), cls_spec, src_sha256=cls_spec.sha256, precision=cfg.precision
    )
    return (det_spec, det_graph), (cls_spec, cls_graph)


def _detector_graph(cfg: JobConfig, det_spec: ModelSpec, det_file: Path, nms: bool) -> Path:
    """The prepared detector graph for ``cfg`` (thresholds, K, precision), with or without the
    post-processing inside (``nms``); cached by :func:`ferbatch.models.graphs.prepare_detector`."""
    return prepare_detector(
        det_file,
        det_spec,
        in_graph_nms=nms,
        max_faces=cfg.max_faces,
        score_threshold=cfg.score_threshold,
        iou_threshold=cfg.iou_threshold,
        src_sha256=det_spec.sha256,
        precision=cfg.precision,
    )


def _build_engines_here(cfg: JobConfig, det_graph: Path, det_spec: ModelSpec, cls_graph: Path, cls_spec: ModelSpec) -> None:
    """Build the TensorRT plans once, in this process, when it can run TensorRT itself (a local GPU
    node): the workers then only deserialize them. Elsewhere (a CPU driver of a GPU cluster) the
    first worker of each node builds them under the plan's file lock."""
    if cfg.backend not in ("auto", "tensorrt"):
        return
    from ferbatch.models.trt_plans import gpu_available

    if not gpu_available()[0]:
        return
    det_batch, cls_batch = cfg.batches("tensorrt")
    _trt_plan(det_graph, det_spec, cfg.precision, det_batch)
    _trt_plan(cls_graph, cls_spec, cfg.precision, cls_batch)


def load_models(cfg: JobConfig, threads: int | None = None, *, graph_nms: bool | None = None) -> Models:
    """Resolve, check, prepare and load both models for ``cfg``.

    Args:
        cfg: the job config.
        threads: ONNX Runtime intra-op threads (default ``cfg.resolved_threads()``).
        graph_nms: run the detector's post-processing in the graph (True) or in NumPy (False)
            whatever the backend; None = :func:`detector_nms_in_graph` (``ferbatch check-engines``
            compares the two explicitly).

    Raises:
        ConfigError, ModelError: see :func:`resolve_specs` and
            :func:`ferbatch.models.registry.resolve_model_file`.
    """
    import logging

    from ferbatch.errors import ModelError
    from ferbatch.models.runners.onnxruntime import CUDA_PROVIDER, OrtRunner

    det_spec, cls_spec = resolve_specs(cfg)
    threads = threads or cfg.resolved_threads()
    backend, reason = resolve_backend(cfg.backend)
    det_file = resolve_model_file(det_spec, cfg.detector_file)
    cls_file = resolve_model_file(cls_spec, cfg.classifier_file)

    def det_graph(nms: bool) -> Path:
        return _detector_graph(cfg, det_spec, det_file, nms)

    cls_graph = prepare_classifier(cls_file, cls_spec, src_sha256=cls_spec.sha256, precision=cfg.precision)
    nms = detector_nms_in_graph(cfg, det_spec, backend) if graph_nms is None else graph_nms and det_spec.nms_in_graph
    frame_graphs(cfg, backend, det_spec)  # --preprocess graph on a backend that cannot: refused before any runner is built
    det_batch, cls_batch = cfg.batches(backend)
    providers = [CUDA_PROVIDER, "CPUExecutionProvider"] if backend == "onnxruntime-cuda" else None
    if backend == "tensorrt":
        try:
            det_runner = _trt_runner(det_graph(nms), det_spec, cfg.precision, det_batch)
        except ModelError as e:
            if not nms:
                raise
            logging.getLogger(__name__).warning("in-graph NMS engine failed (%s); using the raw detector + NumPy NMS", e)
            nms = False
            det_runner = _trt_runner(det_graph(False), det_spec, cfg.precision, det_batch)
        cls_runner = _trt_runner(cls_graph, cls_spec, cfg.precision, cls_batch)
    elif backend == "openvino":
        from ferbatch.models.runners.openvino import OvRunner

        det_runner = OvRunner(det_graph(nms), threads=threads, max_batch=det_batch, name=f"openvino:{det_spec.name}")
        cls_runner = OvRunner(cls_graph, threads=threads, max_batch=cls_batch, name=f"openvino:{cls_spec.name}")
    else:
        det_runner = OrtRunner(det_graph(nms), threads=threads, providers=providers, max_batch=det_batch, name=f"{backend}:{det_spec.name}")
        cls_runner = OrtRunner(cls_graph, threads=threads, providers=providers, max_batch=cls_batch, name=f"{backend}:{cls_spec.name}")

    nv12_runner, frames_runner = graph_runners(
        cfg, backend, det_spec, cls_spec, det_graph(nms), cls_file, threads, providers, (det_batch, cls_batch)
    )

    def wrap(det_runner: Runner, cls_runner: Runner) -> tuple[AnyDetector, Classifier]:
        plain = Detector(
            det_runner,
            det_spec,
            in_graph_nms=nms,
            max_faces=cfg.max_faces,
            score_threshold=cfg.score_threshold,
            iou_threshold=cfg.iou_threshold,
            nv12_runner=nv12_runner,
        )
        # the input follows the frame where the graph allows it (TensorRT plans have one input size: kept fixed)
        inner = FrameSizedDetector(plain, max_side=det_spec.input_max_side) if det_spec.input_max_side and backend != "tensorrt" else plain
        det: AnyDetector = inner if cfg.min_face_px is None else TiledDetector(inner, min_face_px=cfg.min_face_px)
        return det, Classifier(cls_runner, cls_spec, frames_runner=frames_runner)

    det, cls = wrap(det_runner, cls_runner)
    refs = {
        "detector": ModelRef(det_spec.name, det_spec.file, det_spec.sha256),
        "classifier": ModelRef(cls_spec.name, cls_spec.file, cls_spec.sha256),
    }
    graphs = tuple(r for r in (nv12_runner, frames_runner) if r is not None)
    return Models(det, cls, refs, backend, reason, det_batch, wrap=wrap, graph_runners=graphs)
