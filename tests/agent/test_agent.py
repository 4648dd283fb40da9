"""A real agent against a hand-driven broker socket: flow control, cancel, shutdown."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest
import zmq

from patas.agent.agent import Agent
from patas.agent.task_process import READ_CHUNK_BYTES
from patas.common.agent_config import AgentConfig, CurveKeys
from patas.common import protocol
from patas.common.protocol import Assign, Cancel, Credit, Finished, Hello, Output, Shutdown, Welcome
from tests.running import ENV, adopting_orphans, processes_with
from tests.zmtp import MIB, claim_four_gigabytes, resident_bytes

CHUNK = READ_CHUNK_BYTES
WINDOW = 2 * CHUNK


class FakeBroker:
    """A ROUTER socket the test speaks through, one message at a time."""

    def __init__(self) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.ROUTER)
        port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        self.address = f"tcp://127.0.0.1:{port}"
        self.agent = b""

    def receive(self, timeout_s: float = 10.0) -> protocol.Message | None:
        if not self.socket.poll(int(timeout_s * 1000)):
            return None
        self.agent, *frames = self.socket.recv_multipart()
        return protocol.decode(frames)

    def receive_until(self, kind: type, timeout_s: float = 10.0) -> list[protocol.Message]:
        seen, deadline = [], time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = self.receive(deadline - time.monotonic())
            if message is not None:
                seen.append(message)
                if isinstance(message, kind):
                    return seen
        raise AssertionError(f"no {kind.__name__} within {timeout_s} s; got {[type(m).__name__ for m in seen]}")

    def send(self, message: protocol.Message) -> None:
        self.socket.send_multipart([self.agent, *protocol.encode(message)])

    def close(self) -> None:
        self.socket.close(0)
        self.context.term()


@pytest.fixture
def broker_and_agent():
    broker = FakeBroker()
    agent = Agent(AgentConfig(broker.address, "test-agent", 1), zmq.Context())
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    hello = broker.receive()
    assert isinstance(hello, Hello) and hello.slots == 1 and hello.protocol_version == protocol.PROTOCOL_VERSION
    broker.send(Welcome(1.0, 30.0, WINDOW, 0, 0))
    yield broker, agent
    broker.send(Shutdown("test over"))
    thread.join(10)
    assert not thread.is_alive()
    broker.close()


def output_bytes(messages: list[protocol.Message]) -> int:
    return sum(len(m.data) for m in messages if isinstance(m, Output))


def test_the_agent_sends_no_more_than_its_window_until_the_broker_grants_credit(broker_and_agent):
    broker, _ = broker_and_agent
    size = 3_000_000
    broker.send(Assign(1, [f"head -c {size} /dev/zero"], os.getcwd(), {}, None))
    received: list[protocol.Message] = []
    while (message := broker.receive(timeout_s=1.0)) is not None:  # until the agent goes quiet
        received.append(message)
    held_back = output_bytes(received)
    assert WINDOW <= held_back <= WINDOW + CHUNK  # it stops at the first chunk past the window
    assert not any(isinstance(m, Finished) for m in received)  # the task is blocked on its pipe

    broker.send(Credit(size))
    rest = broker.receive_until(Finished)
    assert held_back + output_bytes(rest) + len(rest[-1].stdout) == size


def test_cancel_kills_the_task_and_its_children(broker_and_agent):
    broker, _ = broker_and_agent
    marker = "777.%d" % os.getpid()
    broker.send(Assign(1, [f"sleep {marker} & sleep {marker}"], os.getcwd(), {}, None))
    deadline = time.monotonic() + 10
    while len(processes_with(marker)) < 3 and time.monotonic() < deadline:  # bash and two sleeps
        time.sleep(0.02)
    assert len(processes_with(marker)) == 3
    broker.send(Cancel(1))
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert processes_with(marker) == []


def test_queued_tasks_start_as_slots_free_and_report_their_slot(broker_and_agent):
    broker, _ = broker_and_agent
    for lease in (1, 2, 3):
        broker.send(Assign(lease, [f"echo {lease} $PATAS_WORKER_IN_NODE"], os.getcwd(), {}, None))
    finished = []
    while len(finished) < 3:
        finished += [m for m in broker.receive_until(Finished) if isinstance(m, Finished)]
    assert sorted((m.lease, m.slot, m.stdout) for m in finished) == [(1, 0, b"1 0\n"), (2, 0, b"2 0\n"), (3, 0, b"3 0\n")]


def test_a_missing_workdir_is_reported_not_crashed_on(broker_and_agent):
    broker, _ = broker_and_agent
    broker.send(Assign(1, ["echo hi"], "/nonexistent/patas", {}, None))
    (finished,) = [m for m in broker.receive_until(Finished) if isinstance(m, Finished)]
    assert finished.exit_code is None
    node = os.uname().nodename
    assert finished.error == f"workdir /nonexistent/patas does not exist on {node} (--ship sends it; or give a workdir that {node} has)"


def test_an_agent_gives_up_on_a_silent_broker():
    context = zmq.Context()
    silent = context.socket(zmq.ROUTER)
    port = silent.bind_to_random_port("tcp://127.0.0.1")
    agent = Agent(AgentConfig(f"tcp://127.0.0.1:{port}", "lonely", 1), context)
    agent.broker_timeout_s = 0.5
    started = time.monotonic()
    assert agent.run() == 4  # EXIT_BROKER_LOST
    assert time.monotonic() - started < 5
    silent.close(0)
    context.term()


def test_a_task_may_end_while_reading_is_paused(broker_and_agent):
    """Regression: ending a task whose pipes were taken off the poller for back-pressure crashed
    the agent (KeyError on unregister)."""
    broker, agent = broker_and_agent
    agent.free_slots.append(1)  # a second slot, so both tasks run at once
    broker.send(Assign(1, ["head -c 3000000 /dev/zero"], os.getcwd(), {}, None))
    broker.send(Assign(2, ["sleep 0.5; echo short"], os.getcwd(), {}, None))
    finished = [m for m in broker.receive_until(Finished) if isinstance(m, Finished)]
    assert [(m.lease, m.stdout) for m in finished] == [(2, b"short\n")]  # ended while paused
    broker.send(Credit(3_000_000))
    rest = broker.receive_until(Finished)
    assert rest[-1].lease == 1 and rest[-1].exit_code == 0


def test_a_broker_announcing_a_4_gb_frame_costs_the_agent_no_memory(tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)
    public, secret = (k.decode() for k in zmq.curve_keypair())
    keys = CurveKeys(zmq.curve_keypair()[0].decode(), public, secret)
    config = AgentConfig(f"tcp://127.0.0.1:{listener.getsockname()[1]}", "a", 1, keys)
    path = tmp_path / "agent.json"
    path.write_bytes(config.to_line())
    path.chmod(0o600)
    agent = subprocess.Popen([sys.executable, "-m", "patas.agent", "--config", str(path)], env=ENV, stderr=subprocess.DEVNULL)
    try:
        connection, _ = listener.accept()
        connection.settimeout(30)
        connection.recv(64)  # the agent's greeting
        before = resident_bytes(agent.pid)
        claim_four_gigabytes(connection, as_server=True)
        growth = resident_bytes(agent.pid) - before
        connection.close()
        assert growth < 16 * MIB, f"the agent grew by {growth // MIB} MiB"
    finally:
        agent.kill()
        agent.wait()
        listener.close()
def test_a_task_leaving_more_than_a_frame_of_output_sends_it_in_chunks(broker_and_agent):
    """Commands that exit while reading is paused leave their output in the agent's buffer; at
    the task's end it all goes out in chunks, never in one frame above what sockets accept."""
    broker, _ = broker_and_agent
    size, commands = 900_000, 20  # each fits in a pipe, so each exits without being read
    assert size * commands > protocol.MAX_FRAME_BYTES
    broker.send(Assign(1, [f"head -c {size} /dev/zero"] * commands, os.getcwd(), {}, None))
    received = broker.receive_until(Finished, timeout_s=60)
    finished = received[-1]
    assert isinstance(finished, Finished) and finished.exit_code == 0
    assert output_bytes(received) + len(finished.stdout) == size * commands
    assert max(len(m.data) for m in received if isinstance(m, Output)) <= protocol.MAX_FRAME_BYTES
    assert len(finished.stdout) <= CHUNK
    broker.send(Credit(size * commands))


def test_a_line_a_task_prints_reaches_the_broker_within_a_second_though_the_task_goes_on(broker_and_agent, tmp_path):
    """Output is sent by time as well as by size: a quiet task's short lines are not held back."""
    broker, _ = broker_and_agent
    go = tmp_path / "go"
    wait = f"while [ ! -e {go} ]; do sleep 0.01; done"
    broker.send(Assign(1, [f"echo first; {wait}; echo second; sleep 30"], os.getcwd(), {}, None))
    first = broker.receive_until(Output, timeout_s=10)[-1]
    assert first.data == b"first\n"
    go.touch()
    printed = time.monotonic()
    second = broker.receive_until(Output, timeout_s=10)[-1]
    assert second.data == b"second\n"
    assert time.monotonic() - printed < 1.0
    broker.send(Cancel(1))


def test_a_task_given_its_stdout_file_writes_it_itself_past_the_window_and_streams_only_stderr(broker_and_agent, tmp_path):
    broker, _ = broker_and_agent
    path = tmp_path / "attempt-1.stdout"
    path.write_text("left by something else\n")  # replaced, never appended to
    size = 4 * WINDOW  # far past the window: no credit is needed, nothing travels
    command = f"head -c {size} /dev/zero; echo two; echo err >&2; echo three"
    broker.send(Assign(1, [command, "echo four"], str(tmp_path), {}, None, stdout_path=str(path)))
    messages = broker.receive_until(Finished)
    assert not any(isinstance(m, Output) for m in messages)  # stderr's few bytes travel in Finished
    finished = messages[-1]
    assert (finished.exit_code, finished.error, finished.stdout, finished.stderr) == (0, "", b"", b"err\n")
    assert path.read_bytes() == b"\0" * size + b"two\nthree\nfour\n"


def test_a_task_folder_not_made_yet_is_made_for_its_stdout_file(broker_and_agent, tmp_path):
    broker, _ = broker_and_agent
    path = tmp_path / "7" / "attempt-1.stdout"  # the coordinator makes folders ahead, on a thread
    broker.send(Assign(1, ["echo hi"], str(tmp_path), {}, None, stdout_path=str(path)))
    finished = broker.receive_until(Finished)[-1]
    assert (finished.exit_code, finished.error) == (0, "")
    assert path.read_bytes() == b"hi\n"


def test_a_stdout_file_that_cannot_be_created_fails_the_task_with_its_path(broker_and_agent, tmp_path):
    broker, _ = broker_and_agent
    path = str(tmp_path / "no-experiment/no-task/attempt-1.stdout")  # only the task's folder is made
    broker.send(Assign(1, ["echo hi"], str(tmp_path), {}, None, stdout_path=path))
    finished = broker.receive_until(Finished)[-1]
    assert finished.exit_code is None
    assert finished.error == f"cannot write its output to {path}: No such file or directory"


def test_an_agent_process_told_to_stop_exits_0_with_its_last_log_line_written():
    """The agent ends its process with os._exit once it is done: what it logged last must still
    be on its stderr, and its status must be the run's."""
    broker = FakeBroker()
    config = AgentConfig(broker.address, "last-words", 1, debug=True)
    agent = subprocess.Popen([sys.executable, "-m", "patas.agent"], env=ENV, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert agent.stdin is not None
        agent.stdin.write(config.to_line())
        agent.stdin.flush()
        assert isinstance(broker.receive(), Hello)
        broker.send(Welcome(1.0, 30.0, WINDOW, 0, 0))
        broker.send(Assign(1, ["echo hi"], os.getcwd(), {}, None))
        assert broker.receive_until(Finished)[-1].exit_code == 0
        broker.send(Shutdown("test over"))
        agent.wait(30)  # its stdin, the lifeline, stays open: the Shutdown is what ends it
        assert agent.stderr is not None
        stderr = agent.stderr.read()
    finally:
        agent.kill()
        broker.close()
    assert agent.returncode == 0
    assert stderr.decode().rstrip().splitlines()[-1].endswith("agent last-words stops: the broker said goodbye: test over")


def test_an_agent_that_ran_a_task_on_every_slot_has_reaped_every_supervisor_when_it_exits(tmp_path):
    """Its slots' supervisors are told to end all at once and then waited for (they exit in
    parallel). One the agent did not reap before exiting would re-parent: with this process as
    the subreaper, to it, where it shows (dead or alive) as a child the test never started."""
    broker = FakeBroker()
    slots = 4
    with adopting_orphans() as adopted:
        agent = subprocess.Popen([sys.executable, "-m", "patas.agent"], env=ENV, stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            assert agent.stdin is not None
            agent.stdin.write(AgentConfig(broker.address, "four-slots", slots).to_line())
            agent.stdin.flush()
            assert isinstance(broker.receive(), Hello)
            broker.send(Welcome(1.0, 30.0, WINDOW, 0, 0))
            # Each task waits until all have started, so that each has a slot (a supervisor) of its own.
            wait_for_all = f"touch started-$PATAS_TASK_ID; until [ $(ls started-* | wc -l) -eq {slots} ]; do sleep 0.01; done"
            for lease in range(1, slots + 1):
                broker.send(Assign(lease, [wait_for_all], str(tmp_path), {"PATAS_TASK_ID": str(lease)}, 30.0))
            finished = [m for _ in range(slots) for m in broker.receive_until(Finished) if isinstance(m, Finished)]
            assert sorted((f.lease, f.exit_code) for f in finished) == [(lease, 0) for lease in range(1, slots + 1)]
            assert len(processes_with("patas.agent", cwd=tmp_path)) == slots  # the supervisors, in the tasks' folder
            broker.send(Shutdown("test over"))
            assert agent.wait(30) == 0
        finally:
            agent.kill()
            broker.close()
        assert adopted() == []


def test_an_agent_refusing_its_configuration_leaves_no_supervisor_behind(tmp_path):
    """The first slot's supervisor is forked before the configuration is read: when that fails,
    the supervisor must end with the agent."""
    agent = subprocess.run(
        [sys.executable, "-m", "patas.agent"], input=b"not a configuration\n", env=ENV, cwd=tmp_path, capture_output=True, timeout=30
    )
    assert agent.returncode == 2 and agent.stderr.startswith(b"patas agent: "), agent.stderr
    deadline = time.monotonic() + 10
    while processes_with("patas.agent", cwd=tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with("patas.agent", cwd=tmp_path) == []
