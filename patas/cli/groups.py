"""Command groups that answer a mistyped subcommand with the closest one."""

from __future__ import annotations

import click

from patas.common.errors import did_you_mean


class SuggestingGroup(click.Group):
    """A click group whose "No such command" error names the closest command (`querry` → `query`)."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0]
        if self.get_command(ctx, name) is None and not name.startswith("-") and not ctx.resilient_parsing:
            ctx.fail(f"No such command '{name}'{did_you_mean(name, self.list_commands(ctx))}.")
        return super().resolve_command(ctx, args)
