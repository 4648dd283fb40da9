"""`--halt` and the default early stop, through the scheduler alone: no sockets, no files."""

import pytest
from hypothesis import given, strategies as st

from patas.broker.run.halt import FAIL_FAST_FIRST_TASKS, NEVER, HaltPolicy, Urgency
from patas.broker.run.scheduler import CANNOT_RUN_EXIT_CODES, Verdict, cannot_run
from patas.common.errors import ConfigError
from tests.broker.test_scheduler import scheduler


def run_all(s, succeeds=lambda lease: False, retryable=True, tried=None):
    """Finish leases in the order they are handed out until the scheduler is finished or halts now."""
    verdicts = []
    while not s.finished:
        for lease in s.assign():
            if s.halt is not None and s.halt.urgency is Urgency.NOW:
                return verdicts
            verdicts.append(s.finish(lease.id, succeeds(lease), retryable))
            if tried is not None:
                tried.add(lease.planned.task_id)
    return verdicts


@pytest.mark.parametrize(
    "text, policy",
    [
        ("never", NEVER),
        ("now,fail=1", HaltPolicy(Urgency.NOW)),
        ("soon,fail=10%", HaltPolicy(Urgency.SOON, threshold=10, percent=True)),
        ("now,success=1", HaltPolicy(Urgency.NOW, HaltPolicy.parse("now,success=1").counted)),
        ("soon,done=5", HaltPolicy.parse("soon,done=5")),
        ("2", HaltPolicy(Urgency.NOW)),  # GNU parallel's old numeric form
        ("1", HaltPolicy(Urgency.SOON)),
        ("0", NEVER),
    ],
)
def test_halt_text_parses_like_gnu_parallel(text, policy):
    assert HaltPolicy.parse(text) == policy
    assert HaltPolicy.parse(policy.text) == policy  # the text round-trips


@pytest.mark.parametrize("text", ["", "now", "later,fail=1", "now,fails=1", "now,fail=0", "now,fail=1.5", "now,fail=101%", "now,fail=nan", "now,fail=x"])
def test_bad_halt_text_is_refused_with_the_forms(text):
    with pytest.raises(ConfigError, match="--halt"):
        HaltPolicy.parse(text)


@given(st.text(max_size=20))
def test_any_halt_text_parses_or_is_refused_cleanly(text):
    try:
        HaltPolicy.parse(text)
    except ConfigError:
        pass


def test_programs_that_cannot_run_are_not_retried():
    assert CANNOT_RUN_EXIT_CODES == {126, 127}
    assert cannot_run(127, "") and cannot_run(126, "") and cannot_run(None, "workdir /x does not exist on h")
    assert not cannot_run(1, "") and not cannot_run(-9, "")
    s = scheduler(1, max_tries=3)
    s.add_agent("a", 1)
    assert run_all(s, retryable=False) == [Verdict.GIVE_UP]
    assert (s.counts.failed, s.counts.retried) == (1, 0)


def test_the_default_stops_now_when_the_first_tasks_all_fail():
    s = scheduler(3000, max_tries=3)
    s.add_agent("a", 2)
    run_all(s, retryable=False)
    assert s.halt is not None and s.halt.urgency is Urgency.NOW and s.halt.by_failure
    assert s.counts.failed == FAIL_FAST_FIRST_TASKS and "first 10 tasks" in s.halt.reason
    assert s.assign() == []  # nothing new starts


def test_the_default_counts_distinct_tasks_not_retries():
    s = scheduler(3000, max_tries=3)
    s.add_agent("a", 1)
    tried: set[int] = set()
    verdicts = run_all(s, tried=tried)
    assert s.halt is not None
    assert verdicts.count(Verdict.RETRY) >= FAIL_FAST_FIRST_TASKS  # retried, yet only distinct tasks count
    assert len(tried) == FAIL_FAST_FIRST_TASKS


def test_one_success_among_the_first_tasks_disarms_the_default():
    s = scheduler(40, max_tries=1)
    s.add_agent("a", 1)
    run_all(s, succeeds=lambda lease: lease.planned.task_id == 3)
    assert s.halt is None and (s.counts.done, s.counts.failed) == (1, 39)


def test_halt_never_runs_everything():
    s = scheduler(40, max_tries=1, halt=NEVER)
    s.add_agent("a", 1)
    run_all(s)
    assert s.halt is None and s.counts.failed == 40


def test_halt_now_fail_1_stops_at_the_first_task_given_up():
    s = scheduler(100, max_tries=2, total_slots=1, halt=HaltPolicy.parse("now,fail=1"))
    s.add_agent("a", 1)
    run_all(s, succeeds=lambda lease: lease.planned.task_id < 5)
    assert (s.counts.done, s.counts.failed, s.counts.retried) == (5, 1, 1)
    assert s.halt.reason == "--halt now,fail=1: 1 task failed"


def test_halt_soon_lets_running_tasks_finish_and_starts_none():
    s = scheduler(100, max_tries=1, total_slots=4, halt=HaltPolicy.parse("soon,fail=10%"))
    s.add_agent("a", 4)
    running = s.assign()
    finished = 0
    while s.halt is None:
        s.finish(running.pop(0).id, False)
        finished += 1
        running += s.assign()
    assert finished == 10 and s.halt.urgency is Urgency.SOON
    assert running and not s.finished and s.assign() == []
    for lease in running:
        assert s.finish(lease.id, False) is Verdict.GIVE_UP
    assert s.finished and s.counts.remaining == 100 - 10 - len(running)


def test_halt_now_success_1_stops_at_the_first_success():
    s = scheduler(100, max_tries=3, halt=HaltPolicy.parse("now,success=1"))
    s.add_agent("a", 1)
    run_all(s, succeeds=lambda lease: lease.planned.task_id == 2)
    assert s.counts.done == 1 and s.halt is not None and not s.halt.by_failure
