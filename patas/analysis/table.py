"""The parsed table: typed columns, written whole or not at all as CSV or Parquet.

Values are kept as Python objects (int, float, str, datetime or None) rather than a DataFrame, so
`patas parse` writes its CSV without importing pandas (half a second of start-up); `to_frame()`
builds the DataFrame for callers who want one.

Each column has a type (`ColumnType`), declared (a pattern's placeholder, the metadata columns) or
inferred from its values. Parquet stores it; CSV cannot, and a column every task left empty reads
back as text (DuckDB then refuses `AVG(out_x)`), so a CSV gets a schema beside it,
`<name>.schema.json`: each column's type in Table Schema's words (https://specs.frictionlessdata.io/table-schema/)
and the size and modification time of the CSV it describes, so that a CSV changed since (edited,
rewritten by another program) is read with inferred types instead of stale ones (`read_schema`).
"""

from __future__ import annotations

import csv
import enum
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from patas.common.errors import PatasError

if TYPE_CHECKING:
    import pandas as pd

CSV_SUFFIX = ".csv"
PARQUET_SUFFIXES = (".parquet", ".pq")
SCHEMA_SUFFIX = ".schema.json"
INT64_LIMIT = 2**63  # whole numbers at or beyond it do not fit BIGINT or Int64: they become floats


class TableError(PatasError):
    """The table cannot be written where asked."""


class ColumnType(enum.Enum):
    """A column's type, named as Table Schema names it."""

    INTEGER = "integer"
    NUMBER = "number"
    STRING = "string"
    DATETIME = "datetime"

    @property
    def sql(self) -> str:
        """DuckDB's name for the type."""
        return _SQL_TYPES[self]


_SQL_TYPES = {
    ColumnType.INTEGER: "BIGINT",
    ColumnType.NUMBER: "DOUBLE",
    ColumnType.STRING: "VARCHAR",
    ColumnType.DATETIME: "TIMESTAMP",
}
_UNKNOWN_TYPE = "any"  # Table Schema's word for a column of no known type (every value empty)


@dataclass(frozen=True)
class Table:
    """Named columns of equal length; values are int, float, str, datetime or None (empty).

    `types` has a column's type when it is declared or some value shows it.
    """

    columns: dict[str, list[Any]]
    types: dict[str, ColumnType] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), []))

    def rows(self) -> Iterator[tuple[Any, ...]]:
        return zip(*self.columns.values())

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        # A whole-number column with gaps stays whole (Int64) instead of turning into floats, and
        # a number column nobody filled is still numbers (NaN), not objects.
        dtypes = {ColumnType.INTEGER: "Int64", ColumnType.NUMBER: "float64"}
        data = {}
        for name, values in self.columns.items():
            dtype = dtypes.get(self.types.get(name))  # type: ignore[arg-type]
            data[name] = pd.array(values, dtype=dtype) if dtype else values
        return pd.DataFrame(data, columns=self.names)

    def write(self, path: Path) -> None:
        """Write the table to `path` (CSV and its schema, or Parquet), replacing it only when complete."""
        check_destination(path)
        csv_table = path.suffix.lower() == CSV_SUFFIX
        _replace(path, self._write_csv if csv_table else self._write_parquet)
        if csv_table:
            _replace(schema_path(path), lambda temporary: self._write_schema(temporary, os.stat(path)))

    def _write_csv(self, path: Path) -> None:
        with open(path, "w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream)
            writer.writerow(self.names)
            writer.writerows(self.rows())
            stream.flush()
            os.fsync(stream.fileno())

    def _write_parquet(self, path: Path) -> None:
        import pyarrow

        frame = self.to_frame()
        schema = pyarrow.Schema.from_pandas(frame, preserve_index=False)
        arrow_types = {
            ColumnType.INTEGER: pyarrow.int64(), ColumnType.NUMBER: pyarrow.float64(),
            ColumnType.STRING: pyarrow.string(), ColumnType.DATETIME: pyarrow.timestamp("us"),
        }  # fmt: skip
        for name, kind in self.types.items():
            schema = schema.set(schema.get_field_index(name), pyarrow.field(name, arrow_types[kind]))
        table = pyarrow.Table.from_pandas(frame, schema=schema, preserve_index=False)
        import pyarrow.parquet

        pyarrow.parquet.write_table(table, path)

    def _write_schema(self, path: Path, described: os.stat_result) -> None:
        fields = [{"name": n, "type": t.value if (t := self.types.get(n)) else _UNKNOWN_TYPE} for n in self.names]
        schema = {"bytes": described.st_size, "mtime_ns": described.st_mtime_ns, "fields": fields}
        with open(path, "w", encoding="utf-8") as stream:
            json.dump(schema, stream, indent=1)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())


def schema_path(table: Path) -> Path:
    """Where the schema of a CSV table is kept: grid.csv → grid.schema.json."""
    return table.with_name(table.stem + SCHEMA_SUFFIX)


def read_schema(table: Path) -> dict[str, ColumnType] | None:
    """The types `patas parse` wrote for a CSV table, if it wrote this very file (same size and time).

    None when there is no schema, it cannot be read, or the CSV has changed since.
    """
    try:
        with open(schema_path(table), encoding="utf-8") as stream:
            schema = json.load(stream)
        described = os.stat(table)
    except (OSError, ValueError):
        return None
    if not isinstance(schema, dict) or (schema.get("bytes"), schema.get("mtime_ns")) != (
        described.st_size, described.st_mtime_ns,
    ):  # fmt: skip
        return None
    known = {t.value: t for t in ColumnType}
    try:
        return {f["name"]: known[f["type"]] for f in schema["fields"] if f["type"] in known}
    except (KeyError, TypeError):
        return None


def check_destination(path: Path) -> None:
    """Fail before any work when a table could not be written at `path`."""
    suffix = path.suffix.lower()
    if suffix not in (CSV_SUFFIX, *PARQUET_SUFFIXES):
        raise TableError(f"{path}: unknown table format '{suffix}' (name the file .csv or .parquet)")
    if not path.parent.is_dir():
        raise TableError(f"{path}: no folder {path.parent} to write the table in (create it first)")
    if suffix in PARQUET_SUFFIXES:
        try:
            import pyarrow  # noqa: F401  (pandas needs it for Parquet; checked first for a clear message)
        except ImportError:
            raise TableError(f"{path}: writing Parquet needs pyarrow (pip install 'patas[parquet]')") from None


def typed(values: Sequence[str | None], kind: ColumnType | None = None) -> tuple[list[Any], ColumnType | None]:
    """The captured texts as values of `kind`, and the column's type.

    Without a kind: numbers when every value is a number (ints when all are whole), else the texts;
    no type when every value is empty. Whole numbers too big for 64 bits become floats.
    """
    present = [v for v in values if v is not None and v != ""]
    if kind is ColumnType.STRING:
        return list(values), kind
    if kind is None:
        if not present:
            return [None] * len(values), None
        kind = _number_kind(present)
        if kind is None:
            return list(values), ColumnType.STRING
    if kind is ColumnType.INTEGER and any(abs(int(v)) >= INT64_LIMIT for v in present):
        kind = ColumnType.NUMBER
    convert = int if kind is ColumnType.INTEGER else float
    return [None if v is None or v == "" else convert(v) for v in values], kind


def _number_kind(present: Sequence[str]) -> ColumnType | None:
    """INTEGER or NUMBER when every text is one, else None."""
    if any("_" in v for v in present):
        return None  # Python reads "1_2" as 12; a program printing it meant text
    for kind, convert in ((ColumnType.INTEGER, int), (ColumnType.NUMBER, float)):
        try:
            for value in present:
                convert(value)
        except ValueError:
            continue
        return kind
    return None


def value_type(values: Sequence[Any]) -> ColumnType | None:
    """The type of a column of Python values (int, float, str, datetime), None if all are None."""
    import datetime

    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return None
    if kinds <= {int, bool}:
        return ColumnType.INTEGER
    if kinds <= {int, float}:
        return ColumnType.NUMBER
    if kinds <= {datetime.datetime}:
        return ColumnType.DATETIME
    return ColumnType.STRING


def _replace(path: Path, write: Callable[[Path], None]) -> None:
    """`write` a temporary file renamed over `path` when complete; errors name `path`, never the temporary."""
    temporary = path
    try:
        with _replacing(path) as temporary:
            write(temporary)
    except OSError as error:
        reason = str(error.strerror or error).replace(str(temporary), str(path))
        raise TableError(f"{path}: cannot write the table ({reason})") from None
    except (ValueError, TypeError) as error:  # pyarrow's refusals (ArrowInvalid, ArrowTypeError)
        reason = str(error).splitlines()[0].replace(str(temporary), str(path))
        raise TableError(f"{path}: cannot write the table ({reason})") from None


@contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` that is renamed over it when the block succeeds."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
