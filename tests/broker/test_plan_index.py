"""The plan index gives a rerun the plan that reading the whole journal gives, and is never
trusted for a grid or a journal it does not describe."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patas.broker.run import plan_index
from patas.broker.run.plan import plan_experiment, save_indexes
from patas.broker.run.plan_index import INDEX_FILE, GridHistory
from patas.common import lab as lab_module
from patas.common import sweep
from patas.common.lab import ExperimentLab, Outcome
from tests.broker.test_plan import grid, record, run_some


def plan_of(plan):
    """Everything a run takes from a plan."""
    pending = [(p.task_id, p.task.key, p.first_attempt) for p in plan.pending()]
    return plan.done, plan.obsolete, done_naturals(plan), pending


def done_naturals(plan):
    return [natural for natural, done in enumerate(plan.done_mask) if done]


def both_ways(lab, experiment, redo):
    """The plan through the index and the plan from the whole journal."""
    return plan_of(plan_experiment(0, experiment, lab, redo, use_index=True)), plan_of(plan_experiment(0, experiment, lab, redo))


definitions = st.lists(st.sampled_from("0123456789"), min_size=1, max_size=6, unique=True)
outcomes = st.sampled_from([Outcome.DONE, Outcome.DONE, Outcome.FAILED, Outcome.REPLACING])


@settings(max_examples=80, deadline=None)
@given(
    generations=st.lists(st.tuples(definitions, st.integers(1, 3), st.integers(1, 2), outcomes, st.booleans(), st.booleans()), min_size=1, max_size=4),
    final=definitions,
    repeat=st.integers(1, 2),
    redo=st.booleans(),
    deleted=st.lists(st.integers(0, 20), max_size=3),
)
def test_the_index_plans_what_reading_the_whole_journal_plans(tmp_path_factory, generations, final, repeat, redo, deleted):
    tmp_path = tmp_path_factory.mktemp("lab")
    lab = ExperimentLab(tmp_path, "grid")
    lab.path.mkdir()
    # Earlier runs of edited grids, each writing the index of its own grid when it ends, or
    # dying before (the next plan then catches up with what the journal gained since).
    # A --redo that dies after its `replacing` records leaves done tasks not done.
    for values, every, generation_repeat, outcome, generation_redo, wrote_index in generations:
        plan = plan_experiment(0, grid(values, generation_repeat), lab, redo=generation_redo, use_index=True)
        run_some(lab, plan, every, outcome)
        if wrote_index:
            save_indexes([plan])
    for task_id in deleted:  # the user deletes task folders: those tasks are not done
        for path in sorted((lab.path / str(task_id)).glob("*")):
            path.unlink()
        if (lab.path / str(task_id)).exists():
            (lab.path / str(task_id)).rmdir()
    indexed, whole = both_ways(lab, grid(final, repeat), redo)
    assert indexed == whole


def saved_lab(tmp_path, values=("1", "2", "3", "4")):
    lab = ExperimentLab(tmp_path, "grid")
    lab.path.mkdir()
    experiment = grid(list(values))
    plan = plan_experiment(0, experiment, lab, redo=False, use_index=True)
    run_some(lab, plan, 2)
    save_indexes([plan])
    return lab, experiment


def count_lines_read(monkeypatch):
    read = []
    real = lab_module.PlanRecord.from_json
    monkeypatch.setattr(lab_module.PlanRecord, "from_json", lambda line: read.append(line) or real(line))
    return read


def test_a_rerun_reads_only_the_journal_lines_appended_since_the_index(tmp_path, monkeypatch):
    lab, experiment = saved_lab(tmp_path)
    task = next(t for p in plan_experiment(0, experiment, lab, False).pending() for t in [p.task])
    (lab.path / "1").mkdir()
    with open(lab.journal_path, "a") as journal:  # a run that died before it wrote the index
        journal.write(record(task, 1).to_json() + "\n")
    read = count_lines_read(monkeypatch)
    plan = plan_experiment(0, experiment, lab, redo=False, use_index=True)
    assert len(read) == 1
    assert (plan.done, [p.task_id for p in plan.pending()]) == (3, [3])


@pytest.mark.parametrize("damage", ["truncated", "a byte changed", "empty", "not an index"])
def test_a_damaged_index_is_read_as_none(tmp_path, monkeypatch, damage):
    lab, experiment = saved_lab(tmp_path)
    index = lab.path / INDEX_FILE
    data = index.read_bytes()
    index.write_bytes({
        "truncated": data[: len(data) // 2], "a byte changed": data[:40] + bytes([data[40] ^ 1]) + data[41:],
        "empty": b"", "not an index": b"{}\n",
    }[damage])  # fmt: skip
    read = count_lines_read(monkeypatch)
    indexed, whole = both_ways(lab, experiment, False)
    assert len(read) == 2 * 2  # both plans read the whole journal (two lines)
    assert indexed == whole


def test_a_replaced_journal_is_read_from_its_start(tmp_path):
    lab, experiment = saved_lab(tmp_path)
    lines = lab.journal_path.read_bytes().splitlines(keepends=True)
    # The same length, other bytes: task 0's record now says it failed.
    lines[0] = lines[0].replace(b'"outcome":"done"', b'"outcome":"lost"')
    lab.journal_path.write_bytes(b"".join(lines))
    indexed, whole = both_ways(lab, experiment, False)
    assert indexed == whole and indexed[0] == 1


def test_a_shorter_journal_is_read_from_its_start(tmp_path):
    lab, experiment = saved_lab(tmp_path)
    data = lab.journal_path.read_bytes()
    lab.journal_path.write_bytes(data[: data.index(b"\n") + 1])  # a copy from before the last run
    indexed, whole = both_ways(lab, experiment, False)
    assert indexed == whole and indexed[0] == 1


def test_the_index_of_another_grid_is_not_used(tmp_path, monkeypatch):
    lab, _ = saved_lab(tmp_path)
    read = count_lines_read(monkeypatch)
    history = GridHistory.read(grid(["1", "2", "3", "5"]), lab)
    assert len(read) == 2
    assert history.done_mask().count(1) == 0  # no folders set: nothing counts as done


def test_an_edit_anywhere_in_a_long_journal_is_seen(tmp_path):
    values = [str(i) for i in range(300)]
    lab, experiment = saved_lab(tmp_path, values)
    data = bytearray(lab.journal_path.read_bytes())
    assert len(data) > 64 * 1024  # far more than its first and last few kB
    for at in (10, len(data) // 2, len(data) - 10):
        changed = bytes(data[:at]) + (b"9" if data[at : at + 1] != b"9" else b"8") + bytes(data[at + 1 :])
        lab.journal_path.write_bytes(changed)  # the same length, other bytes
        with pytest.raises(plan_index.StaleIndex):
            GridHistory.load(lab, experiment)
    lab.journal_path.write_bytes(bytes(data))  # rewritten with the bytes the index covers
    assert GridHistory.load(lab, experiment).position.offset == len(data)


def test_a_journal_unwritten_since_the_index_is_not_read(tmp_path, monkeypatch):
    lab, experiment = saved_lab(tmp_path)
    hashed = []
    real = plan_index._chain
    monkeypatch.setattr(plan_index, "_chain", lambda *a: hashed.append(a) or real(*a))
    read = count_lines_read(monkeypatch)
    indexed = plan_of(plan_experiment(0, experiment, lab, redo=False, use_index=True))
    assert (hashed, read) == ([], [])
    monkeypatch.undo()
    assert indexed == plan_of(plan_experiment(0, experiment, lab, redo=False))


def test_a_journal_copied_back_is_checked_and_the_index_takes_its_new_identity(tmp_path, monkeypatch):
    lab, experiment = saved_lab(tmp_path)
    data = lab.journal_path.read_bytes()
    lab.journal_path.unlink()
    lab.journal_path.write_bytes(data)  # another file, the same bytes
    read = count_lines_read(monkeypatch)
    plan = plan_experiment(0, experiment, lab, redo=False, use_index=True)
    save_indexes([plan])
    assert (read, plan.done) == ([], 2)
    assert not GridHistory.load(lab, experiment).unsaved  # the next rerun trusts it unread


journal_edits = st.lists(
    st.one_of(
        st.tuples(st.just("flip"), st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
        st.tuples(st.just("cut"), st.floats(0, 1), st.just(0)),
        st.tuples(st.just("drop line"), st.floats(0, 1, exclude_max=True), st.just(0)),
    ),
    min_size=1, max_size=3,
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(edits=journal_edits, appended=st.integers(0, 3), size=st.integers(30, 200))
def test_after_any_edit_of_the_journal_the_index_plans_what_the_whole_journal_plans(tmp_path_factory, edits, appended, size):
    # Long journals (beyond any fixed window a cheaper check could digest), edited behind the
    # index: bytes changed, cut anywhere, lines removed; then lines appended by a run that
    # crashed before it wrote the index. Plans that refuse the journal must refuse it alike.
    tmp_path = tmp_path_factory.mktemp("lab")
    lab, experiment = saved_lab(tmp_path, [str(i) for i in range(size)])
    data = lab.journal_path.read_bytes()
    for edit, where, value in edits:
        at = int(where * len(data))
        if edit == "flip":
            data = data[:at] + bytes([data[at] ^ value]) + data[at + 1 :] if data else data
        elif edit == "cut":
            data = data[:at]
        else:
            lines = data.splitlines(keepends=True)
            if lines:
                del lines[int(where * len(lines))]
            data = b"".join(lines)
    lab.journal_path.write_bytes(data)
    tasks = list(sweep.tasks(experiment))
    with open(lab.journal_path, "ab") as journal:
        for task in tasks[:appended]:
            journal.write(record(task, task.natural_id(1), 5).to_json().encode() + b"\n")

    def plan(use_index):
        try:
            return plan_of(plan_experiment(0, experiment, lab, redo=False, use_index=use_index))
        except lab_module.LabError as error:
            return str(error)

    assert plan(True) == plan(False)


def test_the_index_is_replaced_whole_so_a_reader_sees_the_old_or_the_new(tmp_path, monkeypatch):
    lab, experiment = saved_lab(tmp_path)
    before = (lab.path / INDEX_FILE).read_bytes()
    plan = plan_experiment(0, experiment, lab, redo=False, use_index=True)

    def die_while_writing(self, *args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.replace", die_while_writing)
    save_indexes([plan])  # logged, not raised: the index is a cache
    assert (lab.path / INDEX_FILE).read_bytes() == before
    assert sorted(p.name for p in lab.path.iterdir() if p.name.startswith(".")) == [INDEX_FILE]


def test_a_big_rerun_through_the_index_reads_no_journal_line_and_computes_only_the_keys_it_runs(tmp_path, monkeypatch):
    values = [str(i) for i in range(3000)]
    lab = ExperimentLab(tmp_path, "grid")
    lab.path.mkdir()
    experiment = grid(values)
    plan = plan_experiment(0, experiment, lab, redo=False, use_index=True)
    run_some(lab, plan, 1)
    save_indexes([plan])
    left = sorted(random.Random(0).sample(range(3000), 5))
    for task_id in left:
        (lab.path / str(task_id) / "stdout").unlink()
        (lab.path / str(task_id)).rmdir()
    read = count_lines_read(monkeypatch)
    keys = []
    monkeypatch.setattr("patas.common.sweep.task_key", lambda base, repeat_id, real=sweep.task_key: keys.append(1) or real(base, repeat_id))
    rerun = plan_experiment(0, experiment, lab, redo=False, use_index=True)
    assert (rerun.done, [p.task_id for p in rerun.pending()], len(read), len(keys)) == (2995, left, 0, 5)


def test_a_redo_that_died_after_its_replacing_record_leaves_the_task_not_done(tmp_path):
    lab, experiment = saved_lab(tmp_path)
    done = plan_experiment(0, experiment, lab, redo=False, use_index=True)
    assert done_naturals(done) == [0, 2]
    redo = next(plan_experiment(0, experiment, lab, redo=True).pending())
    with open(lab.journal_path, "a") as journal:
        journal.write(record(redo.task, 0, redo.first_attempt, Outcome.REPLACING).to_json() + "\n")
    indexed, whole = both_ways(lab, experiment, False)
    assert indexed == whole and indexed[2] == [2]


def test_planning_a_fresh_grid_costs_nothing_per_task(tmp_path):
    # A first run of a million tasks: the journal has no record, so the plan keeps no per-task
    # arrays (9 bytes per task, 9 MB here, that the coordinator would hold for the whole run).
    import tracemalloc

    experiment = grid([str(i) for i in range(1000)], repeat=1000)
    lab = ExperimentLab(tmp_path, "grid")
    lab.path.mkdir()
    tracemalloc.start()
    try:
        plan = plan_experiment(0, experiment, lab, redo=False, use_index=True)
        first = next(plan.pending())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (experiment.task_count, plan.done, first.task_id) == (1_000_000, 0, 0)
    assert peak < 1_000_000


def index_state(history):
    return (history.position, list(history.attempts), bytes(history.done), history.moved, history.held, history.others, history.max_id)


def in_order(experiment, lab):
    """The index of the whole journal made by applying each record in order, as `catch_up` does."""
    history = GridHistory.empty(experiment)
    history.catch_up(experiment, lab)
    return history


@settings(max_examples=80, deadline=None)
@given(
    generations=st.lists(st.tuples(definitions, st.integers(1, 3), st.integers(1, 2), outcomes, st.booleans()), min_size=1, max_size=4),
    final=definitions,
    repeat=st.integers(1, 2),
    shuffle_seed=st.integers(0, 2**16),
    keep=st.integers(0, 40),
)
def test_the_index_built_by_walking_the_grid_is_the_index_built_record_by_record(
    tmp_path_factory, generations, final, repeat, shuffle_seed, keep
):
    # Journals of several grids, reruns and --redo, then lines shuffled and dropped: keys with
    # several ids, ids with several keys, records out of any order a run writes.
    tmp_path = tmp_path_factory.mktemp("lab")
    lab = ExperimentLab(tmp_path, "grid")
    lab.path.mkdir()
    for values, every, generation_repeat, outcome, generation_redo in generations:
        run_some(lab, plan_experiment(0, grid(values, generation_repeat), lab, redo=generation_redo), every, outcome)
    lines = lab.journal_path.read_bytes().splitlines(keepends=True)
    random.Random(shuffle_seed).shuffle(lines)
    lab.journal_path.write_bytes(b"".join(lines[: keep or None]))
    experiment = grid(final, repeat)
    walked = GridHistory.from_journal(experiment, lab)
    walked.catch_up(experiment, lab)
    assert index_state(walked) == index_state(in_order(experiment, lab))


def test_a_cold_index_walks_the_grid_instead_of_locating_each_record(tmp_path, monkeypatch):
    lab, experiment = saved_lab(tmp_path, [str(i) for i in range(20)])
    (lab.path / INDEX_FILE).unlink()
    located = []
    real = sweep.GridPositions.locate
    monkeypatch.setattr(sweep.GridPositions, "locate", lambda self, *a: located.append(a) or real(self, *a))
    indexed, whole = both_ways(lab, experiment, False)
    assert indexed == whole and indexed[0] == 10
    assert located == []


def test_a_cold_index_of_a_grid_far_bigger_than_its_journal_locates_each_record(tmp_path, monkeypatch):
    lab, _ = saved_lab(tmp_path, [str(i) for i in range(20)])
    (lab.path / INDEX_FILE).unlink()
    walked = []
    monkeypatch.setattr(plan_index, "task_keys", lambda experiment: walked.append(experiment) or sweep.task_keys(experiment))
    indexed, whole = both_ways(lab, grid([str(i) for i in range(20)], repeat=50), False)
    assert indexed == whole and indexed[0] == 10
    assert walked == []
