"""`patas query`: SQL over parsed experiments, run by DuckDB.

Every parsed table `pataslab/<experiment>/<experiment>.csv` (or `.parquet`) becomes a view named
after its experiment. A view costs nothing until the query reads it, and then DuckDB reads the
file itself, in parallel. A CSV's column types are those `patas parse` recorded beside it
(`table.read_schema`), so a column no task filled is still numbers; DuckDB infers the others (and
all of them for a CSV without its schema). Any other CSV or Parquet file can be named as an input
(its view is named after the file) or read directly in the SQL: `SELECT * FROM 'results.csv'`.
From Python, DataFrames can be queried too, by the names they are given.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, Union

from patas.analysis.formats import Format, write_result
from patas.analysis.table import read_schema
from patas.common.errors import PatasError
from patas.common.search import STUDY_FILE

# A search's table of intermediate values, beside its experiment's (see patas/analysis/trials.py).
REPORTS_SUFFIX = "_reports"

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

DEFAULT_LAB = Path("pataslab")
READERS = {".csv": "read_csv_auto", ".tsv": "read_csv_auto", ".parquet": "read_parquet", ".pq": "read_parquet"}
PARSE_HINT = "run `patas parse -e pataslab/<experiment> -p NAME REGEX` first"
# Where the tables are: one path (a pataslab folder, an experiment folder, a table file) or several.
Inputs = Union[str, Path, Iterable[Union[str, Path]]]


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


def input_paths(inputs: Inputs) -> list[str | Path]:
    """The inputs as a list: one path given alone is one input, not a sequence of letters."""
    return [inputs] if isinstance(inputs, (str, Path)) else list(inputs)


def find_tables(inputs: Inputs = (DEFAULT_LAB,)) -> list[TableFile]:
    """The tables in each input: a pataslab folder, one experiment's folder, or a table file."""
    found: dict[str, TableFile] = {}
    for given in input_paths(inputs):
        path = Path(given).expanduser()
        if path.is_file():
            tables = [_table_file(path, path.stem)]
        elif path.is_dir():
            # Task folders (named by number) are skipped: an experiment folder holds thousands.
            folders = [path, *sorted(p for p in path.iterdir() if not p.name.isdigit())]
            tables = [t for folder in folders for name in _table_names(folder) if (t := _experiment_table(folder, name))]
        elif Path(given) == DEFAULT_LAB:
            tables = []  # no lab here yet: the query may still read files named in its SQL
        else:
            raise QueryError(f"-i {given}: no such file or folder{default_lab_hint(path)}")
        for table in tables:
            if table.name in found and found[table.name].path != table.path:
                raise QueryError(
                    f"two tables are named '{table.name}' ({found[table.name].path}, {table.path}); give one of them with -i"
                )
            found[table.name] = table
    return list(found.values())


def default_lab_hint(given: Path) -> str:
    """` (did you mean pataslab/grid?)` when `given`, not found, is a bare name of a folder in
    ./pataslab: the name `patas logs grid` takes, where these options take a path."""
    if given.is_absolute() or len(given.parts) != 1 or not (DEFAULT_LAB / given).is_dir():
        return ""
    return f" (did you mean {DEFAULT_LAB / given}?)"


def experiment_table(given: str | Path, option: str) -> TableFile:
    """The one parsed table that `option` (summary's and draw's -e) names: a table file, or the
    table of an experiment folder. QueryError says what is there instead."""
    path = Path(given).expanduser()
    if not path.exists():
        raise QueryError(f"{option} {given}: no such experiment folder or table file{default_lab_hint(path)}")
    if path.is_file() and path.suffix.lower() not in READERS:
        raise QueryError(f"{option} {given}: not a table file (give a .csv or .parquet file, or an experiment folder)")
    tables = find_tables([path])
    if path.is_dir() and any(t.name == path.name for t in tables):
        tables = [t for t in tables if t.name == path.name]  # an experiment folder: its own table
    if not tables:
        folder = str(given).rstrip("/")
        # A search's objective is parsed with no -p (its pattern is in its definition).
        searched = path.is_dir() and (path / STUDY_FILE).is_file()
        hint = f"run `patas parse -e {folder}` first" if searched else PARSE_HINT.replace("pataslab/<experiment>", folder)
        raise QueryError(f"{option} {given}: no parsed table ({hint})")
    if len(tables) > 1:
        names = ", ".join(t.name for t in tables)
        raise QueryError(f"{option} {given}: holds several parsed experiments ({names}); give one, e.g. {option} {path / tables[0].name}")
    return tables[0]


def _table_names(folder: Path) -> tuple[str, ...]:
    """The tables `patas parse` writes in an experiment folder: the experiment's, and a search's
    intermediate values (`<name>_reports`)."""
    return (folder.name, folder.name + REPORTS_SUFFIX)


def _experiment_table(folder: Path, name: str) -> TableFile | None:
    """The newest parsed table `name` of an experiment folder (`<name>.csv` or `.parquet`)."""
    if not folder.is_dir():
        return None
    candidates = [folder / f"{name}{suffix}" for suffix in READERS]
    existing = [p for p in candidates if p.is_file()]
    if not existing:
        return None
    return TableFile(name, max(existing, key=lambda p: p.stat().st_mtime))


def _table_file(path: Path, name: str) -> TableFile:
    if path.suffix.lower() not in READERS:
        raise QueryError(f"-i {path}: not a table file (use a .csv or .parquet file, or a pataslab folder)")
    return TableFile(name, path)


def connect(tables: Sequence[TableFile], frames: Mapping[str, pd.DataFrame] | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with one view per table (files are read only when a query uses them)
    and the DataFrames under their names, which hide a table file of the same name."""
    import duckdb

    connection = duckdb.connect()
    # A progress bar would land in the middle of the output of long queries.
    connection.execute("SET enable_progress_bar = false")
    frames = frames or {}
    for table in tables:
        if table.name not in frames:
            connection.execute(f"CREATE VIEW {_identifier(table.name)} AS SELECT * FROM {_reader_call(table)}")
    for name, frame in frames.items():
        connection.register(name, frame)
    return connection


def _reader_call(table: TableFile) -> str:
    """DuckDB's call reading the table, with the types its schema records (CSV only)."""
    source = _literal(str(table.path.absolute()))
    types = read_schema(table.path) if table.reader == "read_csv_auto" else None
    if not types:
        return f"{table.reader}({source})"
    declared = ", ".join(f"{_literal(name)}: {_literal(kind.sql)}" for name, kind in types.items())
    return f"{table.reader}({source}, types={{{declared}}})"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@contextmanager
def sql_errors(names: Sequence[str], inputs: Inputs) -> Iterator[None]:
    """DuckDB's errors, while running or fetching, as one-line `QueryError`s."""
    import duckdb

    try:
        yield
    except duckdb.CatalogException as error:
        if not names:
            searched = ", ".join(str(i) for i in input_paths(inputs))
            raise QueryError(f"no parsed experiment in {searched} ({PARSE_HINT})") from None
        raise QueryError(f"{duckdb_message(error)} (tables: {', '.join(names)})") from None
    except duckdb.Error as error:
        raise QueryError(duckdb_message(error)) from None


_CSV_FILE = re.compile(r"^ *file = (.+)$", re.MULTILINE)


def duckdb_message(error: Exception) -> str:
    """DuckDB's message on one line, without the echoed SQL and caret lines that follow it;
    prefixed with the file when the file itself cannot be read (not UTF-8, not CSV), which DuckDB
    names in a `file = ` line."""
    text = str(error).strip()
    head = " ".join(line.strip() for line in text.split("\n\n", 1)[0].splitlines() if line.strip())
    named = _CSV_FILE.search(text)
    return f"{_relative(named.group(1))}: {head}" if named and head.startswith("Invalid Input Error") else head


def _relative(path: str) -> str:
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def _relation(connection: duckdb.DuckDBPyConnection, sql: str) -> duckdb.DuckDBPyRelation | None:
    """The SQL's result, still to be read (None for statements without one in older DuckDBs)."""
    if not sql.strip():
        raise QueryError("the query is empty (e.g. patas query 'SELECT * FROM grid LIMIT 5')")
    return connection.sql(sql)


def query(sql: str, inputs: Inputs = (DEFAULT_LAB,), *, tables: Mapping[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """The result of `sql` over the parsed experiments in `inputs` and the DataFrames in `tables`
    (each queried by its name; it hides a parsed table of the same name), as a DataFrame.

    Example: query("SELECT in_activation, AVG(out_test_acc) FROM grid GROUP BY 1")
             query("SELECT * FROM runs WHERE out_loss < 0.1", tables={"runs": frame})
    """
    import pandas as pd

    files = find_tables(inputs)
    frames = dict(tables or {})
    with sql_errors(sorted({t.name for t in files} | set(frames)), inputs):
        relation = _relation(connect(files, frames), sql)
        return relation.df() if relation is not None else pd.DataFrame()


def print_query(sql: str, inputs: Inputs, form: Format, stream: TextIO) -> None:
    """Run `sql` over the parsed experiments in `inputs` and write its result to `stream`."""
    files = find_tables(inputs)
    with sql_errors([t.name for t in files], inputs):
        relation = _relation(connect(files), sql)
        if relation is not None:
            write_result(relation, form, stream)
