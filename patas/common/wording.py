"""Words of the messages patas writes, shared by the broker, the analysis and the CLI."""

from __future__ import annotations


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    """`1 task`, `3,000 tasks`: the count and the noun agreeing with it."""
    return f"{count:,} {noun if count == 1 else plural_noun or noun + 's'}"
