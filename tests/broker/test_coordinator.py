"""The coordinator with a real local agent, driven from Python as a library user would."""

from __future__ import annotations

import socket
import threading

import pytest
import zmq

from patas.broker.run.coordinator import AttemptFailure, RunResult, RunSettings
from patas.broker.run.exploration import prepare
from patas.broker.run.scheduler import Counts
from patas.common import protocol
from patas.common.config import Cluster, Node, experiment_from_flags
from patas.common.protocol import Finished, Hello, MessageTooLarge
from patas.common.variables import list_variable
from tests.zmtp import send_unless_turned_away


class Recorder:
    def __init__(self) -> None:
        self.failures: list[AttemptFailure] = []
        self.events: list[str] = []
        self.agent_ready = threading.Event()

    def progress(self, counts: Counts) -> None:
        pass

    def attempt_failed(self, failure: AttemptFailure) -> None:
        self.failures.append(failure)

    def agent_event(self, node_name: str, message: str) -> None:
        self.events.append(f"{node_name}: {message}")
        if "ready" in message:
            self.agent_ready.set()


def test_a_library_call_runs_a_sweep_and_refuses_strangers(tmp_path):
    experiment = experiment_from_flags(
        "lib", ["sleep 0.5; echo {x}"], [list_variable("x", ["1", "2", "3", "4"], "t")], 1, 1, str(tmp_path), None
    )
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    exploration = prepare(
        [experiment], [Cluster("c", (Node("n0", "localhost", workers=2),))], tmp_path / "lab",
        settings=RunSettings(bind_host="127.0.0.1", bind_port=port),
    )
    observer, outcome = Recorder(), {}
    runner = threading.Thread(target=lambda: outcome.setdefault("result", exploration.run(observer)))
    runner.start()
    assert observer.agent_ready.wait(30)

    # A process that was not started by this run gets no task and cannot inject a result,
    # whether it speaks plain ZeroMQ or CURVE with keys of its own.
    context = zmq.Context()
    for stranger in (_plain_stranger(context, address), _curve_stranger(context, address)):
        send_unless_turned_away(stranger, protocol.encode(Hello(protocol.PROTOCOL_VERSION, "0-n0", "evil", 8, 1)))
        send_unless_turned_away(stranger, protocol.encode(Finished(1, 0, 0, 0.0, 1.0, False, "", b"forged\n", b"")))
        assert not stranger.poll(2000), "the broker answered a stranger"
        stranger.close(0)
    context.term()

    runner.join(60)
    result: RunResult = outcome["result"]
    assert (result.counts.done, result.counts.failed, result.interrupted) == (4, 0, False)
    assert [(tmp_path / "lab" / "lib" / str(i) / "stdout").read_text() for i in range(4)] == ["1\n", "2\n", "3\n", "4\n"]


def _plain_stranger(context: zmq.Context, address: str) -> zmq.Socket:
    socket_ = context.socket(zmq.DEALER)
    socket_.setsockopt(zmq.IDENTITY, b"0-n0")  # the name of the run's real agent
    socket_.connect(address)
    return socket_


def _curve_stranger(context: zmq.Context, address: str) -> zmq.Socket:
    socket_ = context.socket(zmq.DEALER)
    socket_.setsockopt(zmq.IDENTITY, b"0-n0")
    public, secret = zmq.curve_keypair()
    socket_.curve_publickey, socket_.curve_secretkey = public, secret
    socket_.curve_serverkey = zmq.curve_keypair()[0]
    socket_.connect(address)
    return socket_


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_task_too_large_for_any_message_is_refused_by_name(tmp_path):
    # Each command within what one exec takes (a value is at most one argument: 128 KiB), together
    # more than a message may carry.
    value, commands = "v" * 120 * 1024, protocol.MAX_FRAME_BYTES // (120 * 1024) + 8
    variables = [list_variable("x", [value], "t")]
    experiment = experiment_from_flags("big", ["echo {x} | wc -c"] * commands, variables, 1, 1, str(tmp_path), None)
    exploration = prepare([experiment], [Cluster("c", (Node("n0", "localhost", workers=1),))], tmp_path / "lab")
    with pytest.raises(MessageTooLarge) as refused:
        exploration.run(Recorder())
    assert str(refused.value).startswith("experiment big, task 0: its commands and environment take 17.")
    assert str(refused.value).endswith(
        "more than the 16 MiB a message may carry (pass large values in files rather than in variables or commands)"
    )
