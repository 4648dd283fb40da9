"""`patas stop`: end a running sweep as Ctrl-C does."""

from __future__ import annotations

from pathlib import Path

import click

from patas.broker.run.background import STOP_TIMEOUT_S, find_run, stop_run
from patas.cli.lab_options import experiment_in_lab


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@experiment_in_lab(required=False)
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0), default=STOP_TIMEOUT_S, show_default=True,
              metavar="SECONDS", help="How long to wait for the run to end.")  # fmt: skip
def stop(experiment: str | None, lab_root: str, timeout_s: float) -> None:
    """End the sweep running in an experiment, as Ctrl-C would: its running tasks are killed,
    nothing half-written is counted, and running the same command again runs what is left.
    Waits until the run has ended.

    EXPERIMENT may be left out when one run is going on in the lab. Works for any run of
    yours on this machine, detached or not.

    \b
    Example:
      patas explore --cmd 'sleep 1; echo {i}' --va i 0 100 1 --detach
      patas stop grid
    """
    run = find_run(Path(lab_root), experiment)
    stop_run(run, timeout_s, lambda: click.echo(f"Stopping the run in {run.folder} (pid {run.holder.pid})…", err=True))
    click.echo("Stopped. Run the same command again to run what is left.", err=True)
