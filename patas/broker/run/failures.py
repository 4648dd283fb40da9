"""What went wrong in a run, grouped by kind, for the early-stop line and the final summary.

A kind is how an attempt ended, in words: `exit 1`, `cannot run (exit 127)`, `killed by signal 9`,
`timed out`, or the agent's own reason a command could not start. The tally keeps, per kind, how
many attempts ended so, which tasks were given up with it (their last attempt's kind), and one
example attempt with its command and output file, so the user can look at it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from patas.broker.run.scheduler import CANNOT_RUN_EXIT_CODES, Verdict
from patas.common.lab import Outcome


@dataclass(frozen=True)
class AttemptFailure:
    """An attempt that did not succeed, for the user to see why."""

    experiment_name: str
    task_id: int
    values: tuple[tuple[str, str], ...]
    attempt: int
    tries: int
    max_tries: int
    outcome: Outcome
    exit_code: int | None
    error: str
    node_name: str
    verdict: Verdict
    tail: str
    command: str = ""  # the rendered command(s) of the task, one per line
    output_path: str = ""  # the attempt's file holding its last lines (stderr, else stdout)

    @property
    def kind(self) -> str:
        return failure_kind(self.outcome, self.exit_code, self.error)

    @property
    def last_line(self) -> str:
        lines = self.tail.strip().splitlines()
        return lines[-1].strip() if lines else ""


def failure_kind(outcome: Outcome, exit_code: int | None, error: str) -> str:
    """How an attempt failed, in a few words that group alike failures together."""
    if error:
        return error
    if outcome is Outcome.TIMEOUT:
        return "timed out"
    if outcome is Outcome.LOST:
        return "lost with its node"
    if exit_code is not None and exit_code < 0:
        return f"killed by signal {-exit_code}"
    if exit_code in CANNOT_RUN_EXIT_CODES:
        return f"cannot run (exit {exit_code})"
    return f"exit {exit_code}"


@dataclass
class KindTally:
    kind: str
    attempts: int = 0
    example: AttemptFailure | None = None  # the first attempt that failed so
    given_up: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))  # experiment → task ids
    # experiment → the task id of each attempt that failed so (for patas status)
    attempted: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    last_given_up: AttemptFailure | None = None

    @property
    def given_up_count(self) -> int:
        return sum(len(ids) for ids in self.given_up.values())


@dataclass
class FailureTally:
    """Every failed attempt of a run, by kind."""

    kinds: dict[str, KindTally] = field(default_factory=dict)

    def add(self, failure: AttemptFailure) -> None:
        tally = self.kinds.get(failure.kind)
        if tally is None:
            tally = self.kinds[failure.kind] = KindTally(failure.kind, example=failure)
        tally.attempts += 1
        tally.attempted[failure.experiment_name].append(failure.task_id)
        if failure.verdict is Verdict.GIVE_UP:
            tally.given_up[failure.experiment_name].append(failure.task_id)
            tally.last_given_up = failure

    def most_common(self) -> KindTally | None:
        """The kind most attempts failed with (the first seen, on a tie)."""
        return max(self.kinds.values(), key=lambda t: t.attempts, default=None)

    def given_up(self) -> list[KindTally]:
        """The kinds tasks were given up with, the most frequent first."""
        kinds = [t for t in self.kinds.values() if t.given_up_count]
        return sorted(kinds, key=lambda t: -t.given_up_count)
