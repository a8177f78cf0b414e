"""Where a dataset or an input lives: a local folder or a prefix in object storage (S3, GCS).

A :class:`Location` is a ``pyarrow.fs`` filesystem and a root path inside it; every ferbatch
reader and writer of an output directory (the manifest, part files, the videos table, stored
indexes) and the scan of ``s3://`` / ``gs://`` inputs go through it, so a job runs the same on
a laptop folder and on a bucket.

Object stores have no rename: :meth:`Location.write_bytes` writes the final object in one PUT
from bytes already in memory, so a reader sees the whole object or none; local folders keep
the temp-file-then-rename of :func:`ferbatch.atomic.atomic_target`.

Credentials and endpoints come from the standard environment, as the AWS CLI and SDKs read them:
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``,
``AWS_REGION`` / ``AWS_DEFAULT_REGION``, and ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` for an
S3-compatible server (MinIO, Ceph, moto); GCS uses Google's application-default credentials.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferbatch.atomic import atomic_target
from ferbatch.errors import OutputError

__all__ = ["Location", "is_uri", "open_location", "open_input", "stat_input"]

_SCHEMES = ("s3", "gs", "gcs")


def is_uri(text: str | os.PathLike[str]) -> bool:
    """True for ``s3://…``, ``gs://…`` / ``gcs://…`` (object storage); ``file://`` counts as local."""
    s = str(text)
    return "://" in s and s.split("://", 1)[0].lower() in _SCHEMES


def _s3_filesystem(uri: str) -> tuple[Any, str]:
    """(S3FileSystem, path inside it) with the endpoint and region from the environment.

    pyarrow's own ``FileSystem.from_uri`` resolves a bucket's region on AWS, but does not read
    ``AWS_ENDPOINT_URL``; an S3-compatible server needs the override given explicitly.
    """
    import pyarrow.fs as pafs

    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    path = uri.split("://", 1)[1].strip("/")
    if not endpoint:
        fs, path = pafs.FileSystem.from_uri(uri)
        return fs, path.rstrip("/")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return pafs.S3FileSystem(endpoint_override=endpoint, region=region), path


@dataclass(frozen=True)
class Location:
    """A folder on a ``pyarrow.fs`` filesystem.

    Attributes:
        fs: the filesystem (``LocalFileSystem``, ``S3FileSystem``, ``GcsFileSystem``).
        root: the folder's path inside ``fs`` ("bucket/prefix" for object storage, an absolute
            path locally), without a trailing slash.
        uri: how to name it to a user (the URI given, or the absolute local path).
        local: True for the local filesystem (paths can be handed to DuckDB, PyAV and the OS).
    """

    fs: Any
    root: str
    uri: str
    local: bool

    def path(self, *parts: str) -> str:
        """The filesystem path of ``parts`` under the root (``/`` separated)."""
        parts = tuple(p for p in parts if p)
        return posixpath.join(self.root, *parts) if parts else self.root

    def name(self, *parts: str) -> str:
        """``parts`` under the root as the user would write it (URI or local path), for messages."""
        parts = tuple(p for p in parts if p)
        return posixpath.join(self.uri.rstrip("/"), *parts) if parts else self.uri

    def child(self, *parts: str) -> Location:
        """The location of a sub-folder."""
        return Location(self.fs, self.path(*parts), self.name(*parts), self.local)

    def _info(self, rel: str):
        try:
            return self.fs.get_file_info(self.path(rel))
        except OSError as e:
            raise OutputError(f"{self.name(rel)} | cannot be read: {e}") from e

    def is_file(self, rel: str) -> bool:
        """True when ``rel`` is a file (object)."""
        import pyarrow.fs as pafs

        return bool(self._info(rel).type == pafs.FileType.File)

    def is_dir(self, rel: str = "") -> bool:
        """True when ``rel`` is a folder (locally) or a prefix holding objects (object storage)."""
        import pyarrow.fs as pafs

        return bool(self._info(rel).type == pafs.FileType.Directory)

    def exists(self, rel: str = "") -> bool:
        """True when ``rel`` is a file or a folder."""
        import pyarrow.fs as pafs

        return bool(self._info(rel).type != pafs.FileType.NotFound)

    def size(self, rel: str) -> int:
        """Size of a file in bytes (-1 when it does not exist)."""
        info = self._info(rel)
        return -1 if info.size is None else int(info.size)

    def list_files(self, rel: str = "", *, recursive: bool = False) -> list[str]:
        """Paths (relative to the root, sorted) of the files under ``rel``; [] when it does not exist."""
        import pyarrow.fs as pafs

        sel = pafs.FileSelector(self.path(rel), recursive=recursive, allow_not_found=True)
        try:
            infos = self.fs.get_file_info(sel)
        except OSError as e:
            raise OutputError(f"{self.name(rel)} | cannot be listed: {e}") from e
        n = len(self.root) + 1 if self.root else 0
        return sorted(i.path[n:] for i in infos if i.type == pafs.FileType.File)

    def list_names(self, rel: str = "") -> list[str]:
        """Names of the files and folders directly under ``rel`` (sorted); [] when it does not exist."""
        import pyarrow.fs as pafs

        sel = pafs.FileSelector(self.path(rel), recursive=False, allow_not_found=True)
        try:
            return sorted(i.base_name for i in self.fs.get_file_info(sel))
        except OSError as e:
            raise OutputError(f"{self.name(rel)} | cannot be listed: {e}") from e

    def read_bytes(self, rel: str) -> bytes:
        """The whole content of a file.

        Raises:
            OutputError: it does not exist or cannot be read (the message names it).
        """
        try:
            with self.fs.open_input_stream(self.path(rel)) as f:
                return bytes(f.read())
        except (OSError, FileNotFoundError) as e:
            raise OutputError(f"{self.name(rel)} | cannot be read: {e}") from e

    def open_input(self, rel: str):
        """A seekable ``pyarrow.NativeFile`` over ``rel`` (ranged reads on object storage).

        Raises:
            OutputError: it cannot be opened.
        """
        try:
            return self.fs.open_input_file(self.path(rel))
        except OSError as e:
            raise OutputError(f"{self.name(rel)} | cannot be opened: {e}") from e

    def write_bytes(self, rel: str, data: bytes | memoryview, *, fsync: bool = False) -> None:
        """Write ``data`` as the whole of ``rel``: locally through
        :func:`ferbatch.atomic.atomic_target`, on object storage as one PUT of a finished buffer
        (an object appears whole or not at all; there is no rename to rely on).

        Raises:
            OutputError: it cannot be written (disk full, permissions, no such bucket).
        """
        if self.local:
            with atomic_target(self.path(rel), fsync=fsync) as tmp:
                Path(tmp).write_bytes(data)
            return
        try:
            with self.fs.open_output_stream(self.path(rel)) as f:
                f.write(data)
        except OSError as e:
            raise OutputError(f"{self.name(rel)} | cannot write: {e}") from e

    def delete(self, rel: str) -> None:
        """Delete a file; a missing one is fine."""
        try:
            self.fs.delete_file(self.path(rel))
        except FileNotFoundError:
            pass
        except OSError as e:
            if self.exists(rel):
                raise OutputError(f"{self.name(rel)} | cannot delete: {e}") from e

    def delete_dir(self, rel: str) -> None:
        """Delete a folder (prefix) and everything under it; a missing one is fine."""
        if not self.exists(rel):
            return
        try:
            self.fs.delete_dir(self.path(rel))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise OutputError(f"{self.name(rel)} | cannot delete: {e}") from e

    def make_dir(self, rel: str = "") -> None:
        """Create a folder locally (object stores need none: a prefix exists through its objects).

        Raises:
            OutputError: it cannot be created.
        """
        if not self.local:
            return
        try:
            os.makedirs(self.path(rel), exist_ok=True)
        except OSError as e:
            raise OutputError(f"{self.name(rel)} | cannot create the folder: {e.strerror or e}") from e


def open_location(where: str | os.PathLike[str] | Location) -> Location:
    """The :class:`Location` of a local path or an ``s3://`` / ``gs://`` URI.

    Raises:
        OutputError: the URI cannot be understood (no bucket, unknown scheme) or its filesystem
            cannot be set up (the message names the URI and pyarrow's reason).
    """
    if isinstance(where, Location):
        return where
    text = os.fspath(where)
    if text.startswith("file://"):
        text = text[len("file://") :]
    if not is_uri(text):
        import pyarrow.fs as pafs

        root = os.path.abspath(os.path.expanduser(text))
        return Location(pafs.LocalFileSystem(), root, root, True)
    scheme = text.split("://", 1)[0].lower()
    if not text.split("://", 1)[1].strip("/"):
        raise OutputError(f"{text} | missing bucket name (expected {scheme}://BUCKET/PREFIX)")
    try:
        if scheme == "s3":
            fs, path = _s3_filesystem(text)
        else:
            import pyarrow.fs as pafs

            fs, path = pafs.FileSystem.from_uri("gs://" + text.split("://", 1)[1])
    except (OSError, ValueError) as e:  # pyarrow.ArrowInvalid is a ValueError
        raise OutputError(f"{text} | cannot open this location: {e}") from e
    return Location(fs, path.rstrip("/"), text.rstrip("/"), False)


def _split(path: str) -> tuple[Location, str]:
    """(location of the parent folder, file name) of a local path or a URI."""
    parent, name = path.rstrip("/").rsplit("/", 1) if is_uri(path) else os.path.split(os.path.abspath(path))
    return open_location(parent), name


def open_input(path: str):
    """A seekable binary file over an input: a local path (``open``) or a URI (ranged reads,
    ``pyarrow.NativeFile``; PyAV reads it like a file, without downloading the whole object).

    Raises:
        OSError: it cannot be opened (the caller names the file in its own message).
    """
    if not is_uri(path):
        return open(path, "rb")
    loc, name = _split(path)
    return loc.fs.open_input_file(loc.path(name))


def stat_input(path: str) -> tuple[int, int]:
    """(size in bytes, modification time in ns) of an input file, local or a URI.

    Raises:
        FileNotFoundError: it does not exist.
        OSError: it cannot be read.
    """
    if not is_uri(path):
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    loc, name = _split(path)
    info = loc.fs.get_file_info(loc.path(name))
    if info.size is None:
        raise FileNotFoundError(path)
    return int(info.size), int(info.mtime_ns or 0)
