"""When a run stops early: `--halt`, with GNU parallel's meaning, and the default early stop.

    never               run every task whatever happens
    now,fail=1          at the first task given up, kill what runs and stop
    soon,fail=10%       once 10% of the run's tasks are given up, start nothing new and let the
                        running ones finish
    now,success=1       at the first task done, kill what runs and stop
    soon,done=5         once 5 tasks have ended either way, start nothing new

GNU parallel's older numeric forms are accepted too: 0 = never, 1 = soon,fail=1, 2 = now,fail=1,
-1 = soon,success=1, -2 = now,success=1.

Without `--halt`, a run stops by itself when the first FAIL_FAST_FIRST_TASKS tasks tried have all
failed and none succeeded: a typo in the command or a missing program should cost ten attempts,
not thousands. `--halt never` turns that off; any other `--halt` replaces it.

Pure logic: the scheduler feeds it what ended and asks whether to stop.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from patas.common.errors import ConfigError

# Distinct tasks whose attempts all failed, none having succeeded, before the default early stop.
FAIL_FAST_FIRST_TASKS = 10

_HALT_FORMS = "never, or now|soon,fail|success|done=N (or N%)"
_LEGACY = {"0": "never", "1": "soon,fail=1", "2": "now,fail=1", "-1": "soon,success=1", "-2": "now,success=1"}


class Urgency(enum.Enum):
    """How a run stops: `now` kills what runs; `soon` lets it finish and starts nothing new."""

    NOW = "now"
    SOON = "soon"


class Counted(enum.Enum):
    """Which ended tasks a halt condition counts."""

    FAIL = "fail"  # tasks given up after their tries
    SUCCESS = "success"  # tasks done
    DONE = "done"  # either


@dataclass(frozen=True)
class Halt:
    """A decision to stop the run, and why, in words for the user."""

    urgency: Urgency
    reason: str
    by_failure: bool  # the run stopped because tasks failed (its exit status says so)


@dataclass(frozen=True)
class HaltPolicy:
    """A `--halt` condition; `threshold` is a count, or a percentage of the run's tasks."""

    urgency: Urgency | None  # None: never halt
    counted: Counted = Counted.FAIL
    threshold: float = 1
    percent: bool = False
    fail_fast: bool = False  # the default early stop, not a user's --halt

    @classmethod
    def parse(cls, text: str) -> "HaltPolicy":
        words = _LEGACY.get(text.strip(), text.strip())
        if words == "never":
            return NEVER
        when, _, condition = words.partition(",")
        what, _, amount = condition.partition("=")
        try:
            urgency, counted = Urgency(when), Counted(what)
        except ValueError:
            raise ConfigError(f"--halt '{text}': expected {_HALT_FORMS}") from None
        percent = amount.endswith("%")
        number = _number(amount[:-1] if percent else amount)
        if number is None or not math.isfinite(number) or number <= 0 or (percent and number > 100) or (not percent and number != int(number)):
            raise ConfigError(f"--halt '{text}': {what}= needs a number of tasks (1 or more) or a percentage up to 100%")
        return cls(urgency, counted, number, percent)

    def check(self, total: int, done: int, failed: int) -> Halt | None:
        """The halt to make once `done` tasks succeeded and `failed` were given up, of `total`."""
        if self.urgency is None or self.fail_fast:
            return None
        ended = {Counted.FAIL: failed, Counted.SUCCESS: done, Counted.DONE: done + failed}[self.counted]
        needed = self.threshold * total / 100 if self.percent else self.threshold
        if ended == 0 or ended < needed:
            return None
        by_failure = self.counted is not Counted.SUCCESS and failed > 0
        return Halt(self.urgency, f"--halt {self.text}: {ended:,} {_noun(self.counted, ended)}", by_failure)

    @property
    def text(self) -> str:
        if self.urgency is None:
            return "never"
        amount = f"{self.threshold:g}%" if self.percent else f"{int(self.threshold)}"
        return f"{self.urgency.value},{self.counted.value}={amount}"


NEVER = HaltPolicy(None)
# The default: stop now when the first tasks tried all failed (see FailFast).
FAIL_FAST = HaltPolicy(Urgency.NOW, fail_fast=True)


class FailFast:
    """Watches the first tasks of a run: if FAIL_FAST_FIRST_TASKS distinct tasks had attempts
    end and every one of them failed, the command itself is likely broken."""

    def __init__(self, first_tasks: int = FAIL_FAST_FIRST_TASKS) -> None:
        self.first_tasks = first_tasks
        self._failed_tasks: set[tuple[int, int]] = set()  # (experiment id, task id)
        self._succeeded = False

    def attempt_ended(self, task: tuple[int, int], succeeded: bool) -> Halt | None:
        if self._succeeded:
            return None
        if succeeded:
            self._succeeded = True
            return None
        self._failed_tasks.add(task)
        if len(self._failed_tasks) < self.first_tasks:
            return None
        return Halt(Urgency.NOW, f"the first {self.first_tasks} tasks tried all failed", True)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _noun(counted: Counted, count: int) -> str:
    noun = "task" if count == 1 else "tasks"
    return {Counted.FAIL: f"{noun} failed", Counted.SUCCESS: f"{noun} done", Counted.DONE: f"{noun} ended"}[counted]
