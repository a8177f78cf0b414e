"""The driver's side of the dataset's layout: finished videos' rows gathered into large part
files (commits), commits checked and released on a rerun, and leftovers cleaned up.

A commit is written only by the driver, one part per table, and exists once the manifest that
lists it is saved (:func:`ferbatch.dataset.store.write_commit`); then the videos' staged shards
are deleted. A crash between any two steps leaves either an orphan part (no commit lists it:
removed by the next run, never read) or staged shards of a committed video (removed), never a
row twice. Parts are rewritten, never edited: a video that has to be redone is *released* by
writing its commit's other videos to a new commit and dropping the old one (copy-on-write).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from ferbatch.dataset.store import (
    TABLES,
    commit_token,
    parquet_rows,
    read_parquet,
    remove_staging,
    stored_schema,
    write_commit,
    write_staging,
)
from ferbatch.location import Location

__all__ = ["CommitBuffer", "damaged_commits", "drop_commit", "release_videos", "remove_orphans"]

# a commit is written when the rows gathered reach this many (faces + frames), which makes parts of
# roughly 20-60 MB (docs/performance.md "Dataset layout at scale"), or after MAX_WAIT_S
COMMIT_ROWS = 1_000_000
MAX_WAIT_S = 600.0


@dataclass
class CommitBuffer:
    """Finished videos' rows waiting for the next commit (driver memory, bounded by :data:`COMMIT_ROWS`).

    Attributes:
        loc: the dataset.
        manifest: the job's manifest (``commits`` and the videos' ``commit`` are updated in place).
        commit_rows: rows (faces + frames) that trigger a commit.
    """

    loc: Location
    manifest: dict
    commit_rows: int = COMMIT_ROWS
    tables: dict[str, list[pa.Table]] = field(default_factory=lambda: {t: [] for t in TABLES})
    videos: list[str] = field(default_factory=list)
    rows: int = 0
    since: float = 0.0

    def add(self, video_id: str, tables: dict[str, pa.Table]) -> None:
        """Gather one finished video's rows: ``tables`` maps faces/frames/tracks to tables in the
        shard-level schemas (no ``video_id``; the column is added here)."""
        col = {n: pa.array([video_id] * t.num_rows, pa.string()) for n, t in tables.items()}
        self.add_stored([video_id], {n: t.add_column(0, "video_id", col[n]) for n, t in tables.items()})

    def add_stored(self, video_ids: list[str], tables: dict[str, pa.Table]) -> None:
        """Gather the rows of ``video_ids`` from tables that already have the ``video_id`` column
        (parts being merged by ``ferbatch compact``)."""
        if not self.videos:
            self.since = time.monotonic()
        for name, t in tables.items():
            self.tables[name].append(t)
        self.videos.extend(video_ids)
        self.rows += sum(tables[n].num_rows for n in ("faces", "frames") if n in tables)

    def due(self) -> bool:
        """True when the gathered rows should be committed now (size or age)."""
        return bool(self.videos) and (self.rows >= self.commit_rows or time.monotonic() - self.since > MAX_WAIT_S)

    def commit(self) -> list[str]:
        """Write the gathered rows as one commit and record it in the manifest (not saved: the
        caller saves the manifest, then removes the videos' staging with :meth:`clean`).

        Returns:
            The committed video ids.

        Raises:
            OutputError: a part cannot be written (nothing is recorded then).
        """
        if not self.videos:
            return []
        token = commit_token()
        tables = {n: pa.concat_tables(ts) if ts else stored_schema(n).empty_table() for n, ts in self.tables.items()}
        entry = write_commit(self.loc, token, tables, self.videos)
        self.manifest.setdefault("commits", {})[token] = entry
        for vid in self.videos:
            self.manifest["videos"][vid]["commit"] = token
        done = self.videos
        self.tables = {t: [] for t in TABLES}
        self.videos, self.rows = [], 0
        return done

    def clean(self, video_ids: list[str]) -> None:
        """Delete committed videos' staged shards (call after the manifest is saved)."""
        for vid in video_ids:
            remove_staging(self.loc, vid)


def damaged_commits(loc: Location, manifest: dict) -> list[str]:
    """Tokens of commits whose part files are missing or hold other row counts than recorded."""
    bad = []
    for token, c in manifest.get("commits", {}).items():
        if any(p["rows"] and parquet_rows(loc, p["path"]) != p["rows"] for p in c["parts"].values()):
            bad.append(token)
    return bad


def drop_commit(loc: Location, manifest: dict, token: str, *, delete: bool = True) -> list[str]:
    """Forget a commit and (with ``delete``) delete its parts; returns the videos whose rows it
    held (they have none in the dataset any more: the caller resets them for processing)."""
    c = manifest.get("commits", {}).pop(token)
    if delete:
        for p in c["parts"].values():
            loc.delete(p["path"])
    for vid in c["videos"]:
        rec = manifest["videos"].get(vid)
        if rec is not None and rec.get("commit") == token:
            rec.pop("commit")
    return list(c["videos"])


def release_videos(loc: Location, manifest: dict, video_ids: set[str], *, to_staging: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """Take videos out of their commits: each affected commit is rewritten without them under a
    new token (its other videos keep their rows) and the old one dropped. The rows of the videos
    in ``to_staging`` go back to their staged shards (split by ``shard_idx``), so a rerun redoes
    only their missing shards and commits them again; the others' rows are discarded.

    The caller saves the manifest, then deletes the returned part files (the old commits'):
    until the manifest is saved the old commits are what readers see.

    Returns:
        Relative paths of the parts no commit lists any more.

    Raises:
        OutputError: a part cannot be read or written.
    """
    commits = manifest.get("commits", {})
    stale: list[str] = []
    tokens = sorted({manifest["videos"][v]["commit"] for v in video_ids if manifest["videos"].get(v, {}).get("commit") in commits})
    for token in tokens:
        c = commits[token]
        keep: dict[str, pa.Table] = {}
        for name, p in c["parts"].items():
            t = read_parquet(loc, p["path"], stored_schema(name)) if p["rows"] else stored_schema(name).empty_table()
            gone = pc.is_in(t["video_id"], pa.array(sorted(video_ids), pa.string()))
            for vid in sorted(to_staging & set(c["videos"])):
                shards = [s["shard_idx"] for s in manifest["videos"][vid].get("shards", [])]
                _restage(loc, name, vid, t.filter(pc.equal(t["video_id"], vid)), shards)
            keep[name] = t.filter(pc.invert(gone))
        rest = [v for v in c["videos"] if v not in video_ids]
        if rest:
            new = commit_token()
            entry = write_commit(loc, new, keep, rest)
            commits[new] = entry
            for vid in rest:
                manifest["videos"][vid]["commit"] = new
        stale += [p["path"] for p in c["parts"].values()]
        drop_commit(loc, manifest, token, delete=False)
    return stale


def _restage(loc: Location, name: str, video_id: str, rows: pa.Table, shards: list[int]) -> None:
    """Write a released video's rows of one table back to its staged shards (every shard of its
    plan, empty ones too: a staged shard is intact when its row counts match the manifest)."""
    if name == "tracks":
        return  # tracks are made again when the video is finished
    rows = rows.drop_columns(["video_id"])
    for shard in shards:
        write_staging(loc, name, video_id, shard, rows.filter(pc.equal(rows["shard_idx"], shard)))


def remove_orphans(loc: Location, manifest: dict) -> None:
    """Delete parts no commit lists and staged shards of videos that are committed or unknown
    (what a writer stopped between two steps of a commit left behind)."""
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
