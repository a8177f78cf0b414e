"""The ``ferbatch`` command line: thin commands that parse, call the library and print."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ferbatch import __version__, cli_cluster, cli_results
from ferbatch.cli_common import console
from ferbatch.cli_common import fail as _fail
from ferbatch.errors import FerbatchError

app = typer.Typer(
    help="Batch facial emotion recognition over collections of videos: every face in every frame, "
    "its expression (FER+ 8 classes), one row per face per frame in a Parquet dataset.",
    no_args_is_help=True,
    add_completion=False,
)


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
        t.add_row(k, escape(str(v)))
    Console().print(t)
    for path, err in s.errors.items():
        console.print(f"[yellow]{escape(path)}[/yellow]: {escape(err)}", soft_wrap=True, highlight=False)
    if s.failed:
        raise typer.Exit(1)


@app.command("eval")
def eval_cmd(
    model: Annotated[str, typer.Option("--model", help="Registry classifier name, or a file whose sha256 is a registry entry's.")],
    data: Annotated[Path, typer.Option("--data", help="FER+ folder (images + label.csv) or one folder per emotion.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder for metrics.json, confusion.csv, confusion.png.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table | json")] = "table",
) -> None:
    """Evaluate an expression classifier: acc@1, acc@5, per-class and macro precision/recall/specificity/F1, confusion matrix.

    FER+ protocol: majority label, unknown/NF dropped. Example: ferbatch eval --model mini-xception-fer2013 --data ../shared/data/ferplus/FER2013Valid --out eval/
    """
    import json

    from ferbatch.evaluate import evaluate, write_outputs

    try:
        res = evaluate(model, data)
    except FerbatchError as e:
        _fail(e)
    if out:
        write_outputs(res, out)
    if fmt == "json":
        print(json.dumps(res))
        return
    t = Table(title=f"{res['model']} on {data}: acc@1 {res['acc1']:.4f}, acc@5 {res['acc5']:.4f}, n={res['n']}")
    for c in ("class", "precision", "recall", "specificity", "F1", "support"):
        t.add_column(c)
    for e, m in res["per_class"].items():
        t.add_row(e, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['specificity']:.3f}", f"{m['f1']:.3f}", str(m["support"]))
    mac = res["macro"]
    t.add_row("macro", f"{mac['precision']:.3f}", f"{mac['recall']:.3f}", f"{mac['specificity']:.3f}", f"{mac['f1']:.3f}", str(res["n"]))
    Console().print(t)
    console.print(f"skipped: {res['skipped'] or 'none'}; classes the model lacks: {res['classes_missing'] or 'none'}"
                  + (f"; {res['align_fallback']} faces without landmarks fell back to a plain resize" if res["align_fallback"] else ""),
                  soft_wrap=True, highlight=False, markup=False)


@app.command()
def train(
    data: Annotated[Path, typer.Option("--data", help="FER+ training folder (images + label.csv) or FER2013Train.tar.gz.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for checkpoints, best.pt, model.onnx, train_summary.json.")],
    val: Annotated[Optional[Path], typer.Option("--val", help="Validation folder (selection and early stopping).")] = None,
    epochs: Annotated[int, typer.Option(help="Epochs (cosine one-cycle schedule over them).")] = 16,
    label_mode: Annotated[str, typer.Option(help="probability (FER+ vote distribution) | majority.")] = "probability",
    width: Annotated[int, typer.Option(help="Channels of the first block (16 = 147k parameters).")] = 16,
    limit: Annotated[Optional[int], typer.Option(help="Use only the first N training images (smoke runs).")] = None,
) -> None:
    """Train the compact FER+ 8-class CNN (needs the 'train' extra: torch==2.13.0); resumes from OUT/checkpoint.pt.

    Example: ferbatch train --data ../shared/data/ferplus/FER2013Train.tar.gz --val ../shared/data/ferplus/FER2013Valid --out model_dir/
    """
    from ferbatch.train import TrainConfig, prepare_train_folder
    from ferbatch.train import train as do_train

    try:
        folder = prepare_train_folder(data)
        s = do_train(TrainConfig(data=str(folder), out=str(out), val=str(val) if val else None, epochs=epochs,
                                 label_mode=label_mode, width=width, limit=limit), log=lambda m: console.print(m, highlight=False, markup=False))
    except FerbatchError as e:
        _fail(e)
    print(f"best val acc@1 {s['best_val_acc1']:.4f} at epoch {s['best_epoch']}; {s['train_seconds']:.0f} s; {out}/model.onnx")


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


@app.callback(invoke_without_command=True)
def _main(version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False) -> None:
    if version:
        print(__version__)
        raise typer.Exit(0)


def main() -> None:  # pragma: no cover - console script shim
    sys.exit(app())


cli_results.register(app)
cli_cluster.register(app)
