"""Reading a task's output and history from a real pataslab folder: the journal as it grows, and
when a failed task is given up."""

from __future__ import annotations

from patas.analysis.task_output import JournalTail, TaskHistory
from patas.common.lab import AttemptRecord, ExperimentLab, Outcome
from patas.common.lab_lock import LockHolder

RUN_STARTED = 1000.0


def record(task_id: int, attempt: int, outcome: Outcome, ended_at: float, exit_code: int | None = 1, max_tries: int = 2) -> AttemptRecord:
    return AttemptRecord(
        task_id, f"key{task_id}", attempt, outcome, exit_code, task_id, 0, {"a": "1"}, 0, "grid", max_tries,
        ended_at - 1, ended_at, "cluster", "node0", "localhost", 0, 0, 0, 0, 0, 0, ".",
    )  # fmt: skip


def test_the_journal_is_read_as_it_grows_and_a_line_being_appended_waits_until_it_is_whole(tmp_path):
    lab = ExperimentLab(tmp_path, "grid")
    lab.path.mkdir()
    first, other, second = record(1, 1, Outcome.FAILED, 5.0), record(10, 1, Outcome.DONE, 5.0), record(1, 2, Outcome.DONE, 6.0)
    tail = JournalTail(lab, 1)
    assert tail.read() == []  # no journal yet
    lab.journal_path.write_text(first.to_json() + "\n" + other.to_json() + "\n")
    assert [r.attempt for r in tail.read()] == [1]  # task 10's line is another task's, though it starts alike
    line = second.to_json() + "\n"
    with open(lab.journal_path, "a") as journal:
        journal.write(line[:40])
        journal.flush()
        assert tail.read() == []
        journal.write(line[40:])
    assert [(r.attempt, r.outcome) for r in tail.read()] == [(2, Outcome.DONE)]
    assert tail.read() == []


def history_of(tmp_path, *records: AttemptRecord) -> TaskHistory:
    return TaskHistory(ExperimentLab(tmp_path, "grid"), 1, list(records))


RUN = LockHolder(123, "host", RUN_STARTED)


def test_a_task_is_given_up_at_the_runs_max_tries_th_failure(tmp_path):
    once = history_of(tmp_path, record(1, 1, Outcome.FAILED, RUN_STARTED + 1))
    assert not once.given_up(RUN)
    twice = history_of(tmp_path, record(1, 1, Outcome.FAILED, RUN_STARTED + 1), record(1, 2, Outcome.TIMEOUT, RUN_STARTED + 2))
    assert twice.given_up(RUN)


def test_failures_of_an_earlier_run_do_not_count_against_this_ones_tries(tmp_path):
    earlier = [record(1, 1, Outcome.FAILED, RUN_STARTED - 20), record(1, 2, Outcome.FAILED, RUN_STARTED - 10)]
    assert not history_of(tmp_path, *earlier).given_up(RUN)  # this run may try it again
    assert not history_of(tmp_path, *earlier, record(1, 3, Outcome.FAILED, RUN_STARTED + 1)).given_up(RUN)
    assert not history_of(tmp_path, *earlier).given_up(None)  # no run: not done, rather than given up


def test_a_command_that_cannot_run_is_given_up_at_once_but_a_timeout_is_tried_again(tmp_path):
    assert history_of(tmp_path, record(1, 1, Outcome.FAILED, RUN_STARTED + 1, exit_code=127)).given_up(RUN)
    assert not history_of(tmp_path, record(1, 1, Outcome.TIMEOUT, RUN_STARTED + 1, exit_code=None)).given_up(RUN)
