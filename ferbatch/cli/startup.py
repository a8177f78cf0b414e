"""What a ``ferbatch run`` process does not import: pandas, which pyarrow pulls in by itself.

pyarrow imports pandas, when it is installed, the first time it converts anything
(``pa.array``, ``pa.table``, ``to_numpy``: its ``_PandasAPIShim`` checks whether values are pandas
objects), and ``pyarrow.dataset``'s compiled module imports it on import: 0.3 to 0.5 s of a
one-frame job. A job never needs pandas (it is an optional extra), so the ``run`` command refuses
``import pandas`` while the job runs: pyarrow then works as it does where pandas is not
installed, a set-up it supports. The library itself does not do this: a program that calls
:func:`ferbatch.run` keeps pyarrow's pandas integration as it is.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from importlib.abc import MetaPathFinder

__all__ = ["without_pandas"]


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
    (for every thread: enter it before the job starts its threads). Nothing changes where pandas
    is imported already. Afterwards pandas imports again (pyarrow's ``to_pandas`` imports it then).

    Raises nothing of its own.
    """
    if "pandas" in sys.modules:
        yield
        return
    finder = _RefusePandas()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
