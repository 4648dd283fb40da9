"""`patas attach`: follow a detached run's log until the run ends."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from patas.broker.run.background import find_run, follow_log
from patas.cli.lab_options import experiment_in_lab
from patas.common.errors import EXIT_ERROR


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@experiment_in_lab(required=False)
def attach(experiment: str | None, lab_root: str) -> None:
    """Show a run started with `patas explore --detach` again: its log so far, then what it
    adds, like `tail -f`, until the run ends; then exit with the run's exit status.

    EXPERIMENT may be left out when one run is going on in the lab. Ctrl-C leaves the run
    running (`patas stop` ends it).

    \b
    Example:
      patas explore --cmd 'sleep 1; echo {i}' --va i 0 100 1 --detach
      patas attach grid
    """
    run = find_run(Path(lab_root), experiment)
    status = follow_log(run, sys.stdout.buffer)
    if status is None:
        click.echo(f"The run (pid {run.holder.pid}) ended without saying how (killed?); see {run.log_path}", err=True)
        sys.exit(EXIT_ERROR)
    sys.exit(status)
