"""What a run has to do: for each experiment, which tasks are done already and which to run.

A rerun of the same command skips done tasks. When the user edits the grid, the identity of a
task (its key: commands, values, repeat) tells which done tasks still apply; they keep their
folders and ids, new tasks get ids of their own, and nothing is deleted.

A task's id is its natural id (its place in the grid), unless the journal recorded it under
another id, or an earlier definition's task holds its natural id: then it gets a spare id beyond
every id in use. `--filter-tasks A:B` selects by id without walking the grid: the tasks whose id
is not their natural one are found from the journal (a bounded set), every other id in A..B is a
natural id, decoded by arithmetic.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Iterator

from patas.broker.run.plan_index import WALK_PER_JOURNAL_TASK, GridHistory
from patas.common.config import Experiment
from patas.common.errors import ConfigError
from patas.common.lab import ExperimentLab, Outcome
from patas.common.sweep import GridPositions, Task, task_at, task_keys, tasks

if TYPE_CHECKING:  # the runs that select tasks by id import it
    from patas.broker.run.task_filter import IdRange, Selection, TaskFilter


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedTask:
    """A task to run in this run, with the folder id and attempt number it gets."""

    experiment_id: int
    experiment: Experiment
    task: Task
    task_id: int
    first_attempt: int
    trial: int | None = None  # the search trial the task belongs to (None: a grid's task)

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
        task_ids, keys_by_id, last_attempt, done = history.task_ids, history.keys_by_id, history.last_attempt, history.done
        for record in lab.read_plan_journal():
            key = record.key
            task_ids[key] = record.task_id
            keys_by_id[record.task_id] = key
            if record.attempt > last_attempt.get(key, 0):
                last_attempt[key] = record.attempt
            if record.outcome is Outcome.DONE:
                done.add(key)
            elif record.outcome is Outcome.REPLACING:
                done.discard(key)  # a crash while its output was being replaced
        history.done = {key for key in done if task_ids[key] in history.folders}
        return history

    # The answers pending() asks for; GridHistory (the plan index) gives the same ones.

    def journal_id(self, natural: int, key: str) -> int | None:
        """The id the journal recorded the task under, None if it has no record of it."""
        return self.task_ids.get(key)

    def id_held_by_other(self, natural: int, key: str) -> bool:
        """Whether another task holds the task's natural id."""
        return self.keys_by_id.get(natural, key) != key

    def last_attempt_of(self, natural: int, key: str) -> int:
        return self.last_attempt.get(key, 0)

    @property
    def max_task_id(self) -> int:
        return max(self.keys_by_id, default=-1)


@dataclass
class ExperimentPlan:
    experiment_id: int
    experiment: Experiment
    lab: ExperimentLab
    history: LabHistory | GridHistory  # GridHistory: the index, which answers pending() but not --filter-tasks
    redo: bool
    changes: list[str]
    done: int  # tasks of this definition already done (skipped unless redo)
    obsolete: int  # done tasks of an earlier definition that this one no longer has
    # 1 at the natural id of each of this grid's done tasks (empty: none is done): pending() finds
    # each run of tasks not done by `bytearray.find` and starts the walk afresh there (by
    # arithmetic) instead of computing the done tasks' keys to skip them.
    done_mask: bytearray = field(default_factory=bytearray)

    @property
    def total(self) -> int:
        return self.experiment.task_count

    @property
    def to_run(self) -> int:
        return self.total if self.redo else self.total - self.done

    def pending(self, task_filter: TaskFilter | None = None) -> Iterator[PlannedTask]:
        """The tasks to run, lazily, in grid order."""
        ids = task_filter.ids_for(self.experiment.name) if task_filter is not None else None
        if ids is not None:
            yield from self._selected(ids)
            return
        history = self.history
        repeat = self.experiment.repeat
        spare_id = max(history.max_task_id, self.total - 1) + 1
        for task in self._not_done():
            natural = task.natural_id(repeat)
            task_id = history.journal_id(natural, task.key)
            if task_id is None:
                if not history.id_held_by_other(natural, task.key):
                    task_id = natural
                else:  # an earlier definition's task holds that id: keep both
                    task_id, spare_id = spare_id, spare_id + 1
            yield PlannedTask(self.experiment_id, self.experiment, task, task_id, self._first_attempt(natural, task, task_id))

    def _not_done(self) -> Iterator[Task]:
        """The grid's tasks, in order, less the done ones unless redo: the tasks between two
        done ones are walked, the done ones jumped over, so a rerun costs its tasks to run."""
        if self.redo:
            yield from tasks(self.experiment)
            return
        done = self.done_mask
        if not done:
            yield from tasks(self.experiment)
            return
        start = done.find(0)
        while start >= 0:
            end = done.find(1, start)
            end = self.total if end < 0 else end
            yield from itertools.islice(tasks(self.experiment, start), end - start)
            start = done.find(0, end)

    def selection(self, task_filter: TaskFilter) -> Selection:
        """How many tasks the filter selects in this experiment, and how many of those are done,
        counted without walking the grid."""
        from patas.broker.run.task_filter import Selection

        ids = task_filter.ids_for(self.experiment.name)
        if ids is None:
            return Selection(self.total, self.done)
        moved = self._moved.ids
        last = self.total - 1 if ids.last is None else min(ids.last, self.total - 1)
        natural = max(0, last - ids.first + 1) - sum(1 for n in moved if ids.first <= n <= last)
        elsewhere = sum(1 for task_id in moved.values() if task_id in ids)
        done = sum(1 for task_id in self._moved.done_ids if task_id in ids)
        return Selection(natural + elsewhere, done)

    @property
    def last_task_id(self) -> int:
        """The highest id a task of this definition has (ids are not always contiguous)."""
        return max(self.total - 1, max(self._moved.ids.values(), default=-1))

    def _selected(self, ids: IdRange) -> Iterator[PlannedTask]:
        """The pending tasks whose id is in `ids`, in grid order: natural ids in the range,
        decoded by arithmetic, merged with the moved tasks whose id is in the range."""
        moved = self._moved.ids
        last = self.total - 1 if ids.last is None else min(ids.last, self.total - 1)
        in_place = (
            (task.natural_id(self.experiment.repeat), task)
            for task in itertools.islice(tasks(self.experiment, ids.first), max(0, last - ids.first + 1))
        )
        in_place = ((n, task) for n, task in in_place if n not in moved)
        away = ((n, task_at(self.experiment, n)) for n in sorted(n for n, task_id in moved.items() if task_id in ids))
        for natural, task in heapq.merge(in_place, away, key=lambda pair: pair[0]):
            if task.key in self._journal.done and not self.redo:
                continue
            task_id = moved.get(natural, natural)
            yield PlannedTask(self.experiment_id, self.experiment, task, task_id, self._first_attempt(natural, task, task_id))

    @cached_property
    def _moved(self) -> "MovedTasks":
        return MovedTasks.find(self.experiment, self._journal, self.lab)

    @property
    def _journal(self) -> LabHistory:
        assert isinstance(self.history, LabHistory), "a plan from the index cannot filter tasks (plan_run reads the journal then)"
        return self.history

    def _first_attempt(self, natural: int, task: Task, task_id: int) -> int:
        previous = self.history.last_attempt_of(natural, task.key)
        if task_id in self.history.folders:
            previous = max(previous, self.lab.attempts_on_disk(task_id))
        return previous + 1


@dataclass(frozen=True)
class MovedTasks:
    """The tasks of a definition whose id is not their natural id, found from the journal."""

    ids: dict[int, int]  # natural id → task id
    done_ids: tuple[int, ...]  # the ids of the done tasks that this definition has
    done_naturals: tuple[int, ...]  # their natural ids (their places in the grid), in the same order

    @classmethod
    def find(cls, experiment: Experiment, history: LabHistory, lab: ExperimentLab) -> "MovedTasks":
        """Costs one read of the journal and one task per journal key, never a walk of the grid."""
        total = experiment.task_count
        positions = GridPositions(experiment)
        ids: dict[int, int] = {}
        done_ids = []
        done_naturals = []
        seen: set[str] = set()
        for record in lab.read_plan_journal():
            if record.key in seen:
                continue
            seen.add(record.key)
            natural = positions.natural_id(record.values, record.repeat_id)
            if natural is None or task_at(experiment, natural).key != record.key:
                continue  # an earlier definition's task, not in this grid
            task_id = history.task_ids[record.key]
            if task_id != natural:
                ids[natural] = task_id
            if record.key in history.done:
                done_ids.append(task_id)
                done_naturals.append(natural)
        # As in ExperimentPlan.pending: a task the journal does not know, whose natural id an
        # earlier definition's task holds, takes the next spare id, in grid order.
        spare = itertools.count(max(history.max_task_id, total - 1) + 1)
        for natural in sorted(n for n in history.keys_by_id if n < total):
            key = task_at(experiment, natural).key
            if key not in history.task_ids and history.keys_by_id[natural] != key:
                ids[natural] = next(spare)
        return cls(ids, tuple(done_ids), tuple(done_naturals))


def plan_experiment(experiment_id: int, experiment: Experiment, lab: ExperimentLab, redo: bool, use_index: bool = False) -> ExperimentPlan:
    """What is done and what to run. With `use_index`, the journal is read through the plan index
    (see plan_index), and the plan cannot select tasks by id (`pending(task_filter)`)."""
    previous = lab.read_definition()
    changes = describe_changes(previous, experiment.to_record()) if previous else []
    if use_index:
        indexed = GridHistory.read(experiment, lab)
        indexed.folders = lab.task_folders()
        done_mask = indexed.done_mask()
        return ExperimentPlan(experiment_id, experiment, lab, indexed, redo, changes, done_mask.count(1), indexed.other_done(), done_mask)
    history = LabHistory.read(lab)
    done_mask = bytearray()
    if history.done:
        # Which done tasks this grid still has: walk the grid or locate the journal's tasks in it,
        # whichever costs less (a 10^23-task grid is never walked). Even when the definition is
        # the one recorded last, the journal may hold done tasks of an older one (a grid that was
        # narrowed), so the count is never taken from the journal alone.
        if experiment.task_count <= WALK_PER_JOURNAL_TASK * len(history.task_ids):
            done_mask = bytearray(map(history.done.__contains__, task_keys(experiment)))
        else:
            done_mask = bytearray(experiment.task_count)
            for natural in MovedTasks.find(experiment, history, lab).done_naturals:
                done_mask[natural] = 1
    done = done_mask.count(1)
    obsolete = len(history.done) - done
    return ExperimentPlan(experiment_id, experiment, lab, history, redo, changes, done, obsolete, done_mask)


def save_indexes(plans: list[ExperimentPlan]) -> None:
    """Bring the plan index of each experiment planned through one up to date with its journal
    and write it, so the next rerun reads only what was appended since. The index is a cache:
    failing to write it is logged, not an error."""
    for plan in plans:
        if isinstance(plan.history, GridHistory):
            plan.history.catch_up(plan.experiment, plan.lab)
            try:
                plan.history.save(plan.lab)
            except OSError as error:
                log.warning("%s: cannot write the plan index (%s); the next rerun reads the whole journal", plan.lab.path, error)


def check_grid_folder(lab: ExperimentLab) -> None:
    """Refuse to run a grid in a folder that holds a search's trials (as a search is refused in a
    grid's): the two would mix their tasks, and the study would count the grid's as its own."""
    previous = lab.read_definition() if lab.journal_path.exists() else None
    if previous is not None and isinstance(previous.get("search"), dict):
        kind = previous["search"].get("type", "")
        raise ConfigError(f"{lab.path} holds the trials of a {kind} search; give the grid a folder of its own (--name NAME)")


_SETTINGS_SHOWN_FIRST = ("workdir", "repeat", "max_tries", "timeout")


def describe_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """One short line per difference between two experiment records: every key of the record
    (a grid becoming a search, a changed `ship:`...), the variables one by one."""
    changes = []
    for key in _SETTINGS_SHOWN_FIRST:
        if old.get(key) != new.get(key):
            changes.extend(_setting_changes(key, old.get(key), new.get(key)))
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
    for key in sorted((old.keys() | new.keys()) - {"name", "cmd", "vars", *_SETTINGS_SHOWN_FIRST}):
        if old.get(key) != new.get(key):
            changes.extend(_setting_changes(key, old.get(key), new.get(key)))
    return changes


def _setting_changes(key: str, old: Any, new: Any) -> list[str]:
    """What changed in one setting; in a section (`search:`), each part that changed."""
    if isinstance(old, dict) and isinstance(new, dict):
        changes = []
        for part in sorted(old.keys() | new.keys()):
            if old.get(part) != new.get(part):
                changes += _setting_changes(f"{key} {part}", old.get(part), new.get(part))
        return changes
    if isinstance(old, dict) or isinstance(new, dict):  # a section added or removed
        return [f"{key} {'added' if old is None else 'removed'}"]
    return [f"{key}: {_setting_text(old)} → {_setting_text(new)}"]


def _setting_text(value: Any) -> str:
    return "none" if value is None else str(value)


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
