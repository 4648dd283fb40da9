"""Parse patterns: a name and a regular expression whose one capture group is the value to collect.

Placeholders stand for the values programs usually print, so a pattern reads like the output line:

    @float@   a number: 3, -0.5, +1.25e-3, .5, nan, inf, -Infinity
    @int@     a whole number: 42, -7
    @slug@    a word: letters, digits, - and _ (relu, leaky_relu, run-3)
    @str@     a double-quoted string on one line; `(@str@)` captures it without its quotes

Patterns are compiled with `re.MULTILINE`, so `^` and `$` match at the start and end of each line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from patas.common.errors import PatasError

_FLOAT = r"[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|(?i:nan|inf(?:inity)?)(?![A-Za-z]))"
PLACEHOLDERS = {
    # `(@str@)` first: the quotes move outside the group so the value is collected without them.
    "(@str@)": r'"([^"\n]*)"',
    "@str@": r'"[^"\n]*"',
    "@float@": _FLOAT,
    "@int@": r"[-+]?\d+",
    "@slug@": r"[-0-9A-Za-z_]+",
}
_NAME = re.compile(r"[A-Za-z0-9_]+\Z")
OUTPUT_PREFIX = "out_"


class PatternError(PatasError):
    """A -p pattern or -n line breaker is not a usable regular expression."""


@dataclass(frozen=True)
class Pattern:
    """A value to collect from task outputs: column `out_<name>` gets the group's last match."""

    name: str
    text: str  # as the user wrote it, for messages
    regex: re.Pattern[str]

    @property
    def column(self) -> str:
        return OUTPUT_PREFIX + self.name


def expand_placeholders(text: str) -> str:
    """The regular expression a pattern stands for, with its @placeholders@ replaced."""
    for placeholder, regex in PLACEHOLDERS.items():
        text = text.replace(placeholder, regex)
    return text


def compile_pattern(name: str, text: str) -> Pattern:
    """A checked pattern; a bad name, a bad regex or a group count other than one is an error."""
    where = f"-p {name} {_quote(text)}"
    if not _NAME.match(name):
        raise PatternError(f"{where}: the name must be letters, digits and _ (it becomes column out_{name})")
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
    return Pattern(name, text, regex)


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
    return _compile(text, f"-n {_quote(text)}")


def _compile(text: str, where: str) -> re.Pattern[str]:
    if not text:
        raise PatternError(f"{where}: the regex is empty")
    try:
        return re.compile(expand_placeholders(text), re.MULTILINE)
    except re.error as error:
        raise PatternError(f"{where}: invalid regex: {error.msg}") from None


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
