"""What a ``ferbatch run`` process does not import: pandas, which pyarrow pulls in by itself.

pyarrow imports pandas, when it is installed, the first time it converts anything
(``pa.array``, ``pa.table``, ``to_numpy``: its ``_PandasAPIShim`` checks whether values are pandas
objects), and ``pyarrow.dataset``'s compiled module imports it on import: 0.3 to 0.5 s of a
one-frame job. A job never needs pandas (it is an optional extra), so the ``run`` command refuses
``import pandas`` while the job runs: pyarrow then works as it does where pandas is not
installed, a set-up it supports. Only in the process of the console script (``ferbatch``,
``python -m ferbatch``: :func:`mark_console`), whose job ends with the process: a program that calls
:func:`ferbatch.run`, or the command line in-process (typer's ``CliRunner``), keeps pyarrow's pandas
integration as it is (pyarrow notes pandas as missing for good once its first try fails).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from importlib.abc import MetaPathFinder

__all__ = ["mark_console", "without_pandas"]

_console = False  # this process runs the console script: its command ends with it


def mark_console() -> None:
    """Note that this process runs the ``ferbatch`` console script (called by its ``main``)."""
    global _console
    _console = True


class _RefusePandas(MetaPathFinder):
    """An import finder that makes ``import pandas`` fail (and finds nothing else)."""

    def find_spec(self, fullname, path=None, target=None):
        """Raise ImportError for pandas and its submodules; None (not mine) for every other name."""
        if fullname == "pandas" or fullname.startswith("pandas."):
            raise ImportError("pandas is not imported while ferbatch run runs a job")
        return None


@contextlib.contextmanager
def without_pandas() -> Iterator[None]:
    """Inside the block, ``import pandas`` raises ImportError, as if pandas were not installed
    (for every thread: enter it before the job starts its threads). Nothing changes outside the
    console script's process (:func:`mark_console`) or where pandas is imported already.
    Afterwards pandas imports again (pyarrow's ``to_pandas`` imports it then).

    Raises nothing of its own.
    """
    if not _console or "pandas" in sys.modules:
        yield
        return
    finder = _RefusePandas()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
