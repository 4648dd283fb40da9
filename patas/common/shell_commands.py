"""What bash commands do with their words: which hand a word to another shell as code, which
builtins evaluate an argument even when it is quoted, and what a quoted word reads as.

Knowledge of commands, not of syntax: `patas.common.shell_lexer` asks these questions about the
words of the simple command it is reading.
"""

from __future__ import annotations

import re

# Programs and builtins that parse a text they are given as shell code.
NESTED_SHELLS = frozenset({"bash", "sh", "dash", "zsh", "ksh", "mksh", "ash", "busybox", "ssh", "su", "eval"})
SHELLS_WITH_ANSI_C_QUOTES = frozenset({"bash", "zsh", "ksh", "mksh"})
_SHELL_COMMAND_OPTION = re.compile(r"-[A-Za-z]*c[A-Za-z]*\Z")  # `-c`, `-lc`, `-ec`: run the next word
# Builtins whose every argument is arithmetic, code or a variable name (whose subscript is arithmetic).
_EVALUATING_BUILTINS = frozenset({"let", "trap", "compgen", "read", "mapfile", "readarray", "unset"})
# Builtins that make their assignments arithmetic (-i) or a name reference (-n).
_DECLARING_BUILTINS = frozenset({"declare", "typeset", "local", "readonly", "export"})


def unquoted(word: str) -> str | None:
    """What `word` reads as after quote removal, if nothing in it expands (holes aside)."""
    out, i = [], 0
    while i < len(word):
        char = word[i]
        if char == "'":
            end = word.find("'", i + 1)
            out.append(word[i + 1 : end])
            i = end + 1
        elif char == '"':
            end = i + 1
            while word[end] != '"':
                end += 2 if word[end] == "\\" else 1
            if re.search(r"(?<!\\)(?:\\\\)*[$`]", word[i + 1 : end]):
                return None
            out.append(re.sub(r'\\\n|\\([\\"$`])', r"\1", word[i + 1 : end]))
            i = end + 1
        elif char == "\\":
            out.append("" if word[i + 1] == "\n" else word[i + 1])
            i += 2
        elif char in "$`~*?[{":
            return None
        else:
            out.append(char)
            i += 1
    return "".join(out)


def evaluates_next_argument(words: list[str]) -> bool:
    """Whether the builtin these words start parses its next argument as arithmetic, a variable
    name with a subscript (arithmetic too) or code, even when that argument is quoted."""
    words = [w for w in words if not is_assignment(w)]
    while words and words[0] in ("builtin", "command"):
        words = words[1:]
    if not words:
        return False
    name, options = words[0], [w for w in words[1:] if w.startswith("-")]
    if name in _EVALUATING_BUILTINS:
        return True
    if name in _DECLARING_BUILTINS:
        return any("i" in o or "n" in o for o in options)
    return name in ("printf", "test", "[") and words[-1] == "-v"


def command_string_shell(words: list[str]) -> str | None:
    """The shell that runs the next word as a command string (`bash -c WORD`), if any."""
    shell = nested_shell(words)
    if shell in ("ssh", "eval") or not (words and _SHELL_COMMAND_OPTION.match(words[-1])):
        return None
    return shell


def nested_shell(words: list[str]) -> str | None:
    """The program among a simple command's first words that will parse a later word as code."""
    for index, word in enumerate(words):
        name = word.rsplit("/", 1)[-1]
        if name in ("ssh", "eval"):
            return name
        if name in NESTED_SHELLS and any(_SHELL_COMMAND_OPTION.match(w) for w in words[index + 1 :]):
            return name
    return None


def is_assignment(word: str) -> bool:
    return re.match(r"[A-Za-z_][A-Za-z0-9_]*(\[[^\]]*\])?\+?=", word) is not None


