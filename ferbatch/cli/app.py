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
    from ferbatch.cli.startup import mark_console

    mark_console()  # a job in this process may leave pandas out (ferbatch.cli.startup)
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


def _metavar(param, typer_label: str | None) -> str | None:
    """What a parameter without its own metavar takes, for ``--help``, from typer's label
    (``<int>``, ``<float range>``, ``<path>``, ``<list[str]>``): an integer N, a number X, a FILE /
    DIR / PATH, else the parameter's name in capitals (``--host HOST``), ``...`` after a repeatable
    one. Choices (``<a|b>``) and flags (no label) stay as typer shows them."""
    if not typer_label or not typer_label.startswith("<") or "|" in typer_label:
        return typer_label
    label = typer_label.strip("<>.")
    many = label.startswith("list[")
    kind = label.removeprefix("list[").removesuffix("]").split()[0]
    name = {"int": "N", "float": "X", "path": "PATH", "file": "FILE", "directory": "DIR", "dir": "DIR"}.get(kind)
    return (name or (param.name or "value").upper()) + ("..." if many or typer_label.endswith("...") else "")


def _option_type(self, ctx) -> str | None:
    """An option's own metavar, else :func:`_metavar` of typer's label."""
    return _typer_option_type(self, ctx) if self.metavar is not None else _metavar(self, _typer_option_type(self, ctx))


def _argument_type(self, ctx) -> str | None:
    """An argument shows its name or metavar alone (typer would add its type: ``OUT <str>``);
    choices keep ``<a|b>``."""
    label = _typer_argument_type(self, ctx)
    return label if label and "|" in label else None


_typer_option_type = typer.core.TyperOption.display_type_rich
_typer_argument_type = typer.core.TyperArgument.display_type_rich
typer.core.TyperOption.display_type_rich = _option_type  # type: ignore[method-assign]
typer.core.TyperArgument.display_type_rich = _argument_type  # type: ignore[method-assign]
