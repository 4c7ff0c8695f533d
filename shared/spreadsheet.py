"""CSV cells that spreadsheets never run as formulas (OWASP "CSV injection").

A cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is a formula to Excel,
LibreOffice and Google Sheets; every export prefixes it with an apostrophe, which they show as
text. Numbers stay numbers: only strings are neutralised, so `-3` as an int is written as is.
"""

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A CSV document whose every string cell is safe to open in a spreadsheet."""
    return csv_lines([header]) + csv_lines(rows)


def csv_lines(rows: Iterable[Sequence[Any]]) -> str:
    """CSV lines, safe like csv_text's: a streamed document is its header's lines, then its rows'."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([safe_cell(cell) for cell in row] for row in rows)
    return out.getvalue()
