"""The in-graph pre-processing a worker runs (``--preprocess``, issue 33): whether it runs, and the
ONNX Runtime runners of its two graphs: the NV12 detector (:mod:`ferbatch.models.graph_nv12`) and
the crop classifier (:mod:`ferbatch.models.graph_crop`). :func:`ferbatch.models.load.load_models`
hands them to the :class:`ferbatch.vision.detect.Detector` and
:class:`ferbatch.vision.classify.Classifier` it builds."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np

from ferbatch.config import JobConfig
from ferbatch.errors import ConfigError
from ferbatch.models.registry import ModelSpec
from ferbatch.vision.classify import crops_in_graph_possible

__all__ = ["device_frames_available", "frame_graphs", "frame_pictures", "graph_runners", "opencv_resize_matches"]

log = logging.getLogger(__name__)


def device_frames_available() -> tuple[bool, str]:
    """(ok, why): NVDEC's frames can stay on the GPU for the graphs: PyNvVideoCodec imports
    (:func:`ferbatch.media.decoders.nvdec_available`) and CuPy is installed (the frames' arrays)."""
    from ferbatch.media.decoders import nvdec_available

    ok, why = nvdec_available()
    if not ok:
        return False, why
    if importlib.util.find_spec("cupy") is None:
        return False, "CuPy is not installed (pip install cupy-cuda12x): NVDEC's frames cannot stay on the GPU"
    return True, why


def frame_graphs(cfg: JobConfig, backend: str, det_spec: ModelSpec, device_frames: bool | None = None) -> bool:
    """Whether workers run the pre-processing inside the graphs (``cfg.preprocess``): "graph"
    always, "auto" where NVDEC's frames can stay on the GPU (the onnxruntime-cuda backend,
    ``--decoder`` auto or nvdec, and ``device_frames``), "host" never.

    Args:
        device_frames: whether NVDEC's frames can stay on the GPU; None = :func:`device_frames_available`.

    Raises:
        ConfigError: "graph" with a backend other than ONNX Runtime (the graphs are bound through
            its I/O binding) or a detector that does not letterbox (UltraFace: its fixed input is a
            plain resize, made on the host).
    """
    if cfg.preprocess == "host":
        return False
    able = backend in ("onnxruntime", "onnxruntime-cuda") and det_spec.letterbox
    if cfg.preprocess == "graph":
        if not able:
            raise ConfigError(
                f"--preprocess graph | needs ONNX Runtime (onnxruntime or onnxruntime-cuda) and a letterboxing detector (yunet-*); "
                f"got backend {backend} and detector {det_spec.name}"
            )
        return True
    if not able or backend != "onnxruntime-cuda" or cfg.decoder == "pyav":
        return False
    return device_frames_available()[0] if device_frames is None else device_frames


def frame_pictures(takes_nv12: bool, preprocess: str, decoder: str, backend: str, device_frames: bool) -> bool | str:
    """What a shard's frames are decoded to (``pictures`` of :func:`ferbatch.pipeline.process_shard`):
    "nv12-device" (NVDEC's frames left on the GPU) where the models take NV12 pictures, NVDEC decodes
    for the onnxruntime-cuda backend and ``device_frames``; else "nv12" (host NV12 pictures) with
    ``--preprocess graph``; else True (YUV pictures, the host path: also auto's choice for a video
    NVDEC does not decode).

    Args:
        takes_nv12: the models run the graphs (:attr:`ferbatch.models.load.Models.takes_nv12`).
        preprocess: ``cfg.preprocess``; decoder: the video's decoder ("pyav" or "nvdec");
        backend: the models' backend; device_frames: :func:`device_frames_available`.
    """
    if not takes_nv12:
        return True
    if decoder == "nvdec" and backend == "onnxruntime-cuda" and device_frames:
        return "nv12-device"
    return "nv12" if preprocess == "graph" else True


def opencv_resize_matches() -> bool:
    """Whether this OpenCV build resizes and converts colour as the graphs do: its resize's vector kernel
    rounding (:func:`ferbatch.picture.resize_plane`; a build that takes its scalar path instead, some ARM
    builds, differs by one level on ~10 % of pixels) and its uint8 ``cv2.transform`` in 10 fractional
    bits (:func:`ferbatch.colour.fixed_point`, the BT.709 and full-range conversion). Where not, the graph
    path's rows differ a little from the host path's. Checked on a 64 x 48 random plane scaled to 40 x 30
    and 256 random BT.709 pixels (under a millisecond)."""
    import cv2

    from ferbatch.colour import BT709, fixed_point, yuv_to_rgb
    from ferbatch.picture import resize_plane

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (48, 64), dtype=np.uint8)
    if not np.array_equal(resize_plane(a, 40, 30), cv2.resize(a, (40, 30), interpolation=cv2.INTER_LINEAR)):
        return False
    yuv = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    c = fixed_point(BT709).astype(np.int64)  # ylo 0: Y' = Y
    centred = yuv.astype(np.int64) - np.array([0, 128, 128])
    ints = np.clip((centred @ c[1:10].reshape(3, 3).T + c[10:]) >> 20, 0, 255)
    return bool(np.array_equal(ints, cv2.transform(yuv, yuv_to_rgb(BT709))))


def graph_runners(
    cfg: JobConfig,
    backend: str,
    det_spec: ModelSpec,
    cls_spec: ModelSpec,
    det_graph: Path,
    cls_file: Path,
    threads: int,
    providers: list[str] | None,
    batches: tuple[int, int],
):
    """(NV12 detector runner, crop classifier runner) where :func:`frame_graphs` says the graphs
    run, else (None, None); the crop runner only for a classifier whose crop the graph cuts
    (:func:`ferbatch.vision.classify.crops_in_graph_possible`), else None (crops cut on the host).

    Args:
        det_graph: the prepared detector graph the NV12 front goes before (with or without NMS inside).
        cls_file: the classifier's ONNX file (prepared with the crop graph in front).
        threads, providers: as :class:`ferbatch.models.runners.onnxruntime.OrtRunner`.
        batches: (detector frames, classifier faces) per call.

    Raises:
        ConfigError: see :func:`frame_graphs`.
        ModelError: a graph cannot be loaded (nothing is left open).
    """
    if not frame_graphs(cfg, backend, det_spec):
        return None, None
    from ferbatch.models.graph_crop import prepare_crop_classifier
    from ferbatch.models.graph_nv12 import prepare_nv12_detector
    from ferbatch.models.runners.onnxruntime import OrtRunner

    if not opencv_resize_matches():
        log.warning(
            "this OpenCV build resizes or converts with other rounding than the NV12 graph: rows may differ slightly from --preprocess host"
        )
    det_batch, cls_batch = batches
    nv12 = OrtRunner(
        prepare_nv12_detector(det_graph, det_spec),
        threads=threads,
        providers=providers,
        max_batch=det_batch,
        name=f"{backend}:{det_spec.name}+nv12",
    )
    if not crops_in_graph_possible(cls_spec):
        return nv12, None
    try:
        crops = OrtRunner(
            prepare_crop_classifier(cls_file, cls_spec, nv12=True, precision=cfg.precision),
            threads=threads,
            providers=providers,
            max_batch=cls_batch,
            name=f"{backend}:{cls_spec.name}+crops",
        )
    except BaseException:
        nv12.close()
        raise
    return nv12, crops
