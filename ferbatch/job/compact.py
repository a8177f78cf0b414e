"""``ferbatch compact``: rewrite a dataset's rows into few large parts.

Two cases, both under the dataset's lock and with the manifest as the commit record:

- layout 1 (one hive folder and one file per video per table, ferbatch 0.3 and older): every
  video's rows are read from its folders and committed as layout-2 parts; the manifest records
  ``layout: 2`` with the commits in one save, then the old folders are deleted. Until that save
  the dataset reads as layout 1; after it, as layout 2 (leftover folders are deleted by the next
  ``compact``).
- layout 2: commits smaller than half of :data:`ferbatch.job.commits.COMMIT_ROWS` (many small
  jobs, live sessions, releases) are merged into commits of about that size.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from ferbatch.dataset.store import (
    LAYOUT,
    TABLES,
    dataset_layout,
    layout_1_folders,
    read_manifest,
    read_parquet,
    shard_schema,
    stored_schema,
    write_manifest,
    write_videos,
)
from ferbatch.errors import OutputError
from ferbatch.job.commits import COMMIT_ROWS, CommitBuffer
from ferbatch.job.lock import lock_output
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
    with lock_output(loc):
        manifest = read_manifest(loc) or {}
        layout = dataset_layout(loc, manifest)
        if layout == 1:
            return _from_layout_1(loc, manifest, commit_rows, progress)
        return _merge_small(loc, manifest, commit_rows, progress)


def _v1_folders(loc: Location) -> dict[str, list[str]]:
    """video_id -> its layout-1 part files (relative paths) over all tables."""
    found: dict[str, list[str]] = {}
    for folder in layout_1_folders(loc):
        found.setdefault(folder.split("=", 1)[1], []).extend(loc.list_files(folder))
    return found


def _from_layout_1(loc: Location, manifest: dict, commit_rows: int, progress) -> CompactResult:
    folders = _v1_folders(loc)
    manifest.setdefault("videos", {})
    buffer = CommitBuffer(loc, manifest, commit_rows)
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
        buffer.add(vid, tables)
        rows += sum(t.num_rows for t in tables.values())
        if buffer.due():
            buffer.commit()
        if progress:
            progress(n, len(folders))
    buffer.commit()
    manifest["layout"] = LAYOUT
    write_manifest(loc, manifest)
    _restamp_videos(loc, manifest)
    for folder in layout_1_folders(loc):
        loc.delete_dir(folder)
    after = sum(len(c["parts"]) for c in manifest.get("commits", {}).values())
    return CompactResult(1, sum(len(f) for f in folders.values()), after, rows)


def _restamp_videos(loc: Location, manifest: dict) -> None:
    """Rewrite ``videos.parquet`` (same rows) with the new commits as its readers' snapshot."""
    write_videos(loc, read_parquet(loc, "videos.parquet"), manifest)


def _v1_part(loc: Location, rel: str, table: str) -> pa.Table:
    """A layout-1 part in the shard-level schema (older parts may lack later columns: added as nulls)."""
    t = read_parquet(loc, rel)
    schema = shard_schema(table)
    cols = [t[f.name].cast(f.type) if f.name in t.column_names else pa.nulls(t.num_rows, f.type) for f in schema]
    return pa.Table.from_arrays(cols, schema=schema)


def _merge_small(loc: Location, manifest: dict, commit_rows: int, progress) -> CompactResult:
    commits = manifest.get("commits", {})
    before = sum(len(c["parts"]) for c in commits.values())
    small = [t for t, c in sorted(commits.items()) if sum(p["rows"] for n, p in c["parts"].items() if n != "tracks") < commit_rows // 2]
    for folder in layout_1_folders(loc):  # leftovers of an interrupted layout-1 conversion
        loc.delete_dir(folder)
    if len(small) < 2:
        return CompactResult(LAYOUT, before, before, 0)
    buffer = CommitBuffer(loc, manifest, commit_rows)
    stale: list[str] = []
    rows = 0
    for n, token in enumerate(small, 1):
        c = commits.pop(token)
        tables = {name: read_parquet(loc, p["path"], stored_schema(name)) for name, p in c["parts"].items()}
        buffer.add_stored(c["videos"], tables)
        rows += sum(t.num_rows for t in tables.values())
        stale += [p["path"] for p in c["parts"].values()]
        if buffer.due():
            buffer.commit()
        if progress:
            progress(n, len(small))
    buffer.commit()
    write_manifest(loc, manifest)
    _restamp_videos(loc, manifest)
    for rel in stale:
        loc.delete(rel)
    return CompactResult(LAYOUT, before, sum(len(c["parts"]) for c in commits.values()), rows)
