"""How a command line is started: directly when it is a simple command, else through bash.

Most sweep commands are simple (`./main.py 33 relu`): plain words, perhaps quoted, no shell
syntax. Starting the program directly gives exactly what bash would run, without a shell process
per task, which is about half the cost of a short task. Anything else — pipes, redirections,
variables, globs, `~`, braces, builtins like `cd` or `source`, assignments — goes to bash, so the
shell's meaning is never guessed at. If a direct start fails (not found, not executable, no `#!`
line), the command is started through bash instead, which then reports it as it always would.
"""

from __future__ import annotations

import re
import shlex
import shutil

SHELL = shutil.which("bash") or "/bin/sh"

# A word made of characters no shell expands, or a quoted string without expansions inside.
_PLAIN_WORD = r"""(?:[A-Za-z0-9_./:@%+,=-]|'[^']*'|"[^"$`\\!]*")+"""
_SIMPLE_COMMAND = re.compile(rf"\s*{_PLAIN_WORD}(?:\s+{_PLAIN_WORD})*\s*\Z")

# Words that mean something to the shell itself when they come first.
_SHELL_WORDS = frozenset(
    """
    ! [[ ]] { } alias bg bind break builtin caller case cd command compgen complete compopt continue
    coproc declare dirs disown do done echo elif else enable esac eval exec exit export false fc fg fi
    for function getopts hash help history if in jobs kill let local logout mapfile popd printf
    pushd pwd read readarray readonly return select set shift shopt source suspend test then time
    times trap true type typeset ulimit umask unalias unset until wait while .
    """.split()
)


def argv_for(command: str) -> list[str]:
    """The argv to start `command` with: its own words if it is simple, else bash -c."""
    if _SIMPLE_COMMAND.match(command):
        words = shlex.split(command)
        if words and words[0] not in _SHELL_WORDS and "=" not in words[0]:
            return words
    return shell_argv(command)


def shell_argv(command: str) -> list[str]:
    return [SHELL, "-c", command]
