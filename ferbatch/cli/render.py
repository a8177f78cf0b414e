"""Printing or writing query results in the formats the results commands offer."""

from __future__ import annotations

import os

from ferbatch.errors import OutputError

__all__ = ["render"]


def render(result, fmt: str, console, output: str | os.PathLike[str] | None = None) -> None:
    """Print (or write) a DuckDB relation or a pyarrow Table.

    Args:
        result: what to show.
        fmt: "table" (rich, floats to 4 significant digits), "csv", "json" (one object per line) or
            "parquet" (needs ``output``).
        console: a rich Console for tables.
        output: write to this file instead of standard output.

    Raises:
        OutputError: unknown format, or parquet without an output path.
    """
    import contextlib
    import csv
    import json
    import sys

    import pyarrow.parquet as pq

    table = result if hasattr(result, "column_names") else result.to_arrow_table()
    if fmt == "parquet":
        if not output:
            raise OutputError("--format parquet | needs --output FILE.parquet")
        pq.write_table(table, output)
        return
    if fmt not in ("table", "csv", "json"):
        raise OutputError(f"--format | received {fmt!r}; expected table, csv, json or parquet")
    cols, rows = table.column_names, table.to_pylist()
    with contextlib.ExitStack() as stack:
        stream = stack.enter_context(open(output, "w", newline="")) if output else sys.stdout
        if fmt == "csv":
            w = csv.writer(stream)
            w.writerow(cols)
            w.writerows([r[c] for c in cols] for r in rows)
        elif fmt == "json":
            for r in rows:
                stream.write(json.dumps(r, default=str) + "\n")
        else:
            from rich.console import Console
            from rich.table import Table

            # terminal tables stay narrow: shares as "hap %" columns, per-class mean probabilities
            # and the video id (when a path is there) only in csv/json/parquet
            shown = [c for c in cols if not c.startswith("mean_prob_") and not (c == "video_id" and "path" in cols)]
            head = {c: (c[6:9] + " %" if c.startswith("share_") else c) for c in shown}
            t = Table()
            for c in shown:
                t.add_column(
                    head[c], overflow="fold", min_width=min(24, max((len(str(r[c])) for r in rows), default=4)) if c == "path" else None
                )

            from rich.markup import escape

            def cell(c, v):
                if v is None:
                    return ""
                if c.startswith("share_"):
                    return f"{100 * v:.0f}"
                return f"{v:.4g}" if isinstance(v, float) else escape(str(v))

            for r in rows:
                t.add_row(*(cell(c, r[c]) for c in shown))
            (Console(file=stream, width=200) if output else console).print(t)
