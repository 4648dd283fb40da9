"""The errors patas reports to users.

Domain code raises a `PatasError` subclass whose message is one line naming the file, option or
host and, where there is one, the fix. The CLI prints it as `Error: <message>` and exits with the
error's `exit_code`; a traceback is shown only with `--debug`.
"""

from __future__ import annotations

import os

# Exit statuses, documented in docs/cli.md.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_TASKS_FAILED = 3
EXIT_INTERRUPTED = 130


class PatasError(Exception):
    """An error the user can fix; its message is shown as one line."""

    exit_code = EXIT_ERROR


class ConfigError(PatasError):
    """An experiment or cluster definition (YAML file or command-line flags) is invalid."""


class TemplateError(ConfigError):
    """A command template names an unknown variable or has an unbalanced brace."""


class LabError(PatasError):
    """The pataslab folder cannot be read or written."""


class ProtocolError(PatasError):
    """A peer spoke a different protocol version or sent a malformed message."""


class UsageError(PatasError):
    """Options that cannot go together; shown as one line, like any error, but exit status 2."""

    exit_code = EXIT_USAGE


def refused_file(error: OSError, path: str | os.PathLike[str] | None = None) -> str:
    """The file an OS error is about, as a message names it: the one the failed call named (both
    sides of a rename or a link: either may be at fault), else `path`, else ""."""
    if error.filename is None:
        return "" if path is None else os.fspath(path)
    named = os.fsdecode(error.filename)
    if error.filename2 is not None:
        named += f" → {os.fsdecode(error.filename2)}"
    return named


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """A ` (did you mean 'x'?)` suffix for the closest choice, or an empty string."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


# A value echoed in a message is cut to this many characters: a 140 KB value must not flood the
# terminal, and the message stays one line.
MAX_ECHO_CHARS = 60
# A command is shown whole in a message up to this length: the user must recognise it.
MAX_ECHO_COMMAND_CHARS = 300

_CONTROL = {code: f"\\x{code:02x}" for code in range(32)} | {ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r", 127: "\\x7f"}


def excerpt(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """`text` as a message may show it: control characters escaped, at most `limit` characters,
    and the full size in bytes when it was cut."""
    shown = text[:limit].translate(_CONTROL)
    if len(text) <= limit:
        return shown
    return f"{shown}... ({len(text.encode('utf-8', 'surrogateescape')):,} bytes)"


def escape_controls(message: str) -> str:
    """A message as the CLI prints it: control characters escaped, so that it stays one line
    whatever value it echoes (a value may hold a newline: `--vl x $'a\\nb'`)."""
    return message.translate(_CONTROL)
