r"""Parse patterns: a name and a regular expression whose one capture group is the value to collect.

Placeholders stand for the values programs usually print, so a pattern reads like the output line:

    @float@   a number: 3, -0.5, +1.25e-3, .5, nan, inf, -Infinity
    @int@     a whole number: 42, -7
    @slug@    a word: letters, digits, - and _ (relu, leaky_relu, run-3)
    @str@     a double-quoted string on one line; `(@str@)` captures it without its quotes

Any other `@word@` is a typo (`@flaot@`) and an error; write `\@` for a literal `@` before a word
and `@`. A group that is exactly one placeholder gives its column a type (`(@float@)` → numbers,
`(@int@)` → whole numbers, `(@slug@)` and `(@str@)` → text) that holds even when no task printed
a value, so `AVG(out_x)` is an average of nothing rather than an error.

Patterns are compiled with `re.MULTILINE`, so `^` and `$` match at the start and end of each line;
outputs are matched as `line_text` gives them, where a carriage return also ends a line (progress
bars redraw a line with `\r`), so `^` and `$` anchor there too. A pattern's value is its last
match that is not empty (`last_match`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from patas.analysis.table import ColumnType
from patas.common.errors import PatasError, did_you_mean

_FLOAT = r"[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|(?i:nan|inf(?:inity)?)(?![A-Za-z]))"
PLACEHOLDERS = {
    # `(@str@)` first: the quotes move outside the group so the value is collected without them.
    "(@str@)": r'"([^"\n]*)"',
    "@str@": r'"[^"\n]*"',
    "@float@": _FLOAT,
    "@int@": r"[-+]?\d+",
    "@slug@": r"[-0-9A-Za-z_]+",
}
# The type of a column whose group is exactly one placeholder, e.g. `(@float@)`.
PLACEHOLDER_TYPES = {
    "@float@": ColumnType.NUMBER,
    "@int@": ColumnType.INTEGER,
    "@slug@": ColumnType.STRING,
    "@str@": ColumnType.STRING,
}
# `@word@` not preceded by a backslash: a placeholder, known or mistyped.
_PLACEHOLDER = re.compile(r"(?<!\\)@[A-Za-z_]\w*@")
_NAME = re.compile(r"[A-Za-z0-9_]+\Z")
OUTPUT_PREFIX = "out_"


class PatternError(PatasError):
    """A -p pattern or -n line breaker is not a usable regular expression."""


class UnmatchedError(PatasError):
    """A -p pattern or -n line breaker matched nothing in any task: a typo or a changed output."""


@dataclass(frozen=True)
class Pattern:
    """A value to collect from task outputs: column `out_<name>` gets the group's last match."""

    name: str
    text: str  # as the user wrote it, for messages
    regex: re.Pattern[str]
    kind: ColumnType | None = None  # from the group's placeholder; None: inferred from the values

    @property
    def column(self) -> str:
        return OUTPUT_PREFIX + self.name


def expand_placeholders(text: str) -> str:
    """The regular expression a pattern stands for, with its @placeholders@ replaced."""
    for placeholder, regex in PLACEHOLDERS.items():
        text = text.replace(placeholder, regex)
    return text


def compile_pattern(name: str, text: str, option: str = "-p") -> Pattern:
    """A checked pattern; a bad name, a bad regex or a group count other than one is an error.
    `option` names where it was given, for messages (`-p`, `--objective max`)."""
    where = f"{option} {_shown_name(name)} {shell_quoted(text)}"
    if not _NAME.match(name):
        raise PatternError(f"{where}: the name must be letters, digits and _ (it becomes column out_{name})")
    _check_placeholders(text, where)
    regex = _compile(text, where)
    if regex.groups == 0:
        raise PatternError(
            f"{where}: no capture group; put parentheses around the value to collect, e.g. '(@float@)'"
        )
    if regex.groups > 1:
        raise PatternError(
            f"{where}: {regex.groups} capture groups, expected one;"
            " make the others non-capturing with (?:...)"
        )
    return Pattern(name, text, regex, placeholder_type(text))


def compile_step_pattern(name: str, text: str, option: str) -> Pattern:
    """A pattern of intermediate values (`--report`): two groups, the step `(@int@)` and the value."""
    where = f"{option} {_shown_name(name)} {shell_quoted(text)}"
    if not _NAME.match(name):
        raise PatternError(f"{where}: the name must be letters, digits and _ (it becomes column out_{name})")
    _check_placeholders(text, where)
    regex = _compile(text, where)
    if regex.groups != 2 or group_text(text) != "@int@":
        raise PatternError(
            f"{where}: expected two capture groups, the step then the value, e.g. 'epoch (@int@) loss (@float@)'"
        )
    return Pattern(name, text, regex, ColumnType.NUMBER)


def placeholder_type(text: str) -> ColumnType | None:
    """The column type a pattern's group gives its values, when the group is one placeholder."""
    if "(@str@)" in text:
        return ColumnType.STRING
    return PLACEHOLDER_TYPES.get(group_text(text) or "")


def group_text(text: str) -> str | None:
    """What the first capturing group holds, as written: `acc: (@float@)%` gives `@float@`.

    A small scan of the regex syntax that can hide a parenthesis: escapes, character classes
    and `(?...)` groups, which do not capture unless named (`(?P<name>...)`).
    """
    start: int | None = None
    depth = 0  # parentheses open inside the group, itself included
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 1
        elif char == "[":
            index = _class_end(text, index)
        elif char == "(":
            named = text.startswith("?P<", index + 1)
            if start is None and (named or not text.startswith("?", index + 1)):
                start = text.find(">", index) + 1 if named else index + 1
            depth += start is not None
        elif char == ")" and start is not None:
            depth -= 1
            if depth == 0:
                return text[start:index]
        index += 1
    return None


def _class_end(text: str, start: int) -> int:
    """The index of the `]` closing the character class opened at `start` (a leading `]` or `^]` is literal)."""
    index = start + 1
    if text.startswith("^", index):
        index += 1
    if text.startswith("]", index):
        index += 1
    while index < len(text) and text[index] != "]":
        index += 2 if text[index] == "\\" else 1
    return index


def line_text(text: str) -> str:
    r"""An output as its patterns see it: a carriage return (alone or before a newline) ends a line.

    A progress bar redraws its line after each `\r`; `re.MULTILINE` knows only `\n`, so without
    this `^`/`$` would not anchor at the redrawn lines and `.` would run across them.
    """
    if "\r" not in text:  # the usual case costs one C-level scan
        return text
    return text.replace("\r\n", "\n").replace("\r", "\n")


def last_match(regex: re.Pattern[str], text: str, start: int = 0, end: int | None = None) -> re.Match[str] | None:
    """The last match in text[start:end] that spans at least one character, or None.

    A match of no characters found nothing: `(.*)` also matches the empty string after every
    line, and the last of those would hide the last line's value.
    """
    last = None
    for match in regex.finditer(text, start, len(text) if end is None else end):
        if match.end() > match.start():
            last = match
    return last


def compile_patterns(pairs: Mapping[str, str] | Iterable[tuple[str, str]]) -> tuple[Pattern, ...]:
    """Checked patterns from (name, regex) pairs; names must be unique."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    patterns = tuple(compile_pattern(name, text) for name, text in items)
    names = [p.name for p in patterns]
    for pattern in patterns:
        if names.count(pattern.name) > 1:
            raise PatternError(f"-p {pattern.name}: the name is used twice (give each pattern its own name)")
    return patterns


def compile_breaker(text: str) -> re.Pattern[str]:
    """A line-breaker regex (-n): any number of groups is fine, it only has to match."""
    return _compile(text, f"-n {shell_quoted(text)}")


def _check_placeholders(text: str, where: str) -> None:
    known = tuple(PLACEHOLDER_TYPES)
    for match in _PLACEHOLDER.finditer(text):
        word = match.group()
        if word not in known:
            suggestion = did_you_mean(word, known).replace("'", "")
            raise PatternError(f"{where}: unknown placeholder {word}{suggestion}; the placeholders are {' '.join(known)}")


def _compile(text: str, where: str) -> re.Pattern[str]:
    if not text:
        raise PatternError(f"{where}: the regex is empty")
    try:
        return re.compile(expand_placeholders(text), re.MULTILINE)
    except re.error as error:
        raise PatternError(f"{where}: invalid regex: {error.msg}") from None


def _shown_name(name: str) -> str:
    """A pattern's name as the user typed it: quoted when a shell would need the quotes."""
    return name if _NAME.match(name) else shell_quoted(name)


def shell_quoted(text: str) -> str:
    """The text in single quotes as a shell reads it back, as the user typed the option."""
    return "'" + text.replace("'", "'\\''") + "'"
