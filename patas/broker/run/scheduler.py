"""Which task runs where: the queue, the leases of running attempts, retries.

Pure logic: no sockets, no files, no clocks of its own (callers pass `now`). Every dispatch of a
task is a `Lease` with a fresh id; that id is the fencing token. Messages about a lease that is no
longer current (its agent was declared lost and the task given to another) are ignored, so a task's
result is taken exactly once even though it may run more than once.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Iterator

from patas.broker.run.halt import FAIL_FAST, FailFast, Halt, HaltPolicy
from patas.broker.run.plan import PlannedTask
from patas.broker.run.source import GridSource, TaskSource

# A task whose agent was lost this many times is given up: it may be what kills its node.
MAX_LOST_ATTEMPTS = 3
# Tasks an agent holds beyond its slots, queued, so a slot that frees up starts its next task at
# once instead of waiting a round trip to the broker (short tasks are latency-bound without it).
PREFETCH_PER_SLOT = 1
# An agent whose last this-many attempts all failed, while attempts succeeded on other agents
# meanwhile, is taken out of rotation: the node is likely broken, not the tasks.
FAILURES_BEFORE_QUARANTINE = 5
# Exit statuses of a command that could not run at all (the shell's "not executable" and "not
# found"): another try would fail the same way, so such an attempt is not retried.
CANNOT_RUN_EXIT_CODES = frozenset({126, 127})


def cannot_run(exit_code: int | None, error: str) -> bool:
    """True when an attempt's command never ran: a missing or unexecutable program, or a spawn
    failure the agent reports as `error` (no such workdir, no shell)."""
    return bool(error) or exit_code in CANNOT_RUN_EXIT_CODES


class Verdict(enum.Enum):
    """What happens to a task after one of its attempts ends."""

    DONE = "done"
    RETRY = "retry"
    GIVE_UP = "give up"


@dataclass(eq=False)  # one of a kind: compared by identity
class Lease:
    """One attempt of one task, given to one agent (running, or queued there for a free slot)."""

    id: int
    planned: PlannedTask
    attempt: int
    tries: int  # attempts that counted against max_tries, this one included
    agent_id: str
    # time.monotonic() when it took one of its agent's slots, as far as the coordinator can tell;
    # 0 while it waits there for a free slot (set by the coordinator, for patas status)
    started_at: float = 0.0


@dataclass(eq=False)  # one of a kind: compared by identity
class AgentSlots:
    agent_id: str
    slots: int
    leases: set[int] = field(default_factory=set)
    failure_streak: int = 0
    successes_before_streak: int = 0  # the run's successes when the streak began

    def room(self, prefetch: bool) -> int:
        """Tasks it can take now: up to its slots, or beyond them (queued) with `prefetch`."""
        return self.slots * (1 + PREFETCH_PER_SLOT if prefetch else 1) - len(self.leases)


@dataclass
class Retry:
    planned: PlannedTask
    attempt: int
    tries: int
    lost: int


@dataclass
class Counts:
    """Where the run's tasks are, for progress and the final summary."""

    total: int = 0
    skipped: int = 0  # done by an earlier run
    done: int = 0
    failed: int = 0  # given up after their tries
    retried: int = 0  # attempts that failed and were tried again
    running: int = 0  # given to agents (running, or queued there for a free slot)
    pruned: int = 0  # stopped early by a search's pruner: neither done nor failed
    best: str = ""  # a search's best trial so far, as progress shows it

    @property
    def remaining(self) -> int:
        return self.total - self.skipped - self.done - self.failed - self.pruned


class Scheduler:
    def __init__(
        self,
        source: TaskSource | Iterator[PlannedTask],
        counts: Counts,
        total_slots: int,
        halt_policy: HaltPolicy = FAIL_FAST,
    ) -> None:
        self._source: TaskSource = GridSource(source) if isinstance(source, Iterator) else source
        self._retries: deque[Retry] = deque()
        self._agents: dict[str, AgentSlots] = {}
        self._leases: dict[int, Lease] = {}
        self._lost: dict[int, int] = {}  # lease id → lost attempts of its task so far
        self._next_lease = 1
        self._draining = False
        self._successes = 0
        self.counts = counts
        self.total_slots = total_slots  # of every node in the run, connected or not yet
        self.halt_policy = halt_policy
        self._fail_fast = FailFast() if halt_policy.fail_fast else None
        self._given_up_lost: list[Lease] = []  # given up because their agents were lost, not yet reported
        self.halt: Halt | None = None  # set once the run must stop early; it starts nothing new then

    # --- agents -----------------------------------------------------------------------------

    def add_agent(self, agent_id: str, slots: int) -> None:
        self._agents[agent_id] = AgentSlots(agent_id, slots)

    def remove_agent(self, agent_id: str, lost: bool = True) -> list[Lease]:
        """Forget an agent; its running attempts go back to the queue as new attempts.

        `lost`: the agent went away by itself, which counts towards giving its tasks up (a task
        may be what kills its node); an agent the user removed (`lost=False`) costs them nothing."""
        agent = self._agents.pop(agent_id, None)
        if agent is None:
            return []
        if not lost:
            self.total_slots -= agent.slots  # removed for good; a lost node may come back
        taken = [self._leases.pop(lease_id) for lease_id in sorted(agent.leases)]
        for lease in taken:
            self.counts.running -= 1
            times_lost = self._lost.pop(lease.id, 0) + (1 if lost else 0)
            if times_lost >= MAX_LOST_ATTEMPTS:
                self.counts.failed += 1
                self._given_up_lost.append(lease)
                self._check_halt()
            else:
                # Losing a node is not the task's fault: it keeps its tries.
                self._retries.append(Retry(lease.planned, lease.attempt + 1, lease.tries - 1, times_lost))
        return taken

    def drain_agent(self, agent_id: str) -> None:
        """Give the agent no new task; those it holds run to their end."""
        agent = self._agents.get(agent_id)
        if agent is not None:
            self.total_slots -= agent.slots
            agent.slots = 0

    def held(self, agent_id: str) -> int:
        """How many leases the agent holds (running, or queued there)."""
        agent = self._agents.get(agent_id)
        return len(agent.leases) if agent is not None else 0

    def leases_of(self, agent_id: str) -> list[Lease]:
        """The agent's leases, in the order it was given them (running first, then queued)."""
        agent = self._agents.get(agent_id)
        return [self._leases[lease_id] for lease_id in sorted(agent.leases)] if agent is not None else []

    def take_given_up_lost(self) -> list[Lease]:
        """The tasks `remove_agent` gave up since the last call (they lost MAX_LOST_ATTEMPTS agents)."""
        given_up, self._given_up_lost = self._given_up_lost, []
        return given_up

    def has_agent(self, agent_id: str) -> bool:
        return agent_id in self._agents

    @property
    def agent_count(self) -> int:
        return len(self._agents)

    # --- dispatch ---------------------------------------------------------------------------

    def assign(self) -> list[Lease]:
        """Give agents their next tasks, round-robin; the new leases to send.

        Free slots are filled first, across all agents. Tasks are queued on agents beyond their
        slots only while more tasks wait than the run has slots in all: otherwise the first agents
        to connect would hoard the last few (long) tasks while others stand idle."""
        leases: list[Lease] = []
        for prefetch in (False, self._source.prefetch and self._unassigned() > self.total_slots):
            while not self._draining:
                given = self._one_round(prefetch, leases)
                if given is None:
                    return leases
                if not given:
                    break
        return leases

    def _one_round(self, prefetch: bool, leases: list[Lease]) -> int | None:
        """One task to each agent with room; how many were given (None: no task is left)."""
        given = 0
        for agent in self._agents.values():
            if agent.room(prefetch) <= 0:
                continue
            retry = self._next_task()
            if retry is None:
                return None
            lease = Lease(self._next_lease, retry.planned, retry.attempt, retry.tries + 1, agent.agent_id)
            self._next_lease += 1
            self._leases[lease.id] = lease
            if retry.lost:
                self._lost[lease.id] = retry.lost
            agent.leases.add(lease.id)
            self.counts.running += 1
            leases.append(lease)
            given += 1
        return given

    def _unassigned(self) -> int:
        return self.counts.remaining - self.counts.running

    def _next_task(self) -> Retry | None:
        if self._retries:
            return self._retries.popleft()
        if self._source.exhausted:
            return None
        planned = self._source.next_task()
        if planned is None:
            return None
        return Retry(planned, planned.first_attempt, 0, 0)

    def lease(self, lease_id: int) -> Lease | None:
        """The current lease with this id, or None if it was fenced off (or never existed)."""
        return self._leases.get(lease_id)

    def finish(self, lease_id: int, succeeded: bool, retryable: bool = True) -> Verdict:
        """Close a lease after its attempt ended; the caller checked `lease()` first.

        A failed attempt is tried again unless the task used up its tries, the attempt is not
        `retryable` (its program cannot run) or the run is stopping."""
        lease = self._leases.pop(lease_id)
        self._lost.pop(lease_id, None)
        agent = self._agents[lease.agent_id]
        agent.leases.discard(lease_id)
        self.counts.running -= 1
        self._track_streak(agent, succeeded)
        if self._fail_fast is not None and self.halt is None:
            self._stop(self._fail_fast.attempt_ended((lease.planned.experiment_id, lease.planned.task_id), succeeded))
        if succeeded:
            self.counts.done += 1
            self._check_halt()
            return Verdict.DONE
        if retryable and lease.tries < lease.planned.max_tries and not self._draining:
            self.counts.retried += 1
            self._retries.append(Retry(lease.planned, lease.attempt + 1, lease.tries, 0))
            return Verdict.RETRY
        self.counts.failed += 1
        self._check_halt()
        return Verdict.GIVE_UP

    def prune(self, lease_id: int) -> Lease:
        """Close a lease whose task a search stopped early: not a failure, never tried again."""
        lease = self._leases.pop(lease_id)
        self._lost.pop(lease_id, None)
        self._agents[lease.agent_id].leases.discard(lease_id)
        self.counts.running -= 1
        self.counts.pruned += 1
        self._check_halt()
        return lease

    def _check_halt(self) -> None:
        if self.halt is None:
            counts = self.counts
            self._stop(self.halt_policy.check(counts.total - counts.skipped, counts.done, counts.failed))

    def _stop(self, halt: Halt | None) -> None:
        if halt is not None and self.halt is None:
            self.halt = halt
            self._draining = True

    def _track_streak(self, agent: AgentSlots, succeeded: bool) -> None:
        if succeeded:
            self._successes += 1
            agent.failure_streak = 0
            return
        if agent.failure_streak == 0:
            agent.successes_before_streak = self._successes
        agent.failure_streak += 1

    def is_failing(self, agent_id: str) -> bool:
        """True when the agent's recent attempts all failed while others' succeeded meanwhile."""
        agent = self._agents.get(agent_id)
        return (
            agent is not None
            and agent.failure_streak >= FAILURES_BEFORE_QUARANTINE
            and self._successes > agent.successes_before_streak
        )

    def drain(self) -> list[Lease]:
        """Start no new attempt; the leases still running (to be cancelled by the caller)."""
        self._draining = True
        return list(self._leases.values())

    @property
    def finished(self) -> bool:
        """Nothing running and nothing left to start."""
        if self._leases:
            return False
        if self._draining:
            return True
        self.prime()  # is the source of tasks empty? Look one task ahead to know.
        return not self._retries and self._source.exhausted

    def prime(self) -> None:
        """Look ahead one task so `finished` is true at once for a run with nothing to do."""
        if not self._retries and not self._source.exhausted:
            retry = self._next_task()
            if retry is not None:
                self._retries.appendleft(retry)
