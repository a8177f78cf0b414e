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
    track: Annotated[bool, typer.Option("--track/--no-track", help="Track faces across frames (track ids, smoothed emotions, tracks table).")] = True,
    backend: Annotated[str, typer.Option(help="auto (TensorRT when a GPU, tensorrt and pycuda are present) | tensorrt | onnxruntime.")] = "auto",
    precision: Annotated[str, typer.Option(help="fp32 | fp16 (the graphs' own types; NMS stays fp32).")] = "fp32",
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
                        max_faces=max_faces, score_threshold=score_threshold, in_graph_nms=not numpy_nms, track=track,
                        backend=backend, precision=precision)
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
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]: finished shards are recorded; run the same command again to resume")
        raise typer.Exit(130) from None
    t = Table(title=f"ferbatch {__version__}: {out}", show_header=False)
    for k, v in [("videos", s.videos), ("skipped (already done)", s.skipped), ("ok", s.ok), ("partial", s.partial),
                 ("failed", s.failed), ("frames", s.frames), ("faces", s.faces), ("seconds", f"{s.seconds:.1f}"),
                 ("frames/s", f"{s.frames_per_s:.1f}"), ("shards retried", s.retried), ("backend", s.backend or "-")]:
        t.add_row(k, str(v))
    Console().print(t)
    for path, err in s.errors.items():
        console.print(f"[yellow]{path}[/yellow]: {err}", soft_wrap=True, highlight=False)
    if s.failed:
        raise typer.Exit(1)


@app.command("build-engines")
def build_engines(
    precision: Annotated[str, typer.Option(help="fp32 | fp16.")] = "fp32",
    max_batch: Annotated[int, typer.Option(help="Profile max batch (detector: frames, classifier: faces).")] = 64,
    models_: Annotated[Optional[list[str]], typer.Option("--models", help="Registry names (default: the default pair).")] = None,
    engines_dir: Annotated[Optional[Path], typer.Option(help="Where plans go (default engines/built/).")] = None,
    numpy_nms: Annotated[bool, typer.Option("--numpy-nms", help="Build the raw detector (NMS in NumPy).")] = False,
) -> None:
    """Build TensorRT engines from the prepared ONNX graphs (needs a GPU, tensorrt and pycuda).

    Plans are keyed by ONNX sha256, precision, profile, TensorRT version, CUDA major and GPU;
    a stale or foreign plan is rebuilt. Example: ferbatch build-engines --precision fp16 --max-batch 64
    """
    from ferbatch.engines import build_or_load_plan, engine_key
    from ferbatch.graphs import prepare_classifier, prepare_detector
    from ferbatch.registry import load_registry, resolve_model_file

    try:
        reg = load_registry()
        for name in models_ or [reg.default_detector, reg.default_classifier]:
            spec = reg.get(name)
            f = resolve_model_file(spec)
            graph = (prepare_detector(f, spec, in_graph_nms=not numpy_nms, precision=precision) if spec.kind == "detector"
                     else prepare_classifier(f, spec, precision=precision))
            inp = spec.input
            key = engine_key(spec.name, graph, precision, inp.name, (inp.channels, inp.height, inp.width), max_batch)
            print(build_or_load_plan(graph, key, engines_dir))
    except FerbatchError as e:
        _fail(e)


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
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
) -> None:
    """Run DuckDB SQL over a dataset (read-only views faces, frames, videos).

    Example: ferbatch query out/ --sql "SELECT emotion, count(*) FROM faces GROUP BY 1"
    """
    from ferbatch.query import connect, render, run_sql

    try:
        render(run_sql(connect(out), sql), fmt, Console(), output)
    except FerbatchError as e:
        _fail(e)
    except Exception as e:  # duckdb's own errors: one line for the user
        _fail(FerbatchError(f"--sql | {type(e).__name__}: {e}"))


FormatOpt = Annotated[str, typer.Option("--format", help="table | csv | json | parquet (parquet needs --output).")]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", help="Write to this file instead of the terminal.")]


def _answer(out: Path, fn, fmt: str, output: Optional[Path]) -> None:
    from ferbatch.answers import Dataset
    from ferbatch.query import render

    try:
        render(fn(Dataset(out)), fmt, Console(), output)
    except FerbatchError as e:
        _fail(e)


@app.command()
def summary(out: Annotated[Path, typer.Argument(help="A ferbatch output directory.")], fmt: FormatOpt = "table",
            output: OutputOpt = None) -> None:
    """Per video: duration, frames, frames with faces, mean faces per frame, share of each emotion, dominant emotion.

    Example: ferbatch summary out/ --format csv
    """
    _answer(out, lambda ds: ds.summary(), fmt, output)


@app.command()
def timeline(out: Annotated[Path, typer.Argument(help="A ferbatch output directory.")],
             video: Annotated[str, typer.Argument(help="Video id, relative path, file name or stem.")],
             bin: Annotated[str, typer.Option("--bin", help="Bin width: 1s, 500ms, 2m.")] = "1s",
             all_faces: Annotated[bool, typer.Option("--all-faces", help="One row per bin over all faces, not per face index.")] = False,
             fmt: FormatOpt = "table", output: OutputOpt = None) -> None:
    """Emotion shares (and mean probabilities) per time bin and face index of one video.

    Example: ferbatch timeline out/ WolfgangLanger_Pexels --bin 1s
    """
    _answer(out, lambda ds: ds.timeline(video, bin, by_face=not all_faces), fmt, output)


@app.command()
def moments(out: Annotated[Path, typer.Argument(help="A ferbatch output directory.")],
            emotion: Annotated[str, typer.Option(help="One of neutral, happiness, surprise, sadness, anger, disgust, fear, contempt.")],
            min_prob: Annotated[float, typer.Option(help="A face's probability of the emotion at least this.")] = 0.8,
            min_duration: Annotated[str, typer.Option(help="Spans at least this long: 0.5s, 500ms.")] = "0.5s",
            fmt: FormatOpt = "table", output: OutputOpt = None) -> None:
    """Time spans where some face shows EMOTION (its top class, with probability >= --min-prob) in consecutive frames.

    Example: ferbatch moments out/ --emotion surprise --min-prob 0.8 --min-duration 0.5s
    """
    _answer(out, lambda ds: ds.moments(emotion, min_prob, min_duration), fmt, output)


@app.command()
def report(out: Annotated[Path, typer.Argument(help="A ferbatch output directory.")],
           to: Annotated[Path, typer.Option("--to", help="Folder for index.html and its PNGs.")] = Path("report")) -> None:
    """A static HTML report: per video an emotion timeline, an emotion distribution and the summary numbers.

    Example: ferbatch report out/ --to report/
    """
    from ferbatch.report import write_report

    try:
        index = write_report(out, to)
    except FerbatchError as e:
        _fail(e)
    print(index)


@app.command()
def annotate(video: Annotated[Path, typer.Argument(help="The source video (as processed).", exists=True, dir_okay=False)],
             results: Annotated[Path, typer.Option("--results", help="The ferbatch output directory that holds its rows.")],
             output: Annotated[Path, typer.Option("-o", "--output", help="Annotated video to write (.mp4).")] = Path("annotated.mp4")) -> None:
    """Re-encode VIDEO with each face's box, emotion and probability drawn from the Parquet rows (no model runs).

    Example: ferbatch annotate ../shared/data/videos_faces/pyfeat/WolfgangLanger_Pexels.mp4 --results out/ -o annotated.mp4
    """
    from ferbatch.annotate import annotate_video

    try:
        n = annotate_video(video, results, output)
    except FerbatchError as e:
        _fail(e)
    print(f"{output}: {n} frames")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def submit(
    ctx: typer.Context,
    inputs: Annotated[list[str], typer.Argument(help="Video files/directories as the cluster's nodes see them.", show_default=False)],
    out: Annotated[str, typer.Option("--out", "-o", help="Output directory on storage every node shares.")],
    address: Annotated[str, typer.Option(help="The cluster's dashboard, e.g. http://HEAD:8265.")],
    submission_id: Annotated[Optional[str], typer.Option(help="Job id; default: a hash of inputs, out and options (a repeat is refused).")] = None,
    model_mirror: Annotated[Optional[str], typer.Option(help="FERBATCH_MODEL_MIRROR on the cluster's nodes.")] = None,
    pip: Annotated[Optional[list[str]], typer.Option(help="Extra pip requirement for the job's runtime env (repeatable).")] = None,
) -> None:
    """Submit a ferbatch run to a running Ray cluster (Ray Jobs API).

    Options after `--` are passed to `ferbatch run` on the cluster.

    Example: ferbatch submit /data/videos --out /shared/out --address http://head:8265 --model-mirror /shared/models -- --shard-frames 3000

    Clusters with token authentication (the Ray 2.6x default): the token is read from RAY_AUTH_TOKEN,
    RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token.
    """
    from ferbatch.submit import submit as do_submit

    try:
        sid = do_submit(address, inputs, out, list(ctx.args), submission_id=submission_id, model_mirror=model_mirror, pip=pip or ())
    except FerbatchError as e:
        _fail(e)
    except Exception as e:  # the SDK raises RuntimeError for a duplicate id, a refused upload, ...
        _fail(FerbatchError(f"submit | {e}"))
    print(sid)
    console.print(f"follow it with: ferbatch jobs logs {sid} --address {address} --follow", soft_wrap=True, highlight=False)


jobs_app = typer.Typer(help="Status, logs and stopping of submitted jobs (Ray Jobs API).", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
AddressOpt = Annotated[str, typer.Option(help="The cluster's dashboard, e.g. http://HEAD:8265.")]


@jobs_app.command("status")
def jobs_status(submission_id: str, address: AddressOpt) -> None:
    """Print a submitted job's status (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED).

    Example: ferbatch jobs status ferbatch-1a2b3c4d5e6f --address http://head:8265
    """
    from ferbatch.submit import client

    try:
        info = client(address).get_job_info(submission_id)
    except FerbatchError as e:
        _fail(e)
    except Exception as e:  # unknown id
        _fail(FerbatchError(f"{submission_id} | {e}"))
    print(info.status.value if hasattr(info.status, "value") else info.status)
    if info.message:
        console.print(info.message, soft_wrap=True, highlight=False)


@jobs_app.command("logs")
def jobs_logs(submission_id: str, address: AddressOpt,
              follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")] = False) -> None:
    """Print a submitted job's logs.

    Example: ferbatch jobs logs ferbatch-1a2b3c4d5e6f --address http://head:8265 --follow
    """
    import asyncio

    from ferbatch.submit import client

    try:
        c = client(address)
        if not follow:
            sys.stdout.write(c.get_job_logs(submission_id))
            return

        async def tail():
            async for chunk in c.tail_job_logs(submission_id):
                sys.stdout.write(chunk)
                sys.stdout.flush()

        asyncio.run(tail())
    except Exception as e:  # noqa: BLE001 - unknown id, lost connection
        _fail(FerbatchError(f"{submission_id} | {e}"))


@jobs_app.command("stop")
def jobs_stop(submission_id: str, address: AddressOpt) -> None:
    """Stop a submitted job (a rerun with the same --out resumes it).

    Example: ferbatch jobs stop ferbatch-1a2b3c4d5e6f --address http://head:8265
    """
    from ferbatch.submit import client

    try:
        stopped = client(address).stop_job(submission_id)
    except Exception as e:  # noqa: BLE001
        _fail(FerbatchError(f"{submission_id} | {e}"))
    print("stopping" if stopped else "already finished")


@jobs_app.command("list")
def jobs_list(address: AddressOpt) -> None:
    """List the cluster's submitted jobs.

    Example: ferbatch jobs list --address http://head:8265
    """
    from ferbatch.submit import client

    t = Table("submission id", "status", "entrypoint")
    try:
        jobs = client(address).list_jobs()
    except FerbatchError as e:
        _fail(e)
    for j in jobs:
        t.add_row(str(j.submission_id), str(getattr(j.status, "value", j.status)), j.entrypoint[:80])
    Console().print(t)


@app.callback(invoke_without_command=True)
def _main(version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False) -> None:
    if version:
        print(__version__)
        raise typer.Exit(0)


def main() -> None:  # pragma: no cover - console script shim
    sys.exit(app())
