"""Agents the coordinator starts on its own machine: their tasks write straight into the lab,
and they reach the broker over a private ipc endpoint, admitted by the kernel's word for who
they are. Real runs, real agents, real sockets, real files."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patas.broker.run.coordinator import Coordinator
from patas.broker.security import CurveServer
from patas.broker.transport import BrokerSocket, PeerProcess
from patas.common.protocol import Heartbeat, encode
from tests.running import children_running, journal, patas, processes_with, start_patas
from tests.zmtp import send_unless_turned_away

ON_LINUX = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and SO_PEERCRED (Linux)")


def wait_for(condition, timeout_s: float = 30.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def records(lab: Path, task_id: int) -> list[tuple[int, str]]:
    return [(r["attempt"], r["outcome"]) for r in journal(lab) if r["task_id"] == task_id]


# --- the task writes into the lab -----------------------------------------------------------


@ON_LINUX
def test_a_local_tasks_stdout_is_its_attempt_file_in_the_lab_and_its_stderr_a_pipe(tmp_path):
    run = patas("explore", "--cmd", "readlink /proc/self/fd/1; readlink /proc/self/fd/2 >&2", "--va", "i", "0", "2", "1",
                "-y", cwd=tmp_path)  # fmt: skip
    assert run.code == 0, run.stderr
    lab = tmp_path / "pataslab/grid"
    for task in (0, 1):
        # Written while they were the attempt's files, read now that they are committed.
        assert (lab / str(task) / "stdout").read_text() == f"{lab / str(task) / 'attempt-1.stdout'}\n"
        assert (lab / str(task) / "stderr").read_text().startswith("pipe:")  # streamed, created only if written


EMIT = """
import os, sys
from random import Random
spec = eval(open(sys.argv[1]).read())[int(sys.argv[2])]
for stream, size in spec:
    os.write(1 + stream, Random(f"{sys.argv[2]}-{size}").randbytes(size))
"""


def emitted(spec: list[tuple[int, int]], task: int, stream: int) -> bytes:
    from random import Random

    return b"".join(Random(f"{task}-{size}").randbytes(size) for s, size in spec if s == stream)


chunks = st.lists(st.tuples(st.integers(0, 1), st.sampled_from([0, 1, 7, 4096, 65_537, 262_144, 1_048_577])), max_size=5)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=st.lists(chunks, min_size=1, max_size=3))
def test_a_local_runs_outputs_are_byte_for_byte_what_its_tasks_wrote(tmp_path, specs):
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    (folder / "emit.py").write_text(EMIT)
    (folder / "spec").write_text(repr(specs))
    command = f"{sys.executable} emit.py spec {{i}}"
    run = patas("explore", "--cmd", command, "--va", "i", "0", str(len(specs)), "1", "-y", cwd=folder)
    assert run.code == 0, run.stderr
    lab = folder / "pataslab/grid"
    for task, spec in enumerate(specs):
        assert (lab / str(task) / "stdout").read_bytes() == emitted(spec, task, 0)
        err = emitted(spec, task, 1)
        assert (lab / str(task) / "stderr").read_bytes() == err if err else not (lab / str(task) / "stderr").exists()
        (record,) = [r for r in journal(lab) if r["task_id"] == task]
        assert (record["stdout_bytes"], record["stderr_bytes"]) == (len(emitted(spec, task, 0)), len(err))
        assert sorted(p.name for p in (lab / str(task)).iterdir()) == sorted(["stdout"] + (["stderr"] if err else []))


def test_a_task_killed_mid_output_and_retried_leaves_only_its_retrys_output(tmp_path):
    command = 'if [ "$PATAS_ATTEMPT" = 1 ]; then head -c 3000000 /dev/urandom; echo oops >&2; kill -9 $$; fi; echo retry $PATAS_ATTEMPT'
    run = patas("explore", "--cmd", command, "--va", "i", "0", "1", "1", "--max-tries", "2", "-y", cwd=tmp_path)
    assert run.code == 0, run.stderr
    task = tmp_path / "pataslab/grid/0"
    assert (task / "stdout").read_text() == "retry 2\n"
    assert not (task / "stderr").exists()  # the killed attempt's stderr is its own, not the task's
    assert (task / "attempt-1.stdout").stat().st_size == 3_000_000 and (task / "attempt-1.stderr").read_text() == "oops\n"
    assert records(task.parent, 0) == [(1, "failed"), (2, "done")]


@ON_LINUX
def test_an_agent_killed_mid_task_counts_nothing_and_the_retry_is_clean(tmp_path):
    marker = f"{os.getpid()}7"
    command = f"echo started $PATAS_ATTEMPT; while [ ! -e {tmp_path}/go ]; do sleep 0.0{marker}; done; echo finished"
    process = start_patas("explore", "--cmd", command, "--va", "i", "0", "1", "1", "-y", cwd=tmp_path)
    task = tmp_path / "pataslab/grid/0"
    first = task / "attempt-1.stdout"
    wait_for(lambda: first.exists() and first.read_text() == "started 1\n", what="the task to print")  # as it prints
    (agent,) = children_running(process.pid, "patas.agent")
    os.kill(agent, signal.SIGKILL)
    wait_for(lambda: (task / "attempt-2.stdout").exists(), what="the retry on a new agent")
    assert journal(task.parent) == []  # nothing of the killed attempt counted
    (tmp_path / "go").touch()
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert (task / "stdout").read_text() == "started 2\nfinished\n"
    assert first.read_text() == "started 1\n"  # its task died with its agent: it never wrote more
    assert records(task.parent, 0) == [(2, "done")]
    assert processes_with(marker) == []
    again = patas("explore", "--cmd", command, "--va", "i", "0", "1", "1", "-y", cwd=tmp_path)
    assert again.code == 0 and "Nothing to run" in again.stderr, again.stderr


def test_without_sync_the_local_short_circuit_still_commits_every_output(tmp_path):
    run = patas("explore", "--cmd", "head -c {n} /dev/zero", "--vl", "n", "0", "1", "300000", "--no-sync", "-y", cwd=tmp_path)
    assert run.code == 0, run.stderr
    lab = tmp_path / "pataslab/grid"
    assert sorted((lab / str(t) / "stdout").stat().st_size for t in range(3)) == [0, 1, 300_000]


# --- the local endpoint ---------------------------------------------------------------------


@pytest.fixture
def broker():
    context = zmq.Context()
    curve = CurveServer(context)
    sock = BrokerSocket(["127.0.0.1"], 0, curve, context, local=True)
    yield sock
    sock.close(0)
    curve.stop()
    context.term()


def local_path(sock: BrokerSocket) -> str:
    assert sock.local_endpoint is not None and sock.local_endpoint.startswith("ipc://")
    return sock.local_endpoint[len("ipc://") :]


def test_the_local_endpoint_is_in_a_folder_only_this_user_can_enter_and_goes_with_the_socket():
    context = zmq.Context()
    sock = BrokerSocket(["127.0.0.1"], 0, None, context, local=True)
    folder = os.path.dirname(local_path(sock))
    info = os.stat(folder)
    assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.getuid()
    sock.close(0)
    context.term()
    assert not os.path.exists(folder)


SENDER = """
import sys, zmq
from patas.common.protocol import Heartbeat, encode
sock = zmq.Context().socket(zmq.DEALER)
sock.setsockopt(zmq.IDENTITY, b"node0")
sock.connect(sys.argv[1])
sock.send_multipart(encode(Heartbeat()))
sock.recv()  # until the test lets it go
"""


@ON_LINUX
def test_a_message_on_the_local_endpoint_names_the_process_that_sent_it(broker):
    sender = subprocess.Popen([sys.executable, "-c", SENDER, broker.local_endpoint], env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert broker.socket.poll(30_000)
        incoming = broker.receive()
        assert incoming is not None and incoming.agent_id == "node0" and incoming.public_key is None
        assert incoming.peer == PeerProcess(os.getuid(), sender.pid)  # the kernel's word, not the sender's
    finally:
        sender.kill()
        sender.wait()


@ON_LINUX
def test_on_the_local_endpoint_only_the_agent_process_the_coordinator_started_is_admitted(broker):
    sender = subprocess.Popen([sys.executable, "-c", SENDER, broker.local_endpoint], env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert broker.socket.poll(30_000)
        incoming = broker.receive()
        assert incoming is not None
        run = SimpleNamespace(curve=None)  # a keyless message never reaches the CURVE check
        mine = os.getuid()
        assert Coordinator._admits(run, SimpleNamespace(local_peer=PeerProcess(mine, sender.pid)), incoming)  # type: ignore[arg-type]
        assert not Coordinator._admits(run, SimpleNamespace(local_peer=PeerProcess(mine, os.getpid())), incoming)  # same user, other process
        assert not Coordinator._admits(run, SimpleNamespace(local_peer=None), incoming)  # a remote agent's name
    finally:
        sender.kill()
        sender.wait()


def test_tcp_on_the_same_socket_still_requires_curve(broker):
    # A peer without keys on the TCP endpoint never gets a message through; one on ipc does, at once.
    context = zmq.Context.instance()
    plain = context.socket(zmq.DEALER)
    plain.setsockopt(zmq.LINGER, 0)
    monitor = plain.get_monitor_socket()
    plain.connect(f"tcp://127.0.0.1:{broker.port}")
    send_unless_turned_away(plain, encode(Heartbeat()))
    local = context.socket(zmq.DEALER)
    local.setsockopt(zmq.LINGER, 0)
    local.setsockopt(zmq.IDENTITY, b"local")
    local.connect(broker.local_endpoint)
    local.send_multipart(encode(Heartbeat()))
    try:
        assert broker.socket.poll(30_000)
        incoming = broker.receive()
        assert incoming is not None and incoming.agent_id == "local"
        assert handshake_failed(monitor)  # the TCP peer is turned away at the handshake
        assert broker.receive() is None  # and nothing it sent came through
    finally:
        plain.disable_monitor()
        monitor.close()
        plain.close()
        local.close()


def handshake_failed(monitor: zmq.Socket, timeout_s: float = 30.0) -> bool:
    """True once the connection is dropped before any handshake succeeded (the server refuses a
    peer without CURVE: libzmq reports a failed handshake, or just the disconnection)."""
    ends = {zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_HANDSHAKE_FAILED_AUTH,
            zmq.EVENT_DISCONNECTED}  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while monitor.poll(max(0, int((deadline - time.monotonic()) * 1000))):
        event = recv_monitor_message(monitor)["event"]
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            return False
        if event in ends:
            return True
    return False


CONNECT = "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])"


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("runuser"), reason="needs root, useradd, runuser")
def test_another_user_cannot_connect_to_the_local_endpoint(broker):
    name = f"patassc{os.getpid() % 100000}"
    subprocess.run(["useradd", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/bin/sh", "--password", "*", name],
                   check=True, capture_output=True)  # fmt: skip
    try:
        python = shutil.which("python3", path="/usr/bin:/bin") or "python3"  # one the user can run
        refused = subprocess.run(["runuser", "-u", name, "--", python, "-c", CONNECT, local_path(broker)],
                                 capture_output=True, text=True, timeout=60)  # fmt: skip
        assert refused.returncode != 0 and "PermissionError" in refused.stderr, refused.stderr
        allowed = subprocess.run([python, "-c", CONNECT, local_path(broker)], capture_output=True, text=True, timeout=60)
        assert allowed.returncode == 0, allowed.stderr  # the same call as this user: only the user differs
    finally:
        subprocess.run(["userdel", "-f", name], capture_output=True)


def test_a_unix_socket_path_too_long_for_the_kernel_leaves_local_agents_on_tcp(tmp_path, monkeypatch):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    context = zmq.Context()
    sock = BrokerSocket(["127.0.0.1"], 0, None, context, local=True)
    try:
        assert sock.local_endpoint is None and list(deep.iterdir()) == []
    finally:
        sock.close(0)
        context.term()
