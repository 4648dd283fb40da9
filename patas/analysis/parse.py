"""`patas parse`: collect values from an experiment's task outputs into one table.

The journal is read once for every task's metadata; only the output files are read per task, by
a pool of processes (see `scan`). A task is in the table when it is done (a `done` record and its
folder) and belongs to the current experiment definition; unfinished tasks and tasks of an
earlier definition ("obsolete", whose key the current grid no longer produces) are counted and
left out unless asked for.
"""

from __future__ import annotations

import enum
import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from patas.analysis.patterns import (
    Pattern,
    UnmatchedError,
    compile_breaker,
    compile_pattern,
    compile_patterns,
    last_match,
    shell_quoted,
)
from patas.analysis.scan import Scan, ScanJob, Values, read_text, scan
from patas.analysis.table import ColumnType, Table, check_destination, typed, value_type
from patas.analysis.query import default_lab_hint, find_tables
from patas.analysis.trials import (
    TRIAL_COLUMN,
    TRIAL_STATE_COLUMN,
    Objective,
    reports_path,
    reports_table,
    search_objective,
    trial_states,
)
from patas.common.errors import LabError
from patas.common.lab import DEFINITION_FILE, JOURNAL_FILE, STDERR, STDOUT, AttemptRecord, ExperimentLab, Outcome

if TYPE_CHECKING:
    import pandas as pd

    from patas.common.config import Experiment

log = logging.getLogger(__name__)

INPUT_PREFIX = "in_"
# The original patas's extra columns, in its order, with their types (so that even a table
# without rows has them, e.g. for DuckDB reading its CSV).
EXTRA_COLUMN_TYPES = {
    "break_id": ColumnType.INTEGER, "task_id": ColumnType.INTEGER, "repeat_id": ColumnType.INTEGER,
    "combination_id": ColumnType.INTEGER, "experiment_id": ColumnType.INTEGER,
    "experiment_name": ColumnType.STRING, "tries": ColumnType.INTEGER, "max_tries": ColumnType.INTEGER,
    "duration": ColumnType.NUMBER, "started_at": ColumnType.DATETIME, "ended_at": ColumnType.DATETIME,
    "cluster_name": ColumnType.STRING, "node_name": ColumnType.STRING, "cluster_in_lab": ColumnType.INTEGER,
    "node_in_lab": ColumnType.INTEGER, "node_in_cluster": ColumnType.INTEGER,
    "worker_in_lab": ColumnType.INTEGER, "worker_in_cluster": ColumnType.INTEGER,
    "worker_in_node": ColumnType.INTEGER, "output_dir": ColumnType.STRING, "work_dir": ColumnType.STRING,
}  # fmt: skip
EXTRA_COLUMNS = tuple(EXTRA_COLUMN_TYPES)
# The shipped code's version (--ship), after the extra columns, in a table where some task ran
# shipped code (empty for a task that did not): a table of runs that shipped nothing is unchanged.
CODE_COLUMN_TYPES = {"code_digest": ColumnType.STRING, "code_commit": ColumnType.STRING, "code_dirty": ColumnType.STRING}
# A search's tables also say each task's trial and the trial's state in the study.
TRIAL_COLUMN_TYPES = {TRIAL_COLUMN: ColumnType.INTEGER, TRIAL_STATE_COLUMN: ColumnType.STRING}
# Outcomes whose attempt committed the task's output: done, or stopped early by a search's pruner.
COMMITTED = frozenset({Outcome.DONE, Outcome.PRUNED})
OUTCOME_COLUMN = "outcome"  # only with include_unfinished, to tell unfinished rows apart
PENDING = "pending"  # in the definition, no attempt finished yet (not run, or running)


class Streams(enum.Enum):
    """Which of a task's outputs the patterns are searched in."""

    STDOUT = "stdout"
    STDERR = "stderr"
    BOTH = "both"

    @property
    def files(self) -> tuple[str, ...]:
        return (STDOUT, STDERR) if self is Streams.BOTH else (self.value,)


@dataclass(frozen=True)
class ParseResult:
    """The table (and where it was written, if it was), and what was left out of it or found nothing."""

    table: Table
    path: Path | None  # None: not written
    tasks: int  # tasks in the table
    unfinished: dict[str, int] = field(default_factory=dict)  # outcome (or "pending") → tasks
    unfinished_included: bool = False
    obsolete: int = 0  # done tasks of an earlier definition
    obsolete_included: bool = False
    unmatched: tuple[Pattern, ...] = ()  # patterns that matched in no task (only with allow_empty)

    def to_frame(self) -> pd.DataFrame:
        return self.table.to_frame()


def parse(
    experiment_dir: str | Path,
    patterns: Mapping[str, str] | Iterable[tuple[str, str]],
    *,
    breakers: Sequence[str] = (),
    output: str | Path | None = None,
    streams: Streams | str = Streams.STDOUT,
    include_unfinished: bool = False,
    include_obsolete: bool = False,
    allow_empty: bool = False,
    workers: int | None = None,
) -> pd.DataFrame:
    """The parsed table of an experiment as a DataFrame, also written to `output` when given.

    Warnings (tasks left out) are logged; errors are `PatasError`s, see `parse_experiment`.
    Example: parse("pataslab/grid", {"test_acc": r"Test accuracy: +(@float@)"})
    """
    result = parse_experiment(
        experiment_dir, patterns, breakers=breakers, output=output, streams=streams,
        include_unfinished=include_unfinished, include_obsolete=include_obsolete,
        allow_empty=allow_empty, workers=workers,
    )  # fmt: skip
    for line in report_lines(result):
        log.warning(line)
    return result.to_frame()


def objective_table(experiment_dir: str | Path, objective: Objective) -> pd.DataFrame:
    """A search's table with its objective parsed now, in memory (nothing written): what the
    dashboard, `patas summary` and `patas draw` read of a search, with no -p to give."""
    return parse_experiment(experiment_dir, {objective.name: objective.pattern}, allow_empty=True, workers=1).to_frame()


def unparsed_search_table(given: str | Path) -> pd.DataFrame | None:
    """The objective table of a search folder that `patas parse` has written no table in; None
    for anything else (a grid's folder, a folder with a table, a file)."""
    objective = search_objective(given)
    if objective is None or find_tables([Path(given)]):
        return None
    return objective_table(given, objective)


def parse_experiment(
    experiment_dir: str | Path,
    patterns: Mapping[str, str] | Iterable[tuple[str, str]],
    *,
    breakers: Sequence[str] = (),
    output: str | Path | None = None,
    streams: Streams | str = Streams.STDOUT,
    include_unfinished: bool = False,
    include_obsolete: bool = False,
    allow_empty: bool = False,
    workers: int | None = None,
) -> ParseResult:
    """Collect each pattern's value from every task's output into a table.

    The table is written only when `output` is given (CSV and its schema, or Parquet for
    .parquet; see `default_output`), replacing the old file only once complete, and only when
    every pattern matched somewhere: a pattern or breaker that matches in no task raises
    `UnmatchedError` and leaves the old table as it was, unless `allow_empty`.
    """
    compiled = compile_patterns(patterns)
    breaker_regexes = [compile_breaker(b) for b in breakers]
    streams = Streams(streams)
    lab = open_experiment(experiment_dir)
    search = _search_definition(lab)
    if search is not None:
        compiled = _with_objective(compiled, search)
    regexes = [p.regex for p in compiled]
    path = Path(output) if output is not None else None
    if path is not None:
        check_destination(path)
    folders = lab.task_folders()
    jobs = [ScanJob(t, _output_paths(lab, t, None, streams)) for t in sorted(folders)]
    # The pool reads the outputs while this process reads the journal and the definition.
    with Scan(jobs, regexes, breaker_regexes, workers) as running:
        selection = select_tasks(lab, folders, include_unfinished, include_obsolete)
        found = running.result()
    unfinished = [r for r in selection.records if r.outcome not in COMMITTED]
    jobs = [ScanJob(r.task_id, _output_paths(lab, r.task_id, r.attempt, streams)) for r in unfinished]
    found.update(scan(jobs, regexes, breaker_regexes, workers=1))
    states = trial_states(lab, search) if search is not None else None
    table = build_table(lab, selection, compiled, found, include_unfinished, states)
    unmatched = unmatched_patterns(compiled, [found.get(r.task_id, []) for r in selection.records])
    if not allow_empty and selection.records:
        check_matched(Found(Path(experiment_dir), lab, selection.records, streams), unmatched, breakers, len(table))
    if path is not None:
        table.write(path)
        reports = reports_table(lab, [r for r in selection.records if r.outcome in COMMITTED], search, states or {}) if search else None
        if reports is not None:
            reports.write(reports_path(path))
    return ParseResult(
        table, path, len(selection.records), selection.unfinished, include_unfinished,
        selection.obsolete, include_obsolete, unmatched,
    )  # fmt: skip


def _search_definition(lab: ExperimentLab) -> "Experiment | None":
    """The recorded definition when the experiment is a search (its tables gain trial columns)."""
    if not os.path.lexists(lab.definition_path):
        return None
    from patas.common.config import load_experiment

    experiment = load_experiment(lab.definition_path)
    return experiment if experiment.search is not None else None


def _with_objective(patterns: tuple[Pattern, ...], experiment: "Experiment") -> tuple[Pattern, ...]:
    """A search's table always has its objective's column (unless a -p of that name replaces it)."""
    objective = experiment.search.objective  # type: ignore[union-attr]
    if any(p.name == objective.name for p in patterns):
        return patterns
    return (compile_pattern(objective.name, objective.pattern, f"--objective {objective.direction.value}"), *patterns)


def unmatched_patterns(patterns: Sequence[Pattern], rows: Iterable[list[Values]]) -> tuple[Pattern, ...]:
    """The patterns that matched in none of the rows (an empty match is a match).

    With no rows at all none is reported: the lines about tasks left out say why the table is empty.
    """
    missing = set(range(len(patterns)))
    seen = False
    for task_rows in rows:
        for row in task_rows:
            seen = True
            missing.difference_update([i for i in missing if row[i] is not None])
            if not missing:
                return ()
    return tuple(patterns[i] for i in sorted(missing)) if seen else ()


def default_output(experiment_dir: str | Path) -> Path:
    """Where `patas parse` writes an experiment's table: `<experiment_dir>/<experiment>.csv`."""
    lab = open_experiment(experiment_dir)
    return lab.path / f"{lab.name}.csv"


@dataclass(frozen=True)
class Found:
    """Where the patterns were searched: for the messages of `check_matched`."""

    given: Path  # the experiment folder as the user wrote it
    lab: ExperimentLab
    records: list[AttemptRecord]
    streams: Streams


def check_matched(where: Found, unmatched: Sequence[Pattern], breakers: Sequence[str], rows: int) -> None:
    """Raise `UnmatchedError` when the breakers cut no row or some pattern has no value in any row."""
    tasks = f"{len(where.records)} task{'' if len(where.records) == 1 else 's'}"
    output = "output" if where.streams is Streams.BOTH else where.streams.value
    if breakers and rows == 0:
        named = " or ".join(f"-n {shell_quoted(b)}" for b in breakers)
        raise UnmatchedError(f"{named}: matched no line in the {output} of any of the {tasks} (so there is no row)")
    if not unmatched:
        return
    named = " and ".join(f"-p {p.name} {shell_quoted(p.text)}" for p in unmatched)
    blocks = "any block (a -n line ends one; what follows the last is no row) of " if breakers else ""
    message = f"{named}: matched nothing in {blocks}the {output} of any of the {tasks}"
    other = _other_stream(where, unmatched)
    if other is not None:
        raise UnmatchedError(f"{message}, but matches in their {other.value} (add --stream both)")
    sample = where.given / str(where.records[0].task_id) / where.streams.files[0]
    raise UnmatchedError(f"{message} (compare it with {sample}, or add --allow-empty to keep the column empty)")


def _other_stream(where: Found, patterns: Sequence[Pattern]) -> Streams | None:
    """The stream not searched, if some pattern matches there in some task (read only on this error path)."""
    if where.streams is Streams.BOTH:
        return None
    other = Streams.STDERR if where.streams is Streams.STDOUT else Streams.STDOUT
    for record in where.records:
        attempt = None if record.outcome in COMMITTED else record.attempt
        text = read_text(_output_paths(where.lab, record.task_id, attempt, other))
        if any(last_match(p.regex, text) for p in patterns):
            return other
    return None


def report_lines(result: ParseResult) -> list[str]:
    """Warnings about the parse, one line each: tasks left out or included unfinished, empty patterns."""
    lines = []
    # Tasks whose last attempt ended without output to commit, which --include-unfinished takes;
    # pending ones have no ended attempt, so no row either way.
    ended = {outcome: n for outcome, n in result.unfinished.items() if outcome != PENDING}
    if ended:
        detail = ", ".join(f"{n} {outcome}" for outcome, n in sorted(ended.items()))
        verdict = (
            f"included with column '{OUTCOME_COLUMN}'"
            if result.unfinished_included
            else "left out (add --include-unfinished to keep them)"
        )
        lines.append(f"{_tasks_are(sum(ended.values()))} not done ({detail}); {verdict}")
    if result.unfinished.get(PENDING):
        lines.append(f"{_tasks_are(result.unfinished[PENDING])} pending (not run yet, or still running): no row until done")
    if result.obsolete:
        verdict = "included" if result.obsolete_included else "left out (add --include-obsolete to keep them)"
        lines.append(f"{_tasks_are(result.obsolete)} done but not in the current experiment definition; {verdict}")
    for pattern in result.unmatched:
        lines.append(f"pattern '{pattern.name}' matched nothing in any task (column {pattern.column} is empty)")
    return lines


def _tasks_are(count: int) -> str:
    return "1 task is" if count == 1 else f"{count} tasks are"


def open_experiment(experiment_dir: str | Path) -> ExperimentLab:
    """The experiment in `experiment_dir`, or an error saying which folder to give instead."""
    given = Path(experiment_dir).expanduser()
    path = given.absolute()
    if not path.exists():
        raise LabError(f"{experiment_dir}: no such folder{default_lab_hint(given) or _experiments_hint(given.parent)}")
    if not path.is_dir():
        raise LabError(f"{experiment_dir}: not a folder; give an experiment folder such as pataslab/grid")
    if not (path / JOURNAL_FILE).exists() and not (path / DEFINITION_FILE).exists():
        hint = _experiments_hint(given) or " (run `patas explore` first)"
        raise LabError(f"{experiment_dir}: not an experiment folder (no {JOURNAL_FILE}){hint}")
    return ExperimentLab(path.parent, path.name)


def _experiments_hint(folder: Path) -> str:
    """The experiments in `folder`, written as the folder was given (the user's own words)."""
    try:
        names = sorted(p.name for p in folder.iterdir() if (p / JOURNAL_FILE).exists())
    except OSError:
        return ""
    if not names:
        return ""
    shown = ", ".join(str(folder / n) for n in names[:5])
    return f" (experiments there: {shown})"


@dataclass(frozen=True)
class Selection:
    """The tasks whose outputs go in the table, the variables they have, and what was left out."""

    records: list[AttemptRecord]  # the committed (or, for unfinished tasks, latest) record
    variables: list[str]
    unfinished: dict[str, int]
    obsolete: int


def select_tasks(lab: ExperimentLab, folders: set[int], include_unfinished: bool, include_obsolete: bool) -> Selection:
    """Which tasks to parse, from one read of the journal and the task folders on disk.

    A record's combination_id and repeat_id are those of the current definition, not the ones
    journaled when it ran: adding a value to a variable renumbers the combinations, and a table
    that mixed both numberings would group unrelated tasks together. Obsolete tasks (included
    only on request) have no combination in the current definition: their ids are empty."""
    committed: dict[int, AttemptRecord] = {}
    latest: dict[int, AttemptRecord] = {}
    for record in lab.read_journal():
        latest[record.task_id] = record
        if record.outcome in COMMITTED:
            committed[record.task_id] = record
        elif record.outcome is Outcome.REPLACING:
            committed.pop(record.task_id, None)  # its committed output was being replaced
    done = {t: r for t, r in committed.items() if t in folders}
    definition = _definition(lab)
    current = (lambda r: True) if definition is None else (lambda r: r.key in definition.ids)
    chosen = [r for r in done.values() if include_obsolete or current(r)]
    obsolete = sum(1 for r in done.values() if not current(r))
    # Tasks whose last attempt ended without a committed output: failed, timed out, lost.
    stopped = [r for t, r in latest.items() if t not in done and current(r)]
    unfinished = Counter(_status(r) for r in stopped)
    if definition is not None:
        seen = {r.key for r in done.values()} | {r.key for r in stopped}
        unfinished[PENDING] = len(definition.ids.keys() - seen)
    if include_unfinished:
        chosen += stopped
    chosen.sort(key=lambda r: r.task_id)
    if definition is not None:
        for record in chosen:
            definition.renumber(record)
    names = set(definition.variables if definition else ()).union(*(r.values for r in chosen))
    return Selection(chosen, sorted(names), {k: n for k, n in unfinished.items() if n}, obsolete)


def _status(record: AttemptRecord) -> str:
    # A done task without its folder was deleted by the user so that the next run redoes it.
    return "without output folder" if record.outcome is Outcome.DONE else record.outcome.value


@dataclass(frozen=True)
class Definition:
    """The current experiment definition, as parse needs it."""

    ids: dict[str, int]  # task key → its index in the grid: combination_id * repeat + repeat_id
    repeat: int
    variables: list[str]

    def renumber(self, record: AttemptRecord) -> None:
        """Give the record the combination and repeat ids this definition gives its task.

        In place: the records are this parse's own, and copying each would cost more than the
        rest of its row."""
        index = self.ids.get(record.key)
        if index is None:
            record.combination_id = record.repeat_id = None  # type: ignore[assignment]
        else:
            record.combination_id, record.repeat_id = divmod(index, self.repeat)


def _definition(lab: ExperimentLab) -> Definition | None:
    """The current definition's task keys and variable names (None without a definition)."""
    if not os.path.lexists(lab.definition_path):
        return None
    from patas.common.config import load_experiment
    from patas.common.sweep import tasks

    experiment = load_experiment(lab.definition_path)
    if experiment.search is not None:
        return None  # a search's tasks are its trials, whichever study made them: all current
    ids = {t.key: index for index, t in enumerate(tasks(experiment))}
    return Definition(ids, experiment.repeat, [v.name for v in experiment.variables])


def _output_paths(lab: ExperimentLab, task_id: int, attempt: int | None, streams: Streams) -> tuple[str, ...]:
    """The committed output files of a task, or those of one attempt (strings: see ScanJob)."""
    folder = f"{lab.path}/{task_id}"
    if attempt is None:
        return tuple(f"{folder}/{name}" for name in streams.files)
    return tuple(f"{folder}/attempt-{attempt}.{name}" for name in streams.files)


def build_table(
    lab: ExperimentLab,
    selection: Selection,
    patterns: Sequence[Pattern],
    found: dict[int, list[Values]],
    with_outcome: bool,
    trials: dict[int, tuple[int, str]] | None = None,
) -> Table:
    """One row per task (per block with breakers): inputs, outputs, then the extra columns."""
    with_code = any(record.code is not None for record in selection.records)
    names = (
        [INPUT_PREFIX + v for v in selection.variables]
        + [p.column for p in patterns]
        + list(EXTRA_COLUMNS)
        + (list(CODE_COLUMN_TYPES) if with_code else [])
        + ([OUTCOME_COLUMN] if with_outcome else [])
        + ([TRIAL_COLUMN, TRIAL_STATE_COLUMN] if trials is not None else [])
    )
    rows = []
    root = str(lab.path)
    for record in selection.records:
        inputs = [record.values.get(v) for v in selection.variables]
        code = _code_values(record) if with_code else []
        for break_id, values in enumerate(found.get(record.task_id, ())):
            extra = _extra_values(root, record, break_id)
            trial = list(trials.get(record.task_id, (None, ""))) if trials is not None else []
            rows.append(inputs + list(values) + extra + code + ([record.outcome.value] if with_outcome else []) + trial)
    columns = list(zip(*rows)) if rows else [()] * len(names)
    declared = (
        {p.column: p.kind for p in patterns} | EXTRA_COLUMN_TYPES | CODE_COLUMN_TYPES | {OUTCOME_COLUMN: ColumnType.STRING} | TRIAL_COLUMN_TYPES
    )
    data, types = {}, {}
    for index, name in enumerate(names):
        values = list(columns[index])
        if index < len(selection.variables) + len(patterns):
            data[name], kind = typed(values, declared.get(name))
        else:
            data[name], kind = values, declared.get(name) or value_type(values)
        if kind is not None:
            types[name] = kind
    return Table(data, types)


def _extra_values(root: str, record: AttemptRecord, break_id: int) -> list[object]:
    return [
        break_id, record.task_id, record.repeat_id, record.combination_id, record.experiment_id,
        record.experiment_name, record.attempt, record.max_tries, round(record.duration, 6),
        datetime.fromtimestamp(record.started_at), datetime.fromtimestamp(record.ended_at),
        record.cluster_name, record.node_name, record.cluster_in_lab, record.node_in_lab,
        record.node_in_cluster, record.worker_in_lab, record.worker_in_cluster,
        record.worker_in_node, f"{root}/{record.task_id}", record.work_dir,
    ]  # fmt: skip


def _code_values(record: AttemptRecord) -> list[object]:
    code = record.code
    if code is None:
        return ["", "", ""]
    return [code.digest, code.commit, ("true" if code.dirty else "false") if code.commit else ""]
