"""Export the prepared graphs of a config's detector and classifier for another runtime:
``onnx`` (the prepared ONNX files, symbolic batch, in-graph NMS) or ``openvino`` (IR ``.xml`` +
``.bin``, converted from those same prepared graphs)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ferbatch.atomic import write_json_atomic
from ferbatch.config import JobConfig
from ferbatch.errors import ConfigError
from ferbatch.models.graph_input import prepared_input_contract
from ferbatch.models.load import prepare_graphs
from ferbatch.vision.detect import DET_BOXES, DET_LANDMARKS, DET_SCORES, SCORE_THRESHOLD

__all__ = ["export_models", "EXPORT_TARGETS"]

EXPORT_TARGETS = ("onnx", "openvino")


def export_models(cfg: JobConfig, to: str, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write the detector and classifier of ``cfg`` to ``out_dir`` as ``<name>.onnx`` or
    ``<name>.xml``/``.bin``, with ``export.json`` (model names, sha256 of the sources, what each
    graph's input takes: uint8 NHWC, the detector RGB, normalised in the graph; output names, and
    for a detector with NMS inside its det_* outputs and the optional ``score_threshold`` input).

    Raises:
        ConfigError: unknown target, or openvino missing. ModelError: a model cannot be prepared
            or converted.
    """
    if to not in EXPORT_TARGETS:
        raise ConfigError(f"--to | received {to!r}; expected one of {', '.join(EXPORT_TARGETS)}")
    (det_spec, det_graph), (cls_spec, cls_graph) = prepare_graphs(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    graphs = {det_spec.name: det_graph, cls_spec.name: cls_graph}
    written: list[Path] = []
    for name, graph in graphs.items():
        if to == "onnx":
            dst = out / f"{name}.onnx"
            shutil.copyfile(graph, dst)
        else:
            from ferbatch.models.runners.openvino import save_ir

            dst = save_ir(graph, out / f"{name}.xml")
        written.append(dst)
    nms = cfg.in_graph_nms and det_spec.nms_in_graph
    meta = {
        "format": to,
        "in_graph_nms": cfg.in_graph_nms,
        "max_faces": cfg.max_faces,
        "precision": cfg.precision,
        "models": {
            s.name: {
                "kind": s.kind,
                "file": p.name,
                "source_sha256": s.sha256,
                "input": prepared_input_contract(s),
                "outputs": _nms_outputs(s, cfg.max_faces) if nms and s is det_spec else s.outputs,
                **({"optional_inputs": _nms_inputs(s, cfg.score_threshold)} if nms and s is det_spec else {}),
                **({"decision": _decision(s)} if s is cls_spec else {}),
            }
            for s, p in zip((det_spec, cls_spec), written, strict=True)
        },
    }
    write_json_atomic(out / "export.json", json.loads(json.dumps(meta, default=str)))
    return written


def _decision(spec) -> dict:
    """What ferbatch does with a classifier's outputs (the run's ``--prior`` and ``--align``): probabilities =
    softmax((logits + logit_bias) / temperature), the face cut by ``crop`` (ferbatch/vision/classify.py)."""
    return {
        "prior": spec.prior,
        "logit_bias": list(spec.logit_bias),
        "temperature": spec.temperature,
        "crop": spec.crop,
        "labels": list(spec.labels),
    }


def _nms_outputs(spec, k: int) -> dict[str, str]:
    """The outputs of a detector graph with decoding + NMS inside (:func:`ferbatch.models.graphs._append_nms`)."""
    out = {
        DET_BOXES: f"(N, {k}, 4) float32 x1 y1 x2 y2 normalised to the input's width and height",
        DET_SCORES: f"(N, {k}) float32 descending; 0 marks an empty slot",
    }
    if spec.gives_landmarks:
        out[DET_LANDMARKS] = f"(N, {k}, 5, 2) float32 x y normalised likewise (right eye, left eye, nose, right and left mouth corner)"
    return out


def _nms_inputs(spec, score_threshold: float | None) -> dict[str, str]:
    thr = spec.score_threshold if score_threshold is None else score_threshold
    return {SCORE_THRESHOLD: f"(1,) float32, default {thr} (an initializer: runtimes that allow it may override it per run)"}
