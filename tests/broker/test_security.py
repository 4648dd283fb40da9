"""The allow-list that the broker's ZAP handler consults for every connection."""

from __future__ import annotations

import logging

import zmq

from patas.broker.security import AllowList


def test_strangers_knocking_again_and_again_cost_one_warning(caplog):
    allow = AllowList()
    allow.issue("0-n0", "server-key")
    caplog.set_level(logging.DEBUG, logger="patas.broker.security")
    admitted = [allow.callback("*", zmq.curve_keypair()[0]) for _ in range(100)]
    assert admitted == [False] * 100 and allow.refused == 100
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "refused a connection with an unknown key" in warnings[0].getMessage()
    assert len(caplog.records) == 100  # the others are there for --debug
