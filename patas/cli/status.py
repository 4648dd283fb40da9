"""`patas status`: the command-line face of `patas.analysis.status`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from patas.analysis.status import ExperimentStatus, LabStatus, lab_status, status_to_json
from patas.cli.lab_options import experiment_in_lab
from patas.cli.progress import compact_ids
from patas.common.errors import excerpt
from patas.common.wording import plural

# How often -w refreshes when given no SECONDS.
DEFAULT_WATCH_INTERVAL_S = 2.0
# A running task's last line is cut to this many characters in the table.
LAST_LINE_CHARS = 60
# Running tasks listed per experiment; the others are counted.
MAX_RUNNING_SHOWN = 20
# Width of the tables when stdout is not a terminal (a pipe or a file has no width of its own).
PIPE_WIDTH = 160


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@experiment_in_lab(required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON (one object per refresh with -w).")
@click.option("-w", "--watch", type=click.FloatRange(min=0.1), is_flag=False, flag_value=DEFAULT_WATCH_INTERVAL_S,
              metavar="[SECONDS]", help=f"Refresh every SECONDS (default {DEFAULT_WATCH_INTERVAL_S:g}) until Ctrl-C.")  # fmt: skip
def status(experiment: str | None, lab_root: str, as_json: bool, watch: float | None) -> None:
    """Show where each experiment of the lab stands: done, running, pending, failed, given up,
    rate and time left; per node its agents, slots and busy slots; the running tasks with their
    values, node, time so far and last output line; the failures grouped by kind.

    While a run holds an experiment, the run itself is asked (over a private socket only its
    user may use); otherwise the journal says what is done and what failed.

    \b
    Example:
      patas explore --cmd 'sleep 5; echo {n}' --va n 0 100 1 -y &
      patas status            # every experiment in ./pataslab
      patas status grid -w    # refreshed every 2 s until Ctrl-C
      patas status --json | jq '.experiments[0].done'
    """
    root = Path(lab_root)
    if watch is None:
        _show(lab_status(root, experiment), as_json)
        return
    try:
        _watch(root, experiment, as_json, watch)
    except KeyboardInterrupt:
        pass  # the way to stop watching, not an interruption of anything


def _show(lab: LabStatus, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(status_to_json(lab)))
    else:
        _console().print(render(lab))


def _watch(root: Path, experiment: str | None, as_json: bool, interval_s: float) -> None:
    console = _console()
    if as_json or not console.is_terminal:
        while True:
            _show(lab_status(root, experiment), as_json)
            sys.stdout.flush()
            time.sleep(interval_s)  # the user's refresh interval, not a wait for an event
    from rich.live import Live

    with Live(render(lab_status(root, experiment)), console=console, auto_refresh=False) as live:
        while True:
            time.sleep(interval_s)
            live.update(render(lab_status(root, experiment)), refresh=True)


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else PIPE_WIDTH, highlight=False)


def render(lab: LabStatus) -> Group:
    """The whole status, one block per experiment."""
    if not lab.experiments:
        return Group(Text(f"{lab.lab}: no experiment yet (patas explore writes them here)"))
    blocks: list[Table | Text] = []
    for experiment in lab.experiments:
        blocks.extend(_experiment_blocks(experiment))
    return Group(*blocks)


def _experiment_blocks(status: ExperimentStatus) -> list[Table | Text]:
    blocks: list[Table | Text] = [Text(_headline(status), style="bold"), Text(_counts_line(status))]
    if status.nodes:
        blocks.append(_nodes_table(status))
    if status.running_tasks:
        blocks.append(_running_table(status))
    if status.failures:
        blocks.append(_failures_table(status))
    blocks.append(Text(""))
    return blocks


def _headline(status: ExperimentStatus) -> str:
    state = "running" if status.live else "not running"
    return f"{status.name}: {state}"


def _counts_line(status: ExperimentStatus) -> str:
    total = "? tasks" if status.total is None else plural(status.total, "task")
    parts = [
        f"{total}: {status.done:,} done", f"{status.running:,} running", f"{status.pending:,} pending",
        f"{plural(status.failed, 'failed attempt')}", f"{status.given_up:,} given up",
    ]  # fmt: skip
    line = ", ".join(parts)
    if status.rate_per_s is not None:
        line += f"; {_rate(status.rate_per_s)} tasks/s"
    if status.eta_s is not None:
        line += f", about {duration(status.eta_s)} left"
    return "  " + line


def _nodes_table(status: ExperimentStatus) -> Table:
    table = Table(title="nodes", title_justify="left", box=None, padding=(0, 2))
    for column in ("node", "state"):
        table.add_column(column)
    for column in ("agents", "slots", "busy"):
        table.add_column(column, justify="right")
    for node in status.nodes:
        table.add_row(node.name, node.state, str(node.agents), str(node.slots), str(node.busy))
    return table


def _running_table(status: ExperimentStatus) -> Table:
    shown = status.running_tasks[:MAX_RUNNING_SHOWN]
    more = len(status.running_tasks) - len(shown)
    caption = f"and {plural(more, 'more task')}" if more > 0 else None
    table = Table(title="running", title_justify="left", caption=caption, caption_justify="left", box=None, padding=(0, 2))
    table.add_column("task", justify="right")
    table.add_column("try", justify="right")
    for column in ("values", "node"):
        table.add_column(column)
    table.add_column("elapsed", justify="right")
    table.add_column("last line", overflow="ellipsis", no_wrap=True)
    for task in shown:
        values = " ".join(f"{name}={excerpt(value, 20)}" for name, value in task.values.items())
        table.add_row(str(task.task_id), str(task.attempt), values, task.node, duration(task.elapsed_s), excerpt(task.last_line, LAST_LINE_CHARS))
    return table


def _failures_table(status: ExperimentStatus) -> Table:
    table = Table(title="failures", title_justify="left", box=None, padding=(0, 2))
    table.add_column("kind")
    table.add_column("attempts", justify="right")
    table.add_column("tasks")
    for group in status.failures:
        table.add_row(group.kind, str(group.count), compact_ids(list(group.task_ids)))
    return table


def _rate(rate: float) -> str:
    return f"{rate:,.1f}" if rate >= 1 else f"{rate:.2g}"


def duration(seconds: float) -> str:
    """`4.2 s`, `3 min 20 s`, `2 h 05 min`: a time span as a person reads it."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
