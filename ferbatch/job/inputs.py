"""Job inputs: finding the videos to process and the identity and fingerprint of each.

Nothing here decodes: a file's content is only read for its fingerprint.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ferbatch.errors import ConfigError
from ferbatch.media.probe import VIDEO_EXTENSIONS

__all__ = ["VideoTask", "scan_inputs", "make_video_id", "fingerprint"]

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class VideoTask:
    """One input video.

    Attributes:
        video_id: path-safe partition key.
        path: absolute path.
        rel_path: path relative to the input root (what the user recognises).
        size_bytes, mtime_ns, quick_hash: fingerprint for resume (quick_hash: sha256 of the first
            and last MiB, so a file rewritten with the same size and mtime is still noticed).
    """

    video_id: str
    path: str
    rel_path: str
    size_bytes: int
    mtime_ns: int
    quick_hash: str = ""


def make_video_id(rel_path: str, digest: str) -> str:
    """Path-safe, stable id of a video: its stem reduced to ``[A-Za-z0-9._-]`` plus 8 hex of a hash
    of its relative path, e.g. ``WolfgangLanger_Pexels-1a2b3c4d``. Never contains ``/``, ``=`` or
    starts with ``.``."""
    stem = _SAFE.sub("_", Path(rel_path).stem).strip("._-")[:60] or "video"
    return f"{stem}-{digest[:8]}"


def scan_inputs(input_paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[VideoTask]:
    """Find videos: files given directly, and every file with a video extension under the given
    directories (recursively; symlinked directories are not followed, so a symlink loop cannot
    trap the scan). With one input, ``rel_path`` is relative to it; with several, it starts with
    each input's own name.

    Raises:
        ConfigError: an input does not exist, or no video file is found at all.
    """
    roots = [input_paths] if isinstance(input_paths, (str, os.PathLike)) else list(input_paths)
    if not roots:
        raise ConfigError("input | no video file or directory given")
    tasks, seen = [], set()
    for r in roots:
        root = Path(r).expanduser()
        if not root.exists():
            raise ConfigError(f"{root} | does not exist")
        if root.is_file():
            files, base = [root], root.parent
        else:
            base = root if len(roots) == 1 else root.parent
            files = []
            for d, dirs, names in os.walk(root, followlinks=False):
                dirs.sort()
                for n in sorted(names):
                    p = Path(d) / n
                    if p.suffix.lower() in VIDEO_EXTENSIONS and not n.startswith("."):
                        files.append(p)
        for p in files:
            rel = p.relative_to(base).as_posix()
            if p.absolute() in seen:
                continue
            seen.add(p.absolute())
            try:
                st = p.stat()
                size, mtime, qh = st.st_size, st.st_mtime_ns, _quick_hash(p, st.st_size)
            except OSError:  # dangling symlink, unreadable: reported when processed
                size, mtime, qh = -1, -1, ""
            vid = make_video_id(rel, hashlib.sha256(rel.encode()).hexdigest())
            tasks.append(VideoTask(vid, str(p.absolute()), rel, size, mtime, qh))
    if not tasks:
        given = ", ".join(str(r) for r in roots)
        raise ConfigError(f"{given} | no video files found (extensions: {', '.join(sorted(VIDEO_EXTENSIONS))})")
    return tasks


def _quick_hash(p: Path, size: int, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        h.update(f.read(block))
        if size > 2 * block:
            f.seek(size - block)
            h.update(f.read(block))
    return h.hexdigest()[:16]


def fingerprint(t: VideoTask) -> dict:
    """The fields the manifest keeps to tell whether a file changed since it was processed."""
    return {"size_bytes": t.size_bytes, "mtime_ns": t.mtime_ns, "quick_hash": t.quick_hash}
