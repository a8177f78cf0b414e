"""Read one Parquet file into a table of a given schema without ``pyarrow.dataset``.

``pyarrow.parquet.read_table`` goes through ``pyarrow.dataset``, whose compiled module imports
pandas when it is installed (about half a second, a third of a one-frame job's whole run);
:class:`pyarrow.parquet.ParquetFile` reads the same file without it. The result is what
``read_table(path, schema=schema)`` gives: the schema's columns in its order, each cast to the
schema's type, a column the file lacks (a file written before the column existed) all null, a
column the schema lacks left out.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["read_file", "conform"]


def read_file(path: str, filesystem: pa.fs.FileSystem | None = None, schema: pa.Schema | None = None) -> pa.Table:
    """The table in the Parquet file at ``path``.

    Args:
        path: the file, a path of ``filesystem`` (a local path when it is None).
        filesystem: a pyarrow filesystem (local or object storage).
        schema: conform the table to this schema (:func:`conform`); None keeps the file's.

    Raises:
        OSError: the file is missing or cannot be read.
        pyarrow.ArrowException: it is not Parquet, or a column cannot be cast to the schema's type.
    """
    with pq.ParquetFile(path, filesystem=filesystem) as f:
        table = f.read()
    return table if schema is None else conform(table, schema)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``'s columns in its order: cast where the types differ, all null where
    ``table`` has no such column; columns ``schema`` does not name are dropped.

    Raises:
        pyarrow.ArrowException: a column cannot be cast to the schema's type.
    """
    cols: list[pa.Array | pa.ChunkedArray] = []
    for field in schema:
        i = table.schema.get_field_index(field.name)
        if i < 0:
            cols.append(pa.nulls(table.num_rows, field.type))
        else:
            col = table.column(i)
            cols.append(col if col.type == field.type else col.cast(field.type))
    return pa.Table.from_arrays(cols, schema=schema)
