"""ferbatch: batch facial emotion recognition over collections of videos.

Video -> frames -> detections -> crops -> classifications -> rows -> Parquet. See README.md.

Python entry points: :func:`run` (the main job, as ``ferbatch run``), :func:`open` (questions
over its dataset) and :func:`analyze` (the faces and expressions of one image or frame).
Importing ferbatch never imports TensorRT, pycuda or Ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

__all__ = ["__version__", "analyze", "open", "run"]

if TYPE_CHECKING:
    from ferbatch.api import Faces
    from ferbatch.dataset.api import Dataset
    from ferbatch.job.summary import JobSummary


def open(out_dir) -> Dataset:  # noqa: A001 - mirrors the documented API
    """Open a ferbatch output directory for questions: a :class:`ferbatch.dataset.api.Dataset` with
    ``summary()``, ``timeline()``, ``moments()``, ``tracks()``, ``sql()`` and the
    ``faces``/``frames``/``videos`` DuckDB relations; a context manager that closes it.

    Raises:
        OutputError: not a ferbatch output directory.
    """
    from ferbatch.dataset.api import open as _open

    return _open(out_dir)


def run(inputs, out, **options) -> JobSummary:
    """Run the main job with the command line's defaults; see :func:`ferbatch.api.run`."""
    from ferbatch.api import run as _run

    return _run(inputs, out, **options)


def analyze(image, **options) -> Faces:
    """Faces and expressions of one image or frame; see :func:`ferbatch.api.analyze`."""
    from ferbatch.api import analyze as _analyze

    return _analyze(image, **options)
