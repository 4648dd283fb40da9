"""An experiment's results as the pages show them: the table of `patas parse`, its metrics and
parameters, and the summary of a metric per configuration.

The table is the one `patas parse` wrote (read through `patas.analysis.query`, with the types its
schema records). A search experiment's definition names its objective and the pattern that reads
it off a trial's output (`search.objective`); its table is parsed afresh with that pattern
(`patas.analysis.parse`, in memory, nothing written) whenever the journal has grown, so best-so-far
follows the search as it runs. Tables are kept until the journal or the table file changes.
"""

from __future__ import annotations

import math
import os
import shlex
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from patas.analysis.parse import INPUT_PREFIX, objective_table
from patas.analysis.query import find_tables, query
from patas.analysis.summary import OUTPUT_PREFIX, summarize
from patas.analysis.trials import Objective, search_objective
from patas.common.errors import PatasError
from patas.common.lab import ExperimentLab

if TYPE_CHECKING:
    import pandas as pd

@dataclass(frozen=True)
class Results:
    """One experiment's parsed table (empty when nothing was parsed) and what it is read from."""

    frame: pd.DataFrame
    source: str  # where the table comes from, for the page to say
    objective: Objective | None  # a search experiment's
    empty_note: str  # what the page says while there is no metric to chart

    @property
    def note(self) -> str | None:
        """What the page says instead of charts, None when it has a metric to chart."""
        return None if self.metrics else self.empty_note

    @property
    def metrics(self) -> list[str]:
        """The numeric out_* columns."""
        from pandas.api.types import is_numeric_dtype

        return [c for c in self.frame.columns if c.startswith(OUTPUT_PREFIX) and is_numeric_dtype(self.frame[c])]

    @property
    def parameters(self) -> list[str]:
        return [c for c in self.frame.columns if c.startswith(INPUT_PREFIX)]


def read_results(lab: ExperimentLab) -> Results:
    """The experiment's table: its search objective parsed now, or the table `patas parse` wrote."""
    import pandas as pd

    objective = search_objective(lab.path)
    if objective is not None:
        source = f"parsed now with the search objective's pattern ({objective.pattern})"
        return Results(objective_table(lab.path, objective), source, objective, f"No trial has printed its objective yet ({objective.pattern}).")
    tables = find_tables([lab.path])
    if not tables:
        # The folder as this dashboard's -o reaches it, which is where its user is.
        return Results(pd.DataFrame(), "", None, f"No parsed values yet: run patas parse -e {shlex.quote(str(lab.path))} -p NAME REGEX (the page reads its table).")
    table = tables[0]
    frame = query(f'SELECT * FROM "{table.name}"', [lab.path])
    return Results(frame, str(table.path), None, f"{table.path} has no numeric out_* column: parse with (@int@) or (@float@).")


class ResultsCache:
    """Each experiment's Results, read again only when its journal or its table file changed."""

    def __init__(self, lab_root: Path) -> None:
        self.lab_root = lab_root
        self._kept: dict[str, tuple[tuple[Any, ...], Results]] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Results:
        lab = ExperimentLab(self.lab_root, name)
        stamp = _stamp(lab)
        with self._lock:
            kept = self._kept.get(name)
            if kept is not None and kept[0] == stamp:
                return kept[1]
        results = read_results(lab)
        with self._lock:
            self._kept[name] = (stamp, results)
        return results


def _stamp(lab: ExperimentLab) -> tuple[Any, ...]:
    """What changes when the results may have: the journal's and the tables' sizes and times."""
    paths = [lab.journal_path, lab.definition_path, *(lab.path / f"{lab.name}{s}" for s in (".csv", ".parquet"))]
    stamp = []
    for path in paths:
        try:
            info = os.stat(path)
            stamp.append((info.st_size, info.st_mtime_ns))
        except OSError:
            stamp.append(None)
    return tuple(stamp)


class ChartError(PatasError):
    """A chart or summary asked for names no column of the table."""


def summary_rows(results: Results, metric: str, maximize: bool | None = None, by: list[str] | None = None) -> list[dict[str, Any]]:
    """`patas summary`'s rows for the metric (best first), JSON-ready."""
    if metric not in results.metrics:
        raise ChartError(f"no numeric column {metric!r} in the table (columns: {', '.join(results.metrics) or 'none'})")
    if maximize is None:
        maximize = results.objective.maximize if results.objective is not None else True
    return records(summarize(results.frame, metric, maximize, by))


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows as JSON-ready dicts: NaN and NA become None, times become ISO text."""
    return [{name: json_value(value) for name, value in row.items()} for row in frame.to_dict(orient="records")]


def json_value(value: Any) -> Any:
    """A cell as JSON can hold it: None for every kind of missing (None, NaN, NA, NaT)."""
    import pandas as pd

    if value is None or (not isinstance(value, (str, bytes)) and pd.isna(value)):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value
