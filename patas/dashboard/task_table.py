"""The experiment page's table of tasks: every task's state, inputs and parsed outputs.

Finished attempts come from the journal (`ExperimentLab.read_journal`), running ones from the
live status (`patas.analysis.status`), the tasks not started yet from the run's own plan
(`patas.broker.run.plan`, which also gives them the ids a run will), and the `out_*` values from
the parsed table (`results`). A grid of millions of tasks is not listed whole: the table stops
at `MAX_ROWS`, finished and running tasks first.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from patas.analysis.parse import INPUT_PREFIX
from patas.analysis.summary import OUTPUT_PREFIX
from patas.common.errors import PatasError
from patas.common.lab import AttemptRecord, ExperimentLab, Outcome

if TYPE_CHECKING:
    from patas.analysis.status import ExperimentStatus
    from patas.dashboard.results import Results

MAX_ROWS = 5000


class TaskState(enum.Enum):
    DONE = "done"
    RUNNING = "running"
    FAILED = "failed"  # its last attempt failed, timed out or was lost; it may be tried again
    PENDING = "pending"  # no attempt has ended yet


@dataclass
class TaskRow:
    task_id: int
    state: str
    attempt: int | None = None
    node: str = ""
    seconds: float | None = None  # how long its last attempt ran (or runs, so far)
    failure: str = ""  # how its last attempt failed
    values: dict[str, Any] = field(default_factory=dict)  # in_* and out_* columns

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id, "state": self.state, "attempt": self.attempt, "node": self.node,
            "seconds": None if self.seconds is None else round(self.seconds, 3), "failure": self.failure, **self.values,
        }  # fmt: skip


def task_table(lab: ExperimentLab, status: ExperimentStatus, results: Results) -> dict[str, Any]:
    """{"columns": [...], "rows": [...], "truncated": bool} for the experiment page."""
    rows = _finished(lab)
    for running in status.running_tasks:
        rows[running.task_id] = TaskRow(
            running.task_id, TaskState.RUNNING.value, running.attempt, running.node, running.elapsed_s,
            values={INPUT_PREFIX + k: v for k, v in running.values.items()},
        )  # fmt: skip
    ordered = sorted(rows.values(), key=lambda r: r.task_id)[:MAX_ROWS]
    ordered += _pending(lab, set(rows), MAX_ROWS - len(ordered))
    _add_outputs(ordered, results)
    names = sorted({k for r in ordered for k in r.values if k.startswith(INPUT_PREFIX)})
    names += sorted({k for r in ordered for k in r.values if k.startswith(OUTPUT_PREFIX)})
    total = status.total if status.total is not None else len(rows)
    return {
        "columns": ["task_id", "state", "attempt", "node", "seconds", "failure", *names],
        "rows": [r.to_json() for r in ordered],
        "truncated": len(ordered) < max(total, len(rows)),
    }


def _finished(lab: ExperimentLab) -> dict[int, TaskRow]:
    """Each task's row from its last finished attempt in the journal."""
    from patas.broker.run.failures import failure_kind

    last: dict[int, AttemptRecord] = {}
    for record in lab.read_journal():
        if record.outcome is not Outcome.REPLACING:
            last[record.task_id] = record
    folders = lab.task_folders()
    rows = {}
    for task_id, record in last.items():
        state = _state(record, task_id in folders)
        failure = failure_kind(record.outcome, record.exit_code, record.error) if state == TaskState.FAILED.value else ""
        values = {INPUT_PREFIX + k: v for k, v in record.values.items()}
        rows[task_id] = TaskRow(task_id, state, record.attempt, record.node_name, record.duration, failure, values)
    return rows


def _state(record: AttemptRecord, has_folder: bool) -> str:
    if record.outcome is Outcome.DONE:
        # A done task whose folder the user deleted is to be done again.
        return TaskState.DONE.value if has_folder else TaskState.PENDING.value
    if record.outcome in (Outcome.FAILED, Outcome.TIMEOUT, Outcome.LOST):
        return TaskState.FAILED.value
    return record.outcome.value  # an outcome a newer patas knows (a search's pruned trials)


def _pending(lab: ExperimentLab, known: set[int], room: int) -> list[TaskRow]:
    """Up to `room` tasks of the recorded definition that have no row yet, with their run ids."""
    if room <= 0 or not lab.definition_path.exists():
        return []
    from patas.broker.run.plan import plan_experiment
    from patas.common.config import load_experiment

    try:
        plan = plan_experiment(0, load_experiment(lab.definition_path), lab, redo=False)
        planned = itertools.islice((p for p in plan.pending() if p.task_id not in known), room)
        return [TaskRow(p.task_id, TaskState.PENDING.value, values={INPUT_PREFIX + k: v for k, v in p.task.values}) for p in planned]
    except (PatasError, OSError):
        return []  # a definition this patas cannot plan: the finished tasks are still shown


def _add_outputs(rows: list[TaskRow], results: Results) -> None:
    """The out_* values of each task's last row in the parsed table."""
    frame = results.frame
    if frame.empty or "task_id" not in frame.columns:
        return
    from patas.dashboard.results import json_value

    outputs = [c for c in frame.columns if c.startswith(OUTPUT_PREFIX)]
    by_task = {int(t): values for t, *values in frame[["task_id", *outputs]].itertuples(index=False)}
    for row in rows:
        values = by_task.get(row.task_id)
        if values is not None:
            row.values.update((name, json_value(v)) for name, v in zip(outputs, values))
