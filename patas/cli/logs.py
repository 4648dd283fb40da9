"""`patas logs`: the command-line face of `patas.analysis.task_output`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from patas.analysis.task_output import AttemptEnded, Ending, follow_output, show_output
from patas.cli.lab_options import experiment_in_lab
from patas.common.errors import EXIT_TASKS_FAILED
from patas.common.lab import STDERR, STDOUT


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@experiment_in_lab()
@click.argument("task", type=int, callback=lambda ctx, param, value: _task_id(value))
@click.option("-f", "--follow", is_flag=True, help="Keep printing as the task prints, until it ends (also across retries).")
@click.option("--stderr", "errors", is_flag=True, help="The task's stderr instead of its stdout.")
@click.option("--attempt", type=click.IntRange(min=1), metavar="N", help="Attempt N's output.  [default: the latest]")
def logs(experiment: str, task: int, lab_root: str, follow: bool, errors: bool, attempt: int | None) -> None:
    """Print a task's output: its committed stdout when it is done, else its latest attempt's.

    With -f, keep printing as the task prints, like `tail -f`, until the task is done or given up:
    when an attempt fails and is tried again, the next attempt's output follows (a note on stderr
    says so). With no run in progress, -f prints what there is and stops. Exit status with -f: 0
    when the task is done, 3 when it is not.

    \b
    Example:
      patas explore --cmd 'for i in 1 2 3; do echo "step $i"; sleep 1; done' --repeat 4 -y
      # in another terminal, while it runs:
      patas logs grid 2 -f
      patas logs grid 2 --stderr --attempt 1
    """
    out = sys.stdout.buffer
    stream = STDERR if errors else STDOUT
    if not follow:
        note = show_output(Path(lab_root), experiment, task, stream, out, attempt)
        if note:
            click.echo(_sentence(note), err=True)
        return
    followed = follow_output(Path(lab_root), experiment, task, stream, out, _note_attempt_ended, attempt)
    message = followed.describe()
    if message:
        click.echo(_sentence(message), err=True)
    if followed.ending is not Ending.DONE:
        sys.exit(EXIT_TASKS_FAILED)


def _task_id(value: int) -> int:
    if value < 0:
        raise click.BadParameter(f"{value} is not a task id (task ids start at 0: the folder names in the experiment)")
    return value


def _note_attempt_ended(event: AttemptEnded) -> None:
    click.echo(_sentence(event.describe()), err=True)


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."
