"""A search run: an Optuna study that lives in the lab and makes the run's tasks on demand.

    pataslab/<experiment>/study.journal    Optuna's JournalStorage (a file of JSON lines)

Each trial is one combination of values the sampler chose; its tasks (one per `--repeat`) have
ids `first_task_id + trial * repeat + repeat_id` and carry `{"trial": N}` in their journal
records, so the patas journal says which task is which trial, and the task's values are the
trial's parameters. Study `<name>` is the experiment's first; `--new-study` adds `<name>-2`, ...
whose task ids start after every id the lab holds.

Exactly once. A trial's result is told to Optuna only after the attempt it comes from is durable
in the patas journal (the committer says so). Optuna's own journal is written after that, so a
crash in between leaves a trial RUNNING in the study whose tasks are committed: the next run reads
their committed output and tells it then. A trial RUNNING in the study whose tasks are not all
committed (the coordinator was killed, or stopped) is run again with the same parameters and the
same task ids: no trial is lost, none is counted twice, and `--trials N` counts every trial the
study made. A lost agent's task is requeued by the scheduler under the same id, as in a grid.

Reports and pruning. With `--prune`, each running task's stdout is matched line by line against
the `--report` pattern as it arrives (within the output flush interval); each new step's value
is reported to the trial (negated when the report's direction differs from the objective's, since
Optuna's pruners compare in the objective's direction), and when the pruner says so the run kills
the task and ends it as `pruned`.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import time
import warnings
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

from patas.analysis.patterns import Pattern, compile_pattern, compile_step_pattern, last_match, line_text
from patas.broker.run.plan import ExperimentPlan, LabHistory, PlannedTask
from patas.broker.run.scheduler import Counts
from patas.common.config import Experiment
from patas.common.errors import ConfigError, LabError, PatasError
from patas.common.lab import STDOUT, AttemptRecord, ExperimentLab, Outcome
from patas.common.search import FIRST_TASK_ATTR, STUDY_FILE, Direction, Pruner, Search, SearchType
from patas.common.sweep import combination_tasks
from patas.common.variables import Variable, VariableKind
from patas.common.wording import plural

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

TRIAL_EXTRA = "trial"  # the key of a task's trial number in its journal record's `extra`
# A running task's unfinished last line is kept up to this size for the report pattern; longer
# lines (a progress bar without newlines) are dropped, not accumulated.
MAX_REPORT_LINE_BYTES = 64 * 1024
# Pruner settings for short programs: a rung from the first step on.
ASHA_REDUCTION_FACTOR = 3
MEDIAN_STARTUP_TRIALS = 3


class SearchError(ConfigError):
    """A search that cannot run as asked (its patterns, its study, its lab)."""


# --- checking ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchPatterns:
    objective: Pattern
    report: Pattern | None


def search_patterns(search: Search) -> SearchPatterns:
    """The compiled objective and report patterns; a pattern without its group(s) is an error."""
    objective = compile_pattern(search.objective.name, search.objective.pattern, f"--objective {search.objective.direction.value}")
    report = None
    if search.report is not None:
        report = compile_step_pattern(search.report.name, search.report.pattern, f"--report {search.report.direction.value}")
    return SearchPatterns(objective, report)


def check_search(experiment: Experiment) -> None:
    """Refuse a search that cannot run, before anything is read or written."""
    search = experiment.search
    assert search is not None
    search_patterns(search)
    if search.prune is not None and experiment.repeat > 1:
        raise SearchError(f"experiment '{experiment.name}': --prune stops one task at a time; it works with --repeat 1 only")
    if not experiment.variables:
        raise SearchError(f"experiment '{experiment.name}': a {search.type.value} search needs variables to choose (add --vu, --vi, --vlog, --vl, ...)")


# --- the space --------------------------------------------------------------------------------


def distributions(variables: tuple[Variable, ...]) -> dict[str, "optuna.distributions.BaseDistribution"]:
    """Each variable as an Optuna distribution. A list is categorical; a stepped or geometric
    range is the position in its list of values (ordered, so TPE and Sobol see neighbours), so
    the program receives the value exactly as the grid would write it."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    space: dict[str, Any] = {}
    for variable in variables:
        if variable.kind is VariableKind.LIST:
            space[variable.name] = CategoricalDistribution(list(variable.values))
        elif variable.kind in (VariableKind.ARITHMETIC, VariableKind.GEOMETRIC):
            space[variable.name] = IntDistribution(0, len(variable.values) - 1)
        else:
            assert variable.bounds is not None
            low, high = variable.bounds[0], variable.bounds[1]
            if variable.kind is VariableKind.INT:
                space[variable.name] = IntDistribution(int(float(low)), int(float(high)))
            else:
                space[variable.name] = FloatDistribution(float(low), float(high), log=variable.kind is VariableKind.LOGUNIFORM)
    return space


def values_of(variables: tuple[Variable, ...], params: dict[str, Any]) -> dict[str, str]:
    """The text each variable's value is written as in commands, from a trial's parameters."""
    values = {}
    for variable in variables:
        param = params[variable.name]
        if variable.kind in (VariableKind.ARITHMETIC, VariableKind.GEOMETRIC):
            values[variable.name] = variable.values[int(param)]
        elif variable.kind is VariableKind.UNIFORM or variable.kind is VariableKind.LOGUNIFORM:
            values[variable.name] = repr(float(param))  # the shortest text that reads back as the same float
        else:
            values[variable.name] = str(param)
    return values


def make_sampler(search: Search, trials_made: int) -> "optuna.samplers.BaseSampler":
    """The sampler of `--type`. Its seed is `--seed` advanced by the trials already made, so a
    rerun that continues a study does not suggest the first run's sequence again."""
    import optuna

    seed = None if search.seed is None else search.seed + trials_made
    if search.type is SearchType.RANDOM:
        return optuna.samplers.RandomSampler(seed=seed)
    if search.type is SearchType.SOBOL:
        # The Sobol sequence is indexed by trial number, so it continues across runs by itself.
        return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=search.seed, warn_independent_sampling=False, warn_asynchronous_seeding=False)
    # Parallel TPE: running trials count as if they had the worst value seen, so concurrent
    # suggestions differ instead of piling onto the same point.
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def make_pruner(search: Search) -> "optuna.pruners.BasePruner":
    import optuna

    if search.prune is Pruner.ASHA:
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=ASHA_REDUCTION_FACTOR)
    if search.prune is Pruner.MEDIAN:
        return optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS)
    if search.prune is Pruner.HYPERBAND:
        return optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=ASHA_REDUCTION_FACTOR)
    return optuna.pruners.NopPruner()


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def open_storage(path: os.PathLike[str] | str) -> "optuna.storages.JournalStorage":
    """The study file as Optuna's storage (created if absent: call only once the run started,
    or when it exists)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    _quiet_optuna()
    return JournalStorage(JournalFileBackend(str(path), lock_obj=_study_lock(path)))


def _study_lock(path: os.PathLike[str] | str) -> "optuna.storages.journal.BaseJournalFileLock":
    """Optuna's lock around each write of the study file, as an flock on the file itself: the
    kernel lets go of it when its process dies. Optuna's own (a symbolic link beside the file)
    outlives a SIGKILLed run, and the next run waits for it forever (its staleness check stats
    the link's relative target from the wrong folder)."""
    from optuna.storages.journal._file import BaseJournalFileLock

    class FileLock(BaseJournalFileLock):
        def __init__(self) -> None:
            self._fd: int | None = None

        def acquire(self) -> bool:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            return True

        def release(self) -> None:
            if self._fd is not None:
                os.close(self._fd)  # also lets go of the flock
                self._fd = None

    return FileLock()


def _drop_torn_line(path: os.PathLike[str] | str) -> None:
    """Cut a last line a SIGKILL left half-written, so Optuna's next append starts a line."""
    try:
        with open(path, "rb+") as stream:
            data = stream.read()
            if data and not data.endswith(b"\n"):
                stream.truncate(data.rfind(b"\n") + 1)
    except FileNotFoundError:
        pass


# --- the plan: what the study and the journal say (read only) ---------------------------------


@dataclass
class TrialResult:
    """What one task of a trial gave: its objective value, or why the trial fails or was pruned."""

    value: float | None = None
    pruned: bool = False
    failure: str = ""


@dataclass
class StudyState:
    study_name: str
    first_task_id: int
    exists: bool  # False: the study is created when the run starts
    trials_made: int  # trials the study has, in every state
    finished: int  # trials complete, pruned or failed (counted as done)
    reruns: list[PlannedTask] = field(default_factory=list)  # tasks of RUNNING trials, run again
    # RUNNING trials whose tasks all ended before a crash: told when the run starts.
    settled: dict[int, list[TrialResult]] = field(default_factory=dict)
    best: str = ""


@dataclass
class SearchPlan(ExperimentPlan):
    study: StudyState | None = None
    new_study: bool = False

    @property
    def search(self) -> Search:
        assert self.experiment.search is not None
        return self.experiment.search

    @property
    def trials_counted(self) -> int:
        """Trials the run's counts hold: `--trials`, or with a budget only, those made and one more."""
        made = self.state.trials_made
        return max(self.search.trials, made) if self.search.trials is not None else made + 1

    @property
    def total(self) -> int:
        return self.trials_counted * self.experiment.repeat

    @property
    def to_run(self) -> int:
        return self.total - self.done

    @property
    def state(self) -> StudyState:
        assert self.study is not None
        return self.study

    def pending(self, task_filter: object = None) -> Iterator[PlannedTask]:
        """The tasks known before the run: those of trials to run again (a dry run shows them).
        The sampler chooses the others as the run goes (see StudySource)."""
        yield from self.state.reruns

    @property
    def study_path(self) -> str:
        return str(self.lab.path / STUDY_FILE)


def plan_search(experiment_id: int, experiment: Experiment, lab: ExperimentLab, redo: bool, new_study: bool) -> SearchPlan:
    """What the lab holds of this search: the study to continue (or start), its trials to rerun."""
    if redo:
        raise SearchError(f"experiment '{experiment.name}': --redo reruns a grid; a search continues its study (add --new-study to start another)")
    search = experiment.search
    assert search is not None
    previous = lab.read_definition()
    records = list(lab.read_journal())
    if previous is not None and "search" not in previous and records:
        raise SearchError(f"{lab.path} holds the tasks of a grid; give the search a folder of its own (--name NAME)")
    path = lab.path / STUDY_FILE
    storage, studies = _open_study_file(path)
    if studies and not new_study and previous is not None and _identity(previous) != _identity(experiment.to_record()):
        changed = " and ".join(key for key in _identity(previous) if _identity(previous)[key] != _identity(experiment.to_record())[key])
        raise SearchError(
            f"experiment '{experiment.name}': its {changed} changed since the study in {path} began;"
            " run it as before to continue it, or add --new-study to start a new study"
        )
    if studies and not new_study:
        assert storage is not None
        state = _read_study(experiment_id, experiment, lab, storage, path, studies[-1], records)
    else:
        used = [r.task_id for r in records] + list(lab.task_folders())
        name = experiment.name if not studies else f"{experiment.name}-{len(studies) + 1}"
        state = StudyState(name, max(used, default=-1) + 1, False, 0, 0)
    done = state.finished * experiment.repeat
    return SearchPlan(experiment_id, experiment, lab, LabHistory(), False, [], done, 0, study=state, new_study=new_study)


def _identity(record: dict[str, Any]) -> dict[str, Any]:
    """What a study's trials depend on: the commands, the space, the repeats, the search."""
    search = dict(record.get("search") or {})
    search.pop("trials", None)
    search.pop("budget", None)
    return {"commands": record.get("cmd"), "variables": record.get("vars"), "repeat": record.get("repeat"), "search": search}


def _open_study_file(path: os.PathLike[str]) -> tuple["optuna.storages.JournalStorage | None", list[str]]:
    """The study file as storage (read once, for the names and then the trials) and the names of
    its studies; no storage and no name when there is no file."""
    if not os.path.exists(path):
        return None, []
    with _reading_study(path):
        storage = open_storage(path)
        return storage, [study.study_name for study in storage.get_all_studies()]


@contextmanager
def _reading_study(path: os.PathLike[str]) -> Iterator[None]:
    """Optuna replays a study file without checking it: whatever it raises on a damaged line
    (KeyError, TypeError, even AssertionError) means the file cannot be read, in one line."""
    try:
        yield
    except PatasError:
        raise
    except Exception as error:
        raise LabError(f"{path}: unreadable study ({type(error).__name__}: {error}); move it away to start a new study") from None


def _read_study(
    experiment_id: int, experiment: Experiment, lab: ExperimentLab, storage: "optuna.storages.JournalStorage",
    path: os.PathLike[str], name: str, records: list[AttemptRecord],
) -> StudyState:  # fmt: skip
    import optuna

    with _reading_study(path):
        study = optuna.load_study(study_name=name, storage=storage)
        first = int(study.user_attrs.get(FIRST_TASK_ATTR, 0))
        trials = study.get_trials(deepcopy=False)
    last: dict[int, AttemptRecord] = {}
    committed: dict[int, AttemptRecord] = {}
    for record in records:
        if record.outcome is Outcome.REPLACING:
            continue
        last[record.task_id] = record
        if record.outcome in (Outcome.DONE, Outcome.PRUNED):
            committed[record.task_id] = record
    folders = lab.task_folders()
    patterns = search_patterns(experiment.search)  # type: ignore[arg-type]
    state = StudyState(name, first, True, len(trials), 0)
    repeat = experiment.repeat
    for trial in trials:
        if trial.state.is_finished():
            state.finished += 1
            continue
        values = values_of(experiment.variables, trial.params)
        results: list[TrialResult] = []
        for task in combination_tasks(experiment, trial.number, values):
            task_id = first + trial.number * repeat + task.repeat_id
            record = committed.get(task_id)
            if record is not None and task_id in folders:
                results.append(_result_of(record, lab, patterns))
                continue
            attempt = last[task_id].attempt if task_id in last else 0
            attempt = max(attempt, lab.attempts_on_disk(task_id))
            state.reruns.append(PlannedTask(experiment_id, experiment, task, task_id, attempt + 1, trial.number))
        if len(results) == repeat:
            state.settled[trial.number] = results
            state.finished += 1
    return state


def _result_of(record: AttemptRecord, lab: ExperimentLab, patterns: SearchPatterns) -> TrialResult:
    """A committed task's part of its trial's result, read from its committed stdout."""
    if record.outcome is Outcome.PRUNED:
        return TrialResult(pruned=True)
    value = objective_value(lab, record.task_id, patterns.objective)
    if value is None:
        return TrialResult(failure=f"task {record.task_id}: its output has no match for {patterns.objective.text!r}")
    return TrialResult(value=value)


def objective_value(lab: ExperimentLab, task_id: int, pattern: Pattern) -> float | None:
    """The last match of the objective's group in a task's committed stdout, as `parse` reads it."""
    try:
        text = line_text(lab.committed_path(task_id, STDOUT).read_bytes().decode(errors="replace"))
    except OSError:
        return None
    match = last_match(pattern.regex, text)
    value = match.group(1) if match else None
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and not math.isnan(number) else None


# --- the run: a source of tasks ---------------------------------------------------------------


@dataclass
class RunningTrial:
    trial: "optuna.trial.Trial"
    results: dict[int, TrialResult] = field(default_factory=dict)  # by repeat id
    last_step: int | None = None


class StudySource:
    """Trials on demand: a new one each time a slot is free, until `--trials` or `--budget`."""

    prefetch = False
    wants_commits = True

    def __init__(self, plan: SearchPlan, counts: Counts) -> None:
        self.plan = plan
        self.search = plan.search
        self.experiment = plan.experiment
        self.lab = plan.lab
        self.counts = counts
        self.patterns = search_patterns(self.search)
        self.watches_output = self.search.prune is not None
        self._queue: deque[PlannedTask] = deque(plan.state.reruns)
        self._made = plan.state.trials_made
        self._counted = plan.trials_counted  # trials in counts.total
        self._study: "optuna.Study | None" = None
        self._space: dict[str, Any] = {}
        self._running: dict[int, RunningTrial] = {}  # by trial number
        self._expected: dict[tuple[int, int], Outcome] = {}  # final attempts not yet committed
        self._lines: dict[int, bytes] = {}  # a running task's unfinished last line, by task id
        self._deadline: float | None = None
        self._budget_over = False
        self.best: tuple[float, dict[str, str]] | None = None

    # --- asking -----------------------------------------------------------------------------

    @property
    def exhausted(self) -> bool:
        if self._queue:
            return False
        if self.search.trials is not None and self._made >= self.search.trials:
            return True
        if self._deadline is not None and time.monotonic() >= self._deadline and not self._budget_over:
            self._budget_over = True
            self.counts.total -= (self._counted - self._made) * self.experiment.repeat  # never made
        return self._budget_over

    def start(self) -> None:
        """Create or load the study (the run has started: the lab may change now)."""
        import optuna

        path = self.plan.study_path
        _drop_torn_line(path)
        storage = open_storage(path)
        state = self.plan.state
        sampler = make_sampler(self.search, self._made)
        direction = "maximize" if self.search.objective.direction is Direction.MAX else "minimize"
        if state.exists:
            self._study = optuna.load_study(study_name=state.study_name, storage=storage, sampler=sampler, pruner=make_pruner(self.search))
        else:
            self._study = optuna.create_study(
                study_name=state.study_name, storage=storage, sampler=sampler, pruner=make_pruner(self.search), direction=direction
            )
            self._study.set_user_attr(FIRST_TASK_ATTR, state.first_task_id)
        self._space = distributions(self.experiment.variables)
        study_id = storage.get_study_id_from_name(state.study_name)
        for task in self._queue:
            if task.trial is not None and task.trial not in self._running:
                trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, task.trial)
                self._running[task.trial] = RunningTrial(optuna.trial.Trial(self._study, trial_id))
        for number, results in state.settled.items():
            self._tell(number, results)
        self._note_best()
        if self.search.type is SearchType.SOBOL:
            import scipy.stats.qmc  # noqa: F401  (a second to import: before the budget's clock starts)
        if self.search.budget_s is not None:
            self._deadline = time.monotonic() + self.search.budget_s

    def next_task(self) -> PlannedTask | None:
        if self._study is None:
            return None  # not started yet: the lab stays as it is
        if not self._queue and not self.exhausted:
            self._ask()
        return self._queue.popleft() if self._queue else None

    def _ask(self) -> None:
        assert self._study is not None
        trial = self._study.ask(self._space)
        self._made += 1
        if self._made > self._counted:  # a budget-only search: one more trial than counted
            self._counted += 1
            self.counts.total += self.experiment.repeat
        self._running[trial.number] = RunningTrial(trial)
        values = values_of(self.experiment.variables, trial.params)
        first = self.plan.state.first_task_id + trial.number * self.experiment.repeat
        for task in combination_tasks(self.experiment, trial.number, values):
            self._queue.append(PlannedTask(self.plan.experiment_id, self.experiment, task, first + task.repeat_id, 1, trial.number))

    # --- hearing results --------------------------------------------------------------------

    def attempt_ended(self, planned: PlannedTask, attempt: int, outcome: Outcome, final: bool) -> None:
        self._lines.pop(planned.task_id, None)
        if not final:
            return
        if outcome is Outcome.LOST:  # given up without a record: nothing to wait for
            assert planned.trial is not None
            self._task_result(planned.trial, planned.task.repeat_id, TrialResult(failure=f"task {planned.task_id}: its agents were lost"))
        else:
            self._expected[(planned.task_id, attempt)] = outcome

    def committed(self, record: AttemptRecord) -> None:
        if self._expected.pop((record.task_id, record.attempt), None) is None:
            return  # an attempt that was tried again
        if record.outcome in (Outcome.DONE, Outcome.PRUNED):
            result = _result_of(record, self.lab, self.patterns)
        else:
            result = TrialResult(failure=f"task {record.task_id}: {record.outcome.value} after {plural(record.attempt, 'attempt')}")
        self._task_result(int(record.extra[TRIAL_EXTRA]), record.repeat_id, result)

    def _task_result(self, number: int, repeat_id: int, result: TrialResult) -> None:
        running = self._running.get(number)
        if running is None:
            return
        running.results[repeat_id] = result
        if len(running.results) == self.experiment.repeat:
            del self._running[number]
            self._tell(number, list(running.results.values()))
            self._note_best()

    def _tell(self, number: int, results: list[TrialResult]) -> None:
        import optuna

        assert self._study is not None
        failures = [r.failure for r in results if r.failure]
        if failures:
            log.warning("trial %d failed: %s", number, "; ".join(failures))
            self._study.tell(number, state=optuna.trial.TrialState.FAIL)
        elif any(r.pruned for r in results):
            self._study.tell(number, state=optuna.trial.TrialState.PRUNED)
        else:
            self._study.tell(number, sum(r.value for r in results) / len(results))  # type: ignore[misc]

    def _note_best(self) -> None:
        assert self._study is not None
        try:
            best = self._study.best_trial
        except ValueError:  # no trial complete yet
            return
        self.best = (float(best.value), values_of(self.experiment.variables, best.params))  # type: ignore[arg-type]

    # --- reports ----------------------------------------------------------------------------

    def output(self, planned: PlannedTask, data: bytes) -> bool:
        """Match complete lines against the report pattern; True when the trial should stop."""
        running = self._running.get(planned.trial) if planned.trial is not None else None
        if running is None:
            return False
        text = self._lines.pop(planned.task_id, b"") + data
        cut = max(text.rfind(b"\n"), text.rfind(b"\r"))
        complete, rest = text[: cut + 1], text[cut + 1 :]
        if len(rest) <= MAX_REPORT_LINE_BYTES:
            self._lines[planned.task_id] = rest
        if not complete:
            return False
        assert self.patterns.report is not None and self.search.report is not None
        sign = 1.0 if self.search.report.direction is self.search.objective.direction else -1.0
        for match in self.patterns.report.regex.finditer(line_text(complete.decode(errors="replace"))):
            try:
                step, value = int(match.group(1)), float(match.group(2))
            except ValueError:
                continue
            if (running.last_step is not None and step <= running.last_step) or math.isnan(value):
                continue
            running.last_step = step
            running.trial.report(sign * value, step)
            if running.trial.should_prune():
                return True
        return False

    def close(self) -> None:
        pass

    @property
    def best_text(self) -> str:
        """`best 0.973 (hidden=64, activation=relu)`, or empty before a trial completes."""
        if self.best is None:
            return ""
        value, values = self.best
        return f"best {self.search.objective.name} {value:.6g} (" + ", ".join(f"{k}={v}" for k, v in values.items()) + ")"


def settle(plan: SearchPlan) -> None:
    """Tell the study the results that were committed before a crash, when a rerun has nothing
    else to do (a run that starts tells them as it starts)."""
    if plan.state.settled:
        StudySource(plan, Counts()).start()
