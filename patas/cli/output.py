"""How a command that prints a table chooses its format: `-m` and `--format`, shared by `patas
query` and `patas summary` so both print tables the same way."""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable

import click

from patas.analysis.formats import Format


def table_format_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add -m/--markdown and --format to `command`, which then receives `form: Format`."""

    @click.option("-m", "--markdown", is_flag=True, help="Print a markdown table (same as --format markdown).")
    @click.option(
        "--format", "form", type=click.Choice([f.value for f in Format]),
        help="Output format.  [default: table on a terminal, csv otherwise]",
    )  # fmt: skip
    @functools.wraps(command)
    def with_format(*args: Any, markdown: bool, form: str | None, **kwargs: Any) -> Any:
        return command(*args, form=chosen_format(markdown, form), **kwargs)

    return with_format


def chosen_format(markdown: bool, form: str | None) -> Format:
    """The format the options ask for; by default a table for people, CSV for pipes."""
    if markdown and form not in (None, Format.MARKDOWN.value):
        raise click.UsageError(f"-m asks for markdown but --format asks for {form}; give one of them")
    if markdown:
        return Format.MARKDOWN
    if form:
        return Format(form)
    return Format.TABLE if sys.stdout.isatty() else Format.CSV
