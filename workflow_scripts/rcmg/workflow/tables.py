"""Cells of the workflow's tables: one definition of how a value is written to JSON or CSV.

JSON is strict (no NaN): non-finite floats become ``null``, numpy scalars and arrays
become plain numbers and lists, dates their ISO text. CSV cells are empty for missing
or non-finite values; readers treat both as "n/a".
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np


def json_value(value):
    """``value`` as strict JSON: numpy unwrapped, NaN/inf -> None, recursively."""
    if isinstance(value, dict):
        return {key: json_value(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        return [json_value(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def csv_cell(value, bool_as_int: bool = False):
    """A CSV cell: "" for None/NaN/inf; booleans as 0/1 when ``bool_as_int``."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if bool_as_int and isinstance(value, bool):
        return int(value)
    return value


def csv_text(rows, fields, bool_as_int: bool = False) -> str:
    """``rows`` (dicts) as CSV text with exactly ``fields`` as columns, cells by :func:`csv_cell`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    for row in rows:
        writer.writerow({key: csv_cell(row.get(key), bool_as_int) for key in fields})
    return buffer.getvalue()
