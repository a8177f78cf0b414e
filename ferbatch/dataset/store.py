"""The Parquet dataset on disk: part files, the manifest, the videos table, and reading them back.

Layout under OUT_DIR::

    faces/video_id=<id>/shard-<NNNNN>.parquet    one row per face per frame
    frames/video_id=<id>/shard-<NNNNN>.parquet   one row per decoded frame (face_count may be 0)
    tracks/video_id=<id>/shard-00000.parquet     one row per face track
    videos.parquet                               one row per input video (status, error, models, ...)
    _manifest.json                               job config, models, per-video status and shards

Every file is written through :func:`ferbatch.atomic.atomic_target` to a deterministic name, so a
retried shard replaces its rows instead of duplicating them and readers never see a half-written
file. ``video_id`` is stored in the directory name only; read it back with an explicit string
partition schema (an inferred one turns ``0012`` into 12).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from ferbatch.atomic import atomic_target, write_json_atomic
from ferbatch.dataset.schema import FACES_SCHEMA, FRAMES_SCHEMA, PARTITION_SCHEMA, TRACKS_SCHEMA
from ferbatch.errors import OutputError

__all__ = [
    "write_part",
    "part_path",
    "remove_all_parts",
    "remove_video_parts",
    "write_json_atomic",
    "write_table_atomic",
    "read_manifest",
    "open_table",
]


def part_path(out_dir: str | os.PathLike[str], table: str, video_id: str, shard_idx: int) -> Path:
    """Where a shard's part file of ``table`` lives (``<table>/video_id=<id>/shard-<NNNNN>.parquet``)."""
    out_dir = Path(out_dir)
    return out_dir / table / f"video_id={video_id}" / f"shard-{shard_idx:05d}.parquet"


def write_part(out_dir: str | os.PathLike[str], table_name: str, video_id: str, shard_idx: int, table: pa.Table) -> Path:
    """Write one shard's table atomically to its deterministic path (replacing an earlier attempt).

    Raises:
        OutputError: the directory cannot be created or written (disk full, permissions).
    """
    dst = part_path(Path(out_dir), table_name, video_id, shard_idx)
    with atomic_target(dst, fsync=True) as tmp:
        pq.write_table(table, tmp, compression="zstd", write_statistics=True)
    return dst


def remove_all_parts(out_dir: str | os.PathLike[str]) -> None:
    """Delete every video's part files (a dataset started afresh with other settings)."""
    for table in ("faces", "frames", "tracks"):
        d = Path(out_dir) / table
        if d.is_dir():
            for sub in d.iterdir():
                if sub.is_dir() and sub.name.startswith("video_id="):
                    remove_video_parts(out_dir, sub.name.split("=", 1)[1])


def remove_video_parts(out_dir: str | os.PathLike[str], video_id: str) -> None:
    """Delete every part file of a video (before it is reprocessed with a new plan)."""
    for table in ("faces", "frames", "tracks"):
        d = Path(out_dir) / table / f"video_id={video_id}"
        if d.is_dir():
            for f in d.iterdir():
                f.unlink()
            d.rmdir()


def write_table_atomic(path: str | os.PathLike[str], table: pa.Table) -> None:
    """Write a single Parquet file atomically (see :func:`atomic_target`)."""
    with atomic_target(Path(path)) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_manifest(out_dir: str | os.PathLike[str]) -> dict | None:
    """The job manifest of ``out_dir``, or None if there is none yet.

    Raises:
        OutputError: the manifest exists but is not valid JSON.
    """
    p = Path(out_dir) / "_manifest.json"
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise OutputError(f"{p} | unreadable manifest: {e}") from e


def open_table(out_dir: str | os.PathLike[str], name: str) -> pa.Table:
    """Read ``faces``, ``frames`` or ``videos`` of a dataset into one Arrow table (``video_id``
    as a string column).

    Raises:
        OutputError: unknown table or no such dataset.
    """
    root = Path(out_dir)
    if name == "videos":
        p = root / "videos.parquet"
        if not p.is_file():
            raise OutputError(f"{p} | no videos table: is {root} a ferbatch output directory?")
        return pq.read_table(p)
    if name not in ("faces", "frames", "tracks"):
        raise OutputError(f"table {name!r} | expected faces, frames, tracks or videos")
    schema = {"faces": FACES_SCHEMA, "frames": FRAMES_SCHEMA, "tracks": TRACKS_SCHEMA}[name]
    d = root / name
    if not d.is_dir():
        return schema.append(pa.field("video_id", pa.string())).empty_table()
    part = pads.partitioning(PARTITION_SCHEMA, flavor="hive")
    full = schema.append(pa.field("video_id", pa.string()))
    return pads.dataset(d, format="parquet", partitioning=part, schema=full).to_table()
