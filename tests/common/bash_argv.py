"""Running rendered command lines through real bash and reading what a program received.

One long-lived bash reads command lines (NUL-terminated) on stdin and runs each in a subshell
with `eval`, in a scratch folder: eval parses its text with the same parser as `bash -c` (which
patas uses), at a third of the cost of starting a bash per command. `dump ARGS` (an exported function, so it also exists in
subshells, `$(...)` and backticks) writes its argument count and arguments, NUL-separated, to
fd 3, which the driver points at its stdout; everything else the command prints is discarded.
After each command the driver writes `E`, so each command's calls to `dump` are read back apart.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

MARKER = "PWNED"  # hostile values try `touch PWNED` in the scratch folder
_DRIVER = r"""
dump() { printf '%s\0' "$#" "$@" >&3; }
export -f dump
while IFS= read -r -d '' command; do
    (eval "$command") 3>&1 >/dev/null 2>/dev/null </dev/null
    printf 'E\0'
done
"""


class Bash:
    """A bash that runs command lines one after another and reports the `dump` calls of each."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        environment = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": str(folder)}
        self.process = subprocess.Popen(
            ["bash", "-c", _DRIVER], cwd=folder, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=environment
        )
        self._pending = b""

    def calls(self, command: str) -> list[list[str]]:
        """The argument lists `dump` was called with while bash ran `command`."""
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode("utf-8", "surrogateescape") + b"\0")
        self.process.stdin.flush()
        calls: list[list[str]] = []
        while (token := self._token()) != "E":
            calls.append([self._token() for _ in range(int(token))])
        return calls

    def marker_appeared(self) -> bool:
        return (self.folder / MARKER).exists()

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)

    def _token(self) -> str:
        assert self.process.stdout is not None
        while b"\0" not in self._pending:
            chunk = self.process.stdout.read1(65536)
            if not chunk:
                raise EOFError("the bash driver exited")
            self._pending += chunk
        token, self._pending = self._pending.split(b"\0", 1)
        return token.decode("utf-8", "surrogateescape")
