"""The agent's loop: say hello, take tasks, stream their output, report their end.

One thread, one `zmq.Poller` over the broker socket and every running task's pipes. Output is
batched per stream (sent at FLUSH_BYTES or after FLUSH_INTERVAL_S), and a short task's whole
output travels inside its `Finished` message — but stdout not at all when the coordinator,
which started this agent on its own machine, names the attempt's stdout file in the lab: then
the task writes into it itself (`task_process.open_stdout`). The broker grants byte credits as it
writes, so a task printing faster than the coordinator's disk is slowed down by its pipe, not
buffered here.
Each attempt runs with a folder of its own (PATAS_TASK_DIR); when it ends, the files it collects
there travel back under the same window before its `Finished` (see `patas.agent.task_files`).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import tempfile
import time
from collections import deque

import zmq

from patas.agent.allocation import slot_gpus
from patas.agent.supervisor import Supervisor, become_subreaper, kill_strays
from patas.agent.task_files import AttemptFiles, FileSender, TaskFolders
from patas.agent.task_process import READ_CHUNK_BYTES, TaskProcess, open_stdout
from patas.common import protocol
from patas.common.agent_config import AgentConfig
from patas.common.collected_files import CollectRule
from patas.common.bounds import bound_socket, settle_descriptor_limit
from patas.common.protocol import (
    PROTOCOL_VERSION,
    Assign,
    Cancel,
    Credit,
    Finished,
    Heartbeat,
    Hello,
    Message,
    Output,
    Refused,
    Reintroduce,
    Shutdown,
    TaskFile,
    Welcome,
)

log = logging.getLogger(__name__)

FLUSH_BYTES = READ_CHUNK_BYTES
FLUSH_INTERVAL_S = 0.1
HEARTBEAT_INTERVAL_S = 1.0
# How long to wait for the broker's Welcome before giving up.
CONNECT_TIMEOUT_S = 15.0
LINGER_MS = 1000

EXIT_OK, EXIT_REFUSED, EXIT_BROKER_LOST, EXIT_COORDINATOR_GONE = 0, 3, 4, 5


class Agent:
    """Serves one broker. `lifeline` is a file descriptor whose end of file means the
    coordinator is gone (the standard input it was started with), or None. `first_supervisor`,
    forked ahead, serves the first slot (see `patas.agent.__main__`)."""

    def __init__(
        self, settings: AgentConfig, context: zmq.Context | None = None, lifeline: int | None = None,
        first_supervisor: Supervisor | None = None,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.context = context or zmq.Context.instance()
        self.poller = zmq.Poller()
        self.socket = self._connect()
        self.lifeline = lifeline
        if lifeline is not None:
            self.poller.register(lifeline, zmq.POLLIN)
        self.tasks: dict[int, TaskProcess] = {}  # lease → running task
        self.folders = TaskFolders(settings.agent_id)
        self.attempt_files: dict[int, AttemptFiles] = {}  # lease → its folder (PATAS_TASK_DIR)
        self.queue: deque[Assign] = deque()  # tasks waiting for a free slot
        self.free_slots = list(range(settings.slots - 1, -1, -1))
        # slot → the process its commands run under
        self.supervisors: dict[int, Supervisor] = {0: first_supervisor} if first_supervisor is not None else {}
        self.adopts_orphans = False  # a subreaper agent process (see `run`)
        self.worker_offsets = (0, 0)  # first worker number in the lab and in the cluster
        self.fd_owner: dict[int, TaskProcess] = {}  # watched output or status pipe → its task
        self.polled: set[int] = set()  # those registered with the poller now
        self.reading_paused = False
        self.window = 0  # output bytes the broker still accepts
        self.broker_timeout_s = CONNECT_TIMEOUT_S
        self.last_heard = self.last_sent = time.monotonic()
        self.stopping: str | None = None
        self.exit_code = EXIT_OK
        self._handlers = {
            Welcome: self._on_welcome,
            Refused: self._on_refused,
            Assign: self._on_assign,
            Cancel: self._on_cancel,
            Credit: self._on_credit,
            Shutdown: self._on_shutdown,
            Reintroduce: self._on_reintroduce,
            Heartbeat: lambda message: None,
        }

    # --- the loop ---------------------------------------------------------------------------

    def _connect(self) -> zmq.Socket:
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, self.settings.agent_id.encode())
        sock.setsockopt(zmq.LINGER, LINGER_MS)
        bound_socket(sock)
        keys = self.settings.keys
        if keys is not None:
            sock.curve_serverkey = keys.server_public.encode()
            sock.curve_publickey = keys.public.encode()
            sock.curve_secretkey = keys.secret.encode()
        sock.connect(self.settings.broker_address)
        self.poller.register(sock, zmq.POLLIN)
        return sock

    def _hello(self) -> None:
        self._send(Hello(PROTOCOL_VERSION, self.settings.agent_id, socket.gethostname(), self.settings.slots, os.getpid()))

    def _start_over(self) -> None:
        """A pool agent whose broker went silent: drop its work and greet whoever listens next."""
        log.warning("no word from the broker for %.0f s; killing tasks and saying hello again", self.broker_timeout_s)
        self._kill_everything()
        self.poller.unregister(self.socket)
        self.socket.close(0)
        self.socket = self._connect()
        self.broker_timeout_s = CONNECT_TIMEOUT_S
        self.last_heard = time.monotonic()
        self._hello()

    def _kill_everything(self) -> None:
        self.queue.clear()
        tasks = list(self.tasks.values())
        for task in tasks:  # all at once, then wait: their supervisors kill in parallel
            task.stop()
        for task in tasks:
            task.wait_stopped()
            self._forget(task)

    def run(self) -> int:
        """Serve the broker until it says goodbye or goes silent; return the exit status."""
        self._hello()
        try:
            while self.stopping is None:
                self._step()
        finally:
            self._kill_everything()
            for supervisor in self.supervisors.values():
                supervisor.hang_up()  # all at once, then wait: they exit in parallel
            for supervisor in self.supervisors.values():
                supervisor.reap()
            self.folders.close()
            self.socket.close()
        log.info("agent %s stops: %s", self.settings.agent_id, self.stopping)
        return self.exit_code

    def _step(self) -> None:
        events = dict(self.poller.poll(self._poll_timeout_ms()))
        now = time.monotonic()
        if events.pop(self.socket, 0):
            self._receive_all(now)
        if self.lifeline is not None and events.pop(self.lifeline, 0):
            self._check_lifeline()
        touched: dict[int, TaskProcess] = {}  # by lease: tasks with a ready pipe or supervisor
        for fd in events:
            task = self.fd_owner.get(fd)
            if task is not None:
                touched[task.lease] = task
                if fd in task.pipes:
                    task.read(fd, now)
        for task in touched.values():
            self._sync(task)  # a pipe read to its end is closed: before its number is reused
        for task in list(self.tasks.values()):
            self._advance(task, now, task.running and task.supervisor.fileno() in events)
        self._pause_reading(self.window <= 0)
        if now - self.last_sent >= HEARTBEAT_INTERVAL_S:
            self._send(Heartbeat())
        if now - self.last_heard > self.broker_timeout_s:
            if self.settings.persistent:
                self._start_over()
                return
            self.exit_code = EXIT_BROKER_LOST
            self.stopping = f"no word from the broker for {self.broker_timeout_s:.0f} s"

    def _advance(self, task: TaskProcess, now: float, ended: bool) -> None:
        """Move one task along: send due output, reap (if `ended`: its supervisor has word, so
        only then is it asked), enforce its timeout, report its end."""
        task.check_deadline(now)
        if ended and task.reap():
            self._sync(task)
        if task.finished:
            self._finish(task)
            return
        for stream, buffer in enumerate(task.buffers):
            due = buffer.size >= FLUSH_BYTES or (buffer.size and now - buffer.since >= FLUSH_INTERVAL_S)
            if due and self.window > 0:
                data = buffer.take()
                self.window -= len(data)
                self._send(Output(task.lease, stream, data))

    def _poll_timeout_ms(self) -> int:
        now = time.monotonic()
        wake = now + HEARTBEAT_INTERVAL_S
        for task in self.tasks.values():
            deadline = task.next_deadline()
            if deadline is not None:
                wake = min(wake, deadline)
            if any(b.size for b in task.buffers):
                wake = min(wake, now + FLUSH_INTERVAL_S)
            if task.finished and self.window > 0:
                wake = now  # its files are being sent
        return max(0, int((wake - now) * 1000))

    def _check_lifeline(self) -> None:
        assert self.lifeline is not None
        try:
            data = os.read(self.lifeline, 4096)
        except BlockingIOError:
            return
        if not data:
            self.exit_code = EXIT_COORDINATOR_GONE
            self.stopping = "the coordinator's connection closed"

    # --- messages ---------------------------------------------------------------------------

    def _receive_all(self, now: float) -> None:
        while True:
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.last_heard = now
            message = protocol.decode(frames)
            self._handlers[type(message)](message)

    def _send(self, message: Message) -> None:
        self.socket.send_multipart(protocol.encode(message), copy=False)
        self.last_sent = time.monotonic()

    def _on_welcome(self, message: Welcome) -> None:
        self.broker_timeout_s = message.broker_timeout_s
        self.window = message.output_window_bytes
        self.worker_offsets = (message.first_worker_in_lab, message.first_worker_in_cluster)

    def _on_refused(self, message: Refused) -> None:
        log.error("the broker refused this agent: %s", message.reason)
        self.exit_code = EXIT_REFUSED
        self.stopping = f"refused: {message.reason}"

    def _on_assign(self, message: Assign) -> None:
        self.queue.append(message)
        self._start_queued()

    def _start_queued(self) -> None:
        while self.free_slots and self.queue:
            assign = self.queue.popleft()
            slot = self.free_slots.pop()
            in_lab, in_cluster = self.worker_offsets
            env = {
                **assign.env,
                "PATAS_WORKER_IN_NODE": str(slot),
                "PATAS_WORKER_IN_CLUSTER": str(in_cluster + slot),
                "PATAS_WORKER_IN_LAB": str(in_lab + slot),
                **slot_gpus(self.settings, slot),
            }
            try:
                folder = self.folders.create()
            except OSError as error:
                folder, folder_error = "", f"cannot create the task's folder in {tempfile.gettempdir()}: {error.strerror}"
            else:
                folder_error = ""
            env["PATAS_TASK_DIR"] = folder
            stdout_file, output_error = open_stdout(assign.stdout_path) if assign.stdout_path else (None, "")
            task = TaskProcess(
                assign.lease, slot, self._supervisor(slot), assign.commands, assign.workdir, env, assign.timeout_s, stdout_file
            )
            self.tasks[task.lease] = task
            if not folder_error:
                self.attempt_files[task.lease] = AttemptFiles(folder, CollectRule(tuple(assign.collect), assign.collect_limit_bytes))
            if folder_error or output_error:
                task.error, task.finished = folder_error or output_error, True
            else:
                task.start()
            self._sync(task)

    def _supervisor(self, slot: int) -> Supervisor:
        """The slot's supervisor, started at the slot's first task (or after one died)."""
        supervisor = self.supervisors.get(slot)
        if supervisor is None or not supervisor.alive:
            supervisor = self.supervisors[slot] = Supervisor()
        return supervisor

    def _on_cancel(self, message: Cancel) -> None:
        self.queue = deque(a for a in self.queue if a.lease != message.lease)
        task = self.tasks.get(message.lease)
        if task is not None:
            task.kill()
            self._forget(task)

    def _on_credit(self, message: Credit) -> None:
        self.window += message.bytes

    def _on_reintroduce(self, message: Reintroduce) -> None:
        # The broker restarted and forgot us: what we run belongs to runs it no longer knows.
        self._kill_everything()
        self._hello()

    def _on_shutdown(self, message: Shutdown) -> None:
        self.stopping = f"the broker said goodbye: {message.reason}"

    # --- task bookkeeping -------------------------------------------------------------------

    def _finish(self, task: TaskProcess) -> None:
        """Send the ended task's files as the window allows, then its end (called each turn until then)."""
        ended_at = time.time()
        files = self.attempt_files.get(task.lease)
        sender = None
        if files is not None:
            if files.sender is None:
                files.sender = FileSender(files.folder, files.rule)
                files.ended_at = ended_at
            sender, ended_at = files.sender, files.ended_at
            while self.window > 0 and (chunk := sender.next_chunk(FLUSH_BYTES)) is not None:
                self.window -= len(chunk.data)
                self._send(TaskFile(task.lease, chunk.path, chunk.offset, chunk.eof, chunk.data))
            if not sender.done:
                return  # more once the broker grants credit
        self._drop_folder(task)  # before its end is told: once the broker knows, its files are gone
        stdout, stderr = (self._send_all_but_last_chunk(task.lease, stream, b.take()) for stream, b in enumerate(task.buffers))
        self._send(
            Finished(
                task.lease,
                task.slot,
                task.exit_code if not task.error else None,
                task.started_at,
                ended_at,
                task.timed_out,
                task.error or (sender.error if sender else ""),
                stdout,
                stderr,
                files=sender.count if sender else 0,
            )
        )
        self._forget(task)

    def _send_all_but_last_chunk(self, lease: int, stream: int, data: bytes) -> bytes:
        """Send what a finished task left buffered as Output chunks but the last, which is
        returned to travel in Finished: however much a task leaves behind (its pipes drained at
        exit, commands that ran while reading was paused), no frame exceeds FLUSH_BYTES."""
        cut = max(0, len(data) - FLUSH_BYTES)
        for start in range(0, cut, FLUSH_BYTES):
            chunk = data[start : min(start + FLUSH_BYTES, cut)]
            self.window -= len(chunk)  # the broker credits Output as it writes it
            self._send(Output(lease, stream, chunk))
        return data[cut:]

    def _sync(self, task: TaskProcess) -> None:
        """Watch exactly the task's current pipes and status pipe."""
        current = task.fds() if not task.finished else set()
        for fd in [fd for fd, owner in self.fd_owner.items() if owner is task and fd not in current]:
            del self.fd_owner[fd]
            self._apply(fd)
        for fd in current - set(self.fd_owner):
            self.fd_owner[fd] = task
            self._apply(fd)

    def _apply(self, fd: int) -> None:
        """Register `fd` with the poller if it is to be polled now, unregister it if not."""
        task = self.fd_owner.get(fd)
        wanted = task is not None and not (self.reading_paused and fd in task.pipes)
        if wanted and fd not in self.polled:
            self.poller.register(fd, zmq.POLLIN)
            self.polled.add(fd)
        elif not wanted and fd in self.polled:
            self.poller.unregister(fd)
            self.polled.discard(fd)

    def _forget(self, task: TaskProcess) -> None:
        """Drop a finished or killed task and give its slot to the next queued one."""
        self._sync(task)
        self._drop_folder(task)
        task.close_stdout_file()
        if not task.supervisor.alive and self.adopts_orphans:
            kill_strays({s.pid for s in self.supervisors.values() if s.alive})
        if self.tasks.pop(task.lease, None) is not None:
            self.free_slots.append(task.slot)
            self._start_queued()

    def _drop_folder(self, task: TaskProcess) -> None:
        """Release the task's folder (PATAS_TASK_DIR), if it still has one: removed, or kept empty (TaskFolders)."""
        files = self.attempt_files.pop(task.lease, None)
        if files is None:
            return
        if files.sender is not None:
            files.sender.close()
        try:
            self.folders.release(files.folder)
        except OSError as error:
            log.warning("could not remove the task folder %s: %s", files.folder, error.strerror)

    def _pause_reading(self, paused: bool) -> None:
        """Stop polling task pipes while the broker's window is full; the tasks block on write."""
        if paused != self.reading_paused:
            self.reading_paused = paused
            for fd in list(self.fd_owner):
                self._apply(fd)


def run(settings: AgentConfig, lifeline: int | None, first_supervisor: Supervisor | None = None) -> int:
    """Run an agent until the broker lets it go; SIGTERM kills its tasks and exits cleanly."""
    # Ctrl-C in the coordinator's terminal reaches this process too; the broker decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    settle_descriptor_limit(settings.slots)
    agent = Agent(settings, lifeline=lifeline, first_supervisor=first_supervisor)
    # Its only children are its slots' supervisors; what one that died leaves comes here, to be killed.
    agent.adopts_orphans = become_subreaper()
    return agent.run()


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(EXIT_OK)
