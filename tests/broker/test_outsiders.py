"""Connections from outside the run cost the coordinator neither memory nor descriptors.

Each test drives a real `patas explore` process listening on a known loopback port with plain
TCP clients that never authenticate, as anyone who reaches the port could.
"""

from __future__ import annotations

import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from patas.common.bounds import HANDSHAKE_TIMEOUT_S
from tests.broker.test_coordinator import free_port
from tests.running import ENV, done_ids
from tests.zmtp import MIB, claim_four_gigabytes, curve_greeting, resident_bytes

# What three such clients may add to the coordinator's resident memory.
RSS_GROWTH_BOUND_BYTES = 48 * MIB
# The handshake interval the broker promises, plus time to notice.
DISCONNECT_WITHIN_S = HANDSHAKE_TIMEOUT_S + 3.0


@pytest.fixture
def runs(tmp_path):
    """The runs a test starts; any still running when it ends (it failed) are stopped."""
    started: list[subprocess.Popen[str]] = []
    yield started
    (tmp_path / "GO").touch()
    for run in started:
        if run.poll() is None:
            run.send_signal(signal.SIGINT)
            run.communicate(timeout=60)


def start_run(runs, tmp_path: Path, port: int, tasks: int, soft_descriptors: int | None = None) -> subprocess.Popen[str]:
    """A run whose tasks wait for the file GO, listening on `port`; returns once it listens."""
    work = tmp_path / "work"
    work.mkdir()
    limit = None if soft_descriptors is None else (lambda: _lower_descriptor_limit(soft_descriptors))
    run = subprocess.Popen(
        [sys.executable, "-m", "patas", "explore", "--bind", f"127.0.0.1:{port}",
         "--cmd", f"until [ -e {tmp_path}/GO ]; do sleep 0.02; done; echo {{i}}", "--va", "i", "0", str(tasks), "1", "-y"],
        cwd=work, env=ENV, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=limit,
    )  # fmt: skip
    runs.append(run)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return run
        except ConnectionRefusedError:
            assert run.poll() is None, run.communicate()[1]
            assert time.monotonic() < deadline, "the run never listened"
            time.sleep(0.05)


def finish(tmp_path: Path, run: subprocess.Popen[str], tasks: int) -> None:
    (tmp_path / "GO").touch()
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr
    lab = tmp_path / "work/pataslab/grid"
    assert done_ids(lab) == list(range(tasks))
    assert [(lab / str(i) / "stdout").read_text() for i in range(tasks)] == [f"{i}\n" for i in range(tasks)]


def test_frame_headers_claiming_4_gb_cost_the_coordinator_no_memory(runs, tmp_path):
    port = free_port()
    run = start_run(runs, tmp_path, port, tasks=4)
    before = resident_bytes(run.pid)
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    for client in clients:
        claim_four_gigabytes(client, as_server=False)
    growth = resident_bytes(run.pid) - before
    for client in clients:
        client.close()
    assert growth < RSS_GROWTH_BOUND_BYTES, f"the coordinator grew by {growth // MIB} MiB"
    finish(tmp_path, run, tasks=4)


def test_clients_that_never_finish_the_handshake_are_disconnected(runs, tmp_path):
    port = free_port()
    run = start_run(runs, tmp_path, port, tasks=2)
    silent = socket.create_connection(("127.0.0.1", port))
    greeting_only = socket.create_connection(("127.0.0.1", port))
    greeting_only.sendall(curve_greeting(as_server=False))
    started = time.monotonic()
    for client in (silent, greeting_only):
        client.settimeout(max(0.1, started + DISCONNECT_WITHIN_S - time.monotonic()))
        try:
            while client.recv(4096):
                pass  # the broker's own greeting
        except ConnectionResetError:
            pass
        except TimeoutError:
            raise AssertionError(f"still connected after {DISCONNECT_WITHIN_S:.0f} s") from None
        client.close()
    finish(tmp_path, run, tasks=2)


def test_a_thousand_idle_connections_at_a_low_descriptor_limit_do_not_fail_the_run(runs, tmp_path):
    port = free_port()
    tasks = 12  # more than the local workers, so that output files are opened during the flood
    run = start_run(runs, tmp_path, port, tasks, soft_descriptors=256)
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(1100)]
    # Wait until the coordinator has taken as many of them as its descriptor limit lets it hold:
    # those it holds now, and those it already cut off for not finishing the handshake (on a
    # slow machine the first are cut before the last are accepted).
    reachable = min(_soft_descriptor_limit(run.pid) - 16, 1000)
    deadline = time.monotonic() + 30
    cut: set[int] = set()
    while _open_descriptors(run.pid) + len(cut) < reachable:
        assert time.monotonic() < deadline, f"{_open_descriptors(run.pid)} descriptors open and {len(cut)} cut, not {reachable}"
        cut.update(i for i, client in enumerate(idle) if i not in cut and _closed_by_peer(client))
        time.sleep(0.02)
    try:
        finish(tmp_path, run, tasks)
    finally:
        for client in idle:
            client.close()


def _lower_descriptor_limit(soft: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, min(4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1])))


def _soft_descriptor_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError(f"no descriptor limit for {pid}")


def _closed_by_peer(client: socket.socket) -> bool:
    """Whether the other end closed this connection (what it sent first is read and dropped)."""
    try:
        while data := client.recv(65536, socket.MSG_DONTWAIT):
            del data
    except BlockingIOError:
        return False
    except ConnectionError:
        return True
    return True


def _open_descriptors(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def test_tasks_keep_the_descriptor_limit_patas_was_started_with(tmp_path):
    """The coordinator raises its own limit, not its tasks': some programs close every descriptor
    up to the soft limit, or break past select()'s FD_SETSIZE."""
    run = subprocess.run(
        [sys.executable, "-m", "patas", "explore", "--cmd", "ulimit -Sn", "-y"], cwd=tmp_path, env=ENV,
        capture_output=True, text=True, timeout=120, preexec_fn=lambda: _lower_descriptor_limit(256),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "pataslab/grid/0/stdout").read_text() == "256\n"
