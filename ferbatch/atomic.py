"""The one way ferbatch writes a file: a hidden temp file beside the target, renamed over it.

Every writer in the package goes through :func:`atomic_target`: Parquet part files and tables,
the manifest and index store, prepared ONNX graphs, TensorRT plans, model downloads and annotated
videos. Readers (pyarrow datasets, DuckDB globs on ``*.parquet``, workers loading a graph) never
see a half-written file, and a retried write replaces the earlier one instead of adding another.

It sits below every layer (models, job and dataset all write files) and imports nothing of
ferbatch's but :mod:`ferbatch.errors`.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ferbatch.errors import OutputError

__all__ = ["atomic_target", "write_bytes_atomic", "write_json_atomic"]


@contextlib.contextmanager
def atomic_target(dst: str | os.PathLike[str], *, suffix: str = ".tmp", fsync: bool = False, wrap_errors: bool = True) -> Iterator[Path]:
    """Yield a hidden temp path beside ``dst``; when the block succeeds it replaces ``dst`` with
    ``os.replace`` (atomic on POSIX), when it fails the temp file is removed.

    Temp names start with "." and end in ".tmp" (or ``.tmp<suffix>`` when a writer needs the
    extension, e.g. ".mp4" for FFmpeg's muxer choice), so they never match ``*.parquet`` globs.

    Args:
        dst: the final path; its folder is created.
        suffix: extension of the temp file (".tmp" = none of its own).
        fsync: flush the temp file to disk before the rename (durable part files and manifests).
        wrap_errors: turn an ``OSError`` (disk full, permissions) into :class:`OutputError`
            naming ``dst``; False lets the caller's own handling see the original exception.

    Raises:
        OutputError: with ``wrap_errors``, the folder cannot be created or the file written.
    """
    dst = Path(dst)
    tmp = dst.parent / f".{dst.name}.{uuid.uuid4().hex[:8]}.tmp{'' if suffix == '.tmp' else suffix}"
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, dst)
    except OSError as e:
        if not wrap_errors:
            raise
        raise OutputError(f"{dst} | cannot write: {e.strerror or e}") from e
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_target`)."""
    with atomic_target(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON atomically and durably (see :func:`atomic_target`)."""
    with atomic_target(path, fsync=True) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True, default=str)
