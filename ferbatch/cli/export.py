"""``ferbatch export``: the prepared graphs for another runtime (ONNX, OpenVINO IR)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ferbatch.cli.common import ClassifierOption, DetectorOption, console, fail

__all__ = ["register"]


def export(
    to: Annotated[str, typer.Option("--to", help="onnx | openvino (IR .xml + .bin; needs the openvino extra).", metavar="onnx|openvino")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the files and export.json.")],
    detector: DetectorOption = None,
    classifier: ClassifierOption = None,
    max_faces: Annotated[int, typer.Option(help="Most faces per frame (the detector's output slots).")] = 64,
    numpy_nms: Annotated[bool, typer.Option("--numpy-nms", help="Export the raw detector (NMS left to the caller).")] = False,
) -> None:
    """Write the detector and classifier as ferbatch runs them (symbolic batch, in-graph NMS).

    Example: ferbatch export --to openvino --out models-ir/
    """
    from ferbatch.config import JobConfig
    from ferbatch.errors import FerbatchError
    from ferbatch.models.export import export_models

    try:
        files = export_models(JobConfig(detector=detector, classifier=classifier, max_faces=max_faces, in_graph_nms=not numpy_nms), to, out)
    except FerbatchError as e:
        fail(e)
    for f in files:
        console.print(str(f), highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``export`` to ``app``."""
    app.command()(export)
