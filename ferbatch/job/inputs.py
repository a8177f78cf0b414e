"""Job inputs: finding the videos to process and the identity and fingerprint of each.

A video's identity is its content, never the path it was typed as: ``content_hash`` is a sha256
over the file size and sampled blocks (the first and last MiB and 16 blocks of 64 KiB evenly
spread between them; the whole file when ``full_hash`` or when the file is at most
:data:`SAMPLED_SPAN` bytes), so the same file reached through other paths, symlinks or working
directories is one video, and two different files with the same name are two.

The sampled hash reads at most 3 MiB of a file however large it is, at a price: two files of the
same size (over :data:`SAMPLED_SPAN`) that differ only in bytes between the sampled blocks hash
equal and are taken for one video. An edited or re-encoded video almost always differs in its
container's headers and index too (the first or last MiB), so it takes files that differ in the
middle only (an in-place byte edit, a damaged copy); ``full_hash`` (``--full-hash``)
hashes every byte for collections where that can happen. The two hashes of a file over
:data:`SAMPLED_SPAN` differ, so switching ``--full-hash`` on or off for a dataset gives those
videos new ids and processes them again. Nothing here decodes.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ferbatch.dataset.videos import SAMPLED_SPAN, content_hash, make_video_id
from ferbatch.errors import ConfigError, OutputError
from ferbatch.location import is_uri, open_location
from ferbatch.media.probe import VIDEO_EXTENSIONS

__all__ = ["VideoTask", "Inputs", "scan_inputs", "make_video_id", "content_hash", "fingerprint", "SAMPLED_SPAN"]

URI_HASH_THREADS = 32  # objects hashed at once when scanning object storage


@dataclass(frozen=True)
class VideoTask:
    """One input video.

    Attributes:
        video_id: path-safe partition key: the file's stem plus 8 hex of its content hash (an
            earlier run's id for the same content is kept, see :func:`ferbatch.job.run.run_job`).
        path: absolute path (the first one it was found under in this run).
        rel_path: path relative to the input root (what the user recognises).
        size_bytes, mtime_ns: the file's size and modification time when scanned.
        content_hash: sha256 hex of the sampled content (see the module docstring).
        other_paths: further absolute paths in this run with the same content (processed once).
        full_hash: ``content_hash`` covers every byte (``--full-hash``), not sampled blocks.
    """

    video_id: str
    path: str
    rel_path: str
    size_bytes: int
    mtime_ns: int
    content_hash: str
    other_paths: tuple[str, ...] = ()
    full_hash: bool = False


@dataclass
class Inputs:
    """What a scan found.

    Attributes:
        tasks: one per distinct content, in path order.
        skipped: path -> why it was not taken (not a regular file, unreadable, undecodable name).
    """

    tasks: list[VideoTask] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def _display(p: Path) -> str:
    """A path as text that survives UTF-8 (undecodable bytes shown as \\xNN)."""
    return os.fsencode(p).decode("utf-8", "backslashreplace")


def scan_inputs(input_paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *, full_hash: bool = False) -> Inputs:
    """Find videos: files given directly, and every file with a video extension under the given
    directories (recursively; symlinked directories are not followed, so a symlink loop cannot
    trap the scan). With one input, ``rel_path`` is relative to it; with several, it starts with
    each input's own name.

    Non-regular files (FIFOs, sockets, devices) are skipped without being opened, files whose name
    is not valid UTF-8 and unreadable files or directories are skipped and reported in
    ``Inputs.skipped``; files with the same content are one task.

    Args:
        input_paths: files and/or directories, one or several.
        full_hash: hash whole files instead of sampled blocks (slower; for collections where
            files may differ only between the sampled blocks).

    Raises:
        ConfigError: an input does not exist, or no video file is found at all.
    """
    roots = [input_paths] if isinstance(input_paths, (str, os.PathLike)) else list(input_paths)
    if not roots:
        raise ConfigError("input | no video file or directory given")
    found = Inputs()
    by_content: dict[str, int] = {}
    seen: set[str] = set()
    for r in roots:
        if is_uri(r):
            _scan_uri(str(r), len(roots) > 1, full_hash, found, by_content)
            continue
        root = Path(r).expanduser()
        if not root.exists():
            raise ConfigError(f"{_display(root)} | does not exist")
        if root.is_dir():
            base = root if len(roots) == 1 else root.parent
            files = _walk(root, found.skipped)
        else:
            files, base = [root], root.parent
        for p in files:
            absolute = str(p.absolute())
            if absolute in seen:
                continue
            seen.add(absolute)
            task = _task(p, base, full_hash, found.skipped)
            if task is None:
                continue
            if task.content_hash in by_content:  # the same file again (a copy, a hard link, another path)
                i = by_content[task.content_hash]
                first = found.tasks[i]
                found.tasks[i] = VideoTask(**{**first.__dict__, "other_paths": (*first.other_paths, task.path)})
                continue
            by_content[task.content_hash] = len(found.tasks)
            found.tasks.append(task)
    if not found.tasks:
        given = ", ".join(_display(Path(r)) for r in roots)
        why = f"; skipped: {', '.join(f'{p} ({w})' for p, w in list(found.skipped.items())[:3])}" if found.skipped else ""
        raise ConfigError(f"{given} | no video files found (extensions: {', '.join(sorted(VIDEO_EXTENSIONS))}){why}")
    return found


def _scan_uri(uri: str, several: bool, full_hash: bool, found: Inputs, by_content: dict[str, int]) -> None:
    """Add the videos of an object-storage input: one object, or every object with a video
    extension under the prefix (``rel_path`` relative to the prefix, as for a local folder)."""
    import pyarrow.fs as pafs

    try:
        loc = open_location(uri)
        info = loc.fs.get_file_info(loc.root)
    except (OutputError, OSError) as e:
        raise ConfigError(f"{uri} | cannot be read: {e}") from e
    if info.type == pafs.FileType.File:
        parent, name = uri.rstrip("/").rsplit("/", 1)
        entries = [(open_location(parent), name, name, info)]
    elif info.type == pafs.FileType.Directory:
        base = uri.rstrip("/").rsplit("/", 1)[-1] + "/" if several else ""
        try:
            infos = loc.fs.get_file_info(pafs.FileSelector(loc.root, recursive=True))
        except OSError as e:
            raise ConfigError(f"{uri} | cannot be listed: {e}") from e
        entries = []
        for i in sorted(infos, key=lambda i: i.path):
            rel = i.path[len(loc.root) + 1 :]
            if i.type == pafs.FileType.File and Path(rel).suffix.lower() in VIDEO_EXTENSIONS and not i.base_name.startswith("."):
                entries.append((loc, rel, base + rel, i))
    else:
        raise ConfigError(f"{uri} | does not exist")
    from concurrent.futures import ThreadPoolExecutor

    def digest_of(entry) -> str | OSError:
        try:
            return content_hash(entry[0].name(entry[1]), int(entry[3].size), full=full_hash)
        except OSError as e:
            return e

    # each hash is ~18 ranged GETs: latency-bound, so many at once (results keep the listing's order)
    with ThreadPoolExecutor(max_workers=URI_HASH_THREADS) as pool:
        digests = list(pool.map(digest_of, entries))
    for (where, rel_in_loc, rel, i), digest in zip(entries, digests, strict=True):
        path = where.name(rel_in_loc)
        if isinstance(digest, OSError):
            found.skipped[path] = f"cannot read the object: {digest}"
            continue
        task = VideoTask(make_video_id(rel, digest), path, rel, int(i.size), int(i.mtime_ns or 0), digest, full_hash=full_hash)
        if digest in by_content:
            k = by_content[digest]
            found.tasks[k] = VideoTask(**{**found.tasks[k].__dict__, "other_paths": (*found.tasks[k].other_paths, path)})
            continue
        by_content[digest] = len(found.tasks)
        found.tasks.append(task)


def _walk(root: Path, skipped: dict[str, str]) -> list[Path]:
    files: list[Path] = []

    def unreadable(e: OSError) -> None:
        skipped[_display(Path(e.filename or root))] = f"directory not readable: {e.strerror or e}"

    for d, dirs, names in os.walk(root, followlinks=False, onerror=unreadable):
        dirs.sort()
        for n in sorted(names):
            p = Path(d) / n
            if p.suffix.lower() in VIDEO_EXTENSIONS and not n.startswith("."):
                files.append(p)
    return files


def _task(p: Path, base: Path, full_hash: bool, skipped: dict[str, str]) -> VideoTask | None:
    shown = _display(p)
    try:
        os.fsencode(p).decode("utf-8")
    except UnicodeDecodeError:
        skipped[shown] = "the file name is not valid UTF-8: rename the file"
        return None
    try:
        st = p.stat()
        if not stat.S_ISREG(st.st_mode):
            skipped[shown] = "not a regular file (a FIFO, socket or device)"
            return None
        digest = content_hash(p, st.st_size, full=full_hash)
    except PermissionError as e:
        skipped[shown] = f"permission denied: {e.strerror}"
        return None
    except OSError as e:  # a dangling symlink, an I/O error
        skipped[shown] = f"cannot read the file: {e.strerror or e}"
        return None
    rel = p.relative_to(base).as_posix()
    return VideoTask(make_video_id(rel, digest), str(p.absolute()), rel, st.st_size, st.st_mtime_ns, digest, full_hash=full_hash)


def fingerprint(t: VideoTask) -> dict:
    """The fields the manifest keeps to tell whether a file changed since it was processed."""
    return {"size_bytes": t.size_bytes, "content_hash": t.content_hash}
