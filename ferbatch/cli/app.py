"""The ``ferbatch`` command line: thin commands that parse, call the library and print.

Commands live by group: :mod:`.run` (the job), :mod:`.results` (query, summary, timeline,
moments, report, annotate), :mod:`.training` (eval, train), :mod:`.models` (models,
build-engines), :mod:`.cluster` (submit, jobs).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ferbatch import __version__
from ferbatch.cli import cluster, engines, models, results, run, training

__all__ = ["app", "main"]

app = typer.Typer(
    help="Batch facial emotion recognition over collections of videos: every face in every frame, "
    "its expression (FER+ 8 classes), one row per face per frame in a Parquet dataset.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback(invoke_without_command=True)
def _main(version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False) -> None:
    if version:
        print(__version__)
        raise typer.Exit(0)


def main() -> None:  # pragma: no cover - console script shim
    sys.exit(app())


run.register(app)
results.register(app)
training.register(app)
models.register(app)
engines.register(app)
cluster.register(app)
