"""The in-graph pre-processing a worker runs (``--preprocess``, issue 33): whether it runs, and the
ONNX Runtime runners of its two graphs: the NV12 detector (:mod:`ferbatch.models.graph_nv12`) and
the crop classifier (:mod:`ferbatch.models.graph_crop`). :func:`ferbatch.models.load.load_models`
hands them to the :class:`ferbatch.vision.detect.Detector` and
:class:`ferbatch.vision.classify.Classifier` it builds."""

from __future__ import annotations

from pathlib import Path

from ferbatch.config import JobConfig
from ferbatch.errors import ConfigError
from ferbatch.models.registry import ModelSpec

__all__ = ["frame_graphs", "graph_runners"]


def frame_graphs(cfg: JobConfig, backend: str, det_spec: ModelSpec) -> bool:
    """Whether workers run the pre-processing inside the graphs (``cfg.preprocess``): "graph"
    always, "auto" where NVDEC's frames can stay on the GPU (the onnxruntime-cuda backend with
    PyNvVideoCodec and ``--decoder`` auto or nvdec), "host" never.

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
    from ferbatch.media.decoders import nvdec_available

    return nvdec_available()[0]


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
    run, else (None, None); the crop runner only for an aligned grey classifier with a square input
    (the crop the graph cuts), else None (crops cut on the host).

    Args:
        det_graph: the prepared detector graph the NV12 front goes before (with or without NMS inside).
        cls_file: the classifier's ONNX file (prepared with the crop graph in front).
        threads, providers: as :class:`ferbatch.models.runners.onnxruntime.OrtRunner`.
        batches: (detector frames, classifier faces) per call.

    Raises:
        ConfigError: see :func:`frame_graphs`.
    """
    if not frame_graphs(cfg, backend, det_spec):
        return None, None
    from ferbatch.models.graph_crop import prepare_crop_classifier
    from ferbatch.models.graph_nv12 import prepare_nv12_detector
    from ferbatch.models.runners.onnxruntime import OrtRunner

    det_batch, cls_batch = batches
    nv12 = OrtRunner(
        prepare_nv12_detector(det_graph, det_spec),
        threads=threads,
        providers=providers,
        max_batch=det_batch,
        name=f"{backend}:{det_spec.name}+nv12",
    )
    if cls_spec.crop.get("mode") != "aligned" or cls_spec.input.color != "GRAY" or cls_spec.input.width != cls_spec.input.height:
        return nv12, None
    crops = OrtRunner(
        prepare_crop_classifier(cls_file, cls_spec, nv12=True, precision=cfg.precision),
        threads=threads,
        providers=providers,
        max_batch=cls_batch,
        name=f"{backend}:{cls_spec.name}+crops",
    )
    return nv12, crops
