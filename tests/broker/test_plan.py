"""Planning against a real pataslab folder: what is done, which ids new tasks get."""

import pytest

from patas.broker.run.plan import describe_changes, plan_experiment
from patas.broker.run.task_filter import TaskFilter
from patas.common.errors import ConfigError
from patas.common.config import experiment_from_flags
from patas.common.lab import AttemptRecord, ExperimentLab, Outcome
from patas.common import sweep
from patas.common.sweep import tasks
from patas.common.variables import list_variable


def grid(a_values, repeat=1):
    return experiment_from_flags("grid", ["run {a}"], [list_variable("a", a_values, "t")], repeat, 3, ".", None)


def record(task, task_id, attempt=1, outcome=Outcome.DONE):
    return AttemptRecord(
        task_id, task.key, attempt, outcome, 0, task.combination_id, task.repeat_id, dict(task.values), 0, "grid", 3,
        0.0, 1.0, "cluster", "node0", "localhost", 0, 0, 0, 0, 0, 0, ".",
    )


def lab_with(tmp_path, experiment, done_ids, failed_ids=()):
    lab = ExperimentLab(tmp_path, "grid")
    lab.path.mkdir()
    lines = []
    for task_id, task in enumerate(tasks(experiment)):
        if task_id in done_ids:
            (lab.path / str(task_id)).mkdir()
            (lab.path / str(task_id) / "stdout").write_text("ok\n")
            lines.append(record(task, task_id).to_json())
        if task_id in failed_ids:
            (lab.path / str(task_id)).mkdir(exist_ok=True)
            (lab.path / str(task_id) / "attempt-2.stdout").write_text("boom\n")
            lines.append(record(task, task_id, 2, Outcome.FAILED).to_json())
    lab.journal_path.write_text("".join(line + "\n" for line in lines))
    lab.write_definition(experiment.to_record())
    return lab


def test_done_tasks_are_skipped_and_failed_ones_continue_their_attempt_numbers(tmp_path):
    experiment = grid(["1", "2", "3", "4"])
    lab = lab_with(tmp_path, experiment, done_ids={0, 2}, failed_ids={3})
    plan = plan_experiment(0, experiment, lab, redo=False)
    assert (plan.done, plan.to_run, plan.changes) == (2, 2, [])
    assert [(p.task_id, p.first_attempt) for p in plan.pending()] == [(1, 1), (3, 3)]


def test_a_deleted_task_folder_means_the_task_runs_again(tmp_path):
    experiment = grid(["1", "2", "3"])
    lab = lab_with(tmp_path, experiment, done_ids={0, 1, 2})
    (lab.path / "1" / "stdout").unlink()
    (lab.path / "1").rmdir()
    assert [p.task_id for p in plan_experiment(0, experiment, lab, redo=False).pending()] == [1]


def test_redo_runs_everything(tmp_path):
    experiment = grid(["1", "2"])
    lab = lab_with(tmp_path, experiment, done_ids={0, 1})
    # Attempt numbers go on, so no earlier attempt's files are ever overwritten.
    assert [(p.task_id, p.first_attempt) for p in plan_experiment(0, experiment, lab, redo=True).pending()] == [(0, 2), (1, 2)]


def test_an_edited_grid_keeps_done_tasks_and_gives_new_ones_free_ids(tmp_path):
    lab = lab_with(tmp_path, grid(["1", "2", "3"]), done_ids={0, 1, 2})
    edited = grid(["1", "3", "5"])
    plan = plan_experiment(0, edited, lab, redo=False)
    assert plan.changes == ["variable a: +5 -2"]
    assert (plan.done, plan.obsolete, plan.to_run) == (2, 1, 1)
    # "run 5" would naturally be task 2, but task 2 holds "run 3"... which is done and kept;
    # "run 3" keeps id 2, and the new task takes the first id nobody holds.
    (new,) = plan.pending()
    assert (new.task.commands, new.task_id) == (("run 5",), 3)


def test_task_filter_syntax():
    assert TaskFilter.parse("grid:3:5") == TaskFilter("grid", 3, 5)
    assert TaskFilter.parse("7") == TaskFilter(None, 7, 7)
    assert TaskFilter.parse(":4").accepts("grid", 4) and not TaskFilter.parse(":4").accepts("grid", 5)
    assert TaskFilter.parse("other:1:2").accepts("grid", 99)


def test_a_crash_while_replacing_a_committed_output_leaves_the_task_not_done(tmp_path):
    experiment = grid(["1", "2"])
    lab = lab_with(tmp_path, experiment, done_ids={0, 1})
    task = next(tasks(experiment))
    with open(lab.journal_path, "a") as journal:  # --redo of task 0 died after its first step
        journal.write(record(task, 0, 2, Outcome.REPLACING).to_json() + "\n")
    assert [(p.task_id, p.first_attempt) for p in plan_experiment(0, experiment, lab, redo=False).pending()] == [(0, 3)]
    with open(lab.journal_path, "a") as journal:
        journal.write(record(task, 0, 3).to_json() + "\n")
    assert list(plan_experiment(0, experiment, lab, redo=False).pending()) == []


# ---------------------------------------------------------------------------------------------
# --filter-tasks selects by arithmetic: the same tasks, ids and attempts as walking the grid.

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from patas.broker.run.plan import ExperimentPlan


def run_some(lab, plan, every, outcome=Outcome.DONE):
    """Record every `every`-th pending task of `plan` as run (folder and journal line), as a run would."""
    lines = []
    for index, planned in enumerate(plan.pending()):
        if index % every:
            continue
        folder = lab.path / str(planned.task_id)
        folder.mkdir(exist_ok=True)
        (folder / "stdout").write_text("ok\n")
        lines.append(record(planned.task, planned.task_id, planned.first_attempt, outcome).to_json())
    with open(lab.journal_path, "a") as journal:
        journal.write("".join(line + "\n" for line in lines))
    lab.write_definition(plan.experiment.to_record())


def walked(plan: ExperimentPlan, task_filter: TaskFilter):
    """What --filter-tasks selected before: walk every pending task, keep those whose id is in range."""
    return [(p.task_id, p.task.key, p.first_attempt) for p in plan.pending() if task_filter.accepts("grid", p.task_id)]


definitions = st.lists(st.sampled_from("0123456789"), min_size=1, max_size=6, unique=True)


@settings(max_examples=60, deadline=None)
@given(
    generations=st.lists(st.tuples(definitions, st.integers(1, 3), st.integers(1, 3)), min_size=1, max_size=3),
    final=definitions,
    repeat=st.integers(1, 2),
    first=st.integers(0, 30),
    length=st.integers(0, 30) | st.none(),
    redo=st.booleans(),
)
def test_a_filter_selects_what_walking_the_grid_selected(tmp_path_factory, generations, final, repeat, first, length, redo):
    tmp_path = tmp_path_factory.mktemp("lab")
    lab = ExperimentLab(tmp_path, "grid")
    lab.path.mkdir()
    # Earlier definitions, each partly run: ids kept, moved and spare ids appear as the grid changes.
    for values, every, generation_repeat in generations:
        run_some(lab, plan_experiment(0, grid(values, generation_repeat), lab, redo=False), every)
    plan = plan_experiment(0, grid(final, repeat), lab, redo=redo)
    last = None if length is None else first + length
    task_filter = TaskFilter("grid", first, last)
    expected = walked(plan, task_filter)
    fresh = plan_experiment(0, grid(final, repeat), lab, redo=redo)
    # Edited or not since the last run, `done` counts only the done tasks this grid has.
    assert fresh.done == len(fresh.history.done & {t.key for t in tasks(grid(final, repeat))})
    # pending() jumps over the done tasks it planned; it yields what skipping them in a walk yields.
    in_grid = [t.key for t in tasks(grid(final, repeat)) if redo or t.key not in fresh.history.done]
    assert [p.task.key for p in fresh.pending()] == in_grid
    assert [(p.task_id, p.task.key, p.first_attempt) for p in fresh.pending(task_filter)] == expected
    assert fresh.selection(task_filter).to_run(redo) == len(expected)
    everything = plan_experiment(0, grid(final, repeat), lab, redo=True)
    assert fresh.selection(task_filter).selected == len(walked(everything, task_filter))


def big_grid(variables, size):
    values = [str(i) for i in range(size)]
    return experiment_from_flags(
        "grid", ["run " + " ".join(f"{{v{i}}}" for i in range(variables))],
        [list_variable(f"v{i}", values, "t") for i in range(variables)], 1, 3, ".", None,
    )


def test_a_filter_on_a_huge_grid_decodes_its_tasks_instead_of_walking_to_them(tmp_path):
    for experiment in (big_grid(2, 1000), big_grid(23, 10)):  # 10^6 and 10^23 tasks
        lab = ExperimentLab(tmp_path, f"grid{experiment.task_count}")
        started = time.monotonic()
        plan = plan_experiment(0, experiment, lab, redo=False)
        middle = experiment.task_count // 2
        task_filter = TaskFilter(None, middle, middle + 9)
        assert plan.selection(task_filter).to_run(False) == 10
        planned = list(plan.pending(task_filter))
        assert time.monotonic() - started < 1.0
        assert [p.task_id for p in planned] == list(range(middle, middle + 10))
        assert [p.task.natural_id(1) for p in planned] == list(range(middle, middle + 10))


def test_a_filter_beyond_the_grid_selects_nothing(tmp_path):
    experiment = grid(["1", "2", "3"])
    lab = lab_with(tmp_path, experiment, done_ids={0})
    plan = plan_experiment(0, experiment, lab, redo=False)
    assert plan.selection(TaskFilter(None, 3, None)).selected == 0
    assert list(plan.pending(TaskFilter(None, 3, 10))) == []
    assert plan.selection(TaskFilter(None, 0, 0)) .selected == 1 and plan.selection(TaskFilter(None, 0, 0)).to_run(False) == 0
    assert plan.last_task_id == 2


@pytest.mark.parametrize("text", ["²", "1:²", "٣", "2:1", "9" * 5000 + ":", "a:b:c:d", ""])
def test_task_filter_refuses_what_is_not_a_range_of_ascii_ids(text):
    with pytest.raises(ConfigError, match="--filter-tasks"):
        TaskFilter.parse(text)


def test_a_rerun_computes_no_key_of_a_done_task_while_it_hands_out_tasks(tmp_path, monkeypatch):
    # Run loop time: every key pending() computes is a pause in answering agents.
    experiment = big_grid(1, 2000)
    lab = lab_with(tmp_path, experiment, done_ids=set(range(1990)))
    for journal_tasks_per_grid_task in (1, 3):  # found by walking the grid, or by locating the journal's tasks
        monkeypatch.setattr("patas.broker.run.plan.WALK_PER_JOURNAL_TASK", journal_tasks_per_grid_task)
        plan = plan_experiment(0, experiment, lab, redo=False)
        keys = []
        monkeypatch.setattr("patas.common.sweep.task_key", lambda base, repeat_id, real=sweep.task_key: keys.append(1) or real(base, repeat_id))
        assert [p.task_id for p in plan.pending()] == list(range(1990, 2000))
        assert (plan.done, len(keys)) == (1990, 10)
        monkeypatch.undo()


def test_changes_name_every_setting_that_changed_and_a_search_added_or_removed():
    grid = {"name": "e", "workdir": "/w", "repeat": 1, "max_tries": 3, "cmd": ["echo {x}"],
            "vars": [{"name": "x", "type": "list", "values": ["1"]}]}  # fmt: skip
    search = {"type": "tpe", "objective": {"direction": "max", "name": "v", "pattern": "(.*)"}, "trials": 4}
    assert describe_changes(grid, grid) == []
    assert describe_changes(grid, {**grid, "timeout": 5.0, "ship": ["src"], "search": search}) == [
        "timeout: none → 5.0", "search added", "ship: none → ['src']",
    ]
    assert describe_changes({**grid, "search": search}, grid) == ["search removed"]
    assert describe_changes({**grid, "search": search}, {**grid, "search": {**search, "type": "random", "trials": 8}}) == [
        "search trials: 4 → 8", "search type: tpe → random",
    ]
