from patas.common.config import experiment_from_flags
from patas.common.sweep import tasks
from patas.common.variables import list_variable


def experiment(a_values, repeat=2, cmd="run {a} {b}"):
    variables = [list_variable("a", a_values, "t"), list_variable("b", ["x", "y"], "t")]
    return experiment_from_flags("grid", [cmd], variables, repeat, 3, ".", None)


def test_every_combination_repeat_times_in_order():
    generated = list(tasks(experiment(["1", "2"])))
    assert [(t.combination_id, t.repeat_id) for t in generated] == [(c, r) for c in range(4) for r in range(2)]
    assert [t.commands[0] for t in generated[::2]] == ["run 1 x", "run 1 y", "run 2 x", "run 2 y"]
    assert [t.natural_id(2) for t in generated] == list(range(8))


def test_keys_are_unique_and_stable_when_values_are_added():
    before = {(t.values, t.repeat_id): t.key for t in tasks(experiment(["1", "2"]))}
    after = {(t.values, t.repeat_id): t.key for t in tasks(experiment(["0", "1", "2", "3"]))}
    assert len(set(before.values())) == len(before)
    assert all(after[identity] == key for identity, key in before.items())


def test_keys_change_with_the_command():
    one = {t.key for t in tasks(experiment(["1"]))}
    other = {t.key for t in tasks(experiment(["1"], cmd="other {a} {b}"))}
    assert not one & other


# ---------------------------------------------------------------------------------------------
# Any task of the grid is found by arithmetic, without walking those before it.

import itertools
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from patas.common.sweep import task_at


@settings(max_examples=100, deadline=None)
@given(sizes=st.lists(st.integers(1, 4), max_size=4), repeat=st.integers(1, 3), data=st.data())
def test_tasks_from_any_id_and_task_at_agree_with_the_walk(sizes, repeat, data):
    variables = [list_variable(f"v{i}", [str(j) for j in range(size)], "t") for i, size in enumerate(sizes)]
    grid = experiment_from_flags("grid", ["run " + " ".join(f"{{v{i}}}" for i in range(len(sizes)))], variables, repeat, 3, ".", None)
    walk = list(tasks(grid))
    assert len(walk) == grid.task_count
    first = data.draw(st.integers(0, grid.task_count + 2))
    assert list(tasks(grid, first)) == walk[first:]
    natural = data.draw(st.integers(0, grid.task_count - 1))
    assert task_at(grid, natural) == walk[natural]


def test_a_task_deep_in_a_huge_grid_is_found_at_once():
    values = [str(i) for i in range(10)]
    variables = [list_variable(f"v{i}", values, "t") for i in range(23)]
    grid = experiment_from_flags("grid", ["run " + " ".join(f"{{v{i}}}" for i in range(23))], variables, 2, 3, ".", None)
    started = time.monotonic()
    last = task_at(grid, 2 * 10**23 - 1)
    following = list(itertools.islice(tasks(grid, 10**23), 3))
    assert time.monotonic() - started < 1.0
    assert last.commands == ("run " + " ".join(["9"] * 23),) and last.repeat_id == 1
    assert [t.natural_id(2) for t in following] == [10**23, 10**23 + 1, 10**23 + 2]


# ---------------------------------------------------------------------------------------------
# A rerun's plan reads the grid's keys alone, through a shortcut that must give the walk's keys.

from patas.common.sweep import task_keys

# Commands that place a value in every kind of place a template quotes differently.
PLACES = ["run {a} {b}", "echo '{a}' \"{b}\" x{a}y", "printf %s $'{b}' {a}; echo {a}", "run {b}"]


@settings(max_examples=100, deadline=None)
@given(
    a_values=st.lists(st.text(min_size=1, max_size=6).filter(lambda v: "\0" not in v), min_size=1, max_size=4, unique=True),
    repeat=st.integers(1, 3),
    commands=st.lists(st.sampled_from(PLACES), min_size=1, max_size=3),
)
def test_task_keys_are_the_keys_of_the_walk_for_any_values_and_places(a_values, repeat, commands):
    variables = [list_variable("a", a_values, "t"), list_variable("b", ["x", "it's", "$HOME"], "t")]
    grid = experiment_from_flags("grid", commands, variables, repeat, 3, ".", None)
    assert list(task_keys(grid)) == [t.key for t in tasks(grid)]
