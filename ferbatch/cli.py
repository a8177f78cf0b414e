"""The ``ferbatch`` command line: thin commands that parse, call the library and print."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from ferbatch import __version__
from ferbatch.errors import FerbatchError

app = typer.Typer(
    help="Batch facial emotion recognition over collections of videos: every face in every frame, "
    "its expression (FER+ 8 classes), one row per face per frame in a Parquet dataset.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)


def _fail(e: Exception, code: int = 2) -> None:
    console.print(f"[red]error:[/red] {e}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


@app.command()
def run(
    inputs: Annotated[list[Path], typer.Argument(help="Video files and/or directories searched recursively for videos.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory for the Parquet dataset; rerunning into it resumes.")],
    detector: Annotated[Optional[str], typer.Option(help="Detector name from engines/models.toml (default: the registry's).")] = None,
    classifier: Annotated[Optional[str], typer.Option(help="Classifier name from engines/models.toml (default: the registry's).")] = None,
    detector_file: Annotated[Optional[Path], typer.Option(help="Use this detector file (its sha256 must match the registry).")] = None,
    classifier_file: Annotated[Optional[Path], typer.Option(help="Use this classifier file (its sha256 must match the registry).")] = None,
    workers: Annotated[int, typer.Option(help="Worker actors; 0 = one per CPU core.")] = 0,
    threads_per_worker: Annotated[int, typer.Option(help="ONNX Runtime threads per worker; 0 = cores / workers.")] = 0,
    detect_batch: Annotated[int, typer.Option(help="Frames per detector call.")] = 8,
    classify_batch: Annotated[int, typer.Option(help="Most face crops per classifier call.")] = 64,
    shard_frames: Annotated[int, typer.Option(help="Target frames per shard (keyframe-aligned); 0 = one shard per video.")] = 1500,
    max_faces: Annotated[int, typer.Option(help="Most faces kept per frame.")] = 64,
    score_threshold: Annotated[Optional[float], typer.Option(help="Detector score threshold (default: the registry's, 0.7 for UltraFace).")] = None,
    numpy_nms: Annotated[bool, typer.Option("--numpy-nms", help="Run NMS in NumPy instead of inside the detector graph.")] = False,
    address: Annotated[Optional[str], typer.Option(help="Connect to a running Ray cluster instead of starting one locally.")] = None,
    no_ray: Annotated[bool, typer.Option("--no-ray", help="Run in this process without Ray (one worker).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Find every face in every frame of the videos, classify its expression, write Parquet to OUT.

    Example: ferbatch run ../shared/data/videos_faces ../shared/data/videos_emotion_cremad --out out/

    Exit status: 0 all videos done, 1 some videos failed (see the summary and OUT/videos.parquet),
    2 bad settings or models.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from ferbatch.config import JobConfig
    from ferbatch.job import run_job

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = JobConfig(detector=detector, classifier=classifier, detector_file=str(detector_file) if detector_file else None,
                        classifier_file=str(classifier_file) if classifier_file else None, workers=workers,
                        threads_per_worker=threads_per_worker, detect_batch=detect_batch, classify_batch=classify_batch,
                        max_faces=max_faces, score_threshold=score_threshold, in_graph_nms=not numpy_nms)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TimeRemainingColumn(), console=console, disable=quiet, transient=False) as bar:
            tasks: dict[str, int] = {}

            def progress(kind: str, done: int, total: int) -> None:
                if kind not in tasks:
                    tasks[kind] = bar.add_task("indexing videos" if kind == "probe" else "frames", total=total)
                bar.update(tasks[kind], completed=done, total=total)

            s = run_job(inputs, out, cfg, use_ray=not no_ray, address=address, shard_frames=shard_frames, progress=progress)
    except FerbatchError as e:
        _fail(e)
    t = Table(title=f"ferbatch {__version__}: {out}", show_header=False)
    for k, v in [("videos", s.videos), ("skipped (already done)", s.skipped), ("ok", s.ok), ("partial", s.partial),
                 ("failed", s.failed), ("frames", s.frames), ("faces", s.faces), ("seconds", f"{s.seconds:.1f}"),
                 ("frames/s", f"{s.frames_per_s:.1f}")]:
        t.add_row(k, str(v))
    Console().print(t)
    for path, err in s.errors.items():
        console.print(f"[yellow]{path}[/yellow]: {err}", soft_wrap=True, highlight=False)
    if s.failed:
        raise typer.Exit(1)


@app.command()
def models() -> None:
    """List the model registry (engines/models.toml) and where each file resolves.

    Example: FERBATCH_MODEL_MIRROR=../shared/models ferbatch models
    """
    from ferbatch.registry import load_registry, resolve_model_file

    reg = load_registry()
    t = Table(title=str(reg.path))
    for col in ("name", "kind", "family", "license", "file"):
        t.add_column(col)
    for name, spec in reg.models.items():
        try:
            where = str(resolve_model_file(spec, allow_download=False))
        except FerbatchError as e:
            where = f"[red]{str(e).split('|', 1)[-1].strip()}[/red]"
        default = " (default)" if name in (reg.default_detector, reg.default_classifier) else ""
        t.add_row(name + default, spec.kind, spec.family, spec.license, where)
    Console().print(t)


@app.command()
def query(
    out: Annotated[Path, typer.Argument(help="A ferbatch output directory.")],
    sql: Annotated[str, typer.Option("--sql", help="SQL over the views faces, frames, videos.")],
    fmt: Annotated[str, typer.Option("--format", help="table | csv | json")] = "table",
) -> None:
    """Run DuckDB SQL over a dataset (read-only views faces, frames, videos).

    Example: ferbatch query out/ --sql "SELECT emotion, count(*) FROM faces GROUP BY 1"
    """
    from ferbatch.query import connect, render, run_sql

    try:
        render(run_sql(connect(out), sql), fmt, Console())
    except FerbatchError as e:
        _fail(e)
    except Exception as e:  # duckdb's own errors: one line for the user
        _fail(FerbatchError(f"--sql | {type(e).__name__}: {e}"))


@app.callback(invoke_without_command=True)
def _main(version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False) -> None:
    if version:
        print(__version__)
        raise typer.Exit(0)


def main() -> None:  # pragma: no cover - console script shim
    sys.exit(app())
