"""`patas query`: the command-line face of `patas.analysis.query`."""

from __future__ import annotations

import sys

import click

from patas.analysis.formats import Format
from patas.analysis.query import DEFAULT_LAB, print_query
from patas.cli.output import table_format_options


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("sql")
@click.option(
    "-i", "--input", "inputs", multiple=True, default=[str(DEFAULT_LAB)], show_default=True,
    metavar="PATH", help="A pataslab folder, an experiment folder or a .csv/.parquet file (repeatable).",
)  # fmt: skip
@table_format_options
def query(sql: str, inputs: tuple[str, ...], form: Format) -> None:
    """Run SQL on parsed experiments (DuckDB).

    Each parsed experiment is a table named after it (pataslab/grid/grid.csv is `grid`); its
    columns are those of `patas parse` (in_*, out_*, task_id, duration, ...). Files can also be
    read directly: SELECT * FROM 'other.csv'.

    \b
    Example:
      patas query 'SELECT in_activation, AVG(out_test_acc) AS acc
                   FROM grid GROUP BY in_activation ORDER BY acc DESC' -m
    """
    print_query(sql, inputs, form, sys.stdout)
