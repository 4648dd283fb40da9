"""The live streams end with their page: a task's follower stops as soon as its reader goes away,
and the tables the page reads follow the lab without restarting the dashboard."""

from __future__ import annotations

import http.client
import threading
import time
from pathlib import Path

import pytest

from patas.analysis.task_output import Ending, follow_output
from patas.dashboard.results import ResultsCache
from patas.dashboard.server import dashboard_server, listen
from tests.dashboard.served import gate, wait_until
from tests.running import patas

STOP_WITHIN_S = 2.0


def test_a_stop_event_ends_following_a_running_task_at_once(tmp_path, sweep):
    sweep("--cmd", f"echo 'epoch 1'; {gate(tmp_path, 'go')}")
    attempt = tmp_path / "pataslab/grid/0/attempt-1.stdout"
    wait_until(lambda: attempt.exists() and attempt.read_bytes(), 60, "the task's first line")
    stop = threading.Event()
    out = _Collected()
    ended: list[Ending] = []
    follower = threading.Thread(target=lambda: ended.append(follow_output(tmp_path / "pataslab", "grid", 0, "stdout", out, print, stop=stop).ending))
    follower.start()
    wait_until(lambda: out.data == b"epoch 1\n", 10, "the output followed")
    stopped = time.monotonic()
    stop.set()
    follower.join(STOP_WITHIN_S)
    assert not follower.is_alive() and time.monotonic() - stopped < STOP_WITHIN_S
    assert ended == [Ending.CANCELLED]
    assert not (tmp_path / "pataslab/grid/0/stdout").exists()  # the task still runs


class _Collected:
    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> int:
        self.data += bytes(data)
        return len(data)

    def flush(self) -> None:
        pass


def followers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("follow grid/")]


def test_closing_a_tasks_output_stream_stops_its_follower(tmp_path, sweep):
    sweep("--cmd", f"echo 'epoch 1'; {gate(tmp_path, 'go')}")
    wait_until(lambda: (tmp_path / "pataslab/grid/0/attempt-1.stdout").exists(), 60, "the task to start")
    listening = listen("127.0.0.1", 0)
    server = dashboard_server(tmp_path / "pataslab", "t0ken")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening.socket]}, daemon=True)
    thread.start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", listening.port, timeout=30)
        connection.request("GET", "/api/experiments/grid/tasks/0/output", headers={"Authorization": "token t0ken"})
        response = connection.getresponse()
        assert response.status == 200
        received = b""
        while b"epoch 1" not in received:
            received += response.read1(65536)
        assert received.startswith(b"event: reset\n")
        assert len(followers()) == 1
        connection.close()  # the page went away
        wait_until(lambda: not followers(), STOP_WITHIN_S + 1, "the follower to stop")
    finally:
        server.should_exit = True
        thread.join(10)


def test_a_new_parse_is_read_by_itself(tmp_path: Path):
    assert patas("explore", "--cmd", "echo 'acc 0.{i} loss {i}'", "--va", "i", "1", "4", "1", "-y", cwd=tmp_path).code == 0
    cache = ResultsCache(tmp_path / "pataslab")
    assert cache.get("grid").metrics == []  # not parsed yet
    assert patas("parse", "-e", "pataslab/grid", "-p", "acc", "acc (@float@)", cwd=tmp_path).code == 0
    assert cache.get("grid").metrics == ["out_acc"]
    assert cache.get("grid") is cache.get("grid")  # kept while nothing changed
    assert patas("parse", "-e", "pataslab/grid", "-p", "acc", "acc (@float@)", "-p", "loss", "loss (@int@)", cwd=tmp_path).code == 0
    assert cache.get("grid").metrics == ["out_acc", "out_loss"]


@pytest.fixture(autouse=True)
def no_follower_left():
    yield
    assert not followers()
