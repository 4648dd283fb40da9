"""`patas status`: where every experiment of a pataslab stands, during a run and after it.

While a run holds an experiment's lock (`patas.common.lab_lock`), its coordinator is asked over
the experiment's private control channel (`patas.broker.run.channel`): it knows the running tasks,
its nodes, its rate. Otherwise the journal and the recorded definition say what is done and what
failed. The counts:

- `done`: tasks whose output is committed (by this run or an earlier one);
- `running`: attempts given to agents now (0 after a run);
- `pending`: tasks neither done, running nor given up (`total` minus those; 0 if `total` is None);
- `failed`: failed attempts — of the run in progress when live; after a run, those of the tasks
  that are not done (what still needs fixing);
- `given_up`: tasks the run will not try again (after a run: every task not done whose last
  attempt failed);
- `rate_per_s` and `eta_s`: tasks done per second by the run in progress and the time left at
  that rate (None after a run, or before the first task is done).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from patas.common.errors import ConfigError, LabError, PatasError, did_you_mean
from patas.common.lab import AttemptRecord, ExperimentLab, Outcome, experiments_in

if TYPE_CHECKING:
    from patas.common.config import Experiment


@dataclass(frozen=True)
class RunningTask:
    """One attempt running now (or queued on its agent for a free slot)."""

    task_id: int
    attempt: int
    values: dict[str, str]
    node: str
    elapsed_s: float
    last_line: str  # the last line of its output so far (stderr's if it wrote there last)


@dataclass(frozen=True)
class NodeStatus:
    """One node of the run in progress."""

    name: str
    agents: int
    slots: int
    busy: int  # slots running a task now
    state: str  # see patas.broker.run.control.NodeState: ready, starting, draining, lost, failed


@dataclass(frozen=True)
class FailureGroup:
    """Failed attempts of one kind (as patas.broker.run.failures.failure_kind names it)."""

    kind: str
    count: int  # attempts that failed so
    task_ids: tuple[int, ...]  # the tasks they belong to, ascending


@dataclass(frozen=True)
class ExperimentStatus:
    name: str
    total: int | None  # tasks in the definition (None: no definition recorded)
    done: int
    running: int
    pending: int
    failed: int
    given_up: int
    rate_per_s: float | None
    eta_s: float | None
    live: bool  # a run holds the lab lock now
    running_tasks: tuple[RunningTask, ...]
    nodes: tuple[NodeStatus, ...]
    failures: tuple[FailureGroup, ...]


@dataclass(frozen=True)
class LabStatus:
    lab: Path
    experiments: tuple[ExperimentStatus, ...]


class StatusError(LabError):
    """The pataslab or the experiment asked about is not there."""


def lab_status(lab_root: Path, experiment: str | None = None) -> LabStatus:
    """The status of every experiment in the pataslab `lab_root` (or of `experiment` alone).

    Example: lab_status(Path("pataslab"), "grid").experiments[0].running_tasks
    """
    lab_root = Path(lab_root)
    names = experiment_names(lab_root, experiment)
    return LabStatus(lab_root, tuple(experiment_status(ExperimentLab(lab_root, name)) for name in names))


def experiment_names(lab_root: Path, experiment: str | None) -> list[str]:
    """The experiments to report on, or StatusError naming the ones there are."""
    if not lab_root.is_dir():
        raise StatusError(f"{lab_root}: no such pataslab folder (use -o to name the folder patas explore wrote into)")
    found = experiments_in(lab_root)
    if experiment is None:
        return found
    if experiment in found or ExperimentLab(lab_root, experiment).definition_path.exists():
        return [experiment]
    there = f"experiments there: {', '.join(found)}" if found else "it holds no experiment"
    raise StatusError(f"{lab_root / experiment}: no such experiment{did_you_mean(experiment, found)} ({there})")


def experiment_status(lab: ExperimentLab) -> ExperimentStatus:
    """Ask the run holding the experiment's lock; from the journal when no run holds it.

    A run that holds the lock but does not listen (it is still asking for confirmation, or has
    nothing to run) is reported from the journal, marked live."""
    from patas.broker.run.channel import ChannelAbsent, request
    from patas.broker.run.control_messages import StatusReply, StatusRequest, status_from_wire
    from patas.common.lab_lock import holder

    if holder(lab.path) is None:
        return journal_status(lab)
    try:
        reply = request(lab.path, StatusRequest(lab.name))
    except ChannelAbsent as error:
        if not error.no_listener:
            raise
        return replace(journal_status(lab), live=holder(lab.path) is not None)
    if not isinstance(reply, StatusReply):
        raise StatusError(f"{lab.path}: the run answered a status request with {type(reply).__name__}")
    status: ExperimentStatus = status_from_wire(reply.status)
    return status


def journal_status(lab: ExperimentLab) -> ExperimentStatus:
    """What the journal and the recorded definition say, with no run in progress."""
    last: dict[int, AttemptRecord] = {}  # task id → its last record that is an attempt's end
    done: set[int] = set()
    failures: dict[int, list[AttemptRecord]] = {}
    for record in lab.read_journal():
        if record.outcome is Outcome.REPLACING:
            done.discard(record.task_id)
            continue
        last[record.task_id] = record
        if record.outcome is Outcome.DONE:
            done.add(record.task_id)
            failures.pop(record.task_id, None)  # what failed before it no longer stands
        else:
            failures.setdefault(record.task_id, []).append(record)
    done &= lab.task_folders()
    standing = {task_id: records for task_id, records in failures.items() if task_id not in done}
    given_up = sum(1 for task_id in standing if last[task_id].outcome is not Outcome.DONE)
    total, done_count = _definition_counts(lab, len(done))
    pending = max(0, total - done_count - given_up) if total is not None else 0
    return ExperimentStatus(
        name=lab.name, total=total, done=done_count, running=0, pending=pending,
        failed=sum(len(records) for records in standing.values()), given_up=given_up,
        rate_per_s=None, eta_s=None, live=False, running_tasks=(), nodes=(),
        failures=group_failures(r for records in standing.values() for r in records),
    )  # fmt: skip


def group_failures(records: Iterable[AttemptRecord]) -> tuple[FailureGroup, ...]:
    """Failed attempts grouped by kind, the most frequent kind first."""
    from patas.broker.run.failures import failure_kind

    kinds: dict[str, list[int]] = {}
    for record in records:
        kinds.setdefault(failure_kind(record.outcome, record.exit_code, record.error), []).append(record.task_id)
    groups = [FailureGroup(kind, len(ids), tuple(sorted(set(ids)))) for kind, ids in kinds.items()]
    return tuple(sorted(groups, key=lambda g: -g.count))


def _definition_counts(lab: ExperimentLab, done_in_journal: int) -> tuple[int | None, int]:
    """The recorded definition's task count and how many of its tasks are done, as a run of it
    would plan them (the journal may hold done tasks of an earlier definition, which the grid no
    longer has); for a search, its study's: the trials it is to make (--trials) and those that
    finished. Without a readable definition: no count, and the journal's done tasks."""
    from patas.broker.run.plan import plan_experiment
    from patas.common.config import load_experiment

    try:
        experiment = load_experiment(lab.definition_path)
    except (ConfigError, OSError):
        return None, done_in_journal
    if experiment.search is not None:
        return _search_counts(lab, experiment, done_in_journal)
    plan = plan_experiment(0, experiment, lab, redo=False)
    return plan.total, plan.done


# A search's counts, by the stamps of what they are read from: the dashboard asks every second,
# and reading a study replays all of it (0.15-0.3 s for 600 trials). The lab folder's own stamp
# changes when a task folder is removed, which undoes that task.
_searches_read: dict[Path, tuple[tuple[tuple[int, int, int], ...], tuple[int, int]]] = {}


def _search_counts(lab: ExperimentLab, experiment: Experiment, done_in_journal: int) -> tuple[int | None, int]:
    """A search's trials to make (`--trials`) and those finished, as its study says; a study that
    cannot be read gives no count and the journal's done tasks (the run would say why)."""
    from patas.broker.run.study import plan_search  # imports Optuna: for a search only
    from patas.common.search import STUDY_FILE

    stamp = tuple(_stamp(path) for path in (lab.path, lab.path / STUDY_FILE, lab.journal_path, lab.definition_path))
    kept = _searches_read.get(lab.path)
    if kept is not None and kept[0] == stamp:
        return kept[1]
    try:
        plan = plan_search(0, experiment, lab, redo=False, new_study=False)
    except PatasError:
        return None, done_in_journal
    _searches_read[lab.path] = (stamp, (plan.total, plan.done))
    return plan.total, plan.done


def _stamp(path: Path) -> tuple[int, int, int]:
    try:
        info = path.stat()
    except OSError:
        return (-1, -1, -1)
    return (info.st_size, info.st_mtime_ns, info.st_ino)


def status_to_json(status: LabStatus) -> dict[str, Any]:
    """The status as JSON-ready data: {"lab": ..., "experiments": [{...every field...}]}."""
    return {"lab": str(status.lab), "experiments": [asdict(e) for e in status.experiments]}
