"""The control channel's messages and socket, without a run: encoding, sun_path, who may connect."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from patas.analysis.status import ExperimentStatus, FailureGroup, NodeStatus, RunningTask
from patas.broker.run.channel import CONTROL_DIR, SOCKET_NAME, ChannelAbsent, ControlServer, request
from patas.broker.run.control_messages import (
    RemoveNodeReply,
    RemoveNodeRequest,
    StatusReply,
    decode,
    encode,
    status_from_wire,
    status_to_wire,
)
from patas.common.errors import ProtocolError

STATUS = ExperimentStatus(
    name="grid", total=10, done=3, running=1, pending=6, failed=2, given_up=0, rate_per_s=0.5, eta_s=14.0, live=True,
    running_tasks=(RunningTask(4, 2, {"lr": "0.1"}, "node1", 1.5, "epoch 3"),),
    nodes=(NodeStatus("node1", 1, 2, 1, "ready"),), failures=(FailureGroup("exit 1", 2, (4,)),),
)  # fmt: skip


def test_a_status_crosses_the_channel_unchanged():
    message = decode(encode(StatusReply(status_to_wire(STATUS))))
    assert isinstance(message, StatusReply)
    assert status_from_wire(message.status) == STATUS


@pytest.mark.parametrize("body", [b"", b"\x93", b"\x92\xa4nope\x90", b"\x92\xa6status\x93\x01\x02\x03"])
def test_a_malformed_message_is_a_protocol_error(body):
    with pytest.raises(ProtocolError):
        decode(body)


def answer_with(server: ControlServer, reply_for) -> threading.Thread:
    """Play the run loop: answer the first request that lands in the inbox."""

    def loop() -> None:
        while not server.inbox:
            threading.Event().wait(0.01)
        pending = server.inbox.popleft()
        pending.answer(reply_for(pending.message))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def test_a_folder_past_the_socket_address_limit_is_served_and_private(tmp_path):
    folder = tmp_path / ("x" * 80) / ("y" * 80) / "grid"
    folder.mkdir(parents=True)
    server = ControlServer([folder])
    try:
        control = folder / CONTROL_DIR
        assert stat.S_IMODE(os.stat(control).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(control / SOCKET_NAME).st_mode) == 0o600
        thread = answer_with(server, lambda message: RemoveNodeReply(f"{message.node}: removed"))
        assert request(folder, RemoveNodeRequest("node1", False)) == RemoveNodeReply("node1: removed")
        thread.join(5)
    finally:
        server.close()
    assert not (folder / CONTROL_DIR).exists()
    with pytest.raises(ChannelAbsent) as absent:
        request(folder, RemoveNodeRequest("node1", False))
    assert absent.value.no_listener
