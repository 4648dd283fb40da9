"""`patas query`: the command-line face of `patas.analysis.query`."""

from __future__ import annotations

import sys

import click

from patas.analysis.formats import Format
from patas.analysis.query import DEFAULT_LAB, print_query


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("sql")
@click.option(
    "-i", "--input", "inputs", multiple=True, default=[str(DEFAULT_LAB)], show_default=True,
    metavar="PATH", help="A pataslab folder, an experiment folder or a .csv/.parquet file (repeatable).",
)  # fmt: skip
@click.option("-m", "--markdown", is_flag=True, help="Print a markdown table (same as --format markdown).")
@click.option(
    "--format", "form", type=click.Choice([f.value for f in Format]),
    help="Output format.  [default: table on a terminal, csv otherwise]",
)  # fmt: skip
def query(sql: str, inputs: tuple[str, ...], markdown: bool, form: str | None) -> None:
    """Run SQL on parsed experiments (DuckDB).

    Each parsed experiment is a table named after it (pataslab/grid/grid.csv is `grid`); its
    columns are those of `patas parse` (in_*, out_*, task_id, duration, ...). Files can also be
    read directly: SELECT * FROM 'other.csv'.

    \b
    Example:
      patas query 'SELECT in_activation, AVG(out_test_acc) AS acc
                   FROM grid GROUP BY in_activation ORDER BY acc DESC' -m
    """
    if markdown and form not in (None, Format.MARKDOWN.value):
        raise click.UsageError(f"-m asks for markdown but --format asks for {form}; give one of them")
    chosen = Format.MARKDOWN if markdown else Format(form) if form else None
    if chosen is None:
        chosen = Format.TABLE if sys.stdout.isatty() else Format.CSV
    print_query(sql, inputs, chosen, click.get_text_stream("stdout"))
