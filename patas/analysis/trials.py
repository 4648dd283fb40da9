"""What `parse` adds for a search experiment: each task's trial and its state in the study, and
the intermediate values (`--report`) of every task as a long table `<experiment>_reports`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from patas.analysis.query import REPORTS_SUFFIX
from patas.analysis.patterns import OUTPUT_PREFIX, Pattern, compile_step_pattern
from patas.analysis.scan import read_text
from patas.analysis.table import ColumnType, Table
from patas.common.config import Experiment
from patas.common.lab import STDOUT, AttemptRecord, ExperimentLab
from patas.common.search import FIRST_TASK_ATTR, STUDY_FILE

TRIAL_COLUMN = "trial"
TRIAL_STATE_COLUMN = "trial_state"
STEP_COLUMN = "step"


def trial_states(lab: ExperimentLab, experiment: Experiment) -> dict[int, tuple[int, str]]:
    """Task id → (trial number, its state in the study: complete, pruned, fail, running)."""
    path = lab.path / STUDY_FILE
    if not path.exists():
        return {}
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(path)))
    states = {}
    repeat = experiment.repeat
    for summary in storage.get_all_studies():
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        first = int(study.user_attrs.get(FIRST_TASK_ATTR, 0))
        for trial in study.get_trials(deepcopy=False):
            for repeat_id in range(repeat):
                states[first + trial.number * repeat + repeat_id] = (trial.number, trial.state.name.lower())
    return states


def reports_table(lab: ExperimentLab, records: Sequence[AttemptRecord], experiment: Experiment, states: dict[int, tuple[int, str]]) -> Table | None:
    """Every (step, value) each task reported, one row each; None when the search has no --report."""
    search = experiment.search
    if search is None or search.report is None:
        return None
    pattern: Pattern = compile_step_pattern(search.report.name, search.report.pattern, f"--report {search.report.direction.value}")
    columns: dict[str, list[object]] = {"task_id": [], TRIAL_COLUMN: [], STEP_COLUMN: [], pattern.column: []}
    for record in records:
        text = read_text((str(lab.committed_path(record.task_id, STDOUT)),))
        for match in pattern.regex.finditer(text):
            try:
                step, value = int(match.group(1)), float(match.group(2))
            except ValueError:
                continue
            columns["task_id"].append(record.task_id)
            columns[TRIAL_COLUMN].append(states.get(record.task_id, (None, ""))[0])
            columns[STEP_COLUMN].append(step)
            columns[pattern.column].append(value)
    types = {"task_id": ColumnType.INTEGER, TRIAL_COLUMN: ColumnType.INTEGER, STEP_COLUMN: ColumnType.INTEGER, pattern.column: ColumnType.NUMBER}
    return Table(columns, types)


def reports_path(table_path: Path) -> Path:
    """Beside the parsed table: `<experiment>_reports.csv` (query names its view so)."""
    return table_path.with_name(table_path.stem + REPORTS_SUFFIX + table_path.suffix)


@dataclass(frozen=True)
class Objective:
    """What a search optimises: the column `out_<name>`, read by `pattern`, best at its maximum or not."""

    name: str
    pattern: str
    maximize: bool

    @property
    def column(self) -> str:
        return OUTPUT_PREFIX + self.name


def search_objective(source: object) -> Objective | None:
    """The objective a search folder's recorded definition names; None for a grid's folder or
    anything else (a table file, a DataFrame)."""
    if not isinstance(source, (str, Path)):
        return None
    folder = Path(source).expanduser()
    lab = ExperimentLab(folder.parent, folder.name)
    if not lab.definition_path.is_file():
        return None
    search = (lab.read_definition() or {}).get("search")
    if not isinstance(search, dict) or not isinstance(search.get("objective"), dict):
        return None
    objective = search["objective"]
    return Objective(str(objective["name"]), str(objective["pattern"]), objective.get("direction", "max") != "min")
