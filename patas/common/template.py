"""Command templates: `{name}` placeholders filled with shell-quoted variable values.

A command is a full bash command line and reaches the shell exactly as typed, except for
placeholders: `{name}` where `name` is a bare identifier. Every other brace (`awk '{print $1}'`,
`${HOME}`, `{"a": 1}`) passes through untouched, and `{{name}}` writes a literal `{name}`.

Where each placeholder lands is found by a lexer of bash's quoting and nesting
(`patas.common.shell_lexer`), and the value is quoted for that place: a word outside quotes (a
plain token such as `relu` or `33` appears unchanged, anything else is single-quoted), '...',
"...", $'...', each also inside `$(...)` or backticks at any depth. Where no quoting can make a
value plain data — a comment, a here-document, arithmetic, a `${...}` operand, a pattern, a place
the lexer cannot follow — the template is refused before anything runs. A placeholder handed to
another shell (`bash -c`, `ssh`, `eval`) is quoted for the first shell only, so it gets a warning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from patas.common.errors import MAX_ECHO_COMMAND_CHARS, TemplateError, did_you_mean, excerpt
from patas.common.shell_lexer import HOLE, Context, Placement, place_holes

# `{{name}}` (a literal) or `{name}` not preceded by `$` (so `${HOME}` stays the shell's).
_PLACEHOLDER = re.compile(r"\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}|(?<!\$)\{([A-Za-z_][A-Za-z0-9_]*)\}")
# A value made only of these stays bare in a word: nothing in it means anything to bash there
# (no `=` that could make an assignment, no `,` that could join a brace expansion).
_BARE_VALUE = re.compile(r"[A-Za-z0-9_./@%+:-]+", re.ASCII)
# Bare values bash would read as syntax in command position.
_RESERVED_WORDS = frozenset(
    "case coproc do done elif else esac fi for function if in select then time until while".split()
)


@dataclass(frozen=True)
class Slot:
    """Where a variable's value goes, and the place in the command line it lands in."""

    name: str
    placement: Placement


@dataclass(frozen=True)
class Template:
    text: str
    parts: tuple[str | Slot, ...]
    # One line per placeholder that a nested shell parses again (patas quotes for the first only).
    warnings: tuple[str, ...] = ()

    @property
    def names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.parts if isinstance(p, Slot))

    def render(self, values: dict[str, str]) -> str:
        return "".join(p if isinstance(p, str) else quote(values[p.name], p.placement) for p in self.parts)


def compile_template(text: str, variables: tuple[str, ...] | list[str], where: str) -> Template:
    """Split `text` into literal text and slots; an unknown `{name}`, or one in a place where a
    value could run as code, is an error."""
    if HOLE in text:
        raise TemplateError(f"{where}: command {text!r} contains a NUL character, which no shell can run")
    pieces: list[str | None] = []  # literal text, and None where a placeholder goes
    names: list[str] = []
    position = 0
    for match in _PLACEHOLDER.finditer(text):
        literal, name = match.group(1), match.group(2)
        pieces.append(text[position : match.start()])
        if literal is not None:
            pieces.append("{" + literal + "}")
        else:
            _check_known(name, variables, text, where)
            pieces.append(None)
            names.append(name)
        position = match.end()
    pieces.append(text[position:])
    placements = place_holes("".join(HOLE if p is None else p for p in pieces))
    slots = iter(Slot(n, p) for n, p in zip(names, placements))
    parts = tuple(next(slots) if p is None else p for p in pieces if p != "")
    for slot in (p for p in parts if isinstance(p, Slot)):
        _check_takes_data(slot, text, where)
    warnings = tuple(dict.fromkeys(_warning(s, text, where) for s in parts if isinstance(s, Slot) and s.placement.nested_shell))
    return Template(text, parts, warnings)


def _shown(text: str) -> str:
    """The command on one line, cut if huge: a message is one short line whatever the command."""
    if len(text) > MAX_ECHO_COMMAND_CHARS:
        return excerpt(text, MAX_ECHO_COMMAND_CHARS)
    return text.replace("\\", "\\\\").replace("\n", "\\n") if "\n" in text else text


def _check_known(name: str, variables: tuple[str, ...] | list[str], text: str, where: str) -> None:
    if name not in variables:
        known = ", ".join(variables) if variables else "none"
        raise TemplateError(
            f"{where}: command '{_shown(text)}' uses {{{name}}} but no variable is named '{name}'"
            f"{did_you_mean(name, tuple(variables))} (variables: {known};"
            f" write {{{{{name}}}}} for a literal {{{name}}})"
        )


def _check_takes_data(slot: Slot, text: str, where: str) -> None:
    placement: Placement | None = slot.placement
    shells = ""
    while placement is not None:
        if not placement.context.takes_data:
            raise TemplateError(
                f"{where}: command '{_shown(text)}' puts {{{slot.name}}} in {placement.context.value}{shells}, where a value"
                f' can run as code or change meaning; use "$PATAS_VAR_{slot.name}" there instead'
            )
        shells += f" of the command {placement.nested_shell} runs" if placement.inner else ""
        placement = placement.inner


def _warning(slot: Slot, text: str, where: str) -> str:
    shell = slot.placement.nested_shell
    if slot.placement.inner is not None:
        protection = f"patas quotes it for {shell} too, as the command string is written out in full"
    else:
        protection = f"patas cannot see how {shell} reads it, so a value can run as code there"
    return (
        f"{where}: command '{_shown(text)}' hands {{{slot.name}}} to another shell ({shell}), which parses it again;"
        f' {protection}; write "$PATAS_VAR_{slot.name}" inside the inner command instead, which that shell expands as data'
    )


def quote(value: str, placement: Placement) -> str:
    """`value` written so that bash reads it back exactly at `placement`."""
    if placement.inner is not None:
        value = quote(value, placement.inner)  # for the nested shell first, then for this one
    context = placement.context
    if context is Context.SINGLE_QUOTES:
        quoted = value.replace("'", "'\\''")
    elif context is Context.DOUBLE_QUOTES:
        quoted = re.sub(r'([\\"$`])', r"\\\1", value)
    elif context is Context.ANSI_C_QUOTES:
        quoted = re.sub(r"([\\'])", r"\\\1", value)
    elif context is Context.WORD and _BARE_VALUE.fullmatch(value) and value not in _RESERVED_WORDS:
        quoted = value
    elif context in (Context.WORD, Context.QUOTED_WORD):
        quoted = "'" + value.replace("'", "'\\''") + "'"
    else:
        raise ValueError(f"no quoting makes a value plain data in {context.value}")
    for in_double_quotes in reversed(placement.backticks):  # the innermost body first
        # bash removes one backslash before \ ` $ (and " in "`...`") in a backtick body before parsing it.
        quoted = re.sub(r'([\\`$"])' if in_double_quotes else r"([\\`$])", r"\\\1", quoted)
    return quoted
