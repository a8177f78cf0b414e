"""``ferbatch run``: the main job."""

from __future__ import annotations

import contextlib
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
from ferbatch.api import DEFAULT_SHARD_FRAMES
from ferbatch.cli.common import (
    EXIT_CODES,
    FORMAT_HELP,
    Backend,
    Between,
    ClassifyBetween,
    Decoder,
    Format,
    Precision,
    Preprocess,
    console,
    resolve_format,
    set_verbosity,
)
from ferbatch.cli.common import fail as _fail
from ferbatch.config import DEFAULT_DETECT_EVERY
from ferbatch.errors import FerbatchError, JobAborted

__all__ = ["register"]


def run(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Video files and/or directories searched recursively for videos; s3://BUCKET/PREFIX or gs:// URIs read "
            "videos from object storage (credentials and endpoint from AWS_* / AWS_ENDPOINT_URL).",
            show_default=False,
            metavar="VIDEO|DIR|URI",
        ),
    ],
    out: Annotated[
        str,
        typer.Option(
            "--out",
            "-o",
            help="Output directory for the Parquet dataset, or an s3:// / gs:// URI; rerunning into it resumes. A non-empty "
            "folder that is not a ferbatch dataset is refused (see --force).",
            metavar="DIR|URI",
        ),
    ],
    detector: Annotated[
        str | None, typer.Option(help="Detector name from the model registry (ferbatch models) (default: the registry's).", metavar="NAME")
    ] = None,
    classifier: Annotated[
        str | None,
        typer.Option(help="Classifier name from the model registry (ferbatch models) (default: the registry's).", metavar="NAME"),
    ] = None,
    detector_file: Annotated[
        Path | None, typer.Option(help="Use this detector file (its sha256 must match the registry).", metavar="FILE")
    ] = None,
    classifier_file: Annotated[
        Path | None, typer.Option(help="Use this classifier file (its sha256 must match the registry).", metavar="FILE")
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Worker actors; 0 = one per CPU core (GPU nodes: --workers-per-gpu per GPU).", metavar="N", min=0)
    ] = 0,
    workers_per_gpu: Annotated[
        int,
        typer.Option(help="Workers sharing each GPU, each decoding on its own core; 0 = CPUs per GPU minus one.", metavar="N", min=0),
    ] = 0,
    threads_per_worker: Annotated[int, typer.Option(help="ONNX Runtime threads per worker; 0 = cores / workers.", metavar="N", min=0)] = 0,
    detect_batch: Annotated[int, typer.Option(help="Frames per detector call; 0 = by backend (CPU 8, GPU 64).", metavar="N", min=0)] = 0,
    classify_batch: Annotated[
        int, typer.Option(help="Most face crops per classifier call; 0 = by backend (CPU 64, GPU 512).", metavar="N", min=0)
    ] = 0,
    shard_frames: Annotated[
        int, typer.Option(help="Target frames per shard (keyframe-aligned); 0 = one shard per video.", metavar="N", min=0)
    ] = DEFAULT_SHARD_FRAMES,
    max_faces: Annotated[int, typer.Option(help="Most faces kept per frame.", metavar="N", min=1)] = 64,
    score_threshold: Annotated[
        float | None, typer.Option(help="Detector score threshold (default: the registry's, 0.7 for UltraFace).", metavar="P", min=0, max=1)
    ] = None,
    min_face_px: Annotated[
        float | None,
        typer.Option(
            help="Smallest face side (pixels) to find: frames too large to show such a face to the detector are also run in "
            "overlapping tiles (slower). Try 30 for small or distant faces in HD video. Default: whole frames only.",
            metavar="PX",
        ),
    ] = None,
    detect_every: Annotated[
        int | None,
        typer.Option(
            help="Full-frame detection every N analysed frames and at every shot cut; in between the tracks find the faces "
            "(see --between; new faces appear at the next full detection). 1 = every frame. "
            f"Default: {DEFAULT_DETECT_EVERY} with tracking (chosen by measured recall, box IoU and label agreement against 1), "
            "1 with --no-track.",
            metavar="N",
            min=1,
            show_default=False,
        ),
    ] = None,
    between: Annotated[
        Between,
        typer.Option(
            help="Between full detections: tracked = each track's predicted box (rows say box_source 'tracked'; fastest); "
            "window = the detector on a window around each track (its own boxes and scores; costs about a full frame with "
            "large faces)."
        ),
    ] = Between.tracked,
    classify_between: Annotated[
        ClassifyBetween,
        typer.Option(
            help="Rows between full detections (--between tracked): changes = classify them only where the track's "
            "classifications at the two full detections around them disagree, else interpolate the probabilities in time "
            "between the two (rows say prob_source 'interpolated'; less than half the classifier's work); every = classify every row."
        ),
    ] = ClassifyBetween.changes,
    sample_fps: Annotated[
        float | None,
        typer.Option(
            help="Analyse about F frames per second of video (chosen by timestamp: the same frames whatever the sharding); "
            "summaries weight each frame by the time it stands for. Default: every frame.",
            metavar="F",
            min=0.001,
        ),
    ] = None,
    prior: Annotated[
        str | None,
        typer.Option(
            help="Class prior of the decision: as-trained (the network's logits, FER+'s 37 % neutral), balanced (logit "
            "adjustment, tau from the registry) or graph (the graph's outputs unchanged, as datasets written before this "
            "option). Default: the classifier's registry setting.",
            metavar="as-trained|balanced|graph",
        ),
    ] = None,
    align: Annotated[
        bool | None,
        typer.Option(
            "--align/--no-align",
            help="Warp each face upright onto a FER2013-like template from the detector's 5 landmarks (YuNet); the square "
            "box crop otherwise. Default: the classifier's registry setting.",
            show_default=False,
        ),
    ] = None,
    numpy_nms: Annotated[bool, typer.Option("--numpy-nms", help="Run NMS in NumPy instead of inside the detector graph.")] = False,
    track: Annotated[
        bool, typer.Option("--track/--no-track", help="Track faces across frames (track ids, smoothed emotions, tracks table).")
    ] = True,
    backend: Annotated[
        Backend, typer.Option(help="auto: TensorRT, else ONNX Runtime CUDA, when a GPU is usable; else ONNX Runtime on the CPU.")
    ] = Backend.auto,
    precision: Annotated[Precision, typer.Option(help="The graphs' own types (NMS stays fp32).")] = Precision.fp32,
    decoder: Annotated[
        Decoder,
        typer.Option(
            help="auto: NVDEC (PyNvVideoCodec) with a GPU backend when the stream is h264/hevc/av1/vp9 8-bit 4:2:0, else PyAV; "
            "nvdec: a stream NVDEC cannot decode falls back to PyAV (noted per video). Same frames either way."
        ),
    ] = Decoder.auto,
    preprocess: Annotated[
        Preprocess,
        typer.Option(
            help="Where letterbox, colour conversion and face crops run. host: NumPy/OpenCV on the CPU; "
            "graph: inside the ONNX graphs, on NV12 frames (with NVDEC on onnxruntime-cuda and CuPy the frames stay on the GPU; "
            "needs ONNX Runtime and a letterboxing detector); auto: graph where NVDEC's frames can stay on the GPU, else host. "
            "Same rows either way: the graphs compute in OpenCV's arithmetic (boxes equal; a label in ~500 can differ)."
        ),
    ] = Preprocess.auto,
    address: Annotated[
        str | None,
        typer.Option(
            help="Connect to a running Ray cluster (auto, HOST:PORT or ray://HOST:PORT) instead of starting one locally.",
            envvar="RAY_ADDRESS",
            show_envvar=True,
            metavar="ADDRESS",
        ),
    ] = None,
    ray_mode: Annotated[
        bool | None,
        typer.Option(
            "--ray/--no-ray",
            help="Run on Ray actors / in this process (one thread per worker). Default: in-process for small local jobs "
            "(up to ~20,000 frames), Ray otherwise or with --address.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty --out that is not a ferbatch dataset.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Start OUT afresh when its rows were made with other result-changing settings.")
    ] = False,
    full_hash: Annotated[
        bool, typer.Option("--full-hash", help="Identify videos by the sha256 of the whole file (default: size + sampled blocks).")
    ] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log lines (-v info, -vv debug).", show_default=False)
    ] = 0,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="Print only errors: no progress bar, no Ray start-up lines, no summary (the exit status tells)."
        ),
    ] = False,
) -> None:
    """Find every face in every frame of the videos, classify its expression, write Parquet to OUT.

    Example: ferbatch run ../shared/data/videos_faces ../shared/data/videos_emotion_cremad --out out/

    Still images are refused before anything starts (see ferbatch analyze).
    """
    from ferbatch.api import run as run_job
    from ferbatch.cli.startup import without_pandas
    from ferbatch.job.progress import progress_bar

    set_verbosity(verbose, quiet)  # -q: also Ray's start-up warnings (token authentication, ...)
    try:
        options = dict(
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
            detect_every=detect_every,
            between=between.value,
            classify_between=classify_between.value,
            sample_fps=sample_fps,
            prior=prior,
            align=align,
            backend=backend.value,
            precision=precision.value,
            decoder=decoder.value,
            preprocess=preprocess.value,
        )
        # a job needs no pandas; pyarrow would import it on its first conversion
        with progress_bar(console, disable=quiet) as progress, without_pandas():
            with _sigterm_as_interrupt():
                s = run_job(
                    inputs,
                    out,
                    shard_frames=shard_frames,
                    use_ray=ray_mode,
                    address=address,
                    force=force,
                    overwrite=overwrite,
                    full_hash=full_hash,
                    progress=progress,
                    **options,
                )
    except JobAborted as e:
        _fail(e, code=4)
    except FerbatchError as e:
        _fail(e)
    except OSError as e:  # the machine's (disk full, I/O) where no stage named it (e.g. the model cache): exit 4, one line
        where = f"{e.filename} | " if e.filename else ""
        _fail(JobAborted(f"{where}{e.strerror or e}; the job stopped, finished shards are kept, rerun the same command to resume"), code=4)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]: finished shards are recorded; run the same command again to resume")
        raise typer.Exit(130) from None
    if not quiet:  # -q: only errors (below), one line counting them, and the exit status
        _print_summary(s, out)
    elif s.failed or s.partial:
        console.print(f"{s.failed} failed, {s.partial} partial of {s.videos} videos", highlight=False)
    for path, err in s.errors.items():
        console.print(f"[yellow]{escape(path)}[/yellow]: {escape(err)}", soft_wrap=True, highlight=False)
    if s.failed:
        raise typer.Exit(1)
    if s.partial:
        raise typer.Exit(3)


def _print_summary(s, out: str) -> None:
    """The job's summary table on standard output."""
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


def analyze(
    images: Annotated[list[Path], typer.Argument(help="Image files (JPEG, PNG, BMP, WebP, TIFF).", show_default=False, metavar="IMAGE")],
    detector: Annotated[str | None, typer.Option(help="Detector name (default: the registry's).", metavar="NAME")] = None,
    classifier: Annotated[str | None, typer.Option(help="Classifier name (default: the registry's).", metavar="NAME")] = None,
    fmt: Annotated[Format | None, typer.Option("--format", help=FORMAT_HELP, show_default=False)] = None,
    output: Annotated[Path | None, typer.Option("--output", help="Write to this file instead of standard output.", metavar="FILE")] = None,
    columns: Annotated[str | None, typer.Option("--columns", "-c", help="Only these columns, comma-separated.", metavar="COL,...")] = None,
) -> None:
    """Faces and expressions of still images: one row per face (box in pixels, detector score, emotion, probabilities).

    The Python API is ferbatch.analyze(image). Images without a face are named on stderr.

    Example: ferbatch analyze photo.jpg --format csv
    """
    import pyarrow as pa

    from ferbatch.api import analyze as do_analyze
    from ferbatch.cli.render import render

    parts = []
    try:
        for img in images:
            faces = do_analyze(img, detector=detector, classifier=classifier)
            if not len(faces):
                console.print(f"{escape(str(img))}: no face found", soft_wrap=True, highlight=False)
            t = faces.to_arrow()
            parts.append(t.add_column(0, "path", pa.array([str(img)] * t.num_rows, pa.string())))
        table = pa.concat_tables(parts)
        cols = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
        shown = ("path", "face_idx", "x1", "y1", "x2", "y2", "det_score", "emotion", "emotion_prob")
        render(table, resolve_format(fmt, output), Console(), output, columns=cols, table_columns=shown)
    except FerbatchError as e:
        _fail(e)


def register(app: typer.Typer) -> None:
    """Add ``run`` and ``analyze`` to ``app``."""
    app.command(epilog=EXIT_CODES)(run)
    app.command()(analyze)
