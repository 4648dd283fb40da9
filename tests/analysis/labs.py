"""Synthetic pataslabs shaped exactly as `patas.common.lab` describes, for parse tests.

Outputs come from really running examples/basic_usage/main.py (in-process, seeded, so a lab of a
few hundred tasks takes milliseconds); metadata is written as real journal lines.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import random
import sys
from contextlib import redirect_stdout
from pathlib import Path
from typing import Callable

from patas.common.config import Experiment, experiment_from_flags
from patas.common.lab import AttemptRecord, ExperimentLab, Outcome
from patas.common.sweep import Task, tasks
from patas.common.variables import arithmetic_variable, list_variable

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "basic_usage" / "main.py"
COMMAND = "./main.py {neurons} {activation} {preprocessing}"
STARTED_AT = 1_684_350_895.472312  # 2023-05-17, as in the original README's sample


def small_grid(name: str = "grid", repeat: int = 2, neurons_max: int = 20) -> Experiment:
    """neurons 1..17 step 4 x 3 preprocessings x 4 activations (60 combinations) x `repeat`."""
    variables = [
        arithmetic_variable("neurons", 1, neurons_max, 4, "test"),
        list_variable("preprocessing", ["fast", "medium", "intense"], "test"),
        list_variable("activation", ["relu", "leaky_relu", "sigmoid", "tanh"], "test"),
    ]
    return experiment_from_flags(name, [COMMAND], variables, repeat, 3, str(EXAMPLE.parent), None)


def run_example(task: Task) -> str:
    """The example script's stdout for the task's values."""
    module = _example_module()
    values = dict(task.values)
    argv = sys.argv
    sys.argv = ["main.py", values["neurons"], values["activation"], values["preprocessing"]]
    out = io.StringIO()
    try:
        with redirect_stdout(out):
            module.main()
    finally:
        sys.argv = argv
    return out.getvalue()


def write_lab(
    root: Path,
    experiment: Experiment,
    outcome: Callable[[int], Outcome] = lambda task_id: Outcome.DONE,
    output: Callable[[Task], str] = run_example,
    seed: int = 7,
) -> ExperimentLab:
    """A lab as `patas explore` leaves it: definition, journal, one folder per finished task."""
    random.seed(seed)
    lab = ExperimentLab(root, experiment.name)
    lab.path.mkdir(parents=True, exist_ok=True)
    lab.write_definition(experiment.to_record())
    lines = []
    for task in tasks(experiment):
        task_id = task.natural_id(experiment.repeat)
        ended = outcome(task_id)
        text = output(task)
        lines.append(record(experiment, task, task_id, ended).to_json())
        name = "stdout" if ended is Outcome.DONE else "attempt-1.stdout"
        lab.task_dir(task_id).mkdir(exist_ok=True)
        (lab.task_dir(task_id) / name).write_text(text)
    with open(lab.journal_path, "a", encoding="utf-8") as journal:
        journal.write("".join(line + "\n" for line in lines))
    return lab


def record(experiment: Experiment, task: Task, task_id: int, outcome: Outcome, attempt: int = 1) -> AttemptRecord:
    started = STARTED_AT + task_id * 0.25
    worker = task_id % 4
    return AttemptRecord(
        task_id=task_id, key=task.key, attempt=attempt, outcome=outcome,
        exit_code=0 if outcome is Outcome.DONE else 1, combination_id=task.combination_id,
        repeat_id=task.repeat_id, values=dict(task.values), experiment_id=0,
        experiment_name=experiment.name, max_tries=experiment.max_tries, started_at=started,
        ended_at=started + 0.224591, cluster_name="cluster", node_name="node0", hostname="localhost",
        cluster_in_lab=0, node_in_lab=0, node_in_cluster=0, worker_in_lab=worker,
        worker_in_cluster=worker, worker_in_node=worker, work_dir=experiment.workdir,
    )  # fmt: skip


@functools.cache
def _example_module():
    spec = importlib.util.spec_from_file_location("basic_usage_main", EXAMPLE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
