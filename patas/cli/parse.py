"""`patas parse`: the command-line face of `patas.analysis.parse`."""

from __future__ import annotations

import os
from pathlib import Path

import click

from patas.analysis.parse import Streams, default_output, parse_experiment, report_lines
from patas.common.wording import plural


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-e", "--experiment", "experiment_dir", required=True, metavar="FOLDER",
    help="Experiment folder to parse, e.g. pataslab/grid.",
)  # fmt: skip
@click.option(
    "-p", "--pattern", "patterns", nargs=2, multiple=True, metavar="NAME REGEX",
    help="Collect REGEX's one group into column out_NAME (repeatable). Placeholders: "
    "@float@ @int@ @slug@ @str@.",
)  # fmt: skip
@click.option(
    "-n", "--break", "breakers", multiple=True, metavar="REGEX",
    help="Start a new row after each line this matches (repeatable); column break_id counts them.",
)  # fmt: skip
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
    help="Table to write, .csv or .parquet.  [default: FOLDER/<experiment>.csv]",
)  # fmt: skip
@click.option(
    "--stream", type=click.Choice([s.value for s in Streams]), default=Streams.STDOUT.value,
    show_default=True, help="Which task output the patterns search.",
)  # fmt: skip
@click.option(
    "--allow-empty", is_flag=True,
    help="Write the table even if a pattern matched in no task (its column is empty); otherwise that is an error.",
)  # fmt: skip
@click.option("--include-unfinished", is_flag=True, help="Also parse failed, timed-out and lost tasks (adds column outcome).")
@click.option("--include-obsolete", is_flag=True, help="Also keep done tasks that the current experiment definition no longer has.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), help="Processes reading outputs, this one included.  [default: CPU count]")
def parse(
    experiment_dir: str,
    patterns: tuple[tuple[str, str], ...],
    breakers: tuple[str, ...],
    output: Path | None,
    stream: str,
    allow_empty: bool,
    include_unfinished: bool,
    include_obsolete: bool,
    jobs: int | None,
) -> None:
    """Collect values from task outputs into a table (CSV).

    Each -p names a column and gives a regular expression with one group; the group's last match
    in a task's output is the value. Rows hold the task's inputs (in_*), the values (out_*) and
    its metadata (task_id, tries, duration, node_name, ...). A pattern that matches in no task is
    an error and the old table stays as it was (unless --allow-empty).

    \b
    Example:
      patas parse -e pataslab/grid/ \\
          -p train_acc 'Train accuracy: +(@float@)' \\
          -p test_acc  'Test accuracy: +(@float@)'
      patas query 'SELECT AVG(out_test_acc) FROM grid'
    """
    target = output or default_output(experiment_dir)
    result = parse_experiment(
        experiment_dir,
        patterns,
        breakers=breakers,
        output=target,
        streams=Streams(stream),
        allow_empty=allow_empty,
        include_unfinished=include_unfinished,
        include_obsolete=include_obsolete,
        workers=jobs,
    )
    for line in report_lines(result):
        click.echo(f"Warning: {line}", err=True)
    table = result.table
    click.echo(
        f"Wrote {_shown(target)}: {plural(len(table), 'row')} from {plural(result.tasks, 'task')},"
        f" {plural(len(table.names), 'column')}",
        err=True,
    )


def _shown(path: Path) -> str:
    """The path relative to the current folder when it is below it, as the user would type it."""
    relative = os.path.relpath(path)
    return path.as_posix() if relative.startswith("..") else relative
