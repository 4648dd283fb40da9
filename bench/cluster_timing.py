#!/usr/bin/env python3
"""`patas` with timers around each step of starting agents on SSH nodes (used by bench_cluster.py).

    python bench/cluster_timing.py EVENTS.json explore --node ... [any patas arguments]

runs the normal patas CLI in this process, after wrapping (not changing) the functions that
connect, probe, install, start the broker and the agents, and handle each agent's hello. When
patas exits, EVENTS.json holds every step's start and end as `time.monotonic()` values, which on
Linux are comparable between processes: the caller subtracts the moment it launched this script.
The wrappers cost microseconds; the headline numbers of the benchmark come from the plain CLI.
"""

from __future__ import annotations

import time

INTERPRETER_READY = time.monotonic()  # first thing: what came before is Python's own start

import functools
import json
import sys
import threading
from typing import Any, Callable

_events: list[dict[str, Any]] = []
_lock = threading.Lock()


def _record(step: str, node: str, start: float, end: float) -> None:
    with _lock:
        _events.append({"step": step, "node": node, "start": start, "end": end})


def _timed(owner: Any, attribute: str, step: str, node_of: Callable[..., str]) -> None:
    """Replace owner.attribute by a wrapper recording each call's start and end."""
    original = getattr(owner, attribute)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.monotonic()
        try:
            return original(*args, **kwargs)
        finally:
            _record(step, node_of(*args, **kwargs), start, time.monotonic())

    setattr(owner, attribute, wrapper)


def _instrument() -> None:
    from patas.broker.run import coordinator, exploration
    from patas.broker.ssh import session as ssh_session
    from patas.broker.security import CurveServer
    from patas.broker.transport import BrokerSocket

    _timed(exploration, "prepare", "prepare (plan + connect + probe + install, all nodes)", lambda *a, **k: "")
    _timed(exploration, "open_sessions", "open sessions", lambda *a, **k: "")
    _timed(ssh_session, "connect", "ssh connect", lambda target, options: target.alias)
    _timed(ssh_session.SSHSession, "_probe", "probe", lambda self: self.node.hostname)
    _timed(ssh_session.SSHSession, "_install", "install (digest, upload if missing)", lambda self, facts: self.node.hostname)
    _timed(ssh_session, "payload_for", "payload archive + digest", lambda *a, **k: threading.current_thread().name)
    _timed(coordinator.Coordinator, "run", "coordinator run", lambda *a, **k: "")
    _timed(CurveServer, "__init__", "CURVE authenticator", lambda *a, **k: "")
    _timed(BrokerSocket, "__init__", "broker socket", lambda *a, **k: "")
    _timed(coordinator.Coordinator, "_start_agents", "start agents (all)", lambda *a, **k: "")
    _timed(ssh_session.SSHSession, "start_agent", "start agent", lambda self, config: self.node.hostname)
    _timed(coordinator.Coordinator, "_on_hello", "hello", lambda self, link, hello: link.placement.node.hostname)


def main() -> None:
    events_path = sys.argv[1]
    sys.argv = ["patas", *sys.argv[2:]]
    start = time.monotonic()
    # What `patas explore` imports on the way (some lazily: paramiko when the first SSH node is
    # opened), loaded up front so that the wrappers can be put in place.
    import patas.broker.run.exploration
    import patas.broker.ssh.session
    import patas.cli.explore
    import patas.cli.main
    import patas.cli.progress

    _record("imports", "", start, time.monotonic())
    _instrument()
    try:
        patas.cli.main.main()
    finally:
        with open(events_path, "w") as stream:
            json.dump({"interpreter_ready": INTERPRETER_READY, "exit": time.monotonic(), "events": _events}, stream)


if __name__ == "__main__":
    main()
