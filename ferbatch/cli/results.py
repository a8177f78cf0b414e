"""Commands that answer questions from a finished dataset: query, summary, timeline, moments, report, annotate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ferbatch.cli.common import fail as _fail
from ferbatch.errors import FerbatchError

__all__ = ["register"]


def query(
    out: Annotated[Path, typer.Argument(help="A ferbatch output directory.")],
    sql: Annotated[str, typer.Option("--sql", help="SQL over the views faces, frames, videos.")],
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Stop the query after this many seconds (0 = never).")] = 300.0,
) -> None:
    """Run DuckDB SQL over a dataset (read-only views faces, frames, videos).

    Example: ferbatch query out/ --sql "SELECT emotion, count(*) FROM faces GROUP BY 1"
    """
    from ferbatch.cli.render import render
    from ferbatch.dataset.query import connect, deadline, inside, run_sql

    try:
        if output is not None and inside(out, output):
            raise FerbatchError(f"--output {output} | is inside the dataset {out}: it would overwrite the dataset's own files")
        con = connect(out)
        with deadline(con, timeout):
            render(run_sql(con, sql), fmt, Console(), output)
    except FerbatchError as e:
        _fail(e)
    except Exception as e:  # duckdb's own errors: one line for the user
        _fail(FerbatchError(f"--sql | {type(e).__name__}: {e}"))


FormatOpt = Annotated[str, typer.Option("--format", help="table | csv | json | parquet (parquet needs --output).")]
OutputOpt = Annotated[Path | None, typer.Option("--output", help="Write to this file instead of the terminal.")]


def _answer(out: Path, fn, fmt: str, output: Path | None) -> None:
    from ferbatch.cli.render import render
    from ferbatch.dataset.api import Dataset

    try:
        render(fn(Dataset(out)), fmt, Console(), output)
    except FerbatchError as e:
        _fail(e)


def summary(
    out: Annotated[Path, typer.Argument(help="A ferbatch output directory.")], fmt: FormatOpt = "table", output: OutputOpt = None
) -> None:
    """Per video: duration, frames, frames with faces, mean faces per frame, share of each emotion, dominant emotion.

    Example: ferbatch summary out/ --format csv
    """
    _answer(out, lambda ds: ds.summary(), fmt, output)


def timeline(
    out: Annotated[Path, typer.Argument(help="A ferbatch output directory.")],
    video: Annotated[str, typer.Argument(help="Video id, relative path, file name or stem.")],
    bin_width: Annotated[str, typer.Option("--bin", help="Bin width: 1s, 500ms, 2m.")] = "1s",
    all_faces: Annotated[bool, typer.Option("--all-faces", help="One row per bin over all faces, not per face index.")] = False,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
) -> None:
    """Emotion shares (and mean probabilities) per time bin and face index of one video.

    Example: ferbatch timeline out/ WolfgangLanger_Pexels --bin 1s
    """
    _answer(out, lambda ds: ds.timeline(video, bin_width, by_face=not all_faces), fmt, output)


def moments(
    out: Annotated[Path, typer.Argument(help="A ferbatch output directory.")],
    emotion: Annotated[str, typer.Option(help="One of neutral, happiness, surprise, sadness, anger, disgust, fear, contempt.")],
    min_prob: Annotated[float, typer.Option(help="A face's probability of the emotion at least this.")] = 0.8,
    min_duration: Annotated[str, typer.Option(help="Spans at least this long: 0.5s, 500ms.")] = "0.5s",
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
) -> None:
    """Time spans where some face shows EMOTION (its top class, with probability >= --min-prob) in consecutive frames.

    Example: ferbatch moments out/ --emotion surprise --min-prob 0.8 --min-duration 0.5s
    """
    _answer(out, lambda ds: ds.moments(emotion, min_prob, min_duration), fmt, output)


def report(
    out: Annotated[Path, typer.Argument(help="A ferbatch output directory.")],
    to: Annotated[Path, typer.Option("--to", help="Folder for index.html and its PNGs.")] = Path("report"),
) -> None:
    """A static HTML report: per video an emotion timeline, an emotion distribution and the summary numbers.

    Example: ferbatch report out/ --to report/
    """
    from ferbatch.dataset.report import write_report

    try:
        index = write_report(out, to)
    except FerbatchError as e:
        _fail(e)
    print(index)


def annotate(
    video: Annotated[Path, typer.Argument(help="The source video (as processed).", exists=True, dir_okay=False)],
    results: Annotated[Path, typer.Option("--results", help="The ferbatch output directory that holds its rows.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Annotated video to write (.mp4).")] = Path("annotated.mp4"),
) -> None:
    """Re-encode VIDEO with each face's box, emotion and probability drawn from the Parquet rows (no model runs).

    Example: ferbatch annotate ../shared/data/videos_faces/pyfeat/WolfgangLanger_Pexels.mp4 --results out/ -o annotated.mp4
    """
    from ferbatch.dataset.annotate import annotate_video

    try:
        n = annotate_video(video, results, output)
    except FerbatchError as e:
        _fail(e)
    print(f"{output}: {n} frames")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    for fn in (query, summary, timeline, moments, report, annotate):
        app.command()(fn)
