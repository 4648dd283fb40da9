import pytest

from patas.common import protocol
from patas.common.errors import ProtocolError
from patas.common.protocol import Assign, Cancel, Credit, Finished, Heartbeat, Hello, Output, Refused, Shutdown, Welcome

MESSAGES = [
    Hello(protocol.PROTOCOL_VERSION, "0-node0", "tower", 8, 1234),
    Output(7, protocol.STDERR, b"\x00\xffpartial line"),
    Finished(7, 1, 0, 1.5, 2.5, False, "", b"out", b""),
    Finished(8, 0, None, 1.5, 2.5, True, "workdir /x does not exist on tower", b"", b"err"),
    Heartbeat(),
    Welcome(1.0, 10.0, 1 << 23, 16, 8),
    Refused("protocol version 2 (agent) != 1 (coordinator)"),
    Assign(9, ["./main.py 1 relu", "echo done"], "$HOME/x", {"PATAS_TASK_ID": "3"}, None),
    Cancel(9),
    Credit(65536),
    Shutdown("the run is over"),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_survives_the_wire(message):
    assert protocol.decode(protocol.encode(message)) == message


def test_output_bytes_travel_in_their_own_frame():
    frames = protocol.encode(Output(1, protocol.STDOUT, b"x" * 100_000))
    assert frames[0] == b"OUT" and frames[2] == b"x" * 100_000 and len(frames[1]) < 20


@pytest.mark.parametrize(
    "frames, message",
    [
        ([b"HELLO"], "malformed message"),
        ([b"NOPE", b"\x90"], "unknown message type"),
        ([b"OUT", b"\x92\x01\x00"], "expected 1 payload frame"),
        ([b"CREDIT", b"\xc1"], "malformed Credit"),
        ([b"CREDIT", b"\x92\x01\x02"], "malformed Credit"),
    ],
)
def test_malformed_messages_are_protocol_errors(frames, message):
    with pytest.raises(ProtocolError, match=message):
        protocol.decode(frames)


def test_the_largest_task_a_run_may_send_still_fits_once_a_pool_renumbers_its_lease():
    def assign(lease: int, command_bytes: int) -> Assign:
        return Assign(lease, ["x" * command_bytes], "/w", {}, None)

    overhead = len(protocol.encode(assign(1, 0))[1])
    largest = assign(1, protocol.MAX_FRAME_BYTES - protocol.RELAY_HEADROOM_BYTES - overhead - 4)
    header = protocol.encode(largest)[1]
    assert len(header) <= protocol.MAX_FRAME_BYTES - protocol.RELAY_HEADROOM_BYTES
    relayed = protocol.Assign(2**63, largest.commands, largest.workdir, largest.env, largest.timeout_s)
    with pytest.raises(protocol.MessageTooLarge):
        protocol.encode(relayed)  # a run could not send this one...
    assert len(protocol.encode(relayed, relayed=True)[1]) <= protocol.MAX_FRAME_BYTES  # ...a pool may relay it
    with pytest.raises(protocol.MessageTooLarge, match=r"^its commands and environment take 16\.0 MiB, more than the 16 MiB"):
        protocol.encode(assign(1, protocol.MAX_FRAME_BYTES))
