"""``ferbatch run``: the main job."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ferbatch import __version__
from ferbatch.cli.common import console
from ferbatch.cli.common import fail as _fail
from ferbatch.errors import FerbatchError, JobAborted

__all__ = ["register"]


def run(
    inputs: Annotated[
        list[Path], typer.Argument(help="Video files and/or directories searched recursively for videos.", show_default=False)
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory for the Parquet dataset; rerunning into it resumes.")],
    detector: Annotated[
        str | None, typer.Option(help="Detector name from the model registry (ferbatch models) (default: the registry's).")
    ] = None,
    classifier: Annotated[
        str | None, typer.Option(help="Classifier name from the model registry (ferbatch models) (default: the registry's).")
    ] = None,
    detector_file: Annotated[Path | None, typer.Option(help="Use this detector file (its sha256 must match the registry).")] = None,
    classifier_file: Annotated[Path | None, typer.Option(help="Use this classifier file (its sha256 must match the registry).")] = None,
    workers: Annotated[int, typer.Option(help="Worker actors; 0 = one per CPU core (GPU nodes: --workers-per-gpu per GPU).")] = 0,
    workers_per_gpu: Annotated[
        int, typer.Option(help="Workers sharing each GPU, each decoding on its own core; 0 = CPUs per GPU minus one.")
    ] = 0,
    threads_per_worker: Annotated[int, typer.Option(help="ONNX Runtime threads per worker; 0 = cores / workers.")] = 0,
    detect_batch: Annotated[int, typer.Option(help="Frames per detector call; 0 = by backend (CPU 8, GPU 64).")] = 0,
    classify_batch: Annotated[int, typer.Option(help="Most face crops per classifier call; 0 = by backend (CPU 64, GPU 512).")] = 0,
    shard_frames: Annotated[int, typer.Option(help="Target frames per shard (keyframe-aligned); 0 = one shard per video.")] = 1500,
    max_faces: Annotated[int, typer.Option(help="Most faces kept per frame.")] = 64,
    score_threshold: Annotated[
        float | None, typer.Option(help="Detector score threshold (default: the registry's, 0.7 for UltraFace).")
    ] = None,
    min_face_px: Annotated[
        float | None,
        typer.Option(help="Smallest face side (pixels) to find: large frames are also run in overlapping tiles. Default: whole frames."),
    ] = None,
    numpy_nms: Annotated[bool, typer.Option("--numpy-nms", help="Run NMS in NumPy instead of inside the detector graph.")] = False,
    track: Annotated[
        bool, typer.Option("--track/--no-track", help="Track faces across frames (track ids, smoothed emotions, tracks table).")
    ] = True,
    backend: Annotated[
        str,
        typer.Option(
            help="auto (TensorRT, else ONNX Runtime CUDA, when a GPU is usable; else CPU) | tensorrt | onnxruntime-cuda | onnxruntime."
        ),
    ] = "auto",
    precision: Annotated[str, typer.Option(help="fp32 | fp16 (the graphs' own types; NMS stays fp32).")] = "fp32",
    address: Annotated[str | None, typer.Option(help="Connect to a running Ray cluster instead of starting one locally.")] = None,
    ray_mode: Annotated[
        bool | None,
        typer.Option(
            "--ray/--no-ray",
            help="Run on Ray actors / in this process (one thread per worker). Default: in-process for small local jobs "
            "(up to ~20,000 frames), Ray otherwise or with --address.",
            show_default=False,
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Start OUT afresh when its rows were made with other result-changing settings.")
    ] = False,
    full_hash: Annotated[
        bool, typer.Option("--full-hash", help="Identify videos by the sha256 of the whole file (default: size + sampled blocks).")
    ] = False,
) -> None:
    """Find every face in every frame of the videos, classify its expression, write Parquet to OUT.

    Example: ferbatch run ../shared/data/videos_faces ../shared/data/videos_emotion_cremad --out out/

    Exit status: 0 every video ok; 1 some videos failed; 3 none failed but some are partial (see the
    summary and OUT/videos.parquet); 2 bad settings, models or output directory (nothing touched);
    4 the job stopped on an error of the machine (disk full, out of memory) or a bug, finished
    shards kept; 130 interrupted (Ctrl-C or SIGTERM), finished shards kept.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from ferbatch.config import JobConfig
    from ferbatch.job import run_job

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = JobConfig(
            detector=detector,
            classifier=classifier,
            detector_file=str(detector_file) if detector_file else None,
            classifier_file=str(classifier_file) if classifier_file else None,
            workers=workers,
            workers_per_gpu=workers_per_gpu,
            threads_per_worker=threads_per_worker,
            detect_batch=detect_batch,
            classify_batch=classify_batch,
            max_faces=max_faces,
            score_threshold=score_threshold,
            in_graph_nms=not numpy_nms,
            track=track,
            min_face_px=min_face_px,
            backend=backend,
            precision=precision,
        )
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=quiet,
            transient=False,
        ) as bar:
            tasks: dict[str, TaskID] = {}

            def progress(kind: str, done: int, total: int) -> None:
                if kind not in tasks:
                    tasks[kind] = bar.add_task("indexing videos" if kind == "probe" else "frames", total=total)
                bar.update(tasks[kind], completed=done, total=total)

            with _sigterm_as_interrupt():
                s = run_job(
                    inputs,
                    out,
                    cfg,
                    use_ray=ray_mode,
                    address=address,
                    shard_frames=shard_frames,
                    progress=progress,
                    overwrite=overwrite,
                    full_hash=full_hash,
                )
    except JobAborted as e:
        _fail(e, code=4)
    except FerbatchError as e:
        _fail(e)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]: finished shards are recorded; run the same command again to resume")
        raise typer.Exit(130) from None
    t = Table(title=f"ferbatch {__version__}: {out}", show_header=False)
    for k, v in [
        ("videos", s.videos),
        ("skipped (already done)", s.skipped),
        ("ok", s.ok),
        ("partial", s.partial),
        ("failed", s.failed),
        ("frames", s.frames),
        ("faces", s.faces),
        ("seconds", f"{s.seconds:.1f}"),
        ("of which start-up", f"{s.startup_seconds:.1f}"),
        ("frames/s", f"{s.frames_per_s:.1f}"),
        ("shards retried", s.retried),
        ("backend", s.backend or "-"),
        ("runner", s.runner or "-"),
    ]:
        t.add_row(k, escape(str(v)))
    Console().print(t)
    for path, err in s.errors.items():
        console.print(f"[yellow]{escape(path)}[/yellow]: {escape(err)}", soft_wrap=True, highlight=False)
    if s.failed:
        raise typer.Exit(1)
    if s.partial:
        raise typer.Exit(3)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (a scheduler or ``kill`` stopping the job) like Ctrl-C: finished shards are
    recorded and the exit status is 130."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def register(app: typer.Typer) -> None:
    """Add ``run`` to ``app``."""
    app.command()(run)
