"""What `patas explore` shows: the plan, the confirmation, live progress, failures, the summary.

Everything goes to stderr, so stdout stays free for results. On a terminal, progress is a live
rich bar once a run has lasted BAR_DELAY_S; elsewhere (a log file, CI) a plain line every
PLAIN_PROGRESS_INTERVAL_S seconds, and lines are never wrapped (a log or a pipe has no width).
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

import click

from patas.broker.run.scheduler import Counts, Verdict
from patas.common.errors import EXIT_TASKS_FAILED
from patas.common.wording import plural

if TYPE_CHECKING:  # rich is imported where it draws (not with -q); the rest only annotates here
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from patas.broker.run.coordinator import RunResult
    from patas.broker.run.dry_run import DryRun
    from patas.broker.run.exploration import Exploration
    from patas.broker.run.failures import AttemptFailure, KindTally
    from patas.broker.run.plan import ExperimentPlan

PLAIN_PROGRESS_INTERVAL_S = 10.0
# A run that ends sooner never draws a bar: it would flash by, and importing rich to draw it costs
# ~20 ms, a tenth of a short run.
BAR_DELAY_S = 0.5
# Failures shown in full; after that they are only counted, so a broken grid cannot flood the screen.
MAX_FAILURES_SHOWN = 10
TAIL_LINES = 3
# Task ids listed per kind of failure in the summary; the rest are counted.
MAX_IDS_SHOWN = 12


def rate_text(tasks: int, seconds: float) -> str:
    """Tasks per second: whole numbers from 1/s up, two significant digits below."""
    rate = tasks / seconds if seconds > 0 else 0.0
    return f"{rate:,.0f}" if rate >= 1 or rate == 0 else f"{rate:.2g}"


def compact_ids(ids: list[int], limit: int = MAX_IDS_SHOWN) -> str:
    """`3, 7-9, 12 … (+40 more)`: sorted ids as ranges, the first `limit` ids shown."""
    ordered = sorted(set(ids))
    shown, rest = ordered[:limit], len(ordered) - limit
    ranges: list[list[int]] = []
    for task_id in shown:
        if ranges and task_id == ranges[-1][1] + 1:
            ranges[-1][1] = task_id
        else:
            ranges.append([task_id, task_id])
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)
    return text + (f" … (+{rest:,} more)" if rest > 0 else "")


def describe_experiments(plans: list[ExperimentPlan]) -> list[str]:
    lines = []
    for plan in plans:
        experiment = plan.experiment
        if experiment.search is not None:
            lines.append(_describe_search(plan))
            continue
        lines.append(
            f"Experiment {experiment.name}: {plural(experiment.combination_count, 'combination')}"
            f" × {plural(experiment.repeat, 'repeat')} = {plural(plan.total, 'task')}"
            f" ({plan.done:,} done, {plan.to_run:,} to run) → {plan.lab.path}"
        )
        if plan.changes:
            lines.append(f"  changed since the last run: {'; '.join(plan.changes)}")
            if plan.obsolete:
                applies = "no longer applies" if plan.obsolete == 1 else "no longer apply"
                lines.append(f"  {plural(plan.obsolete, 'done task')} of the old grid {applies} (kept on disk)")
    return lines


def _describe_search(plan: ExperimentPlan) -> str:
    experiment, search = plan.experiment, plan.experiment.search
    assert search is not None
    trials = f"{plural(search.trials, 'trial')}" if search.trials is not None else "trials"
    budget = f" within {search.budget_s:g} s" if search.budget_s is not None else ""
    repeats = f" × {plural(experiment.repeat, 'repeat')}" if experiment.repeat > 1 else ""
    return (
        f"Experiment {experiment.name}: {search.type.value} search, {trials}{budget}{repeats}, {search.objective.direction.value}"
        f" {search.objective.name} ({plural(plan.done, 'task')} done, {plan.to_run:,} to run) → {plan.lab.path}"
    )


def describe_plan(exploration: Exploration) -> str:
    lines = describe_experiments(exploration.plans)
    nodes = ", ".join(f"{p.node.name} ({p.node.address}, {plural(p.slots, 'worker')})" for p in exploration.placements)
    if exploration.node_failures:
        lines.append(f"{_nodes_up(exploration)}: {nodes}")
        lines.extend(f"  {failure}" for failure in exploration.node_failures)
    else:
        lines.append(f"Nodes: {nodes}")
    return "\n".join(lines)


def describe_left_out(exploration: Exploration) -> str | None:
    """The nodes the run goes without, and why (for -q, which shows no plan): None if none."""
    if not exploration.node_failures:
        return None
    return "\n".join([f"{_nodes_up(exploration)}; left out:", *(f"  {failure}" for failure in exploration.node_failures)])


def _nodes_up(exploration: Exploration) -> str:
    configured = len(exploration.placements) + len(exploration.node_failures)
    return f"{len(exploration.placements)}/{plural(configured, 'node')} up"


def describe_dry_run(dry: DryRun) -> tuple[str, str]:
    """The plan (for stderr, like a run's) and the first tasks' commands (for stdout)."""
    lines = describe_experiments(dry.plans)
    if dry.pool is not None:
        lines.append(f"Nodes: the agents of pool {dry.pool} (not contacted)")
    else:
        nodes = ", ".join(
            f"{node.name} ({node.address}, {plural(node.workers, 'worker') if node.workers else 'a worker per core'})"
            for _, node in dry.nodes
        )
        lines.append(f"Nodes (not contacted): {nodes}")
    shown = len(dry.first_tasks)
    searching = any(plan.experiment.search is not None for plan in dry.plans)
    if shown:
        lines.append(f"Dry run: nothing started, nothing written. The first {shown:,} of {plural(dry.to_run, 'task')} to run:")
    elif searching and dry.to_run:
        lines.append("Dry run: nothing started, nothing written. A search's sampler picks each trial's values as it runs.")
    else:
        lines.append("Dry run: nothing started, nothing written. No task to run.")
    commands = [f"{t.experiment.name} {t.task_id}: {' && '.join(t.task.commands)}" for t in dry.first_tasks]
    return "\n".join(lines), "\n".join(commands)


def confirm(exploration: Exploration) -> bool:
    """Ask before starting, on a terminal only: a script or a pipe is never blocked."""
    if not sys.stdin.isatty():
        return True
    counts = exploration.counts()
    return click.confirm(
        f"Run {plural(counts.total - counts.skipped, 'task')} on {plural(len(exploration.placements), 'node')}"
        f" with {plural(exploration.workers, 'worker')}?",
        default=True,
        err=True,
    )


class RunReporter:
    """A `RunObserver` that draws progress and reports failures on stderr."""

    plain_interval_s = PLAIN_PROGRESS_INTERVAL_S  # between progress lines when not on a terminal

    def __init__(self, quiet: bool, workers: int) -> None:
        self.quiet = quiet
        self.workers = workers
        # Plain lines until the bar starts; then rich's console, which prints them above the bar.
        self.console: Lines = PlainLines()
        self.live = not quiet and sys.stderr.isatty()  # a bar is drawn, from BAR_DELAY_S on
        self.failures_shown = 0
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._last_plain = time.monotonic()
        self._started = time.monotonic()

    def __enter__(self) -> "RunReporter":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()

    def _start_bar(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        stderr = console()
        self.console = stderr
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=stderr,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task("tasks", total=None, status="starting agents")

    def progress(self, counts: Counts) -> None:
        if self.live and self._progress is None and time.monotonic() - self._started >= BAR_DELAY_S:
            self._start_bar()
        if self._progress is not None and self._task is not None:
            finished = counts.done + counts.failed + counts.pruned
            self._progress.update(
                self._task, completed=finished, total=counts.total - counts.skipped, status=self._status(counts)
            )
        elif not self.quiet and time.monotonic() - self._last_plain >= self.plain_interval_s:
            self._last_plain = time.monotonic()
            left = counts.total - counts.skipped
            self.console.print(f"{counts.done + counts.failed:,}/{plural(left, 'task')}: {self._status(counts)}")

    def _status(self, counts: Counts) -> str:
        # Agents hold a queued task per slot beyond the running ones; count only what runs.
        running = min(counts.running, self.workers)
        rate = rate_text(counts.done + counts.failed, time.monotonic() - self._started)
        search = f", {counts.pruned} pruned" + (f", {counts.best}" if counts.best else "") if counts.pruned or counts.best else ""
        return f"{running} running, {counts.failed} failed{search}, {counts.skipped} skipped, {rate}/s"

    def attempt_failed(self, failure: AttemptFailure) -> None:
        if self.quiet:
            return  # the summary names the failed tasks
        self.failures_shown += 1
        if self.failures_shown == MAX_FAILURES_SHOWN + 1:
            self.console.print("(further failures are counted, not shown)")
        if self.failures_shown > MAX_FAILURES_SHOWN:
            return
        values = " ".join(f"{k}={v}" for k, v in failure.values)
        next_step = {Verdict.RETRY: "will retry", Verdict.GIVE_UP: "giving up"}[failure.verdict]
        head = (
            f"{failure.experiment_name} task {failure.task_id} ({values}) attempt {failure.tries}/{failure.max_tries}"
            f" on {failure.node_name}: {failure.kind}; {next_step}"
        )
        self.console.print(head, style="yellow" if failure.verdict is Verdict.RETRY else "red", markup=False)
        for line in failure.tail.strip().splitlines()[-TAIL_LINES:]:
            self.console.print(f"    {line}", markup=False)

    def agent_event(self, node_name: str, message: str) -> None:
        if "lost" in message or not self.quiet:
            # A batch job's queue state (its id, PENDING, why) shows above the bar too.
            if not self.live or "lost" in message or message.startswith("waiting:"):
                self.console.print(f"{node_name}: {message}", markup=False)

    def summarize(self, result: RunResult, exploration: Exploration) -> None:
        for line in summary_lines(result, [str(p.lab.path) for p in exploration.plans]):
            self.console.print(line, markup=False)
        for failure in result.agent_failures:
            self.console.print(f"agent {failure}", style="red", markup=False)


class Lines(Protocol):
    """Where a reporter writes its lines: a rich console, or plain lines."""

    is_terminal: bool

    def print(self, text: str, style: str | None = None, markup: bool = False) -> None: ...


class PlainLines:
    """Lines on stderr, in colour on a terminal (click drops the colour elsewhere)."""

    is_terminal = False  # nothing live is drawn on it

    def print(self, text: str, style: str | None = None, markup: bool = False) -> None:
        click.echo(click.style(text, fg=style) if style else text, err=True)


def console() -> Console:
    """stderr, for the live bar and the lines printed above it."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def summary_lines(result: RunResult, folders: list[str]) -> list[str]:
    """The end of a run: why it stopped early, the counts, the failed tasks and where to look."""
    counts = result.counts
    lines = [halt_line(result)] if result.halt is not None else []
    parts = [f"{counts.done:,} done", f"{counts.failed:,} failed"]
    if counts.pruned:
        parts.append(f"{counts.pruned:,} pruned")
    if counts.skipped:
        parts.append(f"{counts.skipped:,} skipped (done before)")
    if counts.retried:
        parts.append(f"{counts.retried:,} retried")
    state = "Interrupted" if result.interrupted else "Halted" if result.halt is not None else "Finished"
    rate = rate_text(counts.done + counts.failed, result.elapsed_s)
    lines.append(
        f"{state}: {', '.join(parts)} in {result.elapsed_s:.1f} s ({rate} tasks/s). Outputs in {', '.join(folders)}"
    )
    if result.interrupted:
        lines.append(f"{plural(counts.remaining, 'task')} left; run the same command again to resume.")
    elif result.halt is not None and counts.remaining:
        lines.append(f"{plural(counts.remaining, 'task')} not run; run the same command again to run them.")
    if counts.best:
        lines.append(f"Search: {counts.best}")
    kinds = result.failures.given_up()
    if kinds:
        lines.append(f"Failed {plural(counts.failed, 'task')}:")
        lines.extend(_kind_line(tally) for tally in kinds)
    return lines


def halt_line(result: RunResult) -> str:
    """`Stopped: <why>; most common error: <kind>, N times: <its last line>; command: <it>; exit status 3`."""
    assert result.halt is not None
    line = f"Stopped: {result.halt.reason}"
    common = result.failures.most_common()
    if common is not None and common.example is not None:
        said = f": {common.example.last_line}" if common.example.last_line else ""
        line += f"; most common error: {common.kind}, {plural(common.attempts, 'time')}{said}"
        line += f"; command: {_one_line(common.example.command)}"
    if result.failed:
        line += f"; exit status {EXIT_TASKS_FAILED}"
    return line


def _kind_line(tally: KindTally) -> str:
    ids = "; ".join(f"{experiment} {compact_ids(task_ids)}" for experiment, task_ids in tally.given_up.items())
    example = tally.last_given_up
    see = f"; see: cat {example.output_path}" if example is not None and example.output_path else ""
    return f"  {tally.kind}: {plural(tally.given_up_count, 'task')} ({ids}){see}"


def _one_line(command: str) -> str:
    return " && ".join(command.splitlines())
