"""Checks a job's inputs and output directory before anything starts (before Ray, before models).

Cheap, file-system only: still images given as inputs (or directories holding only images) are
refused with a pointer to :func:`ferbatch.analyze`, and an ``--out`` that is a non-empty folder
of someone else's files is refused unless forced, so a job never writes among the user's files
(:func:`ferbatch.dataset.guards.check_out_dir`, which every dataset writer runs again under its lock).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ferbatch.dataset.guards import DATASET_ENTRIES, check_out_dir
from ferbatch.errors import ConfigError
from ferbatch.location import is_uri
from ferbatch.media.probe import VIDEO_EXTENSIONS

__all__ = ["IMAGE_EXTENSIONS", "DATASET_ENTRIES", "check_inputs", "check_out_dir"]

# still-image formats; an extension ferbatch reads as a video (an animated .gif) is a video
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".heic", ".avif"}) - VIDEO_EXTENSIONS

_IMAGE_HINT = "ferbatch run processes videos; for still images use ferbatch.analyze(image) in Python or `ferbatch analyze IMAGE`"


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS


def check_inputs(inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> None:
    """Refuse still images before a job starts.

    Args:
        inputs: the job's input files and/or directories (as :func:`ferbatch.job.run_job` takes them).

    Raises:
        ConfigError: an input file is a still image (by extension), or a directory holds still images
            and no video; the message names the path and points to :func:`ferbatch.analyze`.
            Missing paths and directories without any media are left to the job's own scan.
    """
    paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    for given in paths:
        if is_uri(given):
            continue  # object storage: the scan takes videos by extension
        p = Path(given)
        if p.is_file() and _is_image(p):
            raise ConfigError(f"{p} | is a still image ({p.suffix.lower().lstrip('.')}), not a video; {_IMAGE_HINT}")
        if p.is_dir():
            images = 0
            for _root, dirs, files in os.walk(p):  # symlinked directories are not followed, as the scan
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                for n in files:
                    suffix = os.path.splitext(n)[1].lower()
                    if suffix in VIDEO_EXTENSIONS and not n.startswith("."):
                        break
                    images += suffix in IMAGE_EXTENSIONS
                else:
                    continue
                break
            else:
                if images:
                    raise ConfigError(f"{p} | holds {images} still image(s) and no video; {_IMAGE_HINT}")
