"""Writing a query's result: CSV (full precision, streamed), JSON, markdown or an aligned table.

CSV and JSON keep every digit, for programs; markdown and the terminal table round floats to six
decimals (or six significant digits for tiny and huge numbers), for people.
"""

from __future__ import annotations

import csv
import enum
import json
import math
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, TextIO

BATCH_ROWS = 10_000  # rows fetched from DuckDB at a time when streaming


class Format(enum.Enum):
    CSV = "csv"
    MARKDOWN = "markdown"
    JSON = "json"
    TABLE = "table"


class Cursor(Protocol):
    """What a DuckDB connection offers after `execute` (DB-API)."""

    description: Sequence[Sequence[Any]] | None

    def fetchmany(self, size: int) -> list[tuple[Any, ...]]: ...


def write_result(cursor: Cursor, form: Format, stream: TextIO) -> int:
    """Write the cursor's rows to `stream` in `form`; the number of rows written."""
    if cursor.description is None:
        return 0  # a statement without a result, such as COPY or CREATE
    names = [column[0] for column in cursor.description]
    writers = {Format.CSV: _write_csv, Format.JSON: _write_json, Format.MARKDOWN: _write_markdown, Format.TABLE: _write_table}
    return writers[form](names, _rows(cursor), stream)


def _rows(cursor: Cursor) -> Iterator[tuple[Any, ...]]:
    while batch := cursor.fetchmany(BATCH_ROWS):
        yield from batch


def _write_csv(names: list[str], rows: Iterator[tuple[Any, ...]], stream: TextIO) -> int:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(names)
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    return count


def _write_json(names: list[str], rows: Iterator[tuple[Any, ...]], stream: TextIO) -> int:
    stream.write("[")
    count = 0
    for row in rows:
        record = {name: _json_value(value) for name, value in zip(names, row)}
        stream.write(("," if count else "") + "\n  " + json.dumps(record, default=str))
        count += 1
    stream.write("\n]\n" if count else "]\n")
    return count


def _json_value(value: Any) -> Any:
    # JSON has no NaN or infinity; null is what readers expect for "no number".
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _write_markdown(names: list[str], rows: Iterator[tuple[Any, ...]], stream: TextIO) -> int:
    cells = [[display(v).replace("|", "\\|") for v in row] for row in rows]
    widths = _widths(names, cells, minimum=3)
    numeric = _numeric_columns(cells, len(names))
    rule = ["-" * (w - 1) + ":" if right else "-" * w for w, right in zip(widths, numeric)]
    for line in [names, rule, *cells]:
        padded = [_pad(text, w, right) for text, w, right in zip(line, widths, numeric)]
        stream.write("| " + " | ".join(padded) + " |\n")
    return len(cells)


def _write_table(names: list[str], rows: Iterator[tuple[Any, ...]], stream: TextIO) -> int:
    cells = [[display(v) for v in row] for row in rows]
    widths = _widths(names, cells, minimum=1)
    numeric = _numeric_columns(cells, len(names))
    stream.write("  ".join(_pad(n, w, r) for n, w, r in zip(names, widths, numeric)).rstrip() + "\n")
    stream.write("  ".join("─" * w for w in widths) + "\n")
    stream.writelines("  ".join(_pad(t, w, r) for t, w, r in zip(line, widths, numeric)).rstrip() + "\n" for line in cells)
    stream.write(f"({len(cells)} row{'' if len(cells) == 1 else 's'})\n")
    return len(cells)


def display(value: Any) -> str:
    """A value as a person reads it: empty for NULL, floats rounded."""
    if value is None:
        return ""
    if isinstance(value, float):
        if not math.isfinite(value) or value == 0:
            return str(value)
        if 1e-4 <= abs(value) < 1e15:
            return f"{value:.6f}".rstrip("0").rstrip(".")
        return f"{value:.6g}"
    return str(value)


def _widths(names: list[str], cells: list[list[str]], minimum: int) -> list[int]:
    widths = [max(minimum, len(n)) for n in names]
    for line in cells:
        for index, text in enumerate(line):
            widths[index] = max(widths[index], len(text))
    return widths


def _numeric_columns(cells: list[list[str]], count: int) -> list[bool]:
    """Columns whose every non-empty cell is a number: right-aligned, as numbers are read."""
    numeric = [any(line[i] for line in cells) for i in range(count)]
    for line in cells:
        for index, text in enumerate(line):
            if numeric[index] and text and not _is_number(text):
                numeric[index] = False
    return numeric


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _pad(text: str, width: int, right: bool) -> str:
    return text.rjust(width) if right else text.ljust(width)
