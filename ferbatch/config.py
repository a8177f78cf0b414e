"""The one configuration object of a job, built from CLI flags and recorded in the manifest."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass

from ferbatch.errors import ConfigError

__all__ = [
    "JobConfig",
    "default_workers",
    "resolve_defaults",
    "with_defaults",
    "RESULT_KEYS",
    "BACKENDS",
    "GPU_BACKENDS",
    "DECODERS",
    "PREPROCESS",
]


# chosen by measurement (scripts/bench_interval.py, docs/performance.md): face-frame recall, box IoU and
# label agreement against every-frame detection on the shared clips and the hand-labelled frames; 3 meets
# the bar (recall >= 0.98, median IoU >= 0.90, agreement >= 0.97) with the tracks' boxes in between, 5 does not
DEFAULT_DETECT_EVERY = 3
# a CPU batch of frames holds at most 8 720p frames' pixels: at 1080p 4 frames instead of 8 (peak RSS of
# a 2-worker 1080p job 461 -> 317 MB: the frames in flight and the detector's activations; docs/performance.md)
CPU_BATCH_PIXELS = 8 * 1280 * 720
BETWEEN = ("tracked", "window")  # what finds the faces between full detections (ferbatch.vision.analysis)
CLASSIFY_BETWEEN = ("changes", "every")  # which rows between full detections the classifier runs on (ferbatch.vision.analysis)


def default_workers() -> int:
    """One worker per available core (each runs its models single-threaded)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class JobConfig:
    """Everything that decides a job's results or its speed.

    Attributes:
        detector, classifier: registry model names (None = the registry's defaults).
        detector_file, classifier_file: explicit model files (checked against the registry hash).
        backend: "auto" (TensorRT when a GPU, tensorrt and pycuda are present, else ONNX Runtime's
            CUDA provider when onnxruntime-gpu sees a GPU, else ONNX Runtime on the CPU),
            "tensorrt", "onnxruntime-cuda", "onnxruntime" (CPU) or "openvino" (CPU, the ``openvino`` extra).
        precision: "fp32" or "fp16" (the graphs' own types; fp16 keeps the NMS in float32).
        in_graph_nms: NMS inside the detector graph; False = the NumPy fallback.
        max_faces: most faces kept per frame (K of the fixed-size detector outputs).
        score_threshold, iou_threshold: detector thresholds (None = the registry's).
        detect_batch: frames per detector call; 0 = by backend (CPU 8, fewer for frames above
            720p so that a batch holds at most :data:`CPU_BATCH_PIXELS`; GPU 64: a TensorRT profile
            or a CUDA kernel launch wants a full device, a CPU core wants cache-sized batches).
        classify_batch: most face crops per classifier call; 0 = by backend (CPU 64, GPU 512).
        workers: Ray worker actors (0 = one per core; on GPU nodes workers_per_gpu per GPU).
        workers_per_gpu: workers sharing each GPU (0 = the node's CPUs per GPU minus one).
        threads_per_worker: ONNX Runtime intra-op threads per worker (0 = cores / workers).
        decode_threads: FFmpeg decoder threads per worker (0 = the worker's ONNX Runtime threads: its
            share of the cores, used by decoding while inference waits).
        prefetch: decoded frame batches buffered ahead of inference per worker.
        track: run the face tracker over each finished video (track ids, smoothed probabilities,
            the tracks table).
        min_face_px: smallest face side (frame pixels) to find; frames too large for the
            detector's input to show such a face at 20 input pixels are also run in overlapping
            tiles (:class:`ferbatch.vision.tiling.TiledDetector`). None = whole frames only.
        detect_every: full-frame detection every N analysed frames and at every shot cut
            (:mod:`ferbatch.vision.analysis`); 1 = every frame; None = :data:`DEFAULT_DETECT_EVERY`
            with tracking, 1 without (resolved at construction). Needs tracking when > 1.
        between: what finds the faces between full detections: "tracked" (each track's
            constant-velocity box; rows say ``box_source = "tracked"``) or "window" (the detector
            on a window around each track: the detector's own boxes and scores, dearer).
        classify_between: rows between two full detections of a track ("tracked"): "changes" = the
            classifier runs on them only where the track's classifications at the two detections
            disagree, else their probabilities are interpolated in time between the two (rows say
            ``prob_source = "interpolated"``); "every" = the classifier runs on every row.
        sample_fps: analyse about this many frames per second of video, chosen by pts
            (:mod:`ferbatch.media.sampling`); None = every frame.
        prior: the class prior of the decision (:mod:`ferbatch.models.prior`): "as-trained" (the
            network's logits), "balanced" (logit adjustment, tau from the registry) or "graph" (the
            graph's outputs unchanged); None = the classifier's registry default.
        align: True = the aligned crop (:mod:`ferbatch.vision.align`: the detector's 5 landmarks
            warped onto a FER2013-like template; the square crop for detectors without landmarks);
            None = the classifier's registry default (``crop.align``).
        decoder: "auto" (NVDEC when the backend is a GPU backend, PyNvVideoCodec imports and the
            stream is one NVDEC decodes; else PyAV), "pyav" or "nvdec" (a stream NVDEC cannot
            decode falls back to PyAV, noted in the videos table). A speed knob: both decoders
            give the same frames (:mod:`ferbatch.media.decoders`).
        preprocess: where the frames' pre-processing runs: "host" (NumPy/OpenCV: letterbox, colour
            conversion, face crops), "graph" (inside the ONNX graphs, on NV12 frames:
            :mod:`ferbatch.models.graph_nv12`, :mod:`ferbatch.models.graph_crop`; with NVDEC on the
            CUDA backend the frames never leave the GPU) or "auto" (graph where NVDEC decodes for
            ONNX Runtime CUDA with CuPy, else host). A speed knob like the backend: the graphs
            compute in OpenCV's arithmetic, so boxes and landmarks equal the host path's and labels
            differ on ~0.2 % of rows (a crop pixel rounding the other way; tests/test_graph_path.py).
    """

    detector: str | None = None
    classifier: str | None = None
    detector_file: str | None = None
    classifier_file: str | None = None
    backend: str = "auto"
    precision: str = "fp32"
    in_graph_nms: bool = True
    max_faces: int = 64
    score_threshold: float | None = None
    iou_threshold: float | None = None
    detect_batch: int = 0
    classify_batch: int = 0
    workers: int = 0
    workers_per_gpu: int = 0
    threads_per_worker: int = 0
    decode_threads: int = 0
    prefetch: int = 2
    track: bool = True
    min_face_px: float | None = None
    detect_every: int | None = None
    between: str = "tracked"
    classify_between: str = "changes"
    sample_fps: float | None = None
    decoder: str = "auto"
    preprocess: str = "auto"
    prior: str | None = None
    align: bool | None = None

    def __post_init__(self):
        if self.detect_every is None:  # frozen: resolved once, so to_dict() and the manifest hold the number
            object.__setattr__(self, "detect_every", DEFAULT_DETECT_EVERY if self.track else 1)
        if self.classify_between not in CLASSIFY_BETWEEN:
            raise ConfigError(f"--classify-between | received {self.classify_between!r}; expected one of {', '.join(CLASSIFY_BETWEEN)}")
        if self.between not in BETWEEN:
            raise ConfigError(f"--between | received {self.between!r}; expected one of {', '.join(BETWEEN)}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"--backend | received {self.backend!r}; expected one of {', '.join(BACKENDS)}")
        if self.prior is not None and self.prior not in PRIORS:
            raise ConfigError(f"--prior | received {self.prior!r}; expected one of {', '.join(PRIORS)}")
        if self.decoder not in DECODERS:
            raise ConfigError(f"--decoder | received {self.decoder!r}; expected one of {', '.join(DECODERS)}")
        if self.preprocess not in PREPROCESS:
            raise ConfigError(f"--preprocess | received {self.preprocess!r}; expected one of {', '.join(PREPROCESS)}")
        if self.precision not in ("fp32", "fp16"):
            raise ConfigError(f"--precision | received {self.precision!r}; expected fp32 or fp16")
        for name in ("detect_batch", "classify_batch"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} | received {getattr(self, name)}; expected >= 0 (0 = by backend)")
        for name in ("max_faces",):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} | received {getattr(self, name)}; expected >= 1")
        assert self.detect_every is not None
        if self.detect_every < 1:
            raise ConfigError(f"--detect-every | received {self.detect_every}; expected >= 1 (1 = full-frame detection on every frame)")
        if self.detect_every > 1 and not self.track:
            raise ConfigError(
                f"--detect-every {self.detect_every} | needs tracking (between full detections the tracks find the faces); "
                "drop --no-track or use --detect-every 1"
            )
        if self.sample_fps is not None and not self.sample_fps > 0:
            raise ConfigError(f"--sample-fps | received {self.sample_fps}; expected > 0 frames per second (omit it for every frame)")
        if self.min_face_px is not None and self.min_face_px <= 0:
            raise ConfigError(f"--min-face-px | received {self.min_face_px}; expected > 0")
        if self.workers < 0 or self.workers_per_gpu < 0 or self.threads_per_worker < 0 or self.prefetch < 0 or self.decode_threads < 0:
            raise ConfigError("--workers/--workers-per-gpu/--threads-per-worker/--prefetch/--decode-threads | expected >= 0")

    def batches(self, backend: str) -> tuple[int, int]:
        """(frames per detector call, crops per classifier call) for a resolved ``backend``."""
        gpu = backend in GPU_BACKENDS
        return self.detect_batch or (64 if gpu else 8), self.classify_batch or (512 if gpu else 64)

    def batch_pixels(self, backend: str) -> int | None:
        """Most pixels in one batch of frames (None = no bound): :data:`CPU_BATCH_PIXELS` for a CPU
        backend whose ``detect_batch`` was left to the backend, else None."""
        return CPU_BATCH_PIXELS if not self.detect_batch and backend not in GPU_BACKENDS else None

    def resolved_workers(self) -> int:
        """Number of worker actors to start."""
        return self.workers or default_workers()

    def resolved_threads(self) -> int:
        """ONNX Runtime threads per worker."""
        return self.threads_per_worker or max(1, default_workers() // self.resolved_workers())

    def to_dict(self) -> dict:
        """Plain dict (JSON-serialisable)."""
        return asdict(self)

    def result_settings(self) -> dict:
        """The settings that change the rows (not speed knobs, not which path a verified model
        file was read from: its sha256 is checked against the registry)."""
        return {k: getattr(self, k) for k in RESULT_KEYS}

    def result_key(self) -> str:
        """Hash of :meth:`result_settings`: a dataset holds rows of one key only."""
        return hashlib.sha256(json.dumps(self.result_settings(), sort_keys=True).encode()).hexdigest()[:16]

    def differences(self, recorded: dict) -> list[str]:
        """Result-changing settings that differ from a recorded config (``to_dict()`` of an
        earlier run, from its manifest), as "name: old -> new" (empty when the rows would mix)."""
        return [f"{k}: {recorded.get(k)!r} -> {getattr(self, k)!r}" for k in RESULT_KEYS if recorded.get(k) != getattr(self, k)]


BACKENDS = ("auto", "onnxruntime", "onnxruntime-cuda", "tensorrt", "openvino")
GPU_BACKENDS = ("onnxruntime-cuda", "tensorrt")
PRIORS = ("as-trained", "balanced", "graph")  # ferbatch.models.prior.PRIORS (this module imports no models code)
DECODERS = ("auto", "pyav", "nvdec")  # a speed knob, not in RESULT_KEYS: NVDEC gives PyAV's frames
PREPROCESS = ("auto", "host", "graph")  # a speed knob, not in RESULT_KEYS (as the backend): host or in-graph pre-processing

# settings that change the rows; a dataset holds rows made with one value of each
RESULT_KEYS = (
    "detector",
    "classifier",
    "in_graph_nms",
    "max_faces",
    "score_threshold",
    "iou_threshold",
    "track",
    "precision",
    "min_face_px",
    "detect_every",
    "between",
    "classify_between",
    "sample_fps",
    "prior",
    "align",
)


def resolve_defaults(config: dict) -> dict:
    """A config dict (``to_dict()``, or one recorded in a manifest) with the registry defaults
    filled in (older manifests record None), so "default" and the same model named compare equal.
    A config recorded before ``prior`` and ``align`` existed (keys absent) was made with the graph's
    outputs unchanged and the square crop: ``prior = "graph"``, ``align = False``; one recorded
    before ``detect_every`` detected every frame (1), one recorded before ``between`` found
    the faces between full detections in windows (``"window"`` when its interval was > 1), and one
    recorded before ``classify_between`` classified every row (``"every"``).

    Raises:
        ConfigError: the model registry cannot be read.
    """
    from ferbatch.models.registry import load_registry

    reg = load_registry()
    d = dict(config)
    d["detector"] = d.get("detector") or reg.default_detector
    d["classifier"] = d.get("classifier") or reg.default_classifier
    cls = reg.models.get(d["classifier"])
    d["prior"] = "graph" if "prior" not in config else d["prior"] or (cls.prior if cls is not None else "graph")
    if "align" not in config:
        d["align"] = False
    elif d["align"] is None:
        d["align"] = bool(cls.crop.get("align", False)) if cls is not None else False
    d.setdefault("detect_every", 1)
    if "between" not in config:
        d["between"] = "window" if (d["detect_every"] or 1) > 1 else "tracked"
    d.setdefault("classify_between", "every")
    spec = reg.models.get(d["detector"])
    if spec is not None:
        d["score_threshold"] = spec.score_threshold if d.get("score_threshold") is None else d["score_threshold"]
        d["iou_threshold"] = spec.iou_threshold if d.get("iou_threshold") is None else d["iou_threshold"]
    return d


def with_defaults(cfg: JobConfig) -> JobConfig:
    """``cfg`` with its result-changing settings' registry defaults filled in (:func:`resolve_defaults`).

    Raises:
        ConfigError: the model registry cannot be read.
    """
    from dataclasses import replace

    return replace(cfg, **{k: v for k, v in resolve_defaults(cfg.to_dict()).items() if k in RESULT_KEYS})
