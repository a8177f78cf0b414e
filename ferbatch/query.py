"""DuckDB over a ferbatch dataset: read-only views ``faces``, ``frames`` and ``videos``."""

from __future__ import annotations

import os
from pathlib import Path

from ferbatch.errors import OutputError

__all__ = ["connect", "render", "run_sql"]


def _sql_str(p: Path) -> str:
    return "'" + str(p).replace("'", "''") + "'"


def connect(out_dir: str | os.PathLike[str]):
    """An in-memory DuckDB connection with views over the dataset.

    Views: ``faces``, ``frames``, ``tracks`` (empty when tracking was off) and ``videos``.
    ``video_id`` comes from the hive partition as VARCHAR (explicit type: an inferred one would
    turn ``0012`` into 12). Files outside ``out_dir`` cannot be read or written and extensions
    cannot be loaded (``allowed_directories`` + ``enable_external_access = false``, locked);
    :func:`run_sql` also refuses every statement that is not a query.

    Raises:
        OutputError: ``out_dir`` has no ferbatch dataset.
    """
    import duckdb

    root = Path(out_dir).absolute()
    if not (root / "videos.parquet").is_file():
        raise OutputError(f"{root} | not a ferbatch output directory (no videos.parquet)")
    con = duckdb.connect(":memory:")
    con.execute(f"SET allowed_directories = [{_sql_str(root)} || '/']")
    con.execute("SET enable_external_access = false")
    for name in ("faces", "frames", "tracks"):
        if any((root / name).glob("video_id=*/*.parquet")):
            src = f"read_parquet({_sql_str(root / name / '*' / '*.parquet')}, hive_partitioning=true, hive_types={{'video_id': VARCHAR}})"
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM {src}")
        else:
            con.execute(f"CREATE VIEW {name} AS SELECT {_empty_columns(name)} WHERE false")
    con.execute(f"CREATE VIEW videos AS SELECT * FROM read_parquet({_sql_str(root / 'videos.parquet')})")
    con.execute("SET lock_configuration = true")
    return con


_DUCK = {"int64": "BIGINT", "int32": "INTEGER", "int16": "SMALLINT", "float": "FLOAT", "double": "DOUBLE", "string": "VARCHAR"}


def _empty_columns(name: str) -> str:
    """Typed NULL columns of a table's schema, so queries on an empty table still bind."""
    from ferbatch.output import FACES_SCHEMA, FRAMES_SCHEMA, TRACKS_SCHEMA

    schema = {"faces": FACES_SCHEMA, "frames": FRAMES_SCHEMA, "tracks": TRACKS_SCHEMA}[name]
    cols = [f"NULL::{_DUCK[str(f.type)]} AS {f.name}" for f in schema]
    return ", ".join(cols + ["NULL::VARCHAR AS video_id"])


def run_sql(con, sql: str):
    """Run one user query (SELECT / WITH ... SELECT) and return its DuckDB relation.

    Raises:
        OutputError: the text holds a statement that is not a query (COPY, ATTACH, SET, ...),
            or more than one statement.
    """
    import duckdb

    stmts = con.extract_statements(sql)
    if len(stmts) != 1 or stmts[0].type != duckdb.StatementType.SELECT:
        kinds = ", ".join(str(s.type).split(".")[-1] for s in stmts) or "nothing"
        raise OutputError(f"--sql | only one SELECT query is allowed; received {kinds}")
    return con.sql(sql)


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
    stream = open(output, "w", newline="") if output else sys.stdout
    try:
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
                t.add_column(head[c], overflow="fold", min_width=min(24, max((len(str(r[c])) for r in rows), default=4)) if c == "path" else None)

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
    finally:
        if output:
            stream.close()
