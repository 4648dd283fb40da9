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
