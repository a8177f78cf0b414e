"""The one way anything writes a dataset: a :class:`DatasetWriter` transaction.

``ferbatch run``, ``ferbatch compact`` and ``ferbatch watch`` (and ``serve``'s jobs, which are
runs) write a dataset only through a writer, so each of them takes the dataset's lock, refuses a
foreign folder and other result-changing settings, and carries out the write protocol the same
way::

    open     lock (:mod:`ferbatch.dataset.lock`), foreign-folder check, settings check, manifest read,
             leftovers of a writer that stopped between two steps removed
    stage    a finished video's rows gathered for the next commit
    commit   the gathered rows written as one part per table, listed in the manifest (not saved yet)
    release  videos taken out of their commits (copy-on-write), their rows discarded or restaged
    save     the manifest, then the ``videos.parquet`` snapshot, then clean-up (parts no commit
             lists any more, staged shards of committed videos)
    close    unlock

What to write (which videos, their records, shard plans, retries) is the caller's policy; the
writer never decides it. Workers stage shards themselves (:func:`ferbatch.dataset.store.write_staging`):
staged files are outside the dataset until a commit lists their rows.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ferbatch.config import JobConfig
from ferbatch.dataset.guards import check_out_dir, check_settings
from ferbatch.dataset.lock import ObjectLock, OutputLock, lock_output
from ferbatch.dataset.store import (
    TABLES,
    commit_token,
    dataset_layout,
    layout_1_folders,
    parquet_rows,
    read_manifest,
    read_parquet,
    remove_staging,
    stored_schema,
    write_commit,
    write_manifest,
    write_staging,
    write_videos,
)
from ferbatch.errors import OutputError
from ferbatch.location import Location, open_location

__all__ = ["COMMIT_ROWS", "MAX_WAIT_S", "DatasetWriter"]

# a commit is written when the rows gathered reach this many (faces + frames), which makes parts of
# roughly 20-60 MB (docs/performance.md "Dataset layout at scale"), or after MAX_WAIT_S
COMMIT_ROWS = 1_000_000
MAX_WAIT_S = 600.0

VideosFn = Callable[[dict], pa.Table]


class DatasetWriter:
    """A write transaction on the dataset at ``where`` (a context manager: ``with`` opens and closes it).

    Args:
        where: the dataset (local folder, URI or :class:`~ferbatch.location.Location`; created).
        command: who writes ("run", "watch", "compact"): recorded in the lock, named to a writer refused.
        config: the settings of the rows this writer adds (checked against the recorded ones);
            None = no new rows, no check (``compact`` rewrites the rows there are).
        overwrite: the caller starts the dataset afresh (:meth:`start` with ``afresh``): no settings check.
        force: write into a non-empty folder that is not a ferbatch dataset.
        videos: builds the ``videos`` table from the manifest at each :meth:`save`; None = the
            table's current rows, restamped with the new snapshot.
        commit_rows: rows (faces + frames) that make :meth:`due` true.

    Attributes:
        loc: the dataset; manifest: its commit record, read at open (the caller updates its video
            records in place; :meth:`start` replaces it).
    """

    def __init__(
        self,
        where: str | os.PathLike[str] | Location,
        *,
        command: str = "run",
        config: JobConfig | None = None,
        overwrite: bool = False,
        force: bool = False,
        videos: VideosFn | None = None,
        commit_rows: int = COMMIT_ROWS,
    ):
        self.loc = open_location(where)
        self.command, self.config, self.overwrite, self.force = command, config, overwrite, force
        self.commit_rows = commit_rows
        self.manifest: dict[str, Any] = {}
        self._videos = videos
        self._lock: OutputLock | ObjectLock | None = None
        self._tables: dict[str, list[pa.Table]] = {t: [] for t in TABLES}
        self._staged: list[str] = []  # videos gathered for the next commit
        self._rows = 0
        self._since = 0.0
        self._stale: list[str] = []  # parts no commit lists any more: deleted after the next save
        self._committed: list[str] = []  # committed videos whose staged shards go after the next save

    # --- open and close ---------------------------------------------------------------------------------

    def __enter__(self) -> DatasetWriter:
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close(exc_type, exc, tb)

    def open(self) -> DatasetWriter:
        """Take the dataset: foreign-folder check, lock, settings check, manifest read, and the
        leftovers of a writer that stopped between two steps removed (parts no commit lists,
        staged shards of committed or unknown videos).

        Raises:
            OutputError: a foreign folder (:func:`check_out_dir`), another writer holds the lock
                (the message names it), or the dataset cannot be read or written.
            ConfigError: other result-changing settings or layout 1 (:func:`check_settings`).
        """
        check_out_dir(self.loc, force=self.force)
        self.loc.make_dir()
        lock = lock_output(self.loc, self.command)
        lock.__enter__()
        try:
            self.manifest = read_manifest(self.loc) or {}
            if self.config is not None:
                check_settings(self.loc, self.manifest, self.config, overwrite=self.overwrite, command=self.command)
            if dataset_layout(self.loc, self.manifest) != 1:
                self._remove_orphans()
        except BaseException:
            lock.__exit__(None, None, None)
            raise
        self._lock = lock
        return self

    def close(self, exc_type: type[BaseException] | None = None, exc: BaseException | None = None, tb: TracebackType | None = None) -> None:
        """Release the lock (what was not saved is not part of the dataset); the error that ends
        the ``with`` block, if any, goes to the lock, which then keeps it the one reported (a
        store gone mid-job cannot delete the lock either)."""
        if self._lock is not None:
            lock, self._lock = self._lock, None
            lock.__exit__(exc_type, exc, tb)

    def _held(self) -> None:
        if self._lock is None:
            raise OutputError(f"{self.loc.uri} | the dataset writer is not open (use it in a `with` block)")

    def start(self, manifest: dict, *, afresh: bool = False) -> None:
        """Make ``manifest`` the record this transaction saves; with ``afresh`` the old rows (every
        part and staged shard) are deleted first, for a dataset started again with other settings."""
        self._held()
        if afresh:
            for d in (*TABLES, "_staging"):
                self.loc.delete_dir(d)
            self._stale.clear()
        self.manifest = manifest

    # --- stage and commit ---------------------------------------------------------------------------------

    def stage(self, video_id: str, tables: dict[str, pa.Table]) -> None:
        """Gather one finished video's rows for the next commit: ``tables`` maps faces/frames/tracks
        to tables in the shard-level schemas (no ``video_id``; the column is added here)."""
        col = {n: pa.array([video_id] * t.num_rows, pa.string()) for n, t in tables.items()}
        self.stage_stored([video_id], {n: t.add_column(0, "video_id", col[n]) for n, t in tables.items()})

    def stage_stored(self, video_ids: list[str], tables: dict[str, pa.Table]) -> None:
        """Gather the rows of ``video_ids`` from tables that have the ``video_id`` column already
        (parts being merged, a live session's rows)."""
        if not self._staged:
            self._since = time.monotonic()
        for name, t in tables.items():
            self._tables[name].append(t)
        self._staged.extend(video_ids)
        self._rows += sum(tables[n].num_rows for n in ("faces", "frames") if n in tables)

    def due(self) -> bool:
        """True when the gathered rows should be committed now (``commit_rows`` or :data:`MAX_WAIT_S`)."""
        return bool(self._staged) and (self._rows >= self.commit_rows or time.monotonic() - self._since > MAX_WAIT_S)

    def commit(self) -> list[str]:
        """Write the gathered rows as one commit (one part per table) and record it in the manifest;
        it is part of the dataset once :meth:`save` has saved the manifest.

        Returns:
            The committed video ids (their staged shards are removed by the next :meth:`save`).

        Raises:
            OutputError: a part cannot be written (nothing is recorded then).
        """
        self._held()
        if not self._staged:
            return []
        token = commit_token()
        tables = {n: pa.concat_tables(ts) if ts else stored_schema(n).empty_table() for n, ts in self._tables.items()}
        entry = write_commit(self.loc, token, tables, self._staged)
        self.manifest.setdefault("commits", {})[token] = entry
        records = self.manifest.get("videos", {})
        for vid in self._staged:
            if vid in records:  # a live session's rows have no job record
                records[vid]["commit"] = token
        done = self._staged
        self._tables, self._staged, self._rows = {t: [] for t in TABLES}, [], 0
        self._committed += [v for v in done if v in records]  # only a job's videos have staged shards
        return done

    def unstage(self, video_id: str) -> None:
        """Delete a video's staged shards (its rows are not to be committed, or it is redone afresh)."""
        self._held()
        remove_staging(self.loc, video_id)

    # --- release and drop ------------------------------------------------------------------------------------

    def release(self, video_ids: set[str], *, to_staging: frozenset[str] | set[str] = frozenset()) -> None:
        """Take videos out of their commits: each affected commit is rewritten without them under a
        new token (its other videos keep their rows) and the old one dropped; its parts are deleted
        by the next :meth:`save`, after the manifest and snapshot stop listing them. The rows of
        the videos in ``to_staging`` go back to their staged shards (split by ``shard_idx``), so
        only their missing shards are redone; the others' rows are discarded.

        Raises:
            OutputError: a part cannot be read or written.
        """
        self._held()
        loc, manifest = self.loc, self.manifest
        commits = manifest.get("commits", {})
        tokens = sorted({manifest["videos"][v]["commit"] for v in video_ids if manifest["videos"].get(v, {}).get("commit") in commits})
        for token in tokens:
            c = commits[token]
            keep: dict[str, pa.Table] = {}
            for name, p in c["parts"].items():
                t = read_parquet(loc, p["path"], stored_schema(name)) if p["rows"] else stored_schema(name).empty_table()
                gone = pc.is_in(t["video_id"], pa.array(sorted(video_ids), pa.string()))
                for vid in sorted(to_staging & set(c["videos"])):
                    shards = [s["shard_idx"] for s in manifest["videos"][vid].get("shards", [])]
                    self._restage(name, vid, t.filter(pc.equal(t["video_id"], vid)), shards)
                keep[name] = t.filter(pc.invert(gone))
            rest = [v for v in c["videos"] if v not in video_ids]
            if rest:
                new = commit_token()
                commits[new] = write_commit(loc, new, keep, rest)
                for vid in rest:
                    manifest["videos"][vid]["commit"] = new
            self.drop(token)

    def _restage(self, name: str, video_id: str, rows: pa.Table, shards: list[int]) -> None:
        """Write a released video's rows of one table back to its staged shards (every shard of its
        plan, empty ones too: a staged shard is intact when its row counts match the manifest)."""
        if name == "tracks":
            return  # tracks are made again when the video is finished
        rows = rows.drop_columns(["video_id"])
        for shard in shards:
            write_staging(self.loc, name, video_id, shard, rows.filter(pc.equal(rows["shard_idx"], shard)))

    def drop(self, token: str, *, delete_now: bool = False) -> dict:
        """Forget a commit; its parts are deleted by the next :meth:`save` (with ``delete_now``: at
        once). Its videos' records lose their ``commit``. Returns the commit's manifest entry
        (``parts``, ``videos``)."""
        self._held()
        c = self.manifest.get("commits", {}).pop(token)
        paths = [p["path"] for p in c["parts"].values()]
        if delete_now:
            for rel in paths:
                self.loc.delete(rel)
        else:
            self._stale += paths
        for vid in c["videos"]:
            rec = self.manifest.get("videos", {}).get(vid)
            if rec is not None and rec.get("commit") == token:
                rec.pop("commit")
        return dict(c)

    def drop_damaged(self) -> list[str]:
        """Drop the commits whose part files are missing or hold other row counts than recorded
        (their parts deleted at once: they are unreadable anyway). Returns the videos they held
        (they have no rows in the dataset any more: the caller resets them for processing)."""
        self._held()
        lost: list[str] = []
        for token, c in list(self.manifest.get("commits", {}).items()):
            if any(p["rows"] and parquet_rows(self.loc, p["path"]) != p["rows"] for p in c["parts"].values()):
                lost += self.drop(token, delete_now=True)["videos"]
        return lost

    # --- save and clean up ----------------------------------------------------------------------------------

    def save_manifest(self) -> None:
        """Save the manifest alone (a checkpoint of the callers' records; the readers' snapshot and
        the clean-up wait for :meth:`save`).

        Raises:
            OutputError: it cannot be written.
        """
        self._held()
        write_manifest(self.loc, self.manifest)

    def save(self, *, snapshot: bool = True) -> None:
        """Save the transaction: the manifest, then (with ``snapshot``) the ``videos.parquet``
        snapshot readers open, then the clean-up: parts no commit lists any more and the staged
        shards of committed videos. In this order a reader sees either the previous snapshot,
        whose parts still exist, or the new one.

        Raises:
            OutputError: a file cannot be written.
        """
        self._held()
        write_manifest(self.loc, self.manifest)
        if snapshot:
            table = self._videos(self.manifest) if self._videos else read_parquet(self.loc, "videos.parquet")
            write_videos(self.loc, table, self.manifest)
        for rel in self._stale:
            self.loc.delete(rel)
        for vid in self._committed:
            remove_staging(self.loc, vid)
        self._stale, self._committed = [], []

    def has_snapshot(self) -> bool:
        """True when the dataset has a ``videos.parquet`` (readers' snapshot) already."""
        return self.loc.is_file("videos.parquet")

    def remove_layout_1_folders(self) -> None:
        """Delete layout-1 hive folders (after a save that records their rows as layout-2 commits)."""
        self._held()
        for folder in layout_1_folders(self.loc):
            self.loc.delete_dir(folder)

    def _remove_orphans(self) -> None:
        """Delete parts no commit lists and staged shards of videos that are committed or unknown
        (what a writer stopped between two steps of a commit left behind)."""
        loc, manifest = self.loc, self.manifest
        listed = {p["path"] for c in manifest.get("commits", {}).values() for p in c["parts"].values()}
        for table in TABLES:
            for rel in loc.list_files(table):
                if rel.endswith(".parquet") and rel not in listed:
                    loc.delete(rel)
        videos = manifest.get("videos", {})
        staged = {rel.split("/")[1] for rel in loc.list_files("_staging", recursive=True) if rel.count("/") >= 2}
        for vid in staged:
            if vid not in videos or videos[vid].get("commit"):
                remove_staging(loc, vid)
