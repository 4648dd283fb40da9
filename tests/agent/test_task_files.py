"""A real agent against a hand-driven broker: each attempt's folder (PATAS_TASK_DIR) and the files
it sends back from it (--collect)."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from pathlib import Path

import pytest
import zmq

from patas.agent.agent import Agent
from patas.common import protocol
from patas.common.agent_config import AgentConfig
from patas.common.protocol import Assign, Credit, Finished, Hello, Shutdown, TaskFile, Welcome
from tests.agent.test_agent import CHUNK, WINDOW, FakeBroker

GIB = 1024**3


@pytest.fixture
def agent_in(tmp_path, monkeypatch):
    """A broker and an agent whose temporary folder is `tmp_path/tmp`; the test sends Welcome."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr("tempfile.tempdir", None)  # read TMPDIR again
    broker = FakeBroker()
    agent = Agent(AgentConfig(broker.address, "test-agent", 1), zmq.Context())
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    assert isinstance(broker.receive(), Hello)
    broker.send(Welcome(1.0, 30.0, WINDOW, 0, 0))
    yield broker, scratch
    broker.send(Shutdown("test over"))
    thread.join(10)
    assert not thread.is_alive()
    broker.close()
    assert list(scratch.iterdir()) == []  # the agent's scratch folder went with it


def run(broker: FakeBroker, command: str, collect: list[str], limit: int = GIB, workdir: str = "", lease: int = 1) -> tuple[dict[bytes, bytes], Finished]:
    """Run one task; the files it sent (path → content) and its end."""
    broker.send(Assign(lease, [command], workdir or os.getcwd(), {"PATAS_TASK_ID": "4", "PATAS_ATTEMPT": "2"}, None, collect, limit))
    files: dict[bytes, bytes] = {}
    for message in broker.receive_until(Finished):
        if isinstance(message, TaskFile):
            assert message.offset == len(files.get(message.path, b""))
            files[message.path] = files.get(message.path, b"") + message.data
            broker.send(Credit(len(message.data)))
        elif hasattr(message, "data"):
            broker.send(Credit(len(message.data)))
    return files, message  # type: ignore[return-value]


def test_each_attempt_gets_a_fresh_private_folder_removed_after_it_ends(agent_in, tmp_path):
    broker, scratch = agent_in
    probe = 'echo "$PATAS_TASK_DIR"; pwd; stat -c %a "$PATAS_TASK_DIR"; ls -A "$PATAS_TASK_DIR" | wc -l; touch "$PATAS_TASK_DIR/x"'
    _, first = run(broker, probe, [], workdir=str(tmp_path))
    _, second = run(broker, probe, [], workdir=str(tmp_path), lease=2)
    folders = []
    for end in (first, second):
        folder, cwd, mode, entries = end.stdout.decode().split("\n")[:4]
        assert (cwd, mode, entries) == (str(tmp_path), "700", "0")  # the workdir stays the workdir
        assert Path(folder).parent.parent == scratch and Path(folder).name.startswith("task-")
        assert stat.S_IMODE(Path(folder).parent.stat().st_mode) == 0o700
        assert not Path(folder).exists()  # removed once the attempt ended
        folders.append(folder)
    assert folders[0] != folders[1]


def test_a_folder_an_attempt_left_empty_serves_the_next_one_empty(agent_in, tmp_path):
    broker, _ = agent_in
    _, first = run(broker, 'echo "$PATAS_TASK_DIR"', [])
    _, second = run(broker, 'echo "$PATAS_TASK_DIR"; ls -A "$PATAS_TASK_DIR" | wc -l; mkdir "$PATAS_TASK_DIR/d"', [], lease=2)
    _, third = run(broker, 'echo "$PATAS_TASK_DIR"; ls -A "$PATAS_TASK_DIR" | wc -l; chmod 755 "$PATAS_TASK_DIR"', [], lease=3)
    _, fourth = run(broker, 'echo "$PATAS_TASK_DIR"; stat -c %a "$PATAS_TASK_DIR"', [], lease=4)
    one, two, three, four = (end.stdout.decode().split("\n")[0] for end in (first, second, third, fourth))
    assert one == two and second.stdout.decode().split("\n")[1] == "0"  # kept, and still empty
    assert three != two and not Path(two).exists()  # it held a folder: removed, a new one given
    assert four != three and fourth.stdout.decode().split("\n")[1] == "700"  # no longer private: not reused


def test_files_matching_the_globs_come_back_byte_exact_in_chunks_within_the_window(agent_in):
    broker, _ = agent_in
    size = 3 * WINDOW + 12345
    command = (
        'cd "$PATAS_TASK_DIR" && mkdir -p metrics/epochs skip && head -c %d /dev/urandom > model.bin'
        " && echo loss > metrics/a.csv && echo 1 > metrics/epochs/1.csv && : > metrics/empty"
        " && echo no > skip/x && echo no > other.txt && sha256sum model.bin" % size
    )
    broker.send(Assign(1, [command], os.getcwd(), {}, None, ["model.bin", "metrics"], GIB))
    held = []
    while (message := broker.receive(timeout_s=1.0)) is not None:  # until the agent waits for credit
        held.append(message)
    assert WINDOW <= sum(len(m.data) for m in held if isinstance(m, TaskFile)) <= WINDOW + CHUNK
    assert not any(isinstance(m, Finished) for m in held)
    assert all(len(m.data) <= CHUNK for m in held if isinstance(m, TaskFile))
    broker.send(Credit(size))
    rest = broker.receive_until(Finished)
    files: dict[bytes, bytes] = {}
    for message in held + rest:
        if isinstance(message, TaskFile):
            files[message.path] = files.get(message.path, b"") + message.data
    end = rest[-1]
    assert isinstance(end, Finished) and end.exit_code == 0 and end.error == "" and end.files == 4
    assert sorted(files) == [b"metrics/a.csv", b"metrics/empty", b"metrics/epochs/1.csv", b"model.bin"]
    assert hashlib.sha256(files[b"model.bin"]).hexdigest() == end.stdout.split()[0].decode()
    assert (files[b"metrics/a.csv"], files[b"metrics/empty"]) == (b"loss\n", b"")


def test_symbolic_links_are_neither_followed_nor_sent(agent_in, tmp_path):
    broker, _ = agent_in
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("not the task's\n")
    command = (
        f'cd "$PATAS_TASK_DIR" && ln -s {outside}/secret secret && ln -s {outside} dir && mkdir real'
        " && ln -s ../real/kept real/loop && echo kept > real/kept && mkfifo pipe"
    )
    files, end = run(broker, command, ["**"])
    assert (end.exit_code, end.error, sorted(files)) == (0, "", [b"real/kept"])


def test_a_task_folder_swapped_for_a_link_sends_nothing(agent_in, tmp_path):
    broker, scratch = agent_in
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "model.bin").write_text("not the task's\n")
    command = f'rmdir "$PATAS_TASK_DIR" && ln -s {tmp_path}/elsewhere "$PATAS_TASK_DIR"'
    files, end = run(broker, command, ["**", "*"])
    assert (end.exit_code, files, end.files) == (0, {}, 0)
    assert all(not any(p.iterdir()) for p in scratch.iterdir())  # the link was removed
    assert (tmp_path / "elsewhere" / "model.bin").exists()  # the link was removed, not followed


def test_files_over_the_limit_fail_the_attempt_naming_the_largest_and_none_are_sent(agent_in):
    broker, _ = agent_in
    command = 'cd "$PATAS_TASK_DIR" && head -c 3000 /dev/zero > big && head -c 2000 /dev/zero > mid && echo > small'
    files, end = run(broker, command, ["*"], limit=4096)
    assert files == {} and end.exit_code == 0 and end.files == 0
    assert end.error == (
        "its collected files take 4.9 KiB, more than the collect limit of 4.0 KiB"
        " (largest: big 2.9 KiB, mid 2.0 KiB, small 1 B); raise --collect-limit or collect fewer files"
    )


def test_a_failed_attempt_still_sends_its_files(agent_in):
    broker, _ = agent_in
    files, end = run(broker, 'echo half > "$PATAS_TASK_DIR/model.bin"; kill -9 $$', ["model.bin"])
    assert (end.exit_code, files) == (-9, {b"model.bin": b"half\n"})


def test_file_names_need_not_be_utf8(agent_in):
    broker, _ = agent_in
    files, end = run(broker, "printf x > \"$PATAS_TASK_DIR/$(printf 'caf\\351')\"", ["*"])
    assert (end.error, files) == ("", {b"caf\xe9": b"x"})
    assert protocol.decode(protocol.encode(TaskFile(1, b"caf\xe9", 0, True, b"x"))).path == b"caf\xe9"
