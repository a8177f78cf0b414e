"""What the CLI modules share: the stderr console, one-line errors, choice types, exit codes, verbosity."""

from __future__ import annotations

import logging
import os
import sys
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

__all__ = [
    "Backend",
    "BackendOption",
    "ClassifierOption",
    "DetectorOption",
    "ThreadsOption",
    "EXIT_CODES",
    "Format",
    "LabelMode",
    "Precision",
    "console",
    "fail",
    "resolve_format",
    "set_verbosity",
]

console = Console(stderr=True)

# Shown in `ferbatch --help` and `ferbatch run --help` (README.md "Exit status" says the same).
EXIT_CODES = (
    "Exit status: 0 done (every video ok); 1 some videos failed (see the summary and OUT/videos.parquet), "
    "or standard output was closed early (e.g. `| head`, silently); 2 bad input, settings, models or output "
    "directory (nothing touched), or a usage error; 3 none failed but some are partial; 4 the job stopped on an "
    "error of the machine (disk full, out of memory) or a bug, finished shards kept; 130 interrupted (Ctrl-C or "
    "SIGTERM; rerun the same command to resume)."
)


class Format(StrEnum):
    """Output formats of the results commands."""

    table = "table"
    csv = "csv"
    tsv = "tsv"
    jsonl = "jsonl"
    json = "json"
    parquet = "parquet"


class Backend(StrEnum):
    """Inference backends (``auto``: TensorRT, else ONNX Runtime CUDA, when a GPU is usable; else CPU;
    ``openvino``: OpenVINO on the CPU, never picked by ``auto``)."""

    auto = "auto"
    tensorrt = "tensorrt"
    onnxruntime_cuda = "onnxruntime-cuda"
    onnxruntime = "onnxruntime"
    openvino = "openvino"


# The model options the serving commands (watch, serve, export) share, so their help reads the same.
DetectorOption = Annotated[
    str | None, typer.Option(help="Detector name from the model registry (ferbatch models) (default: the registry's).", metavar="NAME")
]
ClassifierOption = Annotated[
    str | None, typer.Option(help="Classifier name from the model registry (ferbatch models) (default: the registry's).", metavar="NAME")
]
BackendOption = Annotated[Backend, typer.Option(help="auto (a GPU backend when usable, else ONNX Runtime) or one of the list.")]
ThreadsOption = Annotated[int, typer.Option(help="Inference threads; 0 = one per core.", min=0)]


class Decoder(StrEnum):
    """Video decoders (``auto``: NVDEC with a GPU backend when PyNvVideoCodec and the stream allow it, else PyAV)."""

    auto = "auto"
    pyav = "pyav"
    nvdec = "nvdec"


class Preprocess(StrEnum):
    """Where letterbox, colour conversion and face crops run (``--preprocess``; ``JobConfig.preprocess``)."""

    auto = "auto"
    host = "host"
    graph = "graph"


class Between(StrEnum):
    """What finds the faces between full detections (``--between``; :mod:`ferbatch.vision.analysis`)."""

    tracked = "tracked"
    window = "window"


class ClassifyBetween(StrEnum):
    """Which rows between full detections the classifier runs on (``--classify-between``; :mod:`ferbatch.vision.analysis`)."""

    changes = "changes"
    every = "every"


class Precision(StrEnum):
    """Graph precisions (NMS stays float32)."""

    fp32 = "fp32"
    fp16 = "fp16"


class LabelMode(StrEnum):
    """Training targets: the FER+ vote distribution or its majority label."""

    probability = "probability"
    majority = "majority"


FORMAT_HELP = (
    "table (the default on a terminal), csv (the default when standard output is not a terminal), tsv, "
    "jsonl (one JSON object per line), json (one JSON array) or parquet (needs --output). "
    "With --output, the default is the file's extension."
)


def resolve_format(fmt: Format | None, output: os.PathLike[str] | str | None = None) -> str:
    """The format to use: the one asked for; else, with ``--output``, the one its extension names
    (.csv .tsv .json .jsonl .parquet; csv for others); else ``table`` on a terminal and ``csv`` when
    standard output is piped or redirected."""
    if fmt is not None:
        return fmt.value
    if output is not None:
        ext = os.path.splitext(os.fspath(output))[1].lower().lstrip(".")
        return ext if ext in ("csv", "tsv", "json", "jsonl", "parquet") else "csv"
    return "table" if sys.stdout.isatty() else "csv"


def set_verbosity(verbose: int, quiet: bool) -> None:
    """Logging for a command: warnings by default, ``-v`` info, ``-vv`` debug, ``-q`` errors only.

    Quiet also silences Ray's start-up warnings (e.g. "Token authentication is enabled ..."). Ray
    sets its ``ray`` logger to INFO when it is imported (later, lazily), so the levels go on the
    loggers below it, which Ray leaves alone.
    """
    level = logging.ERROR if quiet else {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")  # no-op when a host configured logging
    logging.getLogger().setLevel(level)
    logging.getLogger("ferbatch").setLevel(level)
    for name in ("ray._private", "ray.util", "ray.runtime_env", "ray.dashboard"):
        logging.getLogger(name).setLevel(logging.ERROR if quiet else logging.NOTSET)


def fail(e: Exception, code: int = 2) -> None:
    """Print ``error: <message>`` on stderr and exit with ``code`` (2 = bad input or settings)."""
    console.print(f"[red]error:[/red] {escape(str(e))}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)
