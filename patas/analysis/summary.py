"""`patas summary`: each configuration's metric with a confidence interval, and which are best.

One row per configuration (by default, per combination of the `in_*` columns): how many values
(`n`) and how many were missing or NaN (`missing`, left out of every statistic), their mean,
sample standard deviation, a Student t confidence interval of the mean, min and max, and a
`verdict`:

- `best`: the configuration with the best mean (highest, or lowest with maximize=False);
- `tied`: its interval overlaps the best's, so the repeats do not tell it apart from the best;
- `worse`: its interval lies wholly on the bad side of the best's;
- empty: it cannot be compared, because it or the best has fewer than two values (no interval).

Overlapping intervals are a reading aid, not a statistical test: two 95% intervals can overlap
while a test would still tell the means apart. Rows come best first.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, Union

from patas.analysis.formats import Format, write_result
from patas.analysis.parse import INPUT_PREFIX, unparsed_search_table
from patas.analysis.query import QueryError, duckdb_message, experiment_table
from patas.analysis.student import t_quantile
from patas.common.errors import PatasError, did_you_mean

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

    Source = Union[str, Path, pd.DataFrame]

OUTPUT_PREFIX = "out_"
CONFIDENCE = 0.95  # of the interval of each mean
STATISTICS = ("n", "missing", "mean", "std", "ci_low", "ci_high", "min", "max", "verdict")
SHOWN_COLUMNS = 8  # columns listed in an error message before "..."
NUMERIC_TYPES = {
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
    "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL",
}  # fmt: skip


class SummaryError(PatasError):
    """The table, the metric or the grouping columns cannot be summarized."""


class Verdict(enum.Enum):
    """How a configuration compares with the best one."""

    BEST = "best"
    TIED = "tied"  # its interval overlaps the best's
    WORSE = "worse"


def summarize(
    table_or_experiment: Source,
    metric: str,
    maximize: bool = True,
    by: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per configuration: n, missing, mean, std, ci_low, ci_high, min, max, verdict.

    `table_or_experiment` is a DataFrame, a parsed experiment's folder (pataslab/grid) or a table
    file (.csv, .parquet). `metric` is a column, `out_` may be left out (test_acc is
    out_test_acc). `by` are the columns that make a configuration (`in_` may be left out),
    by default every in_* column.

    Example: summarize("pataslab/grid", "test_acc", by=["in_activation"])
    """
    import duckdb

    connection = duckdb.connect()
    relation, name = _source(connection, table_or_experiment)
    columns = list(relation.columns)
    metric_column = _column(metric, columns, OUTPUT_PREFIX, "--metric", name)
    groups = _groups(by, columns, name)
    frame = _aggregate(connection, relation, metric_column, groups, name)
    return _judge(frame, groups, maximize)


def _source(connection: duckdb.DuckDBPyConnection, given: Source) -> tuple[duckdb.DuckDBPyRelation, str]:
    """The table to summarize, and how to name it in messages."""
    if not isinstance(given, (str, Path)):
        return connection.from_df(given), "the table"
    try:
        table = experiment_table(given, "-e")
    except QueryError as error:
        unparsed = unparsed_search_table(given)  # its definition says which pattern reads its objective
        if unparsed is None:
            raise SummaryError(str(error)) from None
        return connection.from_df(unparsed), str(given)
    import duckdb

    source = str(table.path.absolute()).replace("'", "''")
    try:
        return connection.sql(f"SELECT * FROM {table.reader}('{source}')"), str(table.path)
    except duckdb.Error as error:  # a damaged table file: DuckDB's words, naming the file
        raise SummaryError(duckdb_message(error)) from None


def _column(given: str, columns: list[str], prefix: str, option: str, table: str) -> str:
    """The column `given` names, with or without its prefix."""
    for candidate in (given, prefix + given):
        if candidate in columns:
            return candidate
    listed = [c for c in columns if c.startswith(prefix)] or columns
    shown = ", ".join(listed[:SHOWN_COLUMNS]) + (", ..." if len(listed) > SHOWN_COLUMNS else "")
    # Names are compared without the prefix (which may be left out), so that `c` is not "close"
    # to in_b just because both would start with `in_`.
    suggestion = did_you_mean(given.removeprefix(prefix), [c.removeprefix(prefix) for c in listed])
    raise SummaryError(f"{option} {given}: no such column in {table}{suggestion} (columns: {shown or 'none'})")


def _groups(by: Sequence[str] | None, columns: list[str], table: str) -> list[str]:
    if by is None:
        return [c for c in columns if c.startswith(INPUT_PREFIX)]
    groups = [_column(name, columns, INPUT_PREFIX, "--by", table) for name in by]
    for group in groups:
        if groups.count(group) > 1:
            raise SummaryError(f"--by {','.join(by)}: {group} is named twice (name each column once)")
    return groups


def _aggregate(
    connection: duckdb.DuckDBPyConnection, relation: duckdb.DuckDBPyRelation, metric: str, groups: list[str], table: str
) -> pd.DataFrame:
    """n, missing, mean, std, min and max of the metric per group; NULL and NaN values left out."""
    import duckdb

    kind = dict(zip(relation.columns, relation.types))[metric]
    if str(kind).split("(")[0] not in NUMERIC_TYPES:  # DECIMAL(18,3) is a DECIMAL
        raise SummaryError(f"--metric {metric}: the column holds text ({kind}), not numbers, in {table}")
    m = _quoted(metric)
    value = f"CASE WHEN isnan({m}::DOUBLE) THEN NULL ELSE {m}::DOUBLE END"
    keys = ", ".join(_quoted(g) for g in groups)
    sql = f"""
        SELECT {keys + ',' if keys else ''}
               count(v) AS n, count(*) - count(v) AS missing, avg(v) AS mean, stddev_samp(v) AS std,
               min(v) AS min, max(v) AS max
        FROM (SELECT *, {value} AS v FROM summarized)
        {'GROUP BY ' + keys + ' ORDER BY ' + keys if keys else ''}
    """  # fmt: skip
    connection.register("summarized", relation)
    try:
        return connection.sql(sql).df()
    except duckdb.Error as error:
        raise QueryError(duckdb_message(error)) from None



def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _judge(frame: pd.DataFrame, groups: list[str], maximize: bool) -> pd.DataFrame:
    """Add each row's confidence interval and verdict, and sort the rows best first."""
    margins = [_margin(n, std) for n, std in zip(frame["n"], frame["std"])]
    frame["ci_low"] = [mean - m if m is not None else math.nan for mean, m in zip(frame["mean"], margins)]
    frame["ci_high"] = [mean + m if m is not None else math.nan for mean, m in zip(frame["mean"], margins)]
    # Best first; rows without a mean (every value missing) last; ties keep the grouping order.
    frame = frame.sort_values("mean", ascending=not maximize, na_position="last", kind="stable")
    frame = frame.reset_index(drop=True)
    frame["verdict"] = _verdicts(frame)
    return frame[[*groups, *STATISTICS]]


def _margin(n: int, std: float) -> float | None:
    """Half the width of the mean's confidence interval, or None below two values."""
    if n < 2:
        return None
    return t_quantile((1 + CONFIDENCE) / 2, n - 1) * std / math.sqrt(n)


def _verdicts(frame: pd.DataFrame) -> list[str | None]:
    """best for the first row, then tied / worse against its interval (None: cannot compare)."""
    if frame.empty or _missing(frame["mean"].iloc[0]):
        return [None] * len(frame)
    low, high = frame["ci_low"].iloc[0], frame["ci_high"].iloc[0]
    verdicts: list[str | None] = [Verdict.BEST.value]
    for row_low, row_high in zip(frame["ci_low"].iloc[1:], frame["ci_high"].iloc[1:]):
        if any(_missing(x) for x in (low, high, row_low, row_high)):
            verdicts.append(None)
        elif row_low <= high and row_high >= low:
            verdicts.append(Verdict.TIED.value)
        else:
            verdicts.append(Verdict.WORSE.value)
    return verdicts


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def print_summary(
    table_or_experiment: Source,
    metric: str,
    form: Format,
    stream: TextIO,
    maximize: bool = True,
    by: Sequence[str] | None = None,
) -> None:
    """Write `summarize(...)`'s rows to `stream` in `form`, as `patas query` writes its results."""
    import duckdb

    frame = summarize(table_or_experiment, metric, maximize, by)
    write_result(duckdb.connect().from_df(frame), form, stream)
