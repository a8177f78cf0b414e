"""The one-line error for a damaged part file of a dataset, shared by the readers
(:mod:`ferbatch.dataset.store`, :mod:`ferbatch.dataset.query`)."""

from __future__ import annotations

import re

from ferbatch.errors import OutputError

__all__ = ["named_part", "part_error"]

# a part file named in DuckDB's or Arrow's error ("... at end of file '/out/faces/part-X.parquet'")
_PART = re.compile(r"""['"]([^'"]+\.parquet)['"]""")


def part_error(path: str, why: str) -> OutputError:
    """The error for part file ``path`` that cannot be read because of ``why``: it names the part
    and the rerun that redoes it."""
    return OutputError(
        f"{path} | a part file of this dataset cannot be read ({why}); rerun the `ferbatch run` that wrote it "
        "(same inputs and --out): it redoes the damaged part"
    )


def named_part(e: BaseException) -> OutputError | None:
    """:func:`part_error` for the part file that DuckDB's or Arrow's error ``e`` names; None when
    it names none."""
    text = str(e).strip()
    m = _PART.search(text)
    if not m:
        return None
    return part_error(m.group(1), text.splitlines()[0].replace(m.group(0), "").strip().rstrip(":"))
