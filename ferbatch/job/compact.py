"""``ferbatch compact``: rewrite a dataset's rows into few large parts.

Two cases, both under the dataset's lock and with the manifest as the commit record:

- layout 1 (one hive folder and one file per video per table, ferbatch 0.3 and older): every
  video's rows are read from its folders and committed as layout-2 parts; the manifest records
  ``layout: 2`` with the commits in one save, then the old folders are deleted. Until that save
  the dataset reads as layout 1; after it, as layout 2 (leftover folders are deleted by the next
  ``compact``).
- layout 2: commits smaller than half of :data:`ferbatch.dataset.writer.COMMIT_ROWS` (many small
  jobs, live sessions, releases) are merged into commits of about that size.

Every write goes through a :class:`ferbatch.dataset.writer.DatasetWriter` (``command="compact"``):
a run or a watch writing the dataset makes ``compact`` stop with a message naming it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from ferbatch.dataset.store import LAYOUT, TABLES, dataset_layout, layout_1_folders, read_parquet, shard_schema, stored_schema
from ferbatch.dataset.writer import COMMIT_ROWS, DatasetWriter
from ferbatch.errors import OutputError
from ferbatch.location import Location, open_location

__all__ = ["CompactResult", "compact"]


@dataclass
class CompactResult:
    """What :func:`compact` did: the layout before, parts (files) before and after, rows moved."""

    layout_before: int
    parts_before: int
    parts_after: int
    rows: int


def compact(
    out_dir: str | os.PathLike[str], *, commit_rows: int = COMMIT_ROWS, progress: Callable[[int, int], None] | None = None
) -> CompactResult:
    """Rewrite the dataset at ``out_dir`` (local or a URI) in few large layout-2 parts.

    Args:
        commit_rows: rows (faces + frames) per new commit.
        progress: callback(done, total) over the videos or commits read.

    Raises:
        OutputError: not a ferbatch dataset, another run holds its lock, or a part cannot be
            read or written (the dataset is then as it was: the manifest was not saved).
    """
    loc = open_location(out_dir)
    if not loc.is_file("videos.parquet"):
        raise OutputError(f"{loc.uri} | not a ferbatch output directory (no videos.parquet)")
    # force: compact rewrites the dataset's own files only, whatever else the folder holds
    with DatasetWriter(loc, command="compact", force=True, commit_rows=commit_rows) as writer:
        if dataset_layout(loc, writer.manifest) == 1:
            return _from_layout_1(writer, progress)
        return _merge_small(writer, progress)


def _v1_folders(loc: Location) -> dict[str, list[str]]:
    """video_id -> its layout-1 part files (relative paths) over all tables."""
    found: dict[str, list[str]] = {}
    for folder in layout_1_folders(loc):
        found.setdefault(folder.split("=", 1)[1], []).extend(loc.list_files(folder))
    return found


def _from_layout_1(writer: DatasetWriter, progress) -> CompactResult:
    loc, manifest = writer.loc, writer.manifest
    folders = _v1_folders(loc)
    manifest.setdefault("videos", {})
    rows = 0
    for n, (vid, files) in enumerate(sorted(folders.items()), 1):
        tables: dict[str, pa.Table] = {}
        for table in TABLES:
            parts = [_v1_part(loc, f, table) for f in files if f.startswith(f"{table}/")]
            if parts:
                tables[table] = pa.concat_tables(parts)
        tables.setdefault("faces", shard_schema("faces").empty_table())
        tables.setdefault("frames", shard_schema("frames").empty_table())
        manifest["videos"].setdefault(vid, {"video_id": vid})
        writer.stage(vid, tables)
        rows += sum(t.num_rows for t in tables.values())
        if writer.due():
            writer.commit()
        if progress:
            progress(n, len(folders))
    writer.commit()
    manifest["layout"] = LAYOUT
    writer.save()  # the same videos rows, with the new commits as their readers' snapshot
    writer.remove_layout_1_folders()
    after = sum(len(c["parts"]) for c in manifest.get("commits", {}).values())
    return CompactResult(1, sum(len(f) for f in folders.values()), after, rows)


def _v1_part(loc: Location, rel: str, table: str) -> pa.Table:
    """A layout-1 part in the shard-level schema (older parts may lack later columns: added as nulls)."""
    t = read_parquet(loc, rel)
    schema = shard_schema(table)
    cols = [t[f.name].cast(f.type) if f.name in t.column_names else pa.nulls(t.num_rows, f.type) for f in schema]
    return pa.Table.from_arrays(cols, schema=schema)


def _merge_small(writer: DatasetWriter, progress) -> CompactResult:
    loc, commit_rows = writer.loc, writer.commit_rows
    commits = writer.manifest.get("commits", {})
    before = sum(len(c["parts"]) for c in commits.values())
    small = [t for t, c in sorted(commits.items()) if sum(p["rows"] for n, p in c["parts"].items() if n != "tracks") < commit_rows // 2]
    writer.remove_layout_1_folders()  # leftovers of an interrupted layout-1 conversion
    if len(small) < 2:
        return CompactResult(LAYOUT, before, before, 0)
    rows = 0
    for n, token in enumerate(small, 1):
        c = writer.drop(token)  # its parts are deleted once the merged commits are saved
        tables = {name: read_parquet(loc, p["path"], stored_schema(name)) for name, p in c["parts"].items()}
        writer.stage_stored(c["videos"], tables)
        rows += sum(t.num_rows for t in tables.values())
        if writer.due():
            writer.commit()
        if progress:
            progress(n, len(small))
    writer.commit()
    writer.save()
    return CompactResult(LAYOUT, before, sum(len(c["parts"]) for c in commits.values()), rows)
