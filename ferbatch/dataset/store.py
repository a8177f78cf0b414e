"""The Parquet dataset in its location (local folder or object storage): part files, staging,
the manifest, the videos table, and reading them back.

Layout 2 (this version) under OUT::

    faces/part-<commit>.parquet     rows of many videos, sorted by video_id, frame_idx, face_idx
    frames/part-<commit>.parquet    one row per decoded frame (face_count may be 0)
    tracks/part-<commit>.parquet    one row per face track
    videos.parquet                  one row per input video (status, error, models, ...)
    _manifest.json                  the commit record: config, models, per-video status, commits
    _staging/<video_id>/<table>-<NNNNN>.parquet   a shard's rows until its video is committed
    _index/<video_id>.npz           demux-only indexes (a rerun reuses the shard plan)

``video_id`` is a column of every part. A *commit* is one part per table written under one
token, listed in the manifest's ``commits`` with its row counts and videos; a part that no
commit lists (a writer stopped between the PUT and the manifest) is not part of the dataset and
is removed by the next run. Readers take the files the commit record lists — from the snapshot of it
in ``videos.parquet``'s footer (:func:`write_videos`), so opening a dataset reads one small file, not
a manifest of tens of MB — so a dataset on object storage is never listed prefix by prefix, and a
half-finished job never shows a row twice.

Layout 1 (ferbatch 0.1 to 0.3: ``faces/video_id=<id>/shard-<NNNNN>.parquet``, one hive partition
and one tiny file per video per table) is still read; ``ferbatch compact`` rewrites it as
layout 2, and a job refuses to add to it.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ferbatch.dataset.parquet_file import read_file
from ferbatch.dataset.schema import FACES_SCHEMA, FRAMES_SCHEMA, PARTITION_SCHEMA, TRACKS_SCHEMA
from ferbatch.errors import OutputError
from ferbatch.location import Location, open_location

__all__ = [
    "LAYOUT",
    "TABLES",
    "ROW_GROUP_ROWS",
    "commit_token",
    "committed_files",
    "dataset_layout",
    "open_table",
    "parquet_rows",
    "read_manifest",
    "read_parquet",
    "read_staging",
    "remove_staging",
    "staging_rel",
    "layout_1_folders",
    "shard_schema",
    "stored_schema",
    "write_commit",
    "write_manifest",
    "write_parquet",
    "write_staging",
    "write_videos",
    "reader_files",
]

LAYOUT = 2
TABLES = ("faces", "frames", "tracks")
# rows per Parquet row group: small enough that a query for one video (rows sorted by video_id,
# min/max statistics per row group) reads a few row groups of a part, large enough to compress well
ROW_GROUP_ROWS = 131_072
_SHARD_SCHEMAS = {"faces": FACES_SCHEMA, "frames": FRAMES_SCHEMA, "tracks": TRACKS_SCHEMA}
_SORT = {"faces": ["video_id", "frame_idx", "face_idx"], "frames": ["video_id", "frame_idx"], "tracks": ["video_id", "track_id"]}


def shard_schema(table: str) -> pa.Schema:
    """The schema of ``table``'s rows of one shard or video (no ``video_id``): staged files, layout 1.

    Raises:
        OutputError: unknown table.
    """
    if table not in _SHARD_SCHEMAS:
        raise OutputError(f"table {table!r} | expected faces, frames, tracks or videos")
    return _SHARD_SCHEMAS[table]


def stored_schema(table: str) -> pa.Schema:
    """The schema of ``table``'s part files: ``video_id`` (string) first, then the shard-level columns.

    Raises:
        OutputError: unknown table.
    """
    s = shard_schema(table)
    return pa.schema([pa.field("video_id", pa.string()), *s], metadata=s.metadata)


def write_parquet(loc: Location, rel: str, table: pa.Table, *, fsync: bool = False) -> int:
    """Write ``table`` as the Parquet file ``rel`` under ``loc`` in one piece (zstd, statistics,
    :data:`ROW_GROUP_ROWS` row groups); returns its size in bytes.

    The file is serialised in memory first: on object storage that is one PUT of a finished
    object, locally a temp file renamed over ``rel`` (:meth:`Location.write_bytes`).

    Raises:
        OutputError: it cannot be written.
    """
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", write_statistics=True, row_group_size=ROW_GROUP_ROWS)
    buf = sink.getvalue()
    loc.write_bytes(rel, memoryview(buf), fsync=fsync)
    return buf.size


def read_parquet(loc: Location, rel: str, schema: pa.Schema | None = None) -> pa.Table:
    """Read one Parquet file of ``loc``.

    Raises:
        OutputError: it is missing or unreadable (the message names it).
    """
    try:
        return read_file(loc.path(rel), loc.fs, schema)  # read_table would import pyarrow.dataset, and it pandas
    except (OSError, pa.ArrowException) as e:
        raise OutputError(f"{loc.name(rel)} | unreadable: {e}") from e


def parquet_rows(loc: Location, rel: str) -> int:
    """Row count from a Parquet file's footer; -1 when it is missing or unreadable."""
    try:
        with loc.open_input(rel) as f:
            return int(pq.ParquetFile(f).metadata.num_rows)
    except (OSError, OutputError, pa.ArrowException):
        return -1


# --- staging: one file per shard and table until the video is committed ---------------------------


def staging_rel(video_id: str, table: str, shard_idx: int) -> str:
    """Where a shard's rows of ``table`` wait for their video's commit."""
    return f"_staging/{video_id}/{table}-{shard_idx:05d}.parquet"


def write_staging(loc: Location, table_name: str, video_id: str, shard_idx: int, table: pa.Table) -> None:
    """Write one shard's rows (shard-level schema, no ``video_id``) to its staging file, replacing
    an earlier attempt (a deterministic name: a retried shard never adds rows).

    Raises:
        OutputError: it cannot be written (disk full, permissions).
    """
    write_parquet(loc, staging_rel(video_id, table_name, shard_idx), table, fsync=True)


def read_staging(loc: Location, video_id: str, table: str, shards: list[int]) -> pa.Table:
    """The staged rows of ``shards`` of a video in ``table``'s shard-level schema.

    Raises:
        OutputError: a staged file is missing or unreadable.
    """
    schema = shard_schema(table)
    parts = [read_parquet(loc, staging_rel(video_id, table, s), schema) for s in shards]
    return pa.concat_tables(parts) if parts else schema.empty_table()


def remove_staging(loc: Location, video_id: str) -> None:
    """Delete a video's staged shards (after its commit, or before it is reprocessed afresh);
    locally the ``_staging`` folder too once it is empty."""
    loc.delete_dir(f"_staging/{video_id}")
    if loc.local:
        try:
            os.rmdir(loc.path("_staging"))
        except OSError:
            pass  # other videos' shards are still staged (or it is gone already)


# --- commits: one part per table, listed in the manifest --------------------------------------------


def commit_token() -> str:
    """A new commit's token: UTC time (sortable) and 8 random hex digits (unique across writers)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


def write_commit(loc: Location, token: str, tables: dict[str, pa.Table], videos: list[str]) -> dict[str, Any]:
    """Write one part file per table of ``tables`` (each in :func:`stored_schema`, sorted by video
    then frame) and return the commit's manifest entry ``{"parts": {table: {"path", "rows",
    "bytes"}}, "videos": sorted(videos)}`` (``videos``: every video the commit holds, those
    without rows too); the commit exists once the manifest holding it is saved.

    Raises:
        OutputError: a part cannot be written.
    """
    entry: dict[str, Any] = {"parts": {}, "videos": sorted(set(videos))}
    for name, t in tables.items():
        t = t.select(stored_schema(name).names).cast(stored_schema(name)).sort_by([(c, "ascending") for c in _SORT[name]])
        rel = f"{name}/part-{token}.parquet"
        size = write_parquet(loc, rel, t, fsync=True)
        entry["parts"][name] = {"path": rel, "rows": t.num_rows, "bytes": size}
    return entry


_LAYOUT_KEY, _PARTS_KEY = b"ferbatch.layout", b"ferbatch.parts"


def write_videos(loc: Location, table: pa.Table, manifest: dict) -> None:
    """Write ``videos.parquet`` with the readers' snapshot of the commit record in its schema
    metadata (the layout and :func:`committed_files`), so a reader opens a dataset with two small
    reads (this file's footer and rows) instead of the whole manifest (tens of MB at 100,000
    videos).

    Writers save the manifest first and this file second, and delete parts only after both: a
    reader then sees either the previous snapshot, whose parts still exist, or the new one.

    Raises:
        OutputError: it cannot be written.
    """
    meta = {k: v for k, v in (table.schema.metadata or {}).items() if k not in (_LAYOUT_KEY, _PARTS_KEY)}
    if manifest.get("layout"):  # a manifest without a layout is layout 1's: its readers go by the folders
        meta[_LAYOUT_KEY] = str(manifest["layout"]).encode()
        meta[_PARTS_KEY] = json.dumps(committed_files(manifest)).encode()
    write_parquet(loc, "videos.parquet", table.replace_schema_metadata(meta), fsync=True)


def reader_files(loc: Location) -> tuple[int, dict[str, list[str]] | None]:
    """(layout, part files per table) for reading the dataset at ``loc``: from the snapshot in
    ``videos.parquet`` (:func:`write_videos`), else from the manifest; ``None`` files for a
    layout-1 dataset (read through its hive folders).

    Raises:
        OutputError: ``videos.parquet`` or the manifest is unreadable.
    """
    try:
        with loc.open_input("videos.parquet") as f:
            meta = pq.read_schema(f).metadata or {}
    except pa.ArrowException as e:
        raise OutputError(f"{loc.name('videos.parquet')} | unreadable: {e}") from e
    if _PARTS_KEY in meta:
        return int(meta[_LAYOUT_KEY]), {t: list(v) for t, v in json.loads(meta[_PARTS_KEY]).items()}
    manifest = read_manifest(loc)
    layout = dataset_layout(loc, manifest)
    if layout == 1:
        return 1, None
    if manifest and layout == 2:
        return 2, committed_files(manifest)
    return layout, {t: [f for f in loc.list_files(t) if f.endswith(".parquet")] for t in TABLES}


def committed_files(manifest: dict) -> dict[str, list[str]]:
    """Per table, the part files (relative paths) the manifest's commits hold, oldest first."""
    files: dict[str, list[str]] = {t: [] for t in TABLES}
    for _token, c in sorted(manifest.get("commits", {}).items()):
        for table, p in c["parts"].items():
            if p["rows"]:
                files[table].append(p["path"])
    return files


# --- manifest, layout, reading tables -------------------------------------------------------------------


def read_manifest(where: str | os.PathLike[str] | Location) -> dict | None:
    """The job manifest of a dataset, or None if there is none yet.

    Raises:
        OutputError: the manifest exists but is not valid JSON.
    """
    loc = open_location(where)
    if not loc.is_file("_manifest.json"):
        return None
    try:
        return json.loads(loc.read_bytes("_manifest.json"))
    except (ValueError, UnicodeDecodeError) as e:
        raise OutputError(f"{loc.name('_manifest.json')} | unreadable manifest: {e}") from e


def write_manifest(loc: Location, manifest: dict) -> None:
    """Save the manifest (the dataset's commit record) in one piece, durably.

    Compact JSON once it is large: a 100,000-video manifest is tens of MB and is saved often.

    Raises:
        OutputError: it cannot be written.
    """
    big = len(manifest.get("videos", {})) > 1000
    text = json.dumps(manifest, indent=None if big else 1, sort_keys=True, default=str, separators=(",", ":") if big else None)
    loc.write_bytes("_manifest.json", text.encode(), fsync=True)


def dataset_layout(loc: Location, manifest: dict | None) -> int:
    """The layout version of the dataset at ``loc``: 2 for this one, 1 for the per-video hive
    folders of ferbatch 0.1-0.3 (recognised by a manifest without a ``layout`` and
    ``video_id=`` folders), 0 for a location with no rows yet."""
    if manifest and manifest.get("layout"):
        return int(manifest["layout"])
    return 1 if layout_1_folders(loc) else 0


def layout_1_folders(loc: Location) -> list[str]:
    """The layout-1 hive folders (``<table>/video_id=<id>``, relative paths) at ``loc``."""
    return [f"{t}/{n}" for t in TABLES for n in loc.list_names(t) if n.startswith("video_id=")]


def open_table(where: str | os.PathLike[str] | Location, name: str) -> pa.Table:
    """Read ``faces``, ``frames``, ``tracks`` or ``videos`` of a dataset (any layout) into one
    Arrow table, ``video_id`` a string column.

    Raises:
        OutputError: unknown table, no such dataset, or a part file that cannot be read (named).
    """
    loc = open_location(where)
    if name == "videos":
        if not loc.is_file("videos.parquet"):
            raise OutputError(f"{loc.name('videos.parquet')} | no videos table: is {loc.uri} a ferbatch output directory?")
        return read_parquet(loc, "videos.parquet")
    import pyarrow.dataset as pads  # here, not at the top: it imports pandas, which no job needs

    schema = stored_schema(name)
    layout, listed = reader_files(loc)
    if listed is None:
        if not loc.is_dir(name):
            return schema.empty_table()
        part = pads.partitioning(PARTITION_SCHEMA, flavor="hive")
        full = shard_schema(name).append(pa.field("video_id", pa.string()))
        t = pads.dataset(loc.path(name), filesystem=loc.fs, format="parquet", partitioning=part, schema=full).to_table()
        return t.select(schema.names)
    files = listed[name]
    if not files:
        return schema.empty_table()
    from ferbatch.dataset.damage import named_part

    try:
        return pads.dataset([loc.path(f) for f in files], filesystem=loc.fs, format="parquet", schema=schema).to_table()
    except (pa.ArrowException, OSError) as e:  # a truncated or overwritten part: named in one line
        err = named_part(e)
        if err is None:
            raise OutputError(f"{loc.uri} | the {name} table cannot be read: {str(e).strip().splitlines()[0]}") from e
        raise err from e
