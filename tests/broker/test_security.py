"""The allow-list that the broker's ZAP handler consults for every connection."""

from __future__ import annotations

import logging
import time

import pytest
import zmq

from patas.broker.security import AllowList, CurveServer


def test_strangers_knocking_again_and_again_cost_one_warning(caplog):
    allow = AllowList()
    allow.issue("0-n0", "server-key")
    caplog.set_level(logging.DEBUG, logger="patas.broker.security")
    admitted = [allow.callback("*", zmq.curve_keypair()[0]) for _ in range(100)]
    assert admitted == [False] * 100 and allow.refused == 100
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "refused a connection with an unknown key" in warnings[0].getMessage()
    assert len(caplog.records) == 100  # the others are there for --debug


def _client(context: zmq.Context, server_public: str, keys: tuple[bytes, bytes], port: int) -> zmq.Socket:
    client = context.socket(zmq.DEALER)
    client.linger = 0
    client.curve_serverkey = server_public.encode()
    client.curve_publickey, client.curve_secretkey = keys
    client.connect(f"tcp://127.0.0.1:{port}")
    return client


def test_the_zap_handler_admits_issued_keys_only_and_names_the_key_of_each_message():
    context = zmq.Context()
    curve = CurveServer(context)
    server = context.socket(zmq.ROUTER)
    server.linger = 0
    curve.secure(server)
    port = server.bind_to_random_port("tcp://127.0.0.1")
    issued = curve.allow.issue("0-n0", curve.public)
    member = _client(context, curve.public, (issued.public.encode(), issued.secret.encode()), port)
    stranger = _client(context, curve.public, zmq.curve_keypair(), port)  # knows the server's key
    try:
        stranger.send(b"forged")
        member.send(b"hello")
        assert server.poll(10_000)
        identity, body = server.recv_multipart(copy=False)
        assert body.bytes == b"hello" and identity.get("User-Id") == issued.public
        deadline = time.monotonic() + 10
        while curve.allow.refused == 0 and time.monotonic() < deadline:
            server.poll(50)
        assert curve.allow.refused >= 1 and not server.poll(200)
    finally:
        for socket_ in (member, stranger, server):
            socket_.close()
        curve.stop()
        context.term()


@pytest.mark.parametrize(
    "request_frames, status",
    [
        ([b"1.0", b"7", b"", b"127.0.0.1", b"", b"PLAIN", b"user", b"password"], b"400"),
        ([b"1.0", b"7", b"", b"127.0.0.1", b"", b"CURVE", b"short"], b"400"),
        ([b"1.0", b"7", b"", b"127.0.0.1", b"", b"CURVE"], b"400"),
        ([b"9.9", b"7", b"", b"127.0.0.1", b"", b"CURVE", b"k" * 32], b"400"),
        ([b"1.0", b"7"], b"400"),
    ],
)
def test_the_zap_handler_refuses_other_mechanisms_and_malformed_requests(request_frames, status):
    context = zmq.Context()
    curve = CurveServer(context)
    try:
        reply = curve._auth.reply(request_frames)
        assert reply[:3] == [b"1.0", b"7", status] and reply[4] == b""
    finally:
        curve.stop()
        context.term()
