"""Files a task writes and patas brings back (`--collect GLOB`): which ones, how much, and how
their paths travel.

A task writes into its own folder on its node, `PATAS_TASK_DIR`, fresh for every attempt. When
the attempt ends, the agent sends back every regular file of that folder that a collect glob
matches, and the coordinator commits them with the task's output into `<task>/files/`. Globs are
matched only inside the task folder, never in the workdir: tasks share the workdir, so a file
found there could be another task's, while nothing but this attempt writes in its task folder.

Glob syntax (relative to the task folder): `*` any characters but `/` (dot files too), `?` one
character but `/`, `[abc]`, `[a-z]`, `[!abc]` a class, `**` as a whole component any number of
folders (none too). A glob that matches a folder collects everything under it (`metrics`,
`metrics/`, `*` and `**` all work). Symbolic links are never followed nor sent, nor is anything
that is not a regular file (FIFOs, sockets, devices).

Paths travel as bytes (`os.fsencode`): a file name need not be UTF-8. The coordinator checks
every path it receives (`path_problem`) before it creates anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from patas.common.byte_sizes import parse_size
from patas.common.errors import ConfigError

# The default of --collect-limit: a task's collected files, all together.
DEFAULT_COLLECT_LIMIT_BYTES = 1024**3
# The longest path a node may send (Linux's PATH_MAX), and a component (NAME_MAX).
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255


@dataclass(frozen=True)
class CollectRule:
    """Which files of a task's folder come back (`globs`, none: nothing) and at most how many
    bytes they may take together."""

    globs: tuple[str, ...] = ()
    limit_bytes: int = DEFAULT_COLLECT_LIMIT_BYTES


def collect_rule(globs: list[str] | tuple[str, ...], limit: int | str | None, where: str, limit_where: str) -> CollectRule:
    """A checked rule: each glob (`check_glob`), and the limit in bytes or as a size (`parse_size`)."""
    checked = tuple(dict.fromkeys(check_glob(glob, where) for glob in globs))
    if limit is None:
        return CollectRule(checked)
    size = parse_size(limit, limit_where) if isinstance(limit, str) else limit
    if size < 1:
        raise ConfigError(f"{limit_where} {limit}: must be at least 1 byte")
    return CollectRule(checked, size)


def check_glob(glob: str, where: str) -> str:
    """The glob, normalised (no trailing `/`); ConfigError naming `where` if it can never
    name a file inside a task's folder or is not a glob."""
    problem = _glob_problem(glob)
    if problem:
        raise ConfigError(f"{where} {glob!r}: {problem}")
    return glob.rstrip("/")


def _glob_problem(glob: str) -> str:
    if "\0" in glob:
        return "holds a NUL byte (remove it)"
    if not glob.strip("/"):
        return "is empty (name files inside the task's folder, e.g. 'model.bin' or 'metrics/**')"
    if glob.startswith("/") or glob.startswith("~"):
        return "is an absolute path; collect globs are relative to the task's folder $PATAS_TASK_DIR (write the files there)"
    parts = glob.rstrip("/").split("/")
    if ".." in parts:
        return "goes up with '..'; collect globs name files inside the task's folder $PATAS_TASK_DIR"
    for part in parts:
        if "**" in part and part != "**":
            return "'**' must be a whole path component (as in 'logs/**/*.csv')"
        if _unclosed_class(part):
            return "has a '[' without its ']' (write [[] for a literal '[')"
    try:
        re.compile(_translate(glob))
    except re.error:
        return "has a character class with a range that runs backwards (write [a-z], not [z-a])"
    return ""


def _unclosed_class(part: str) -> bool:
    index = 0
    while index < len(part):
        if part[index] == "[":
            end = _class_end(part, index)
            if end < 0:
                return True
            index = end
        index += 1
    return False


def _class_end(part: str, start: int) -> int:
    """The index of the `]` closing the class opened at `start`, or -1."""
    index = start + 1
    if index < len(part) and part[index] in "!^":
        index += 1
    if index < len(part) and part[index] == "]":
        index += 1  # a leading ']' is a member
    end = part.find("]", index)
    return end


def compile_globs(globs: tuple[str, ...]) -> re.Pattern[str]:
    """One regular expression matching a relative path (`a/b/c`, no leading or trailing `/`)
    that some glob matches."""
    return re.compile("|".join(f"(?:{_translate(glob)})" for glob in globs) or r"(?!)")


def _translate(glob: str) -> str:
    parts = glob.rstrip("/").split("/")
    regex = ""
    for number, part in enumerate(parts):
        last = number == len(parts) - 1
        if part == "**":
            regex += ".*" if last else "(?:[^/]+/)*"
        else:
            regex += _translate_part(part) + ("" if last else "/")
    return regex


def _translate_part(part: str) -> str:
    regex, index = "", 0
    while index < len(part):
        char = part[index]
        if char == "*":
            regex += "[^/]*"
        elif char == "?":
            regex += "[^/]"
        elif char == "[":
            end = _class_end(part, index)
            members = part[index + 1 : end]
            negated = members[:1] in ("!", "^")
            members = members[1:] if negated else members
            escaped = "".join(c if c == "-" else re.escape(c) for c in members)  # ranges keep their '-'
            regex += "[" + ("^/" if negated else "") + escaped + "]"
            index = end
        else:
            regex += re.escape(char)
        index += 1
    return regex


def path_problem(path: bytes) -> str:
    """Why a relative path sent by a node cannot name a file under a task's files folder, or ''."""
    if not path:
        return "an empty path"
    if len(path) > MAX_PATH_BYTES:
        return f"a path of {len(path)} bytes (at most {MAX_PATH_BYTES})"
    if b"\0" in path:
        return "a path holding a NUL byte"
    if path.startswith(b"/"):
        return "an absolute path"
    for part in path.split(b"/"):
        if part in (b"", b".", b".."):
            return "a path with an empty, '.' or '..' component"
        if len(part) > MAX_NAME_BYTES:
            return f"a file name of {len(part)} bytes (at most {MAX_NAME_BYTES})"
    return ""
