"""DuckDB over a ferbatch dataset: read-only views ``faces``, ``frames`` and ``videos``."""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from ferbatch.errors import OutputError

__all__ = ["connect", "run_sql", "deadline", "inside", "damaged_part", "naming_damaged_parts"]


def _sql_str(p: Path | str) -> str:
    return "'" + str(p).replace("'", "''") + "'"


def connect(out_dir: str | os.PathLike[str], *, memory_limit: str = "2GB"):
    """An in-memory DuckDB connection with views over the dataset (local or object storage).

    Views: ``faces``, ``frames``, ``tracks`` (empty when tracking was off) and ``videos``, each
    with ``video_id`` as a VARCHAR column. The part files are the ones the manifest's commits list
    (the snapshot in ``videos.parquet``, :func:`ferbatch.dataset.store.reader_files`): locally DuckDB reads them itself; in object
    storage they are pyarrow datasets on the dataset's filesystem registered with DuckDB (DuckDB's
    own S3 support is an extension downloaded at run time, which this sandbox refuses). A layout-1
    dataset (hive folders per video) is read through its folders.

    Files outside ``out_dir`` cannot be read or written and extensions cannot be loaded
    (``allowed_directories`` + ``enable_external_access = false``, locked); the temp directory is
    off (DuckDB would otherwise allow ``<cwd>/.tmp/`` too), so a query that needs more than
    ``memory_limit`` fails instead of spilling; :func:`run_sql` also refuses every statement that
    is not a query.

    Args:
        out_dir: the dataset, a local path or an ``s3://`` / ``gs://`` URI.
        memory_limit: DuckDB's ``memory_limit`` ("2GB", "50%").

    Raises:
        OutputError: ``out_dir`` has no ferbatch dataset, or a part file cannot be read (named).
    """
    import duckdb

    from ferbatch.dataset.store import reader_files
    from ferbatch.location import open_location

    loc = open_location(out_dir)
    if not loc.is_file("videos.parquet"):
        raise OutputError(f"{loc.uri} | not a ferbatch output directory (no videos.parquet)")
    layout, listed = reader_files(loc)
    files = listed or {n: [] for n in ("faces", "frames", "tracks")}
    con = duckdb.connect(":memory:")
    try:
        _views(con, loc, layout, files, memory_limit)
    except duckdb.Error as e:  # a view reads its parts' footers: a damaged part is named in one line
        con.close()
        err = damaged_part(e)
        if err is None:
            raise
        raise err from e
    return con


def _views(con, loc, layout: int, files: dict, memory_limit: str) -> None:
    """The settings and views of :func:`connect` on ``con``."""
    from ferbatch.dataset.store import stored_schema

    con.execute("SET temp_directory = ''")
    con.execute(f"SET memory_limit = {_sql_str(memory_limit)}")
    if loc.local:
        con.execute(f"SET allowed_directories = [{_sql_str(loc.root)} || '/']")
    for name in ("faces", "frames", "tracks"):
        cols = ", ".join(f.name for f in stored_schema(name))
        if layout == 1 and loc.local and any(Path(loc.path(name)).glob("video_id=*/*.parquet")):
            glob = _sql_str(Path(loc.path(name)) / "*" / "*.parquet")
            src = f"read_parquet({glob}, hive_partitioning=true, hive_types={{'video_id': VARCHAR}})"
            con.execute(f"CREATE VIEW {name} AS SELECT {cols} FROM {src}")
        elif layout != 1 and files[name] and loc.local:
            paths = ", ".join(_sql_str(loc.path(f)) for f in files[name])
            con.execute(f"CREATE VIEW {name} AS SELECT {cols} FROM read_parquet([{paths}])")
        elif layout != 1 and files[name]:
            import pyarrow.dataset as pads

            ds = pads.dataset([loc.path(f) for f in files[name]], filesystem=loc.fs, format="parquet", schema=stored_schema(name))
            con.register(f"_{name}_parts", ds)
            con.execute(f"CREATE VIEW {name} AS SELECT {cols} FROM _{name}_parts")
        else:
            con.execute(f"CREATE VIEW {name} AS SELECT {_empty_columns(name)} WHERE false")
    if loc.local:
        con.execute(f"CREATE VIEW videos AS SELECT * FROM read_parquet({_sql_str(loc.path('videos.parquet'))})")
    else:
        from ferbatch.dataset.store import read_parquet

        con.register("_videos_table", read_parquet(loc, "videos.parquet"))
        con.execute("CREATE VIEW videos AS SELECT * FROM _videos_table")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


_DUCK = {"int64": "BIGINT", "int32": "INTEGER", "int16": "SMALLINT", "float": "FLOAT", "double": "DOUBLE", "string": "VARCHAR"}


def _empty_columns(name: str) -> str:
    """Typed NULL columns of a table's schema, so queries on an empty table still bind."""
    from ferbatch.dataset.schema import FACES_SCHEMA, FRAMES_SCHEMA, TRACKS_SCHEMA

    schema = {"faces": FACES_SCHEMA, "frames": FRAMES_SCHEMA, "tracks": TRACKS_SCHEMA}[name]
    cols = [f"NULL::{_DUCK[str(f.type)]} AS {f.name}" for f in schema]
    return ", ".join(["NULL::VARCHAR AS video_id", *cols])


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
        raise OutputError(f"SELECT | only one SELECT query is allowed; received {kinds}")
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
        raise OutputError(f"SELECT | the query ran longer than {timeout_s:g} s and was stopped (--timeout)") from e
    finally:
        if timer:
            timer.cancel()


def inside(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> bool:
    """True when ``path`` (resolved, symlinks followed) is ``root`` or lies under it (a local
    path is never inside an object-storage ``root``)."""
    from ferbatch.location import is_uri

    if is_uri(root) or is_uri(path):
        return str(path).rstrip("/").startswith(str(root).rstrip("/") + "/") or str(path).rstrip("/") == str(root).rstrip("/")
    r, p = Path(root).resolve(), Path(path).resolve()
    return p == r or r in p.parents


_F = TypeVar("_F", bound=Callable[..., Any])


def damaged_part(e: BaseException, out_dir: str | os.PathLike[str] | None = None) -> OutputError | None:
    """The one-line error for a part file that cannot be read (truncated, overwritten, gone),
    naming it and the fix, when ``e`` (DuckDB's or Arrow's error) is about one; else None.

    An error that names no file (damage inside a part whose footer is intact: "TProtocolException:
    Invalid data") is traced to its part by reading the parts of ``out_dir`` (only on this error path).
    """
    from ferbatch.dataset.damage import named_part, part_error

    err = named_part(e)
    if err is not None or out_dir is None or not _read_error(e):
        return err
    found = _unreadable_part(out_dir)
    return part_error(*found) if found else None


def _read_error(e: BaseException) -> bool:
    """True for the errors a damaged file gives (DuckDB's plain Error, IOException and
    InvalidInputException, Arrow's, an OSError), never for a query's own (parser, binder, ...)."""
    import duckdb
    import pyarrow as pa

    return type(e) is duckdb.Error or isinstance(e, (duckdb.IOException, duckdb.InvalidInputException, pa.ArrowException, OSError))


def _unreadable_part(out_dir: str | os.PathLike[str]) -> tuple[str, str] | None:
    """(the first part file of the dataset that cannot be read whole, why), or None."""
    import pyarrow.parquet as pq

    from ferbatch.dataset.store import reader_files
    from ferbatch.location import open_location

    try:
        loc = open_location(out_dir)
        _, listed = reader_files(loc)
    except Exception:
        return None
    for name in ("faces", "frames", "tracks"):
        for f in (listed or {}).get(name, []):
            try:
                with loc.fs.open_input_file(loc.path(f)) as fh:
                    pq.ParquetFile(fh).read()
            except Exception as e:  # Arrow's, Thrift's, an OSError: whatever stops the read
                text = str(e).strip()
                return loc.name(f), (text.splitlines()[0] if text else type(e).__name__)
    return None


def naming_damaged_parts(fn: _F) -> _F:
    """Decorate a reader method (of an object with the dataset in ``.path``) so that DuckDB's or
    Arrow's error about a damaged part file becomes :func:`damaged_part`'s one line (other errors
    pass unchanged)."""
    import duckdb
    import pyarrow as pa

    @functools.wraps(fn)
    def wrapper(*args: Any, **kw: Any) -> Any:
        try:
            return fn(*args, **kw)
        except (duckdb.Error, pa.ArrowException, OSError) as e:
            err = damaged_part(e, getattr(args[0], "path", None) if args else None)
            if err is None:
                raise
            raise err from e

    return wrapper  # type: ignore[return-value]
