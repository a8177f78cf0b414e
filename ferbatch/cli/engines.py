"""``ferbatch check-engines``: compare two backends or precisions on the same real frames."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ferbatch.cli.common import fail as _fail
from ferbatch.errors import FerbatchError

__all__ = ["register"]


def check_engines(
    backend: Annotated[
        str, typer.Option("--backend", help="Candidate backend: onnxruntime | onnxruntime-cuda | tensorrt.", metavar="BACKEND")
    ] = "onnxruntime",
    precision: Annotated[str, typer.Option("--precision", help="Candidate precision: fp32 | fp16.", metavar="fp32|fp16")] = "fp16",
    against: Annotated[str, typer.Option("--against", help="Reference backend (as --backend).", metavar="BACKEND")] = "onnxruntime",
    against_precision: Annotated[str, typer.Option("--against-precision", help="Reference precision.", metavar="fp32|fp16")] = "fp32",
    against_nms: Annotated[
        str,
        typer.Option(
            "--against-nms",
            help="Where the reference decodes + suppresses boxes: numpy (the NumPy fallback, default) | graph.",
            metavar="numpy|graph",
        ),
    ] = "numpy",
    detector: Annotated[
        str | None, typer.Option("--detector", help="Detector registry name (default: the registry's).", metavar="NAME")
    ] = None,
    video: Annotated[
        Path | None, typer.Option("--video", help="A clip with faces (default: the shared Intel 2-face sample).", metavar="VIDEO")
    ] = None,
    frames: Annotated[int, typer.Option(help="Real frames compared (4 all-black frames are added).")] = 32,
    fmt: Annotated[str, typer.Option("--format", help="table | json", metavar="table|json")] = "table",
) -> None:
    """Run the same real frames and crops through two backends/precisions and compare them:
    matched-box IoU, score and probability differences, label agreement, batch-N vs batch-1, and
    all-black frames (no box anywhere in the batch). The candidate decodes and suppresses boxes in
    the detector graph (UltraFace, YuNet); the reference in NumPy unless --against-nms graph.

    Example: ferbatch check-engines --backend tensorrt --precision fp16 --against onnxruntime --video clip.mp4

    Exit status: 0 within tolerance, 1 not, 2 a backend is unusable here.
    """
    from ferbatch.checks import check_engines as run_check
    from ferbatch.config import JobConfig

    try:
        if video is None:
            raise FerbatchError("--video | give a clip with faces (e.g. the shared Intel 2-face sample)")
        if against_nms not in ("numpy", "graph"):
            raise FerbatchError(f"--against-nms | received {against_nms!r}; expected numpy or graph")
        ref = JobConfig(backend=against, precision=against_precision, detector=detector, in_graph_nms=against_nms == "graph")
        rep = run_check(ref, JobConfig(backend=backend, precision=precision, detector=detector), video, frames=frames)
    except FerbatchError as e:
        _fail(e)
    if fmt == "json":
        print(json.dumps(rep.to_dict()))
    else:
        t = Table(
            title=f"{backend} {precision} vs {against} {against_precision}: {'PASSED' if rep.passed else 'FAILED'}", show_header=False
        )
        for k, v in rep.to_dict().items():
            t.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
        Console().print(t)
    if not rep.passed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``check-engines`` to ``app``."""
    app.command("check-engines")(check_engines)
