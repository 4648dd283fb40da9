"""A slot's supervisor: the process that keeps everything a command starts within reach.

The agent forks one supervisor per slot, once (a fork copies the agent's page tables, which
costs milliseconds on a VM: too much per task). The supervisor starts the slot's commands one at
a time and, on Linux, is a child subreaper: a process a command starts that leaves the process
group (`setsid`) or double-forks into a daemon becomes the supervisor's child when its parent
exits, instead of init's. Since a supervisor runs one command at a time, every child it has
belongs to that command. When the command's main process exits, or the agent asks, or the agent
is gone (its end of the socket closes, even when it was SIGKILLed), the supervisor kills all its
children, again as their own orphans come to it, reaps them, and only then reports the command's
wait status. So when the agent sees a command end, nothing it started is left running.

Out of reach: a process that re-parents to a nearer subreaper of its own making (a nested
`systemd --user`, tini), or that asks another service to start it (`systemd-run --user`, `at`,
ssh to another host). Elsewhere than Linux there is no subreaper: the command's process group is
killed, and a process that left it survives.

Agent and supervisor speak over a Unix SOCK_SEQPACKET pair, one message per packet, so requests
and control orders arrive in the order sent: an order meant for a command that has already
ended is read while idle, and dropped, never applied to the next command.
"""

from __future__ import annotations

import gc
import logging
import marshal
import os
import select
import signal
import socket
import sys
import warnings
from dataclasses import dataclass
from typing import NoReturn

log = logging.getLogger(__name__)

# Agent → supervisor: run this (with the two output pipes attached), be polite, kill now.
_RUN, _TERMINATE, _KILL = b"R", b"T", b"K"
# Supervisor → agent: the command's wait status, or the errno that kept it from starting.
_EXITED, _NOT_STARTED = b"W", b"E"
_PACKET_BYTES = 64
# Signals the agent ignores (Python ignores SIGPIPE and SIGXFSZ, the agent SIGINT) that a
# command gets back with their default meaning: `yes | head` ends, `timeout -s INT` works.
_RESTORED = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT)
# Without pidfds (Linux < 5.3, Python < 3.9, not Linux), how often the command's exit is looked for.
_EXIT_POLL_S = 0.05
# How often processes a running command started and that ended are reaped (zombies hold PIDs).
_ZOMBIE_REAP_INTERVAL_S = 1.0
_PR_SET_NAME, _PR_SET_CHILD_SUBREAPER = 15, 36
_PROC_READ_BYTES = 4096
# A supervisor's command line is its agent's (it is a fork); its name (`ps -o comm`) tells them apart.
NAME = "patas-supervise"

try:  # loaded once in the agent, so that supervisors need import nothing
    import ctypes

    _libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
except (ImportError, OSError):
    _libc = None

# The forked supervisor runs only this module's code and never touches the agent's ZeroMQ
# threads' state, which is what Python 3.12's warning about forking with threads is about.
warnings.filterwarnings("ignore", message=r".*use of fork\(\) may lead to deadlocks", category=DeprecationWarning)


@dataclass(frozen=True)
class Launch:
    """What to start: `argv`, or if it cannot be started, `fallback_argv`; `env` is added to the
    agent's environment."""

    argv: list[str]
    fallback_argv: list[str]
    workdir: str
    env: dict[str, str]


@dataclass(frozen=True)
class Outcome:
    """How a command ended: its exit code (negative: killed by that signal), or the error that
    kept it from starting."""

    exit_code: int | None
    start_error: OSError | None = None


class Supervisor:
    """The agent's handle on one slot's supervisor process."""

    def __init__(self) -> None:
        self.channel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # Blocked across the fork, so no signal runs the agent's handlers in the supervisor,
        # which keeps them blocked: only the agent's word (or its end) ends a supervisor.
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            self.pid = os.fork()
            if self.pid == 0:
                _serve(theirs)
        finally:  # only the agent gets here: a supervisor never returns from _serve
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
            theirs.close()
        self.running = False
        self.alive = True  # until hung up
        self._reaped = False

    def fileno(self) -> int:
        """Readable when the running command has ended (and everything it started)."""
        return self.channel.fileno()

    def run(self, launch: Launch, outputs: tuple[int, int] | None = None) -> tuple[int, ...]:
        """Start a command; return the read ends of its stdout and stderr pipes, or nothing
        when it is to write into `outputs` (two open files, which stay the caller's)."""
        if outputs is not None:
            self._send_run(launch, outputs)
            return ()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            self._send_run(launch, (out_w, err_w))
        except OSError:
            os.close(out_r)
            os.close(err_r)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        return out_r, err_r

    def _send_run(self, launch: Launch, streams: tuple[int, int]) -> None:
        request = _RUN + marshal.dumps((launch.argv, launch.fallback_argv, launch.workdir, launch.env))
        try:
            socket.send_fds(self.channel, [request], list(streams))
        except OSError:
            self.close()  # gone or unusable: the slot gets a new supervisor for its next command
            raise
        self.running = True

    def terminate(self) -> None:
        """Send SIGTERM to the running command's group and to every process it started."""
        self._order(_TERMINATE)

    def kill(self) -> None:
        """Kill the running command and everything it started (see `outcome`)."""
        self._order(_KILL)

    def outcome(self, wait: bool = False) -> Outcome | None:
        """How the running command ended, once it and everything it started are gone; None if
        it still runs (and not `wait`)."""
        if not self.running:
            return None
        try:
            # A flag per call, not setblocking: that is two ioctls each time the agent looks.
            packet = self.channel.recv(_PACKET_BYTES, 0 if wait else socket.MSG_DONTWAIT)
        except BlockingIOError:
            return None
        except OSError:
            packet = b""
        self.running = False
        if packet[:1] == _EXITED:
            return Outcome(os.waitstatus_to_exitcode(int(packet[1:])))
        if packet[:1] == _NOT_STARTED:
            code = int(packet[1:])
            return Outcome(None, OSError(code, os.strerror(code)))
        # The supervisor itself died (OOM killer, kill -9): the command's processes re-parent to
        # the agent, which kills them, so the command ends as killed. That is no reason to think
        # the command cannot run: it is retried, unlike a start error. The slot gets a new one.
        log.warning("the supervisor of a running command died; the command's processes are killed")
        self.close()
        return Outcome(-signal.SIGKILL)

    def close(self) -> None:
        """End the supervisor (killing any running command) and reap it."""
        self.hang_up()
        self.reap()

    def hang_up(self) -> None:
        """Tell the supervisor to end (it kills any running command, then exits), without
        waiting: supervisors told one after another then exit in parallel (see `reap`)."""
        if self.alive:
            self.alive = False
            self.channel.close()  # its end of file

    def reap(self) -> None:
        """Wait for a supervisor that was hung up to exit (a few ms: the kernel frees its copy
        of the agent's memory), and reap it."""
        if not self.alive and not self._reaped:
            os.waitpid(self.pid, 0)
            self._reaped = True

    def _order(self, order: bytes) -> None:
        if self.running:
            try:
                self.channel.send(order)
            except OSError:
                pass  # the supervisor is gone; `outcome` says so


def become_subreaper() -> bool:
    """Make orphaned descendants of this process re-parent to it (Linux); False where it cannot."""
    if _libc is not None and _libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0:
        return True
    log.debug("not a child subreaper: a task's processes that leave its group may survive it")
    return False


def kill_strays(supervisors: set[int]) -> None:
    """In a subreaper agent: kill and reap every child that is not one of its `supervisors` —
    what a supervisor killed on its own (the OOM killer, kill -9) left behind."""
    while True:
        strays = [pid for pid in _children(all_threads=True) if pid not in supervisors]
        if not strays:
            return
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in strays:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass  # reaped elsewhere


# --- in the supervisor ----------------------------------------------------------------------


def _serve(channel: socket.socket) -> NoReturn:
    """The supervisor's whole life; it never returns into the agent's code."""
    code = 0
    try:
        gc.disable()  # nothing of the agent's may be finalised here
        _become_detached(channel.fileno())
        if _libc is not None:
            _libc.prctl(_PR_SET_NAME, NAME.encode(), 0, 0, 0)
        become_subreaper()
        while True:
            request = _receive(channel)
            if request is None:
                break
            if request:
                report = _Command(channel, *request).run()
                try:
                    channel.send(report)
                except OSError:
                    break  # the agent is gone; what the command started is dead already
    except BaseException:
        code = 70  # EX_SOFTWARE; the agent sees the socket close
    finally:
        os._exit(code)


def _become_detached(keep: int) -> None:
    """Standard streams on /dev/null; every other inherited descriptor but `keep` closed (other
    tasks' pipes, the agent's sockets, its standard input, which is the coordinator's lifeline)."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, os.sysconf("SC_OPEN_MAX")))
    for fd in fds:
        if fd > 2 and fd != keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the listing's own descriptor, or never open


def _receive(channel: socket.socket) -> tuple | None:
    """The next request to run (its arguments and pipes), () for a stale order, None at the end."""
    packet, fds, _, _ = socket.recv_fds(channel, 1 << 20, 2)
    for fd in fds:
        os.set_inheritable(fd, False)  # commands get them as 1 and 2 only
    if not packet:
        return None
    if packet[:1] != _RUN or len(fds) != 2:
        for fd in fds:
            os.close(fd)
        return ()  # an order for a command that ended before it arrived
    argv, fallback_argv, workdir, env = marshal.loads(packet[1:])
    return (Launch(argv, fallback_argv, workdir, env), *fds)


class _Command:
    """One command under supervision: start it, wait, kill all that is left, report."""

    def __init__(self, channel: socket.socket, launch: Launch, out_w: int, err_w: int) -> None:
        self.channel = channel
        self.launch = launch
        self.pipes = (out_w, err_w)
        self.main = 0
        self.main_status: int | None = None

    def run(self) -> bytes:
        try:
            self.main = self._spawn()
        except OSError as error:
            return _NOT_STARTED + str(error.errno).encode()
        finally:
            for fd in self.pipes:
                os.close(fd)  # the pipes reach end of file when the command's tree is gone
        self._wait()
        self._kill_all()
        assert self.main_status is not None
        return _EXITED + str(self.main_status).encode()

    def _spawn(self) -> int:
        os.chdir(self.launch.workdir)
        env = {**_inherited_environment(), **self.launch.env}
        out_w, err_w = self.pipes
        options = {
            "file_actions": [(os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)],
            "setsid": True,
            "setsigmask": (),
            "setsigdef": _RESTORED,
        }
        try:
            return os.posix_spawnp(self.launch.argv[0], self.launch.argv, env, **options)
        except OSError:
            # bash reports a missing or unrunnable program exactly as the user expects.
            return os.posix_spawnp(self.launch.fallback_argv[0], self.launch.fallback_argv, env, **options)

    def _wait(self) -> None:
        """Until the main process exits, or the agent orders a kill or is gone."""
        try:
            exited = os.pidfd_open(self.main)
        except (AttributeError, OSError):
            exited = None
        watched = [self.channel] + ([exited] if exited is not None else [])
        timeout = _ZOMBIE_REAP_INTERVAL_S if exited is not None else _EXIT_POLL_S
        try:
            while not self._main_exited():
                ready = select.select(watched, [], [], timeout)[0]
                if not ready or ready == [self.channel]:
                    self._reap_others()  # zombies of a long command; at its end, _kill_all reaps
                if self.channel in ready:
                    order = self.channel.recv(_PACKET_BYTES)
                    if order == _TERMINATE:
                        self._signal_all(signal.SIGTERM)
                    else:
                        return  # a kill order, or the agent is gone
        finally:
            if exited is not None:
                os.close(exited)

    def _main_exited(self) -> bool:
        # Not reaped yet (WNOWAIT): while it is a zombie its PID, the group's ID, cannot be reused.
        return os.waitid(os.P_PID, self.main, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None

    def _reap_others(self) -> None:
        for pid in _children():
            if pid != self.main:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass

    def _kill_all(self) -> None:
        """Kill every child, again as their orphans arrive, and reap them all, the main one last
        or not: its status is kept when it is reaped. Done when no child at all is left, dead
        or alive (ECHILD); children are listed again only while some still run (most commands
        leave none: one listing of /proc, not one per reaped child)."""
        self._signal_all(signal.SIGKILL)
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:  # some still run: orphans that came since, or the killed not dead yet
                    self._signal_all(signal.SIGKILL)
                    pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                return
            if pid == self.main:
                self.main_status = status

    def _signal_all(self, signum: int) -> None:
        """Signal the command's process group (while its unreaped main process keeps the group's
        ID from being reused) and every child, which includes orphans that left the group."""
        targets = _children()
        if self.main_status is None:
            targets.append(-self.main)
        for target in targets:
            try:
                os.kill(target, signum)
            except (ProcessLookupError, PermissionError):
                pass  # already gone, or the group is empty


def _children(all_threads: bool = False) -> list[int]:
    """This process's children (of its main thread, or of all): on Linux from /proc, where
    orphans re-parented to it appear too."""
    pid = os.getpid()
    try:
        threads = os.listdir(f"/proc/{pid}/task") if all_threads else [str(pid)]
        found = []
        for thread in threads:
            found += [int(word) for word in _read_small(f"/proc/{pid}/task/{thread}/children").split()]
        return found
    except OSError:
        return []  # no /proc: the process group is all that can be reached


def _read_small(path: str) -> bytes:
    """A /proc file's whole text with three system calls (open() adds fstat, ioctl, lseek: this
    runs twice per command)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, _PROC_READ_BYTES):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


_inherited: dict[str, str] | None = None


def _inherited_environment() -> dict[str, str]:
    """The agent's environment, which every command inherits, decoded once per supervisor
    (os.environ decodes every variable each time it is copied: ~44 us a command)."""
    global _inherited
    if _inherited is None:
        _inherited = dict(os.environ)
    return _inherited
