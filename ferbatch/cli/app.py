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
from ferbatch.cli import cluster, compact, engines, export, live, models, results, run, serve, training, tune
from ferbatch.cli.common import EXIT_CODES

__all__ = ["app", "main"]

app = typer.Typer(
    help="Batch facial emotion recognition over collections of videos: every face in every frame, "
    "its expression (FER+ 8 classes), one row per face per frame in a Parquet dataset.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    # plain click help: flags without a type, choices as [a|b], metavars as given; -h as well as --help
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback(invoke_without_command=True)
def _main(version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False) -> None:
    if version:
        print(__version__)
        raise typer.Exit(0)


def main() -> None:
    """The ``ferbatch`` console script. A closed standard output (``ferbatch query ... | head``)
    ends the command silently (typer's handling of EPIPE: exit status 1, no traceback)."""
    sys.exit(app())


run.register(app)
results.register(app)
compact.register(app)
training.register(app)
models.register(app)
engines.register(app)
cluster.register(app)
serve.register(app)
live.register(app)
export.register(app)
tune.register(app)
