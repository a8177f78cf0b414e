"""How the results commands write numbers: one place for tables, CSV/TSV and JSON.

Written files (csv, tsv, jsonl, json) carry every value exactly and briefly: a float32 column's
values as the shortest text that reads back as the same float32 (``0.9``, not the float64 noise
``0.8999999761581421``), float64 values as Python's shortest repr, integers as they are.

A table is for reading: the floats of one column share one number of decimals (four significant
digits for the column's largest magnitude, between 1 and 4 decimals: ``238.4`` and ``58.1``,
``0.9123`` and ``0.0000``, never ``2.558e-05``) and are right-aligned; integers are whole numbers;
``share_*`` columns are whole percents.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["exact_values", "is_numeric", "table_texts"]


def _is_float32(arrow_type: Any) -> bool:
    import pyarrow as pa

    return arrow_type is not None and (pa.types.is_float32(arrow_type) or pa.types.is_float16(arrow_type))


def is_numeric(arrow_type: Any) -> bool:
    """True for integer, floating-point and decimal Arrow types (the columns a table right-aligns)."""
    import pyarrow as pa

    return arrow_type is not None and (
        pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type)
    )


def exact_values(values: Sequence[Any], arrow_type: Any) -> list[Any]:
    """``values`` (one column, as ``to_pylist`` gives them) for a written file: a float32
    column's floats replaced by the float64 nearest to their shortest float32 text (so csv writes
    ``0.9`` and json ``0.9``); other columns unchanged."""
    if not _is_float32(arrow_type):
        return list(values)
    import numpy as np

    return [v if v is None or not math.isfinite(v) else float(str(np.float32(v))) for v in values]


def _decimals(values: Sequence[float]) -> int:
    """Decimals for a float column in a table: 4 significant digits of its largest finite
    magnitude, at least 1 and at most 4."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    big = max(finite, default=0.0)
    digits = math.floor(math.log10(big)) + 1 if big >= 1 else 0
    return min(4, max(1, 4 - digits))


def table_texts(values: Sequence[Any], arrow_type: Any, name: str = "") -> list[str]:
    """The cells of one column of a table (see the module docstring); null is empty."""
    import pyarrow as pa
    from rich.markup import escape

    if name.startswith("share_") and arrow_type is not None and pa.types.is_floating(arrow_type):
        return ["" if v is None else "nan" if not math.isfinite(v) else f"{100 * v:.0f}" for v in values]
    if arrow_type is not None and pa.types.is_floating(arrow_type):
        d = _decimals(values)
        return ["" if v is None else "nan" if math.isnan(v) else f"{v:.{d}f}" for v in values]
    return ["" if v is None else escape(str(v)) for v in values]
