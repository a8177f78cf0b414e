"""Commands that answer questions from a finished dataset: query, summary, timeline, moments, report, annotate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ferbatch.cli.common import FORMAT_HELP, Format, resolve_format
from ferbatch.cli.common import fail as _fail
from ferbatch.cli.render import MAX_TABLE_ROWS
from ferbatch.errors import FerbatchError
from ferbatch.labels import EMOTIONS

__all__ = ["register"]


def _complete_emotion(incomplete: str) -> list[str]:
    """Shell completion of --emotion: the FER+ names (the aliases are accepted, not offered)."""
    return [e for e in EMOTIONS if e.startswith(incomplete.lower())]


EmotionOpt = Annotated[
    str,
    typer.Option(
        help="The emotion to look for; the common names are accepted too (happy, sad, angry, surprised, scared, ...).",
        metavar="<" + "|".join(EMOTIONS) + ">",
        autocompletion=_complete_emotion,
        show_default=False,
    ),
]

OutArg = Annotated[
    str,
    typer.Argument(
        help="A ferbatch output directory, or its s3:// / gs:// URI (credentials from AWS_*).", metavar="OUT", show_default=False
    ),
]
FormatOpt = Annotated[Format | None, typer.Option("--format", help=FORMAT_HELP, show_default=False)]
OutputOpt = Annotated[Path | None, typer.Option("--output", help="Write to this file instead of standard output.", metavar="FILE")]
ColumnsOpt = Annotated[
    str | None,
    typer.Option(
        "--columns",
        "-c",
        help="Only these columns, comma-separated, in this order (every format). Tables show fewer by default; "
        "a table wider than the terminal prints one block per row.",
        metavar="COL,COL,...",
    ),
]
MaxRowsOpt = Annotated[
    int,
    typer.Option(
        "--max-rows",
        help="At a terminal, a table shows at most this many rows (the first and last half) and says how many it left out; "
        "0 = all. Piped or redirected output and --output files always have every row.",
        metavar="N",
        min=0,
    ),
]


def _terminal_rows(max_rows: int) -> int:
    """The row cap of a table on standard output: ``max_rows`` at a terminal, none (0) otherwise."""
    import sys

    return max_rows if sys.stdout.isatty() else 0


def _split(columns: str | None) -> list[str] | None:
    return [c.strip() for c in columns.split(",") if c.strip()] if columns else None


def query(
    out: OutArg,
    select: Annotated[
        str | None, typer.Argument(help="One SELECT over the views faces, frames, videos, tracks.", metavar="SELECT", show_default=False)
    ] = None,
    sql: Annotated[str | None, typer.Option("--sql", help="The SELECT, as an option (instead of the argument).", metavar="SELECT")] = None,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    columns: ColumnsOpt = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Stop the query after this many seconds (0 = never).", metavar="SECONDS", min=0)
    ] = 300.0,
    max_rows: MaxRowsOpt = MAX_TABLE_ROWS,
) -> None:
    """Run DuckDB SQL over a dataset (read-only views faces, frames, videos, tracks).

    Example: ferbatch query out/ "SELECT emotion, count(*) FROM faces GROUP BY 1"
    (or --sql "SELECT ...")
    """
    import duckdb

    from ferbatch.cli.render import render
    from ferbatch.dataset.query import connect, damaged_part, deadline, inside, run_sql

    try:
        text = select if sql is None else sql
        if text is None or (select is not None and sql is not None):
            what = "no SELECT" if text is None else "both the SELECT argument and --sql"
            raise FerbatchError(f'query | {what}: give one, e.g. ferbatch query {out} "SELECT count(*) FROM faces"')
        if output is not None and inside(out, output):
            raise FerbatchError(f"--output {output} | is inside the dataset {out}: it would overwrite the dataset's own files")
        con = connect(out)
        try:
            with deadline(con, timeout):
                # the relation itself: csv, tsv, json, jsonl and parquet stream it batch by batch
                # (render), so a result of any size never sits in memory whole
                rel = run_sql(con, text)
                render(rel, resolve_format(fmt, output), Console(), output, columns=_split(columns), max_rows=_terminal_rows(max_rows))
        finally:
            con.close()  # before exit: Arrow's S3 client must not outlive the interpreter's finalizers
    except FerbatchError as e:
        _fail(e)
    except duckdb.Error as e:  # DuckDB's own errors (parser, binder, catalog, a damaged part): one line for the user
        _fail(damaged_part(e, out) or FerbatchError(f"SELECT | {type(e).__name__}: {e}"))


def _answer(out: str, fn, fmt: Format | None, output: Path | None, columns: str | None, max_rows: int = MAX_TABLE_ROWS, **kw) -> None:
    from ferbatch.cli.render import render
    from ferbatch.dataset.api import Dataset

    try:
        with Dataset(out) as ds:
            render(fn(ds), resolve_format(fmt, output), Console(), output, columns=_split(columns), max_rows=_terminal_rows(max_rows), **kw)
    except FerbatchError as e:
        _fail(e)


SUMMARY_TABLE = ("path", "status", "duration_s", "frames", "faces", "dominant_emotion")


def summary(
    out: OutArg, fmt: FormatOpt = None, output: OutputOpt = None, columns: ColumnsOpt = None, max_rows: MaxRowsOpt = MAX_TABLE_ROWS
) -> None:
    """Per video: duration, frames, frames with faces, mean faces per frame, share of each emotion, dominant emotion.

    A table shows path, status, duration_s, frames, faces, dominant_emotion; every other format (and
    --columns) has all the columns: video_id, frames_with_faces, mean_faces_per_frame, share_<emotion>.

    Example: ferbatch summary out/ --format csv
    """
    _answer(out, lambda ds: ds.summary(), fmt, output, columns, max_rows, table_columns=SUMMARY_TABLE)


def timeline(
    out: OutArg,
    video: Annotated[str, typer.Argument(help="Video id, relative path, file name or stem.", metavar="VIDEO", show_default=False)],
    bin_width: Annotated[str, typer.Option("--bin", help="Bin width: 1s, 500ms, 2m.", metavar="DURATION")] = "1s",
    all_faces: Annotated[bool, typer.Option("--all-faces", help="One row per bin over all faces, not per face index.")] = False,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    columns: ColumnsOpt = None,
    max_rows: MaxRowsOpt = MAX_TABLE_ROWS,
) -> None:
    """Emotion shares (and mean probabilities) per time bin and face (track) of one video.

    Example: ferbatch timeline out/ WolfgangLanger_Pexels --bin 1s
    """
    _answer(out, lambda ds: ds.timeline(video, bin_width, by_face=not all_faces), fmt, output, columns, max_rows)


def moments(
    out: OutArg,
    emotion: EmotionOpt,
    min_prob: Annotated[float, typer.Option(help="A face's probability of the emotion at least this.", metavar="P", min=0, max=1)] = 0.8,
    min_duration: Annotated[str, typer.Option(help="Spans at least this long: 0.5s, 500ms.", metavar="DURATION")] = "0.5s",
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    columns: ColumnsOpt = None,
    max_rows: MaxRowsOpt = MAX_TABLE_ROWS,
) -> None:
    """Time spans where some face shows EMOTION (its top class, with probability >= --min-prob) in consecutive frames.

    When nothing matches, it says so on stderr (json gives [], csv only its header).

    Example: ferbatch moments out/ --emotion happy --min-prob 0.8 --min-duration 1s
    """
    from ferbatch.dataset.api import parse_duration, parse_emotion

    try:
        secs = parse_duration(min_duration)
        name = parse_emotion(emotion)
    except FerbatchError as e:
        _fail(e)
    none = f"no moments: no face shows {name} with probability >= {min_prob:g} for >= {secs:g} s (try a lower --min-prob or --min-duration)"
    _answer(out, lambda ds: ds.moments(name, min_prob, secs), fmt, output, columns, max_rows, empty_message=none)


def report(
    out: OutArg,
    to: Annotated[Path, typer.Option("--to", help="Folder for index.html and its PNGs.", metavar="DIR")] = Path("report"),
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
    video: Annotated[
        Path,
        typer.Argument(
            help="The source video as processed, or any copy of it (found by its content, whatever its name).",
            exists=True,
            dir_okay=False,
            metavar="VIDEO",
            show_default=False,
        ),
    ],
    results: Annotated[str, typer.Option("--results", help="The ferbatch output directory (or URI) that holds its rows.", metavar="OUT")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Annotated video to write (.mp4).", metavar="FILE")] = Path(
        "annotated.mp4"
    ),
) -> None:
    """Re-encode VIDEO with each face's box, emotion and probability drawn from the Parquet rows (no model runs).

    Each box is labelled "#3 happiness 0.87": #3 is the face's track id (the same face across frames, as in the
    faces.track_id column and the tracks table; no # for a detection outside any track), then its emotion and that
    emotion's probability. The audio track is copied unchanged.

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
