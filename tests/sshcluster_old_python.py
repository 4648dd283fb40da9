#!/usr/bin/.python3-real
"""`python3` on a simulated node with an old Python: the real interpreter, claiming to be 3.8.18.

`tests/sshcluster_node.sh` installs this file as the node's /usr/bin/python3 and hides the real
interpreter at the path in the first line, so `python3 --version`, `sys.version_info` in a `-c`
snippet, a module run with `-m` and a script all see 3.8. Only the version is faked: the code
still runs on the system's Python. Handles the command lines a launcher uses (`-c`, `-m`, a
script, `-` or stdin, single-letter flags, `-W`/`-X` with their values), not every option.
"""

import collections
import os
import runpy
import sys

VERSION = (3, 8, 18)
VERSION_TEXT = ".".join(map(str, VERSION))
# Flags that take the next argument as their value; the other single-letter flags are accepted
# and ignored, except -u.
FLAGS_WITH_VALUE = ("W", "X")


def pretend_to_be_old() -> None:
    VersionInfo = collections.namedtuple("version_info", "major minor micro releaselevel serial")
    sys.version_info = VersionInfo(*VERSION, "final", 0)
    sys.version = f"{VERSION_TEXT} (default, Aug 25 2023, 13:20:30) \n[GCC 9.4.0]"
    sys.hexversion = (VERSION[0] << 24) | (VERSION[1] << 16) | (VERSION[2] << 8) | 0xF0


def run(args: list[str]) -> None:
    while args and args[0].startswith("-") and args[0] != "-":
        flag = args.pop(0)
        if flag == "--":
            break
        if flag in ("-V", "--version"):
            print(f"Python {VERSION_TEXT}")
            return
        for position, letter in enumerate(flag[1:], start=1):
            if letter == "u":
                sys.stdout.reconfigure(write_through=True)
                sys.stderr.reconfigure(write_through=True)
            if letter in "cm" or letter in FLAGS_WITH_VALUE:
                value = flag[position + 1:] or args.pop(0)
                if letter == "c":
                    return run_code(value, "<string>", ["-c", *args])
                if letter == "m":
                    sys.argv = [value, *args]
                    sys.path[0] = os.getcwd()
                    runpy.run_module(value, run_name="__main__", alter_sys=True)
                    return
                break
    if not args or args[0] == "-":
        return run_code(sys.stdin.read(), "<stdin>", args or [""])
    sys.argv = args
    sys.path[0] = os.path.dirname(os.path.abspath(args[0]))
    runpy.run_path(args[0], run_name="__main__")


def run_code(source: str, filename: str, argv: list[str]) -> None:
    sys.argv = argv
    sys.path[0] = ""
    exec(compile(source, filename, "exec"), {"__name__": "__main__", "__builtins__": __builtins__})


if __name__ == "__main__":
    pretend_to_be_old()
    run(sys.argv[1:])
