"""`patas explore --detach`: the sweep goes on in a background process that outlives the terminal.

The terminal's process starts the same command again as a child in a session of its own
(setsid: no controlling terminal, so closing the terminal or its SSH session sends it no SIGHUP),
stdin from /dev/null, and waits. The child does everything a foreground run does: it reads the
options and files, takes the experiments' locks, plans and connects to the nodes; until then its
stderr is a pipe to the waiting terminal, so a bad option, file or lab is the usual one line
there, the exit status is the usual one and the lab is untouched. Once it holds the locks it
moves its stdout and stderr into the run's log in the lab (`patas.broker.run.background`), and
when its first agent is ready it tells the terminal, over a second pipe, "started": the terminal
prints where the log is and how to attach, stop and look at the run, and exits 0. The locks are
the child's from the start, so no other run can slip in between.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Callable, NoReturn

import click

from patas.broker.run.background import end_line, open_run_log
from patas.cli.progress import RunReporter
from patas.common.errors import EXIT_ERROR, EXIT_INTERRUPTED, PatasError

# Set in the child's environment: the fd of the pipe it reports "started" on.
DETACHED_FD_ENV = "PATAS_DETACHED_FD"
# A detached run's log gets a progress line this often (a terminal gets a live bar instead).
LOG_PROGRESS_INTERVAL_S = 5.0
_READ_BYTES = 65536
_STARTED = b"started "
_ENDED = b"ended "


# --- the terminal's side ---------------------------------------------------------------------


def start_in_background() -> NoReturn:
    """Run this very command again in the background; relay what it says until it has started."""
    output_read, output_write = os.pipe()
    status_read, status_write = os.pipe()
    child = subprocess.Popen(
        [sys.executable, "-m", "patas", *sys.argv[1:]],
        stdin=subprocess.DEVNULL, stdout=output_write, stderr=output_write, pass_fds=(status_write,),
        start_new_session=True, env={**os.environ, DETACHED_FD_ENV: str(status_write)},
    )  # fmt: skip
    os.close(output_write)
    os.close(status_write)
    status = _relay_until_reported(child, output_read, status_read)
    if status.startswith(_STARTED):
        log = Path(status[len(_STARTED) :].decode().strip())
        lab, experiment = log.parent.parent, log.parent.name
        click.echo(
            f"Running in the background (pid {child.pid}); log: {log}. Follow it: patas attach -o {lab} {experiment};"
            f" stop it: patas stop -o {lab} {experiment}; status: patas status -o {lab}",
            err=True,
        )
        sys.exit(0)
    _relay_rest(output_read)
    code = child.wait()
    if status.startswith(_ENDED):  # it ended before its first agent was ready: say why here
        click.echo(status[len(_ENDED) :].decode(errors="replace").strip(), err=True)
    sys.exit(code if code >= 0 else EXIT_ERROR)


def _relay_until_reported(child: subprocess.Popen[bytes], output: int, status: int) -> bytes:
    """Copy the child's output to stderr until it reports on the status pipe (or closes it)."""
    report = b""
    open_fds = [output, status]
    while status in open_fds:
        try:
            ready, _, _ = select.select(open_fds, [], [])
        except KeyboardInterrupt:
            child.send_signal(signal.SIGINT)  # Ctrl-C before it started: it stops as a run does
            continue
        for fd in ready:
            data = os.read(fd, _READ_BYTES)
            if not data:
                open_fds.remove(fd)
            elif fd == output:
                sys.stderr.buffer.write(data)
                sys.stderr.flush()
            else:
                report += data
        if report.startswith(_STARTED) and report.endswith(b"\n"):
            return report
    return report


def _relay_rest(output: int) -> None:
    """What the child said before it ended (it may have been stopped before it moved to its log)."""
    while select.select([output], [], [], 0)[0]:
        data = os.read(output, _READ_BYTES)
        if not data:
            return
        sys.stderr.buffer.write(data)
    sys.stderr.flush()


# --- the background process's side -----------------------------------------------------------


class Detachment:
    """The background process: its log, and the pipe to the terminal waiting for it to start."""

    def __init__(self, status_fd: int) -> None:
        self._status_fd: int | None = status_fd
        self.log_path: Path | None = None
        os.set_inheritable(status_fd, False)  # neither agents nor tasks get it
        signal.signal(signal.SIGHUP, _ignore)  # a Python handler: exec resets it, tasks keep SIGHUP
        signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started from `... &`

    @classmethod
    def from_environment(cls) -> "Detachment | None":
        value = os.environ.pop(DETACHED_FD_ENV, None)
        return cls(int(value)) if value is not None and value.isdigit() else None

    def move_to_log(self, folders: list[Path]) -> None:
        """From now on, stdout and stderr go to the run's log in the lab."""
        self.log_path, fd = open_run_log(folders)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)

    def started(self) -> None:
        """The run is under way: let the terminal go."""
        self._report(_STARTED + f"{self.log_path}\n".encode())

    def guard(self, body: Callable[[], int]) -> int:
        """Run the sweep, writing into the log whatever stops it and, last, its exit status."""
        try:
            status = body()
            error = ""
        except PatasError as failure:
            status, error = failure.exit_code, f"Error: {failure}"
        except KeyboardInterrupt:
            status, error = EXIT_INTERRUPTED, "Interrupted."
        except Exception:  # the log is the only place left to say it
            traceback.print_exc()
            status, error = EXIT_ERROR, "Error: the run crashed (the traceback is above)"
        if error:
            click.echo(error, err=True)
        click.echo(end_line(status), err=True)
        self._report(_ENDED + f"{error or end_line(status)} (log: {self.log_path})\n".encode())
        return status

    def _report(self, message: bytes) -> None:
        if self._status_fd is None:
            return
        try:
            os.write(self._status_fd, message)
        except OSError:
            pass  # the terminal is gone: nobody waits any more
        os.close(self._status_fd)
        self._status_fd = None


class DetachedReporter(RunReporter):
    """Plain progress lines in the log, and "started" once the first agent is ready. (Its stderr is
    the pipe to the waiting terminal, then the log: never a terminal, so never a live bar.)"""

    plain_interval_s = LOG_PROGRESS_INTERVAL_S

    def __init__(self, quiet: bool, workers: int, detachment: Detachment) -> None:
        super().__init__(quiet=quiet, workers=workers)
        self.detachment = detachment

    def agent_event(self, node_name: str, message: str) -> None:
        super().agent_event(node_name, message)
        if message.startswith("ready"):
            self.detachment.started()


def _ignore(signum: int, frame: object) -> None:
    """SIGHUP: the terminal that started the run went away; the run goes on."""
