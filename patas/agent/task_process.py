"""One task on an agent: its commands run one after the other, each as its own process group.

Output is read from non-blocking pipes and buffered per stream; the agent decides when to send
it. A task ends at its first failing command, when its timeout kills it, or when it is cancelled.
Killing signals the whole process group, so whatever the command started dies with it.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import IO

from patas.agent.command_line import SHELL, argv_for, shell_argv
from patas.common.protocol import STDERR, STDOUT

READ_CHUNK_BYTES = 256 * 1024
# Pipes this large (Linux) let a chatty task write while the agent is busy, and let each read
# take a whole chunk: fewer reads, messages and loop turns per gigabyte.
PIPE_BYTES = 1024 * 1024
_F_SETPIPE_SZ = 1031
# After SIGTERM on timeout, how long a task may take to exit before SIGKILL.
KILL_GRACE_S = 2.0


@dataclass
class StreamBuffer:
    """Bytes read from one pipe and not yet sent, with when the oldest of them arrived."""

    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    since: float = 0.0

    def add(self, data: bytes, now: float) -> None:
        if not self.chunks:
            self.since = now
        self.chunks.append(data)
        self.size += len(data)

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        self.size = 0
        return data


class TaskProcess:
    """The running commands of one task (one lease)."""

    def __init__(
        self, lease: int, slot: int, commands: list[str], workdir: str, env: dict[str, str], timeout_s: float | None
    ) -> None:
        self.lease = lease
        self.slot = slot
        self.commands = commands
        self.workdir = os.path.expandvars(os.path.expanduser(workdir))
        # PWD as bash would set it, for programs that read it and are started without a shell.
        self.env = {**os.environ, **env, "PWD": self.workdir}
        self.started_at = time.time()
        self.deadline = time.monotonic() + timeout_s if timeout_s else None
        self.buffers = (StreamBuffer(), StreamBuffer())
        self.process: subprocess.Popen[bytes] | None = None
        self.pipes: dict[int, tuple[int, IO[bytes]]] = {}  # fd → (stream, pipe)
        self.pidfd: int | None = None  # readable when the command exits (Linux >= 5.3)
        self.exit_code: int | None = None
        self.error = ""
        self.timed_out = False
        self.finished = False
        self._next_command = 0
        self._kill_at: float | None = None

    def start(self) -> None:
        """Start the next command, or finish the task if none is left."""
        if self._next_command >= len(self.commands):
            self.finished = True
            return
        command = self.commands[self._next_command]
        self._next_command += 1
        argv = argv_for(command)
        try:
            self.process = self._spawn(argv)
        except OSError as error:
            try:
                # bash reports a missing or unrunnable program exactly as the user expects.
                self.process = self._spawn(shell_argv(command))
            except OSError:
                self.error = self._start_error(error)
                self.finished = True
                return
        assert self.process.stdout is not None and self.process.stderr is not None
        for pipe, stream in ((self.process.stdout, STDOUT), (self.process.stderr, STDERR)):
            os.set_blocking(pipe.fileno(), False)
            _enlarge(pipe.fileno())
            self.pipes[pipe.fileno()] = (stream, pipe)
        if hasattr(os, "pidfd_open"):
            try:
                self.pidfd = os.pidfd_open(self.process.pid)
            except OSError:
                self.pidfd = None  # the agent falls back to polling

    def fds(self) -> set[int]:
        """The file descriptors to poll: open pipes, and the pidfd of the running command."""
        return set(self.pipes) | ({self.pidfd} if self.pidfd is not None else set())

    def _spawn(self, argv: list[str]) -> "subprocess.Popen[bytes]":
        return subprocess.Popen(
            argv,
            cwd=self.workdir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def _start_error(self, error: OSError) -> str:
        if not os.path.isdir(self.workdir):
            return f"workdir {self.workdir} does not exist on {os.uname().nodename}"
        return f"cannot start {SHELL}: {error.strerror}"

    def read(self, fd: int, now: float, drain: bool = False) -> None:
        """Read what is available on one pipe (up to a chunk, or all with `drain`); close it at EOF."""
        stream = self.pipes[fd][0]
        while True:
            try:
                data = os.read(fd, READ_CHUNK_BYTES)
            except BlockingIOError:
                return
            except OSError as error:
                if error.errno != errno.EINTR:
                    data = b""
                else:
                    continue
            if not data:
                self._close_pipe(fd)
                return
            self.buffers[stream].add(data, now)
            if self.buffers[stream].size >= READ_CHUNK_BYTES and not drain:
                return  # let the agent send it before reading more

    def _close_pipe(self, fd: int) -> None:
        self.pipes.pop(fd)[1].close()

    def reap(self) -> bool:
        """If the current command has exited, collect it and start the next. True if it had."""
        if self.process is None or self.process.poll() is None:
            return False
        code = self.process.returncode
        # Anything the command left running in its group dies with it. What the dead wrote is in
        # the pipes; a process that escaped the group (setsid) may hold them open forever, so read
        # until the pipe is empty rather than until end of file.
        self._signal_group(signal.SIGKILL)
        now = time.monotonic()
        for fd in list(self.pipes):
            self.read(fd, now, drain=True)
            if fd in self.pipes:
                self._close_pipe(fd)
        self._close_pidfd()
        self.process = None
        self.exit_code = code
        if code == 0 and not self.timed_out:
            self.start()
        else:
            self.finished = True
        return True

    def check_deadline(self, now: float) -> None:
        """Ask the task to stop at its timeout, and force it after a grace period."""
        if self.deadline is not None and now >= self.deadline and not self.timed_out:
            self.timed_out = True
            self._signal_group(signal.SIGTERM)
            self._kill_at = now + KILL_GRACE_S
        elif self._kill_at is not None and now >= self._kill_at:
            self._signal_group(signal.SIGKILL)
            self._kill_at = None

    def next_deadline(self) -> float | None:
        return self._kill_at if self._kill_at is not None else (None if self.timed_out else self.deadline)

    def kill(self) -> None:
        """Kill the running command's whole process group now and wait for it."""
        self._signal_group(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()
        for fd in list(self.pipes):
            self._close_pipe(fd)
        self._close_pidfd()
        self.process = None
        self.finished = True

    def _close_pidfd(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None

    def _signal_group(self, signum: int) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass  # already gone


def _enlarge(fd: int) -> None:
    try:
        import fcntl

        fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, OSError):
        pass  # not Linux, or above the system's pipe-max-size: the default size works too
