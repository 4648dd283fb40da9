"""The command-line reference (docs/cli.md), made from every command's --help.

    python -m patas.cli.reference > docs/cli.md

A test checks that docs/cli.md is up to date and that every command's help has an example.
"""

from __future__ import annotations

import click

from patas.cli.app import cli


def commands() -> list[tuple[str, click.Command]]:
    """Every command and subcommand, by its full name ("patas draw heatmap")."""
    found: list[tuple[str, click.Command]] = []

    def walk(name: str, command: click.Command, context: click.Context) -> None:
        found.append((name, command))
        if isinstance(command, click.Group):
            for sub in command.list_commands(context):
                child = command.get_command(context, sub)
                assert child is not None
                walk(f"{name} {sub}", child, click.Context(child, info_name=sub, parent=context))

    walk("patas", cli, click.Context(cli, info_name="patas"))
    return found


def help_text(name: str, command: click.Command) -> str:
    parts = name.split()
    context = None
    for part in parts:
        context = click.Context(command if part == parts[-1] else cli, info_name=part, parent=context)
    assert context is not None
    return command.get_help(context)


def reference() -> str:
    sections = ["# Command-line reference\n", "Made from `--help` by `COLUMNS=100 python -m patas.cli.reference > docs/cli.md` (a test checks it is up to date).\n"]
    for name, command in commands():
        sections.append(f"## {name}\n\n```text\n{help_text(name, command).rstrip()}\n```\n")
    return "\n".join(sections)


if __name__ == "__main__":
    click.echo(reference(), nl=False)
