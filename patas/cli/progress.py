"""What `patas explore` shows: the plan, the confirmation, live progress, failures, the summary.

Everything goes to stderr, so stdout stays free for results. On a terminal, progress is a live
rich bar; elsewhere (a log file, CI) a plain line every PLAIN_PROGRESS_INTERVAL_S seconds.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from patas.broker.coordinator import AttemptFailure, RunResult
from patas.broker.exploration import Exploration
from patas.broker.scheduler import Counts, Verdict
from patas.common.lab import Outcome

PLAIN_PROGRESS_INTERVAL_S = 10.0
# Failures shown in full; after that they are only counted, so a broken grid cannot flood the screen.
MAX_FAILURES_SHOWN = 10
TAIL_LINES = 3


def describe_plan(exploration: Exploration) -> str:
    lines = []
    for plan in exploration.plans:
        experiment = plan.experiment
        lines.append(
            f"Experiment {experiment.name}: {experiment.combination_count:,} combinations × {experiment.repeat}"
            f" repeats = {plan.total:,} tasks ({plan.done:,} done, {plan.to_run:,} to run) → {plan.lab.path}"
        )
        if plan.changes:
            lines.append(f"  changed since the last run: {'; '.join(plan.changes)}")
            if plan.obsolete:
                lines.append(f"  {plan.obsolete:,} done tasks of the old grid no longer apply (kept on disk)")
    nodes = ", ".join(f"{p.node.name} ({p.node.address}, {p.slots} workers)" for p in exploration.placements)
    if exploration.node_failures:
        configured = len(exploration.placements) + len(exploration.node_failures)
        lines.append(f"{len(exploration.placements)}/{configured} nodes up: {nodes}")
        lines.extend(f"  {failure}" for failure in exploration.node_failures)
    else:
        lines.append(f"Nodes: {nodes}")
    return "\n".join(lines)


def confirm(exploration: Exploration) -> bool:
    """Ask before starting, on a terminal only: a script or a pipe is never blocked."""
    if not sys.stdin.isatty():
        return True
    counts = exploration.counts()
    return click.confirm(
        f"Run {counts.total - counts.skipped:,} tasks on {len(exploration.placements)} node(s)"
        f" with {exploration.workers} workers?",
        default=True,
        err=True,
    )


class RunReporter:
    """A `RunObserver` that draws progress and reports failures on stderr."""

    def __init__(self, quiet: bool, workers: int) -> None:
        self.quiet = quiet
        self.workers = workers
        self.console = Console(stderr=True, highlight=False)
        self.live = self.console.is_terminal and not quiet
        self.failures_shown = 0
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._last_plain = time.monotonic()
        self._started = time.monotonic()

    def __enter__(self) -> "RunReporter":
        if self.live:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("tasks", total=None, status="starting agents")
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()

    def progress(self, counts: Counts) -> None:
        if self._progress is not None and self._task is not None:
            finished = counts.done + counts.failed
            self._progress.update(
                self._task, completed=finished, total=counts.total - counts.skipped, status=self._status(counts)
            )
        elif not self.quiet and time.monotonic() - self._last_plain >= PLAIN_PROGRESS_INTERVAL_S:
            self._last_plain = time.monotonic()
            left = counts.total - counts.skipped
            self.console.print(f"{counts.done + counts.failed:,}/{left:,} tasks: {self._status(counts)}")

    def _status(self, counts: Counts) -> str:
        # Agents hold a queued task per slot beyond the running ones; count only what runs.
        running = min(counts.running, self.workers)
        rate = (counts.done + counts.failed) / max(time.monotonic() - self._started, 1e-9)
        return f"{running} running, {counts.failed} failed, {counts.skipped} skipped, {rate:.0f}/s"

    def attempt_failed(self, failure: AttemptFailure) -> None:
        self.failures_shown += 1
        if self.failures_shown > MAX_FAILURES_SHOWN:
            return
        values = " ".join(f"{k}={v}" for k, v in failure.values)
        next_step = {Verdict.RETRY: "will retry", Verdict.GIVE_UP: "giving up"}[failure.verdict]
        head = (
            f"{failure.experiment_name} task {failure.task_id} ({values}) attempt {failure.tries}/{failure.max_tries}"
            f" on {failure.node_name}: {_why(failure)}; {next_step}"
        )
        self.console.print(head, style="yellow" if failure.verdict is Verdict.RETRY else "red", markup=False)
        for line in failure.tail.strip().splitlines()[-TAIL_LINES:]:
            self.console.print(f"    {line}", markup=False)
        if self.failures_shown == MAX_FAILURES_SHOWN:
            self.console.print("(further failures are counted, not shown)")

    def agent_event(self, node_name: str, message: str) -> None:
        if "lost" in message or not self.quiet:
            if not self.live or "lost" in message:
                self.console.print(f"{node_name}: {message}", markup=False)

    def summarize(self, result: RunResult, exploration: Exploration) -> None:
        counts = result.counts
        ran = counts.done + counts.failed
        rate = ran / result.elapsed_s if result.elapsed_s else 0.0
        parts = [f"{counts.done:,} done", f"{counts.failed:,} failed"]
        if counts.skipped:
            parts.append(f"{counts.skipped:,} skipped (done before)")
        if counts.retried:
            parts.append(f"{counts.retried:,} retried")
        state = "Interrupted" if result.interrupted else "Finished"
        folders = ", ".join(str(p.lab.path) for p in exploration.plans)
        self.console.print(
            f"{state}: {', '.join(parts)} in {result.elapsed_s:.1f} s ({rate:.0f} tasks/s). Outputs in {folders}",
            markup=False,
        )
        if result.interrupted:
            self.console.print(f"{counts.remaining:,} tasks left; run the same command again to resume.", markup=False)
        for failure in result.agent_failures:
            self.console.print(f"agent {failure}", style="red", markup=False)


def _why(failure: AttemptFailure) -> str:
    if failure.error:
        return failure.error
    if failure.outcome is Outcome.TIMEOUT:
        return "timed out"
    if failure.exit_code is not None and failure.exit_code < 0:
        return f"killed by signal {-failure.exit_code}"
    return f"exit {failure.exit_code}"
