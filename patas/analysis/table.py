"""The parsed table: typed columns, written whole or not at all as CSV or Parquet.

Values are kept as Python objects (int, float, str, datetime or None) rather than a DataFrame, so
`patas parse` writes its CSV without importing pandas (half a second of start-up); `to_frame()`
builds the DataFrame for callers who want one.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from patas.common.errors import PatasError

if TYPE_CHECKING:
    import pandas as pd

CSV_SUFFIX = ".csv"
PARQUET_SUFFIXES = (".parquet", ".pq")


class TableError(PatasError):
    """The table cannot be written where asked."""


@dataclass(frozen=True)
class Table:
    """Named columns of equal length; values are int, float, str, datetime or None (empty)."""

    columns: dict[str, list[Any]]

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), []))

    def rows(self) -> Iterator[tuple[Any, ...]]:
        return zip(*self.columns.values())

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        data = {}
        for name, values in self.columns.items():
            whole = any(isinstance(v, int) for v in values) and all(v is None or isinstance(v, int) for v in values)
            # A whole-number column with gaps stays whole (Int64) instead of turning into floats.
            data[name] = pd.array(values, dtype="Int64") if whole else values
        return pd.DataFrame(data, columns=self.names)

    def write(self, path: Path) -> None:
        """Write the table to `path` (CSV, or Parquet for .parquet), replacing it only when complete."""
        check_destination(path)
        suffix = path.suffix.lower()
        try:
            with _replacing(path) as temporary:
                if suffix == CSV_SUFFIX:
                    self._write_csv(temporary)
                else:
                    self._write_parquet(temporary)
        except OSError as error:
            raise TableError(f"{path}: cannot write the table ({error.strerror or error})") from None

    def _write_csv(self, path: Path) -> None:
        with open(path, "w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream)
            writer.writerow(self.names)
            writer.writerows(self.rows())
            stream.flush()
            os.fsync(stream.fileno())

    def _write_parquet(self, path: Path) -> None:
        try:
            import pyarrow  # noqa: F401  (pandas needs it for Parquet; check first for a clear message)
        except ImportError:
            raise TableError(f"{path}: writing Parquet needs pyarrow (pip install 'patas[parquet]')") from None
        self.to_frame().to_parquet(path, index=False)


def check_destination(path: Path) -> None:
    """Fail before any work when a table could not be written at `path`."""
    suffix = path.suffix.lower()
    if suffix not in (CSV_SUFFIX, *PARQUET_SUFFIXES):
        raise TableError(f"{path}: unknown table format '{suffix}' (name the file .csv or .parquet)")
    if not path.parent.is_dir():
        raise TableError(f"{path}: no folder {path.parent} to write the table in (create it first)")


def typed(values: Sequence[str | None]) -> list[Any]:
    """The values as numbers when every one of them is a number (ints when all are whole)."""
    present = [v for v in values if v is not None and v != ""]
    if not present:
        return [None] * len(values)
    if any("_" in v for v in present):
        return list(values)  # Python reads "1_2" as 12; a program printing it meant text
    for kind in (int, float):
        try:
            for value in present:
                kind(value)
        except ValueError:
            continue
        return [None if v is None or v == "" else kind(v) for v in values]
    return list(values)


@contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` that is renamed over it when the block succeeds."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
