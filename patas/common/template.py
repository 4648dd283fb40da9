"""Command templates: `{name}` placeholders filled with shell-quoted variable values.

A command is a full shell line and reaches the shell exactly as typed, except for placeholders:
`{name}` where `name` is a bare identifier. Every other brace (`awk '{print $1}'`, `${HOME}`,
`{"a": 1}`) passes through untouched, and `{{name}}` writes a literal `{name}`.

Values are quoted for the place they land in: outside quotes with shlex semantics (a plain token
such as `relu` or `33` appears unchanged), inside '...' or "..." with that quote's escapes. So a
value can never inject shell code.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from patas.common.errors import TemplateError, did_you_mean

# `{{name}}` (a literal) or `{name}` not preceded by `$` (so `${HOME}` stays the shell's).
_PLACEHOLDER = re.compile(r"\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}|(?<!\$)\{([A-Za-z_][A-Za-z0-9_]*)\}")

_OUTSIDE, _SINGLE, _DOUBLE = "outside", "single", "double"


@dataclass(frozen=True)
class Slot:
    """Where a variable's value goes, and the quoting context it lands in."""

    name: str
    context: str


@dataclass(frozen=True)
class Template:
    text: str
    parts: tuple[str | Slot, ...]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.parts if isinstance(p, Slot))

    def render(self, values: dict[str, str]) -> str:
        return "".join(p if isinstance(p, str) else _quote(values[p.name], p.context) for p in self.parts)


def compile_template(text: str, variables: tuple[str, ...] | list[str], where: str) -> Template:
    """Split `text` into literal text and slots; an unknown `{name}` is an error."""
    parts: list[str | Slot] = []
    position = 0
    for match in _PLACEHOLDER.finditer(text):
        literal, name = match.group(1), match.group(2)
        parts.append(text[position : match.start()])
        if literal is not None:
            parts.append("{" + literal + "}")
        else:
            if name not in variables:
                known = ", ".join(variables) if variables else "none"
                raise TemplateError(
                    f"{where}: command '{text}' uses {{{name}}} but no variable is named '{name}'"
                    f"{did_you_mean(name, tuple(variables))} (variables: {known};"
                    f" write {{{{{name}}}}} for a literal {{{name}}})"
                )
            parts.append(Slot(name, _context_at(text, match.start())))
        position = match.end()
    parts.append(text[position:])
    return Template(text, tuple(p for p in parts if p != ""))


def _context_at(text: str, index: int) -> str:
    """The shell quoting context in force at `text[index]` (a small POSIX-sh scanner)."""
    context = _OUTSIDE
    i = 0
    while i < index:
        char = text[i]
        if context == _SINGLE:
            if char == "'":
                context = _OUTSIDE
        elif char == "\\":
            i += 1  # the next character is escaped, in or out of double quotes
        elif context == _DOUBLE:
            if char == '"':
                context = _OUTSIDE
        elif char == "'":
            context = _SINGLE
        elif char == '"':
            context = _DOUBLE
        i += 1
    return context


def _quote(value: str, context: str) -> str:
    if context == _SINGLE:
        return value.replace("'", "'\\''")
    if context == _DOUBLE:
        return re.sub(r'([\\"$`])', r"\\\1", value)
    return shlex.quote(value)
