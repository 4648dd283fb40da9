"""Where a run's tasks come from: a fixed grid, or a search that makes them as results come in.

The scheduler asks its source for a task whenever a slot is free. A grid's source is the lazy
walk of its tasks; a search's (patas/broker/run/study.py) asks its sampler for a new trial at that
moment, so that each suggestion sees every result known by then. The source hears how each
attempt ended (`attempt_ended`), what a running task prints (`output`, only when `watches_output`)
and which attempts the committer made durable (`committed`): a search tells its sampler a result
only once the attempt it comes from is in the journal.
"""

from __future__ import annotations

from typing import Iterator, Protocol

from patas.broker.run.plan import PlannedTask
from patas.common.lab import AttemptRecord, Outcome


class TaskSource(Protocol):
    # Queue tasks on agents beyond their free slots (a grid's order is fixed, so nothing is lost
    # by choosing early; a search's next suggestion is better made when a slot is free).
    prefetch: bool
    # The run sends this source the stdout of running tasks.
    watches_output: bool
    # The committer hands this source every record it made durable.
    wants_commits: bool
    # For progress: a search's best trial so far ("" for a grid).
    best_text: str

    def next_task(self) -> PlannedTask | None:
        """A task to start now; None when there is none now (see `exhausted`)."""

    @property
    def exhausted(self) -> bool:
        """No task will come any more (checked after `next_task` gave None)."""

    def start(self) -> None:
        """The run has started: the source may write into the lab from now on."""

    def attempt_ended(self, planned: PlannedTask, attempt: int, outcome: Outcome, final: bool) -> None:
        """An attempt ended; `final`: the task will not be tried again in this run."""

    def output(self, planned: PlannedTask, data: bytes) -> bool:
        """A chunk of a running task's stdout; True: stop the task now (it is pruned)."""

    def committed(self, record: AttemptRecord) -> None:
        """The attempt of `record` is durable in the journal."""

    def close(self) -> None:
        """The run is over; every committed record was handed over."""


class GridSource:
    """The tasks of fixed grids, in order: the run loop's cost per task is one `next`."""

    prefetch = True
    watches_output = False
    wants_commits = False
    best_text = ""

    def __init__(self, pending: Iterator[PlannedTask]) -> None:
        self._pending = pending
        self.exhausted = False

    def next_task(self) -> PlannedTask | None:
        planned = next(self._pending, None)
        if planned is None:
            self.exhausted = True
        return planned

    def start(self) -> None:
        pass

    def attempt_ended(self, planned: PlannedTask, attempt: int, outcome: Outcome, final: bool) -> None:
        pass

    def output(self, planned: PlannedTask, data: bytes) -> bool:
        return False

    def committed(self, record: AttemptRecord) -> None:
        pass

    def close(self) -> None:
        pass
