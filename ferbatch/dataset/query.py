"""DuckDB over a ferbatch dataset: read-only views ``faces``, ``frames`` and ``videos``."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from ferbatch.errors import OutputError

__all__ = ["connect", "run_sql", "deadline", "inside"]


def _sql_str(p: Path | str) -> str:
    return "'" + str(p).replace("'", "''") + "'"


def connect(out_dir: str | os.PathLike[str], *, memory_limit: str = "2GB"):
    """An in-memory DuckDB connection with views over the dataset.

    Views: ``faces``, ``frames``, ``tracks`` (empty when tracking was off) and ``videos``.
    ``video_id`` comes from the hive partition as VARCHAR (explicit type: an inferred one would
    turn ``0012`` into 12). Files outside ``out_dir`` cannot be read or written and extensions
    cannot be loaded (``allowed_directories`` + ``enable_external_access = false``, locked); the
    temp directory is off (DuckDB would otherwise allow ``<cwd>/.tmp/`` too), so a query that
    needs more than ``memory_limit`` fails instead of spilling; :func:`run_sql` also refuses every
    statement that is not a query.

    Args:
        out_dir: the dataset.
        memory_limit: DuckDB's ``memory_limit`` ("2GB", "50%").

    Raises:
        OutputError: ``out_dir`` has no ferbatch dataset.
    """
    import duckdb

    root = Path(out_dir).absolute()
    if not (root / "videos.parquet").is_file():
        raise OutputError(f"{root} | not a ferbatch output directory (no videos.parquet)")
    con = duckdb.connect(":memory:")
    con.execute("SET temp_directory = ''")
    con.execute(f"SET memory_limit = {_sql_str(memory_limit)}")
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


@contextlib.contextmanager
def deadline(con, timeout_s: float | None) -> Iterator[None]:
    """Interrupt whatever ``con`` runs (executing or fetching) after ``timeout_s`` seconds.

    Raises:
        OutputError: the query was interrupted by the deadline.
    """
    import duckdb

    timer = threading.Timer(timeout_s, con.interrupt) if timeout_s else None
    if timer:
        timer.daemon = True
        timer.start()
    try:
        yield
    except duckdb.InterruptException as e:
        raise OutputError(f"--sql | the query ran longer than {timeout_s:g} s and was stopped (--timeout)") from e
    finally:
        if timer:
            timer.cancel()


def inside(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> bool:
    """True when ``path`` (resolved, symlinks followed) is ``root`` or lies under it."""
    r, p = Path(root).resolve(), Path(path).resolve()
    return p == r or r in p.parents
