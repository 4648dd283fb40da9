"""One task on an agent: its commands run one after the other, each under its own supervisor.

Output is read from non-blocking pipes and buffered per stream; the agent decides when to send
it. Or, for an agent on the coordinator's own machine, the coordinator names the attempt's
stdout file in the lab and the task's stdout is that file (`open_stdout`), as with `> file` in a
shell: the bytes go from the task to the file with no pipe, no copy and no message, and are in
the file the moment the task writes them. Its stderr is still a pipe, streamed: most tasks never
write there, and a file made for every attempt (to be removed when empty) costs more per task
than the pipe. A task ends at its first failing command, when its timeout kills it, or when it
is cancelled.
A command ends only when its supervisor has killed everything the command started, whether it
stayed in the command's process group or not (`patas.agent.supervisor`).
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass, field

from patas.agent.supervisor import Launch, Supervisor
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
        self,
        lease: int,
        slot: int,
        supervisor: Supervisor,
        commands: list[str],
        workdir: str,
        env: dict[str, str],
        timeout_s: float | None,
        stdout_file: int | None = None,
    ) -> None:
        self.lease = lease
        self.stdout_file = stdout_file  # the file its commands' stdout is (see open_stdout), or None: a pipe
        self.slot = slot
        self.supervisor = supervisor  # the slot's: it runs one command at a time
        self.commands = commands
        self.workdir = os.path.expandvars(os.path.expanduser(workdir))
        # PWD as bash would set it, for programs that read it and are started without a shell.
        self.env = {**env, "PWD": self.workdir}
        self.started_at = time.time()
        self.deadline = time.monotonic() + timeout_s if timeout_s else None
        self.buffers = (StreamBuffer(), StreamBuffer())
        self.running = False  # a command of this task runs under the supervisor
        self.pipes: dict[int, int] = {}  # fd → stream
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
        launch = Launch(argv_for(command), shell_argv(command), self.workdir, self.env)
        try:
            pipes = self._run(launch)
        except OSError as error:  # out of descriptors, or a command line too long to pass
            self.error = f"cannot start {SHELL}: {error.strerror}"
            self.finished = True
            return
        self.running = True
        for fd, stream in pipes:
            os.set_blocking(fd, False)
            _enlarge(fd)
            self.pipes[fd] = stream

    def _run(self, launch: Launch) -> list[tuple[int, int]]:
        """Start a command under the supervisor; the pipes to read, with their stream."""
        if self.stdout_file is None:
            return list(zip(self.supervisor.run(launch), (STDOUT, STDERR)))
        err_r, err_w = os.pipe()
        try:
            self.supervisor.run(launch, (self.stdout_file, err_w))
        except OSError:
            os.close(err_r)
            raise
        finally:
            os.close(err_w)  # the command has its own copy: end of file comes when it is gone
        return [(err_r, STDERR)]

    def fds(self) -> set[int]:
        """The file descriptors to poll: open pipes, and the supervisor's while a command runs."""
        return set(self.pipes) | ({self.supervisor.fileno()} if self.running else set())

    def _start_error(self, error: OSError) -> str:
        if not os.path.isdir(self.workdir):
            node = os.uname().nodename
            return f"workdir {self.workdir} does not exist on {node} (--ship sends it; or give a workdir that {node} has)"
        return f"cannot start {SHELL}: {error.strerror}"

    def read(self, fd: int, now: float, drain: bool = False) -> None:
        """Read what is available on one pipe (up to a chunk, or all with `drain`); close it at EOF."""
        stream = self.pipes[fd]
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
        del self.pipes[fd]
        os.close(fd)

    def reap(self) -> bool:
        """If the current command has ended, collect it and start the next. True if it had."""
        outcome = self.supervisor.outcome() if self.running else None
        if outcome is None:
            return False
        # Everything the command started is dead: what it wrote is in the pipes, up to their end.
        now = time.monotonic()
        for fd in list(self.pipes):
            self.read(fd, now, drain=True)
            if fd in self.pipes:
                self._close_pipe(fd)
        self.running = False
        self._kill_at = None
        if outcome.start_error is not None:
            self.error = self._start_error(outcome.start_error)
            self.finished = True
            return True
        self.exit_code = outcome.exit_code
        if self.exit_code == 0 and not self.timed_out:
            self.start()
        else:
            self.finished = True
        return True

    def check_deadline(self, now: float) -> None:
        """Ask the task to stop at its timeout, and force it after a grace period."""
        if self.deadline is not None and now >= self.deadline and not self.timed_out:
            self.timed_out = True
            self.supervisor.terminate()
            self._kill_at = now + KILL_GRACE_S
        elif self._kill_at is not None and now >= self._kill_at:
            self.supervisor.kill()
            self._kill_at = None

    def next_deadline(self) -> float | None:
        return self._kill_at if self._kill_at is not None else (None if self.timed_out else self.deadline)

    def stop(self) -> None:
        """Order the running command and everything it started killed (see `wait_stopped`)."""
        if self.running:
            self.supervisor.kill()

    def wait_stopped(self) -> None:
        """Wait until the stopped command and everything it started are gone; the task is over."""
        if self.running:
            self.supervisor.outcome(wait=True)
            self.running = False
        for fd in list(self.pipes):
            self._close_pipe(fd)
        self.finished = True

    def kill(self) -> None:
        """Kill the running command and everything it started now, and wait for them."""
        self.stop()
        self.wait_stopped()

    def close_stdout_file(self) -> None:
        """Close the file its stdout was, once it has ended (nothing it started is left)."""
        if self.stdout_file is not None:
            os.close(self.stdout_file)
            self.stdout_file = None


def open_stdout(path: str) -> tuple[int | None, str]:
    """Create the file a task's stdout is to be; or None and why not.

    A new file (attempt numbers skip those with files on disk; should one be there all the same,
    it is unlinked first): a process of another attempt still alive somewhere writes into its own
    file, never into this one. Not opened for appending: a task writing to its stdout may use
    sendfile or copy_file_range (cat does), which refuse such files. The task's folder is made
    here if the coordinator's thread that makes folders ahead has not made it yet. The common
    case, a new file, costs one or (folder not there yet) three system calls."""
    try:
        try:
            return _create_new(path), ""
        except FileExistsError:
            os.unlink(path)
        except FileNotFoundError:
            try:
                os.mkdir(os.path.dirname(path))
            except FileExistsError:
                pass  # the coordinator's thread made it meanwhile
        return _create_new(path), ""
    except OSError as error:
        return None, f"cannot write its output to {path}: {error.strerror}"


def _create_new(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)


def _enlarge(fd: int) -> None:
    try:
        import fcntl

        fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, OSError):
        pass  # not Linux, or above the system's pipe-max-size: the default size works too
