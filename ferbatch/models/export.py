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

__all__ = ["export_models", "EXPORT_TARGETS"]

EXPORT_TARGETS = ("onnx", "openvino")


def export_models(cfg: JobConfig, to: str, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write the detector and classifier of ``cfg`` to ``out_dir`` as ``<name>.onnx`` or
    ``<name>.xml``/``.bin``, with ``export.json`` (model names, sha256 of the sources, what each
    graph's input takes: uint8 NHWC, the detector RGB, normalised in the graph; output names).

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
    meta = {
        "format": to,
        "in_graph_nms": cfg.in_graph_nms,
        "max_faces": cfg.max_faces,
        "precision": cfg.precision,
        "models": {
            s.name: {"kind": s.kind, "file": p.name, "source_sha256": s.sha256, "input": prepared_input_contract(s), "outputs": s.outputs}
            for s, p in zip((det_spec, cls_spec), written, strict=True)
        },
    }
    write_json_atomic(out / "export.json", json.loads(json.dumps(meta, default=str)))
    return written
