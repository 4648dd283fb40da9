"""The scheduler alone: no sockets, no files."""

from patas.broker.run.halt import FAIL_FAST, HaltPolicy
from patas.broker.run.plan import PlannedTask
from patas.broker.run.scheduler import FAILURES_BEFORE_QUARANTINE, MAX_LOST_ATTEMPTS, PREFETCH_PER_SLOT, Counts, Scheduler, Verdict
from patas.common.config import experiment_from_flags
from patas.common.sweep import tasks
from patas.common.variables import arithmetic_variable


def scheduler(task_count: int, max_tries: int = 3, total_slots: int = 3, halt: HaltPolicy = FAIL_FAST) -> Scheduler:
    experiment = experiment_from_flags("grid", ["run {i}"], [arithmetic_variable("i", 0, task_count, 1, "t")], 1, max_tries, ".", None)
    planned = (PlannedTask(0, experiment, task, i, 1) for i, task in enumerate(tasks(experiment)))
    return Scheduler(planned, Counts(total=task_count), total_slots, halt)


def test_agents_get_their_slots_plus_a_prefetched_task_each():
    s = scheduler(100)
    s.add_agent("a", 2)
    s.add_agent("b", 1)
    leases = s.assign()
    per_agent = {agent: sum(1 for lease in leases if lease.agent_id == agent) for agent in "ab"}
    assert per_agent == {"a": 2 * (1 + PREFETCH_PER_SLOT), "b": 1 + PREFETCH_PER_SLOT}
    assert s.assign() == []  # no room until something finishes
    s.finish(leases[0].id, True)
    assert [lease.agent_id for lease in s.assign()] == [leases[0].agent_id]


def test_the_last_tasks_spread_over_every_agent_instead_of_queueing_on_the_first():
    s = scheduler(8, total_slots=8)
    s.add_agent("first", 2)
    assert len(s.assign()) == 2  # no queueing: 8 tasks for 8 slots
    for late in ("second", "third", "fourth"):
        s.add_agent(late, 2)
    assert sorted(lease.agent_id for lease in s.assign()) == ["fourth", "fourth", "second", "second", "third", "third"]


def test_failed_attempts_retry_up_to_max_tries_then_give_up():
    s = scheduler(1, max_tries=3)
    s.add_agent("a", 1)
    verdicts, attempts = [], []
    while not s.finished:
        (lease,) = s.assign()
        attempts.append((lease.attempt, lease.tries))
        verdicts.append(s.finish(lease.id, False))
    assert attempts == [(1, 1), (2, 2), (3, 3)]
    assert verdicts == [Verdict.RETRY, Verdict.RETRY, Verdict.GIVE_UP]
    assert (s.counts.failed, s.counts.retried, s.counts.done) == (1, 2, 0)


def test_a_lost_agent_gives_its_tasks_back_without_using_their_tries():
    s = scheduler(1, max_tries=1)
    s.add_agent("a", 1)
    (lease,) = s.assign()
    assert [lost.id for lost in s.remove_agent("a")] == [lease.id]
    assert s.lease(lease.id) is None  # fenced: a late result of the old attempt is not taken
    s.add_agent("b", 1)
    (again,) = s.assign()
    assert (again.attempt, again.tries, again.agent_id) == (2, 1, "b")
    assert s.finish(again.id, True) is Verdict.DONE
    assert s.finished and s.counts.done == 1


def test_a_task_that_keeps_losing_its_agent_is_given_up():
    s = scheduler(1)
    for round_ in range(MAX_LOST_ATTEMPTS):
        s.add_agent(f"agent{round_}", 1)
        assert len(s.assign()) == 1
        s.remove_agent(f"agent{round_}")
    assert s.finished and s.counts.failed == 1
    (given_up,) = s.take_given_up_lost()  # for the summary to name it
    assert given_up.planned.task_id == 0 and s.take_given_up_lost() == []


def test_drain_starts_nothing_new_and_finishes_when_running_tasks_end():
    s = scheduler(10)
    s.add_agent("a", 1)
    running = s.assign()
    assert [lease.id for lease in s.drain()] == [lease.id for lease in running]
    assert not s.finished
    for lease in running:
        s.finish(lease.id, False)
    assert s.finished and s.assign() == []


def test_an_agent_failing_while_others_succeed_is_flagged_but_not_when_all_fail():
    s = scheduler(100, max_tries=10)
    s.add_agent("bad", 1)
    s.add_agent("good", 1)
    for _ in range(FAILURES_BEFORE_QUARANTINE):
        leases = s.assign()
        for lease in leases:
            s.finish(lease.id, lease.agent_id == "good")
    assert s.is_failing("bad") and not s.is_failing("good")

    everyone_fails = scheduler(100, max_tries=10)
    everyone_fails.add_agent("a", 1)
    everyone_fails.add_agent("b", 1)
    for _ in range(FAILURES_BEFORE_QUARANTINE + 1):
        for lease in everyone_fails.assign():
            everyone_fails.finish(lease.id, False)
    assert not everyone_fails.is_failing("a") and not everyone_fails.is_failing("b")


class OnDemand:
    """A source like a search's: no prefetch, tasks made only once `opened`, `limit` in all."""

    prefetch = False
    watches_output = wants_commits = False
    best_text = ""

    def __init__(self, limit: int) -> None:
        self.made, self.limit, self.opened = 0, limit, False
        self.experiment = experiment_from_flags("s", ["run {i}"], [arithmetic_variable("i", 0, limit, 1, "t")], 1, 3, ".", None)

    @property
    def exhausted(self) -> bool:
        return self.made >= self.limit

    def next_task(self) -> PlannedTask | None:
        if not self.opened or self.exhausted:
            return None
        task = list(tasks(self.experiment))[self.made]
        self.made += 1
        return PlannedTask(0, self.experiment, task, task.combination_id, 1, self.made - 1)


def test_a_source_with_nothing_yet_keeps_the_run_going_and_gets_no_prefetch():
    source = OnDemand(10)
    s = Scheduler(source, Counts(total=10), 2)
    s.prime()
    assert not s.finished  # nothing now, but the source is not exhausted
    s.add_agent("a", 2)
    assert s.assign() == []
    source.opened = True
    leases = s.assign()
    assert len(leases) == 2 and source.made == 2  # its slots, nothing queued beyond them
    s.prune(leases[0].id)
    assert s.counts.pruned == 1 and s.counts.remaining == 9  # neither done nor failed, and not to run again
    assert len(s.assign()) == 1
