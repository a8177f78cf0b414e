"""The Python entry points besides :func:`ferbatch.open`: :func:`run` (the main job, with the
command line's defaults) and :func:`analyze` (the faces and expressions of one image or frame).

Like ``cli/``, this module may import every layer; nothing below it imports it. Ray, TensorRT and
torch are imported only when a job or a model needs them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ferbatch.errors import ConfigError, FerbatchError
from ferbatch.faces import FaceBatch, face_columns
from ferbatch.labels import EMOTIONS, argmax_known

if TYPE_CHECKING:
    import pyarrow as pa

    from ferbatch.job.summary import JobSummary
    from ferbatch.models.load import Models

__all__ = ["DEFAULT_SHARD_FRAMES", "Faces", "analyze", "run"]

# `ferbatch run --shard-frames` and `ferbatch.run(shard_frames=)` share this default
DEFAULT_SHARD_FRAMES = 1500


def run(
    inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    shard_frames: int = DEFAULT_SHARD_FRAMES,
    use_ray: bool | None = None,
    address: str | None = None,
    force: bool = False,
    overwrite: bool = False,
    full_hash: bool = False,
    progress: Callable[[str, int, int], None] | bool | None = None,
    **options: Any,
) -> JobSummary:
    """Run the main job, as ``ferbatch run INPUTS --out OUT`` does, with the same defaults.

    Args:
        inputs: video files and/or directories (searched recursively), one or a list.
        out: the output directory (a Parquet dataset; rerunning into it resumes).
        shard_frames: target frames per keyframe-aligned shard (0 = one shard per video).
        use_ray: run on Ray worker actors (an embedded Ray unless ``address``); False = in this process;
            None = in this process for small local jobs, Ray otherwise (as the CLI).
        address: a running Ray cluster ("auto", "HOST:PORT", "ray://HOST:PORT"); default
            ``$RAY_ADDRESS`` when set, else a new local instance.
        force: write into a non-empty ``out`` that is not a ferbatch dataset.
        overwrite: start ``out`` afresh when its rows were made with other result-changing settings
            (without it such a run is refused).
        full_hash: identify videos by the sha256 of the whole file (default: size + sampled blocks).
        progress: a progress bar on standard error (True), none (False), or a callback(kind, done,
            total) with kind "probe" (videos) or "frames". Default (None): the bar when standard
            error is a terminal or in a Jupyter notebook, nothing otherwise (logs, pipes).
        **options: :class:`ferbatch.config.JobConfig` fields, e.g. ``detector="ultraface-rfb-640"``,
            ``classifier=...``, ``workers=2``, ``backend="onnxruntime"``, ``track=False``.

    Returns:
        :class:`ferbatch.job.JobSummary` (videos ok/partial/failed, frames, faces, seconds, errors).

    Raises:
        ConfigError: an unknown option or a bad value, still images as inputs, a missing input.
        ModelError: a model file that is missing or does not match the registry.
        OutputError: ``out`` is a file, a foreign non-empty folder (without ``force``), or unwritable.
        JobAborted: the job stopped on an error of the machine (disk full, out of memory) or a bug;
            finished shards are kept.
        KeyboardInterrupt: passed on once finished shards are recorded (rerun to resume).
    """
    from ferbatch.config import JobConfig
    from ferbatch.job import run_job

    known = {f.name for f in dataclasses.fields(JobConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"ferbatch.run | unknown option {', '.join(unknown)}; expected one of {', '.join(sorted(known))}")
    cfg = JobConfig(**options)
    if use_ray is not False and address is None:
        address = os.environ.get("RAY_ADDRESS") or None
    with contextlib.ExitStack() as stack:
        if not callable(progress):  # a bar (or none) instead of the caller's callback
            from ferbatch.job.progress import progress_bar, wants_bar

            progress = stack.enter_context(progress_bar(disable=not (wants_bar() if progress is None else progress)))
        return run_job(
            inputs,
            out,
            cfg,
            use_ray=use_ray,
            address=address,
            shard_frames=shard_frames,
            progress=progress,
            overwrite=overwrite,
            full_hash=full_hash,
            force=force,
        )


@dataclass(frozen=True)
class Faces:
    """The faces found in one image, highest detector score first (a public view of one
    :class:`ferbatch.faces.FaceBatch`: :attr:`batch`).

    Attributes:
        boxes: (N, 4) float32, x1 y1 x2 y2 in the image's pixels.
        scores: (N,) float32 detector scores in 0..1.
        probs: (N, 8) float32 expression probabilities in the FER+ order (:data:`ferbatch.labels.EMOTIONS`:
            neutral, happiness, surprise, sadness, anger, disgust, fear, contempt); NaN for classes
            the classifier lacks (the 7-class models have no contempt).
        emotions: N labels, each face's most probable class.
        image_size: (width, height) of the image in pixels.
        landmarks: (N, 5, 2) float32 x y in the image's pixels (right eye, left eye, nose tip, right and
            left mouth corner), or None for a detector without landmarks.
        models: {"detector": name, "classifier": name}.
    """

    boxes: np.ndarray
    scores: np.ndarray
    probs: np.ndarray
    emotions: tuple[str, ...]
    image_size: tuple[int, int]
    models: dict[str, str]
    landmarks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def __repr__(self) -> str:
        w, h = self.image_size
        found = ", ".join(f"{e} {p:.2f}" for e, p in zip(self.emotions, self.emotion_probs, strict=True))
        return f"<ferbatch.Faces: {len(self)} in {w}x{h}{': ' + found if found else ''}>"

    @property
    def emotion_probs(self) -> np.ndarray:
        """(N,) float32, each face's probability of its emotion."""
        if not len(self):
            return np.empty(0, np.float32)
        return self.probs[np.arange(len(self)), argmax_known(self.probs)].astype(np.float32)

    @classmethod
    def from_batch(cls, batch: FaceBatch, image_size: tuple[int, int], models: dict[str, str]) -> Faces:
        """The faces of one classified image's batch (``batch.probs`` set)."""
        probs = np.asarray(batch.probs, np.float32).reshape(-1, 8)
        return cls(
            boxes=np.asarray(batch.boxes, np.float32).reshape(-1, 4),
            scores=np.asarray(batch.scores, np.float32),
            probs=probs,
            emotions=tuple(EMOTIONS[i] for i in argmax_known(probs)) if len(probs) else (),
            image_size=image_size,
            models=models,
            landmarks=None if batch.landmarks is None else np.asarray(batch.landmarks, np.float32).reshape(-1, 5, 2),
        )

    @property
    def batch(self) -> FaceBatch:
        """The faces as a :class:`ferbatch.faces.FaceBatch` (frame_pos (N,) int32 0, one image)."""
        return FaceBatch(np.zeros(len(self), np.int32), self.boxes, self.scores, self.landmarks, probs=self.probs)

    def to_arrow(self) -> pa.Table:
        """One row per face, with the faces table's column names and values (the one writer,
        :func:`ferbatch.faces.face_columns`): face_idx, x1, y1, x2, y2, det_score, emotion,
        emotion_prob, prob_<emotion> (null where the classifier lacks the class), landmarks
        (10 float32: x y of the five points; null without them)."""
        import pyarrow as pa

        cols = face_columns(self.batch)
        return pa.table({k: v for k, v in cols.items() if k not in ("track_id", "box_source", "prob_source")})  # one image: no tracks

    def to_pandas(self):
        """:meth:`to_arrow` as a pandas DataFrame (needs the ``pandas`` extra: ``pip install 'ferbatch[pandas]'``)."""
        try:
            import pandas  # noqa: F401
        except ImportError as e:
            raise ImportError("Faces.to_pandas | needs pandas: pip install 'ferbatch[pandas]'") from e
        return self.to_arrow().to_pandas()

    def to_supervision(self):
        """The faces as ``supervision.Detections`` (Roboflow's supervision: annotators, trackers,
        zones): ``xyxy`` the boxes, ``confidence`` the detector scores, ``class_id`` each face's
        emotion index in :data:`ferbatch.labels.EMOTIONS`, ``data["class_name"]`` its emotion,
        ``data["emotion_prob"]`` that emotion's probability, ``data["probs"]`` the (N, 8)
        probabilities. Needs the ``supervision`` extra: ``pip install 'ferbatch[supervision]'``.

        Raises:
            ImportError: supervision is not installed (the message names the extra).
        """
        try:
            import supervision as sv
        except ImportError as e:
            raise ImportError("Faces.to_supervision | needs supervision: pip install 'ferbatch[supervision]'") from e
        return sv.Detections(
            xyxy=np.asarray(self.boxes, np.float32).reshape(-1, 4),
            confidence=np.asarray(self.scores, np.float32),
            class_id=np.array([EMOTIONS.index(e) for e in self.emotions], dtype=int),
            data={
                "class_name": np.array(self.emotions, dtype=str),
                "emotion_prob": self.emotion_probs,
                "probs": np.asarray(self.probs, np.float32).reshape(-1, 8),
            },
        )


@functools.lru_cache(maxsize=4)
def _models(detector: str | None, classifier: str | None, backend: str, score_threshold: float | None, max_faces: int) -> Models:
    """Models for :func:`analyze`, loaded once per setting in this process."""
    from ferbatch.config import JobConfig
    from ferbatch.models.load import load_models

    cfg = JobConfig(
        detector=detector, classifier=classifier, backend=backend, score_threshold=score_threshold, max_faces=max_faces, detect_batch=1
    )
    return load_models(cfg)


def _read_image(image) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a path, an array (gray, RGB, RGBA) or anything ``np.asarray`` takes (a PIL image)."""
    if isinstance(image, (str, os.PathLike)):
        import cv2

        path = os.fspath(image)
        if not os.path.isfile(path):
            raise ConfigError(f"{path} | does not exist or is not a file")
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)  # applies the EXIF orientation
        if bgr is None:
            raise ConfigError(f"{path} | cannot be read as an image (OpenCV knows no decoder for it)")
        return np.ascontiguousarray(bgr[:, :, ::-1])
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or min(arr.shape[:2]) < 1:
        raise ConfigError(f"ferbatch.analyze | received an array of shape {arr.shape}; expected (H, W), (H, W, 3) RGB or (H, W, 4) RGBA")
    if arr.dtype != np.uint8:
        raise ConfigError(f"ferbatch.analyze | received dtype {arr.dtype}; expected uint8 (0..255)")
    return np.ascontiguousarray(arr[:, :, :3])


def analyze(
    image,
    *,
    detector: str | None = None,
    classifier: str | None = None,
    score_threshold: float | None = None,
    max_faces: int = 64,
    backend: str = "onnxruntime",
) -> Faces:
    """Find the faces in one image (or video frame) and classify their expressions.

    The same models and pre-processing as ``ferbatch run`` (registry defaults: yunet-frame +
    ferbatch-ferplus-cnn-v5), loaded once per process and setting, then reused by later calls.

    Args:
        image: a file path (anything OpenCV reads: JPEG, PNG, BMP, WebP, TIFF; EXIF orientation
            applied), or an array: (H, W, 3) uint8 RGB, (H, W, 4) RGBA or (H, W) gray, or a PIL image.
        detector, classifier: registry names (``ferbatch models``); default: the registry's.
        score_threshold: detector score threshold (default: the registry's, 0.7 for UltraFace).
        max_faces: most faces kept.
        backend: "onnxruntime" (default), "tensorrt" or "auto".

    Returns:
        :class:`Faces`.

    Raises:
        ConfigError: a missing or unreadable file, an array of another shape or dtype, unknown models.
        ModelError: a model file that is missing or does not match the registry.
    """
    from ferbatch.vision.analysis import analyze_images

    rgb = _read_image(image)
    try:
        m = _models(detector, classifier, backend, score_threshold, max_faces)
    except FerbatchError:
        raise
    faces = analyze_images(m, [rgb])  # the job's analysis step on one picture
    models = {"detector": m.refs["detector"].name, "classifier": m.refs["classifier"].name}
    return Faces.from_batch(faces, (rgb.shape[1], rgb.shape[0]), models)
