"""DuckDB over a ferbatch dataset: read-only views ``faces``, ``frames`` and ``videos``."""

from __future__ import annotations

import os
from pathlib import Path

from ferbatch.errors import OutputError

__all__ = ["connect", "run_sql"]


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
    from ferbatch.dataset.schema import FACES_SCHEMA, FRAMES_SCHEMA, TRACKS_SCHEMA

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
