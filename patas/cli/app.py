"""The `patas` command group. Subcommands are imported only when run, so `--help` stays fast and
never imports pandas, duckdb, seaborn or zmq."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys

import click

from patas import __version__
from patas.cli.groups import SuggestingGroup

# name → (module, attribute, one-line help). The help is here so `patas --help` imports nothing.
COMMANDS = {
    "explore": ("patas.cli.explore", "explore", "Run a command for every combination of variables."),
    "parse": ("patas.cli.parse", "parse", "Collect values from task outputs into a table (CSV)."),
    "query": ("patas.cli.query", "query", "Run SQL on parsed experiments (DuckDB)."),
    "summary": ("patas.cli.summary", "summary", "A metric per configuration, with confidence intervals."),
    "logs": ("patas.cli.logs", "logs", "Print a task's output; -f follows it as the task runs."),
    "status": ("patas.cli.status", "status", "Where each experiment stands: done, running, failed, per node."),
    "nodes": ("patas.cli.nodes", "nodes", "Add nodes to a running sweep, or take them away."),
    "attach": ("patas.cli.attach", "attach", "Follow a run started with --detach until it ends."),
    "stop": ("patas.cli.stop", "stop", "End a running sweep as Ctrl-C does (it can be resumed)."),
    "draw": ("patas.cli.draw", "draw", "Plot a parsed table: heatmap, categories, lines."),
    "pool": ("patas.cli.pool", "pool", "Start agents once and run sweep after sweep on them."),
    "agent": ("patas.cli.agent", "agent", "Run a pool agent on this node (systemd, batch jobs)."),
    "dashboard": ("patas.cli.dashboard", "dashboard", "Serve a live web page of the lab (token-protected)."),
}


class LazyGroup(SuggestingGroup):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if _available(name)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS or not _available(name):
            return None
        module, attribute, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        if not rows:
            return
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _available(name: str) -> bool:
    return importlib.util.find_spec(COMMANDS[name][0]) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="patas")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Run any program many times in parallel and analyse every run's output.

    \b
    Example:
      patas explore --cmd './main.py {neurons} {activation}' \\
          --va neurons 1 51 2 --vl activation relu tanh --repeat 10
      patas parse -e pataslab/grid -p test_acc 'Test accuracy: +(@float@)'
      patas query 'SELECT in_activation, AVG(out_test_acc) FROM grid GROUP BY 1' -m
      patas summary -e pataslab/grid --metric test_acc -m
    """
    ctx.obj = {"debug": debug}
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
