"""`patas query`: SQL over parsed experiments, run by DuckDB.

Every parsed table `pataslab/<experiment>/<experiment>.csv` (or `.parquet`) becomes a view named
after its experiment. A view costs nothing until the query reads it, and then DuckDB reads the
file itself, in parallel, inferring column types (so `AVG(out_test_acc)` works). Any other CSV or
Parquet file can be named as an input (its view is named after the file) or read directly in the
SQL: `SELECT * FROM 'results.csv'`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from patas.analysis.formats import Format, write_result
from patas.common.errors import PatasError

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

DEFAULT_LAB = Path("pataslab")
READERS = {".csv": "read_csv_auto", ".tsv": "read_csv_auto", ".parquet": "read_parquet", ".pq": "read_parquet"}
PARSE_HINT = "run `patas parse -e pataslab/<experiment> -p NAME REGEX` first"


class QueryError(PatasError):
    """The SQL failed, or there is no table to run it on."""


@dataclass(frozen=True)
class TableFile:
    """A table file the SQL can name: `name` is the view's name."""

    name: str
    path: Path

    @property
    def reader(self) -> str:
        return READERS[self.path.suffix.lower()]


def find_tables(inputs: Iterable[str | Path] = (DEFAULT_LAB,)) -> list[TableFile]:
    """The tables in each input: a pataslab folder, one experiment's folder, or a table file."""
    found: dict[str, TableFile] = {}
    for given in inputs:
        path = Path(given).expanduser()
        if path.is_file():
            tables = [_table_file(path, path.stem)]
        elif path.is_dir():
            # Task folders (named by number) are skipped: an experiment folder holds thousands.
            folders = [path, *sorted(p for p in path.iterdir() if not p.name.isdigit())]
            tables = [t for folder in folders if (t := _experiment_table(folder))]
        elif Path(given) == DEFAULT_LAB:
            tables = []  # no lab here yet: the query may still read files named in its SQL
        else:
            raise QueryError(f"-i {given}: no such file or folder")
        for table in tables:
            if table.name in found and found[table.name].path != table.path:
                raise QueryError(
                    f"two tables are named '{table.name}' ({found[table.name].path}, {table.path}); give one of them with -i"
                )
            found[table.name] = table
    return list(found.values())


def _experiment_table(folder: Path) -> TableFile | None:
    """The newest parsed table of an experiment folder (`<name>/<name>.csv` or `.parquet`)."""
    if not folder.is_dir():
        return None
    candidates = [folder / f"{folder.name}{suffix}" for suffix in READERS]
    existing = [p for p in candidates if p.is_file()]
    if not existing:
        return None
    return TableFile(folder.name, max(existing, key=lambda p: p.stat().st_mtime))


def _table_file(path: Path, name: str) -> TableFile:
    if path.suffix.lower() not in READERS:
        raise QueryError(f"-i {path}: not a table file (use a .csv or .parquet file, or a pataslab folder)")
    return TableFile(name, path)


def connect(tables: Sequence[TableFile]) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with one view per table; files are read only when a query uses them."""
    import duckdb

    connection = duckdb.connect()
    # A progress bar would land in the middle of the output of long queries.
    connection.execute("SET enable_progress_bar = false")
    for table in tables:
        name = table.name.replace('"', '""')
        source = str(table.path.absolute()).replace("'", "''")
        connection.execute(f"CREATE VIEW \"{name}\" AS SELECT * FROM {table.reader}('{source}')")
    return connection


@contextmanager
def sql_errors(tables: Sequence[TableFile], inputs: Iterable[str | Path]) -> Iterator[None]:
    """DuckDB's errors, while running or fetching, as one-line `QueryError`s."""
    import duckdb

    try:
        yield
    except duckdb.CatalogException as error:
        if not tables:
            searched = ", ".join(str(i) for i in inputs)
            raise QueryError(f"no parsed experiment in {searched} ({PARSE_HINT})") from None
        names = ", ".join(t.name for t in tables)
        raise QueryError(f"{one_line(error)} (tables: {names})") from None
    except duckdb.Error as error:
        raise QueryError(one_line(error)) from None


def one_line(error: Exception) -> str:
    """DuckDB's message without the echoed SQL and caret lines that follow it."""
    head = str(error).strip().split("\n\n", 1)[0]
    return " ".join(line.strip() for line in head.splitlines() if line.strip())


def _relation(connection: duckdb.DuckDBPyConnection, sql: str) -> duckdb.DuckDBPyRelation | None:
    """The SQL's result, still to be read (None for statements without one in older DuckDBs)."""
    if not sql.strip():
        raise QueryError("the query is empty (e.g. patas query 'SELECT * FROM grid LIMIT 5')")
    return connection.sql(sql)


def query(sql: str, inputs: Iterable[str | Path] = (DEFAULT_LAB,)) -> pd.DataFrame:
    """The result of `sql` over the parsed experiments in `inputs`, as a DataFrame.

    Example: query("SELECT in_activation, AVG(out_test_acc) FROM grid GROUP BY 1")
    """
    import pandas as pd

    tables = find_tables(inputs)
    with sql_errors(tables, inputs):
        relation = _relation(connect(tables), sql)
        return relation.df() if relation is not None else pd.DataFrame()


def print_query(sql: str, inputs: Iterable[str | Path], form: Format, stream: TextIO) -> None:
    """Run `sql` over the parsed experiments in `inputs` and write its result to `stream`."""
    tables = find_tables(inputs)
    with sql_errors(tables, inputs):
        relation = _relation(connect(tables), sql)
        if relation is not None:
            write_result(relation, form, stream)
