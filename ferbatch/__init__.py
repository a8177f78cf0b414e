"""ferbatch: batch facial emotion recognition over collections of videos.

Video -> frames -> detections -> crops -> classifications -> rows -> Parquet. See README.md.
Importing ferbatch never imports TensorRT, pycuda or Ray.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "open"]


def open(out_dir):  # noqa: A001 - mirrors the documented API
    """Open a ferbatch output directory for questions: a :class:`ferbatch.dataset.api.Dataset` with
    ``summary()``, ``timeline()``, ``moments()``, ``sql()`` and the ``faces``/``frames``/``videos``
    DuckDB relations."""
    from ferbatch.dataset.api import open as _open

    return _open(out_dir)
