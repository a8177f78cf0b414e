"""Printing or writing query results in the formats the results commands offer."""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Sequence

from ferbatch.errors import OutputError

__all__ = ["render", "select_columns"]


def select_columns(table, columns: Sequence[str] | None):
    """``table`` (pyarrow) with only ``columns``, in that order (all when None or empty).

    Raises:
        OutputError: a column the result does not have (the message lists the ones it has).
    """
    if not columns:
        return table
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise OutputError(f"--columns | no column {', '.join(missing)}; this result has: {', '.join(table.column_names)}")
    return table.select(list(columns))


def _plain(v):
    """A value JSON can hold: NaN/inf become null, everything else as json's ``default=str`` would."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


def render(
    result,
    fmt: str,
    console,
    output: str | os.PathLike[str] | None = None,
    *,
    columns: Sequence[str] | None = None,
    table_columns: Sequence[str] | None = None,
    empty_message: str | None = None,
    max_rows: int = 0,
) -> None:
    """Print (or write) a DuckDB relation or a pyarrow Table.

    Args:
        result: what to show.
        fmt: "table" (rich; the floats of a column with one number of decimals, numbers
            right-aligned; a record per block when the columns do not fit the console's width),
            "csv", "tsv", "jsonl" (one object per line), "json" (one array of objects) or
            "parquet" (needs ``output``); numbers as :mod:`ferbatch.cli.numbers` writes them
            (float32 values as their shortest float32 text).
        console: a rich Console for tables (its width is the limit).
        output: write to this file instead of standard output.
        columns: only these columns, in this order (every format).
        table_columns: the columns a table shows when ``columns`` is not given (default: all but
            the per-class mean probabilities, and the video id when the path is there).
        empty_message: said on stderr when there are no rows.
        max_rows: a table (only) shows at most this many rows, the first and last half (as the
            duckdb shell does), with a footer that says how many there are and how many were left
            out; 0 = all. The callers pass it only when standard output is a terminal.

    Raises:
        OutputError: unknown format or column, or parquet without an output path.
    """
    import csv
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    if fmt in STREAMED and not hasattr(result, "column_names"):
        _stream(result, fmt, output, columns, empty_message)
        return
    total = None  # rows of a capped table read from a relation (only its first and last rows kept)
    if hasattr(result, "column_names"):
        table = result
    elif fmt == "table" and max_rows and not output:
        table, total = _head_and_tail(result, max_rows)
    else:
        table = result.to_arrow_table()
    table = select_columns(table, columns)
    if empty_message and table.num_rows == 0:
        from ferbatch.cli.common import console as stderr

        stderr.print(empty_message, soft_wrap=True, highlight=False, markup=False)
    if fmt == "parquet":
        if not output:
            raise OutputError("--format parquet | needs --output FILE.parquet")
        pq.write_table(table, output)
        return
    if fmt not in ("table", "csv", "tsv", "jsonl", "json"):
        raise OutputError(f"--format | received {fmt!r}; expected table, csv, tsv, jsonl, json or parquet")
    from ferbatch.cli.numbers import exact_values, is_numeric, table_texts

    cols = table.column_names
    with contextlib.ExitStack() as stack:
        stream = stack.enter_context(open(output, "w", newline="")) if output else sys.stdout
        if fmt != "table":
            values = [exact_values(table.column(c).to_pylist(), table.schema.field(c).type) for c in cols]
        if fmt in ("csv", "tsv"):
            w = csv.writer(stream, delimiter="," if fmt == "csv" else "\t", lineterminator="\n")
            w.writerow(cols)
            w.writerows(zip(*values, strict=True))
        elif fmt == "jsonl":
            for r in zip(*values, strict=True):
                stream.write(json.dumps({k: _plain(v) for k, v in zip(cols, r, strict=True)}, default=str) + "\n")
        elif fmt == "json":
            json.dump(
                [{k: _plain(v) for k, v in zip(cols, r, strict=True)} for r in zip(*values, strict=True)], stream, default=str, indent=1
            )
            stream.write("\n")
        elif table.num_rows or not empty_message:
            if not columns:
                cols = list(
                    table_columns or [c for c in cols if not c.startswith("mean_prob_") and not (c == "video_id" and "path" in cols)]
                )
            cap = max_rows if not output else 0
            rows = table.num_rows if total is None else total
            left_out = max(0, rows - cap) if cap else 0
            head = cap - cap // 2
            if total is not None or not left_out:
                shown = table  # already only the first and last rows
            else:
                shown = pa.concat_tables([table.slice(0, head), table.slice(table.num_rows - cap // 2)])
            texts = [table_texts(shown.column(c).to_pylist(), shown.schema.field(c).type, c) for c in cols]
            right = {c for c in cols if is_numeric(table.schema.field(c).type)}
            cells = [list(row) for row in zip(*texts, strict=True)] if texts else []
            _print_table(cols, cells, console if not output else _file_console(stream), gap_after=head if left_out else None, right=right)
            if left_out:
                console.print(
                    f"{rows:,} rows, {left_out:,} not shown (--max-rows 0 shows all, --format csv writes all)",
                    highlight=False,
                    markup=False,
                    style="dim",
                )


# rows a table shows at a terminal unless --max-rows says otherwise (as the duckdb shell: first and last 20)
MAX_TABLE_ROWS = 40


# formats written batch by batch from a DuckDB relation: a result of any size never sits in memory whole
STREAMED = ("csv", "tsv", "jsonl", "json", "parquet")
BATCH_ROWS = 65536


def _stream(relation, fmt: str, output: str | os.PathLike[str] | None, columns: Sequence[str] | None, empty_message: str | None) -> None:
    """Write a DuckDB relation's rows in record batches of :data:`BATCH_ROWS` (csv, tsv, jsonl,
    json, parquet), so memory stays bounded whatever the result's size.

    Raises:
        OutputError: parquet without an output path, or an unknown column.
    """
    import csv
    import json
    import textwrap

    import pyarrow as pa
    import pyarrow.parquet as pq

    from ferbatch.cli.numbers import exact_values

    if fmt == "parquet" and not output:
        raise OutputError("--format parquet | needs --output FILE.parquet")
    reader = relation.to_arrow_reader(BATCH_ROWS)
    n = 0
    first_row = True  # json: no row written yet
    with contextlib.ExitStack() as stack:
        writer = None
        stream = None
        if fmt != "parquet":
            stream = stack.enter_context(open(output, "w", newline="")) if output else sys.stdout
        for batch in reader:
            part = select_columns(pa.Table.from_batches([batch]), columns)
            n += part.num_rows
            if fmt == "parquet":
                if writer is None:
                    writer = stack.enter_context(pq.ParquetWriter(output, part.schema))
                writer.write_table(part)
                continue
            assert stream is not None
            if fmt in ("csv", "tsv"):
                w = csv.writer(stream, delimiter="," if fmt == "csv" else "\t", lineterminator="\n")
                if n == part.num_rows:
                    w.writerow(part.column_names)
                w.writerows(zip(*(exact_values(col.to_pylist(), col.type) for col in part.columns), strict=True))
            else:
                names = part.column_names
                for r in zip(*(exact_values(col.to_pylist(), col.type) for col in part.columns), strict=True):
                    obj = {k: _plain(v) for k, v in zip(names, r, strict=True)}
                    if fmt == "jsonl":
                        stream.write(json.dumps(obj, default=str) + "\n")
                    else:  # one array, laid out as json.dump(rows, indent=1) lays it out
                        stream.write(("[\n" if first_row else ",\n") + textwrap.indent(json.dumps(obj, default=str, indent=1), " "))
                        first_row = False
        if fmt == "parquet" and writer is None:  # no rows: still a valid, empty file with the schema
            pq.write_table(select_columns(reader.schema.empty_table(), columns), output)
        if fmt == "json" and stream is not None:
            stream.write("[]\n" if first_row else "\n]\n")
        if fmt in ("csv", "tsv") and n == 0 and stream is not None:
            csv.writer(stream, delimiter="," if fmt == "csv" else "\t", lineterminator="\n").writerow(
                select_columns(reader.schema.empty_table(), columns).column_names
            )
    if empty_message and n == 0:
        from ferbatch.cli.common import console as stderr

        stderr.print(empty_message, soft_wrap=True, highlight=False, markup=False)


def _head_and_tail(relation, cap: int):
    """(the first ``cap - cap // 2`` and the last ``cap // 2`` rows of a DuckDB relation, its row
    count), read batch by batch: a capped table at a terminal holds only what it shows."""
    import pyarrow as pa

    reader = relation.to_arrow_reader(BATCH_ROWS)
    head_n, tail_n = cap - cap // 2, cap // 2
    head: list = []
    tail: list = []
    kept = total = 0
    for batch in reader:
        total += batch.num_rows
        if kept < head_n:
            take = batch.slice(0, head_n - kept)
            head.append(take)
            kept += take.num_rows
            batch = batch.slice(take.num_rows)
        if tail_n and batch.num_rows:
            tail.append(batch.slice(max(0, batch.num_rows - tail_n)))
            tail = pa.Table.from_batches(tail, reader.schema).slice(max(0, sum(b.num_rows for b in tail) - tail_n)).to_batches()
    table = pa.Table.from_batches(head + tail, reader.schema)
    return table, total


def _file_console(stream):
    from rich.console import Console

    return Console(file=stream, width=200)


def _print_table(cols: list[str], cells: list[list[str]], console, gap_after: int | None = None, right: set[str] | None = None) -> None:
    """A plain table (no borders, like ``docker ps``) whose headers and numbers are never broken
    (only a path may fold, down to 20 characters); when even that is wider than the console, one
    block per record ("column  value" lines) instead. ``cells``: the rows' texts
    (:func:`ferbatch.cli.numbers.table_texts`); ``gap_after``: a row of "…" after that many rows
    (where rows were left out); ``right``: the columns to right-align (numbers)."""
    from rich.table import Table

    head = {c: (c[6:9] + "%" if c.startswith("share_") else c) for c in cols}
    width = {
        c: min(20, max((len(row[i]) for row in cells), default=4)) if c == "path" else max([len(head[c])] + [len(row[i]) for row in cells])
        for i, c in enumerate(cols)
    }
    if sum(width.values()) + 2 * len(cols) - 2 <= console.width:  # padding 1 between cells, none at the edges
        t = Table(box=None, pad_edge=False, header_style="bold")
        for c in cols:
            t.add_column(
                head[c], overflow="fold", min_width=width[c], no_wrap=c != "path", justify="right" if c in (right or ()) else "left"
            )
        for i, row in enumerate(cells):
            if i == gap_after:
                t.add_row(*["…"] * len(cols), style="dim")
            t.add_row(*row)
        console.print(t)
        return
    key_width = max(len(c) for c in cols)
    for i, row in enumerate(cells):
        if i:
            console.print()
        if i == gap_after:
            console.print("…", style="dim")
            console.print()
        v = Table(show_header=False, box=None, padding=(0, 1, 0, 0))
        v.add_column(style="bold", width=key_width, no_wrap=True)
        v.add_column(overflow="fold")
        for c, val in zip(cols, row, strict=True):
            v.add_row(c, val)
        console.print(v)
