"""What a run has to do: for each experiment, which tasks are done already and which to run.

A rerun of the same command skips done tasks. When the user edits the grid, the identity of a
task (its key: commands, values, repeat) tells which done tasks still apply; they keep their
folders and ids, new tasks get ids of their own, and nothing is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

from patas.common.config import Experiment
from patas.common.errors import ConfigError
from patas.common.lab import ExperimentLab, Outcome
from patas.common.sweep import Task, tasks


@dataclass(frozen=True)
class PlannedTask:
    """A task to run in this run, with the folder id and attempt number it gets."""

    experiment_id: int
    experiment: Experiment
    task: Task
    task_id: int
    first_attempt: int

    @property
    def max_tries(self) -> int:
        return self.experiment.max_tries


@dataclass
class LabHistory:
    """What the journal and the task folders say about earlier runs of one experiment."""

    task_ids: dict[str, int] = field(default_factory=dict)  # key → task id
    keys_by_id: dict[int, str] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)  # keys whose last done attempt stands and whose folder exists
    last_attempt: dict[str, int] = field(default_factory=dict)
    folders: set[int] = field(default_factory=set)

    @classmethod
    def read(cls, lab: ExperimentLab) -> "LabHistory":
        history = cls(folders=lab.task_folders())
        for record in lab.read_journal():
            history.task_ids[record.key] = record.task_id
            history.keys_by_id[record.task_id] = record.key
            history.last_attempt[record.key] = max(record.attempt, history.last_attempt.get(record.key, 0))
            if record.outcome is Outcome.DONE:
                history.done.add(record.key)
            elif record.outcome is Outcome.REPLACING:
                history.done.discard(record.key)  # a crash while its output was being replaced
        history.done = {key for key in history.done if history.task_ids[key] in history.folders}
        return history


@dataclass
class ExperimentPlan:
    experiment_id: int
    experiment: Experiment
    lab: ExperimentLab
    history: LabHistory
    redo: bool
    changes: list[str]
    done: int  # tasks of this definition already done (skipped unless redo)
    obsolete: int  # done tasks of an earlier definition that this one no longer has

    @property
    def total(self) -> int:
        return self.experiment.task_count

    @property
    def to_run(self) -> int:
        return self.total if self.redo else self.total - self.done

    def pending(self, task_filter: "TaskFilter | None" = None) -> Iterator[PlannedTask]:
        """The tasks to run, lazily, in grid order."""
        history = self.history
        repeat = self.experiment.repeat
        spare_id = max(max(history.keys_by_id, default=-1), self.total - 1) + 1
        for task in tasks(self.experiment):
            if task.key in history.done and not self.redo:
                continue
            task_id = history.task_ids.get(task.key)
            if task_id is None:
                natural = task.natural_id(repeat)
                if history.keys_by_id.get(natural, task.key) == task.key:
                    task_id = natural
                else:  # an earlier definition's task holds that id: keep both
                    task_id, spare_id = spare_id, spare_id + 1
            if task_filter is not None and not task_filter.accepts(self.experiment.name, task_id):
                continue
            yield PlannedTask(self.experiment_id, self.experiment, task, task_id, self._first_attempt(task, task_id))

    def _first_attempt(self, task: Task, task_id: int) -> int:
        previous = self.history.last_attempt.get(task.key, 0)
        if task_id in self.history.folders:
            previous = max(previous, self.lab.attempts_on_disk(task_id))
        return previous + 1


@dataclass(frozen=True)
class TaskFilter:
    """`--filter-tasks [EXP:]A:B` (also `A:`, `:B`, `A`): task ids from A to B, inclusive."""

    experiment: str | None
    first: int | None
    last: int | None

    @classmethod
    def parse(cls, text: str) -> "TaskFilter":
        parts = text.split(":")
        experiment = None
        if len(parts) == 3 or (len(parts) == 2 and parts[0] and not parts[0].isdigit()):
            experiment = parts.pop(0)
        if len(parts) > 2 or not all(p.isdigit() or p == "" for p in parts) or not any(parts):
            raise ConfigError(f"--filter-tasks '{text}': expected [EXP:]A:B with task ids (A:, :B and A work too)")
        first = int(parts[0]) if parts[0] else None
        last = first if len(parts) == 1 else (int(parts[1]) if parts[1] else None)
        return cls(experiment, first, last)

    def accepts(self, experiment: str, task_id: int) -> bool:
        if self.experiment is not None and experiment != self.experiment:
            return True
        return (self.first is None or task_id >= self.first) and (self.last is None or task_id <= self.last)


def plan_experiment(experiment_id: int, experiment: Experiment, lab: ExperimentLab, redo: bool) -> ExperimentPlan:
    history = LabHistory.read(lab)
    previous = lab.read_definition()
    changes = describe_changes(previous, experiment.to_record()) if previous else []
    if not history.done:
        done = obsolete = 0
    elif changes and any(not line.startswith(("workdir", "max_tries", "timeout")) for line in changes):
        current = {t.key for t in tasks(experiment)}
        done = len(history.done & current)
        obsolete = len(history.done) - done
    else:
        done, obsolete = len(history.done), 0
    return ExperimentPlan(experiment_id, experiment, lab, history, redo, changes, done, obsolete)


def describe_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """One short line per difference between two experiment records."""
    changes = []
    for key in ("workdir", "repeat", "max_tries", "timeout"):
        if old.get(key) != new.get(key):
            changes.append(f"{key}: {old.get(key)} → {new.get(key)}")
    if old.get("cmd") != new.get("cmd"):
        changes.append(f"cmd: {old.get('cmd')} → {new.get('cmd')}")
    old_vars = {v["name"]: v for v in old.get("vars", [])}
    new_vars = {v["name"]: v for v in new.get("vars", [])}
    for name in old_vars.keys() - new_vars.keys():
        changes.append(f"variable {name} removed")
    for name in new_vars.keys() - old_vars.keys():
        changes.append(f"variable {name} added")
    for name in old_vars.keys() & new_vars.keys():
        if old_vars[name] != new_vars[name]:
            changes.append(_variable_change(name, old_vars[name], new_vars[name]))
    return changes


def _variable_change(name: str, old: dict[str, Any], new: dict[str, Any]) -> str:
    if "values" in old and "values" in new:
        before, after = [str(v) for v in old["values"]], [str(v) for v in new["values"]]
        added = [v for v in after if v not in before]
        removed = [v for v in before if v not in after]
        parts = ([f"+{' +'.join(added)}"] if added else []) + ([f"-{' -'.join(removed)}"] if removed else [])
        return f"variable {name}: {' '.join(parts) or 'values reordered'}"
    return f"variable {name}: {_range_text(old)} → {_range_text(new)}"


def _range_text(variable: dict[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in variable.items() if key != "name")
