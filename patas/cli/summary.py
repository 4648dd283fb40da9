"""`patas summary`: the command-line face of `patas.analysis.summary`."""

from __future__ import annotations

import sys

import click

from patas.analysis.formats import Format
from patas.analysis.summary import print_summary
from patas.analysis.trials import search_objective
from patas.common.errors import UsageError
from patas.cli.output import table_format_options


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-e", "--experiment", "source", required=True, metavar="FOLDER",
    help="A parsed experiment folder (pataslab/grid) or a table file (.csv, .parquet).",
)  # fmt: skip
@click.option("--metric", default=None, metavar="NAME",
              help="The column to summarize: out_test_acc, or test_acc.  [default: a search's objective]")
@click.option("--maximize/--minimize", default=None,
              help="Whether the best mean is the highest or the lowest.  [default: maximize, or a search's direction]")
@click.option(
    "--by", metavar="COLUMNS",
    help="Comma-separated columns that make a configuration, e.g. in_activation,in_neurons ('' for all rows "
    "together).  [default: every in_* column]",
)  # fmt: skip
@table_format_options
def summary(source: str, metric: str | None, maximize: bool | None, by: str | None, form: Format) -> None:
    """Summarize a metric per configuration, with 95% confidence intervals.

    One row per configuration, best first: n (values), missing (empty or NaN, left out), mean,
    std, ci_low and ci_high (a Student t interval of the mean), min, max, and verdict: best, tied
    (its interval overlaps the best's: the repeats do not tell them apart) or worse. Fewer than
    two values give no interval and no verdict. Overlap is a heuristic, not a test.

    \b
    Example:
      patas explore --cmd './main.py {neurons} {activation}' \\
          --va neurons 10 31 10 --vl activation relu tanh --repeat 10 -y
      patas parse -e pataslab/grid -p test_acc 'Test accuracy: +(@float@)'
      patas summary -e pataslab/grid --metric test_acc -m

    On a search's folder the metric and its direction default to the search's objective, so
    `patas summary -e pataslab/search` lists its best trials first; before any `patas parse`,
    the objective is read off the outputs then (nothing is written).
    """
    objective = search_objective(source)
    if metric is None:
        if objective is None:
            raise UsageError("--metric NAME is needed (only a search's folder has a default: its objective)")
        metric = objective.name
    if maximize is None:
        maximize = objective.maximize if objective is not None and metric in (objective.name, objective.column) else True
    groups = None if by is None else [name.strip() for name in by.split(",") if name.strip()]
    print_summary(source, metric, form, sys.stdout, maximize=maximize, by=groups)
