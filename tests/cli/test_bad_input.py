"""Every row of docs/errors.md, run as written: exit status, one line on stderr, no traceback,
and nothing in the pataslab changed."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import socket
from pathlib import Path

import pytest

from tests.journal_record import RECORD
from tests.running import REPO, patas

ROW = re.compile(r"^\| `(patas [^`]*)` \| (\d) \| (``?)(.*?)\3 \|$")

FILES = {
    "unknown-key.yaml": "cmd: x\nrepaet: 2\n",
    "bad-type.yaml": "cmd: x\nrepeat: two\n",
    "malformed.yaml": "cmd: 'x\n",
    "no-values.yaml": "cmd: echo {a}\nvars:\n  - {name: a, type: list, values: []}\n",
    "list.yaml": "- cmd\n- x\n",
    "bad-port.yaml": "nodes:\n  - {hostname: h, port: 70000}\n",
    "no-nodes.yaml": "nodes: []\n",
    "missing-key.yaml": "nodes:\n  - {hostname: 127.0.0.1, port: 1, private_key: /nonexistent/id_ed25519}\n",
    "unparsed/journal.jsonl": "",
    "dup-key.yaml": "cmd: x\nrepeat: 2\nrepeat: 3\n",
    "latin1.yaml": "cmd: x\nname: caf\xe9\n".encode("latin-1"),
    "nul.yaml": 'cmd: "echo \\0"\n',
    "bad-workdir.yaml": "cmd: echo\nworkdir: /nonexistent/dir\n",
    "twice-gpu.yaml": "nodes:\n  - {hostname: localhost, gpus: [0, 0]}\n",
    "few-gpus.yaml": "nodes:\n  - {hostname: localhost, workers: 3, gpus: [0, 1]}\n",
    "huge-value.yaml": "cmd: echo {a}\nvars: [{name: a, values: [" + "x" * 140_000 + "]}]\n",
    "bad-collect.yaml": "cmd: x\ncollect: /etc/passwd\n",
    "good.yaml": "cmd: echo {a}\nvars: [{name: a, values: [1, 2]}]\n",  # refused for a flag given with it
    "zero-timeout.yaml": "cmd: echo\ntimeout: 0\n",
}
# Damaged labs, each in a pataslab of its own so the explored one stays intact for other rows.
FILES.update({
    "afile": "not a folder\n",
    "text-attempt/grid/journal.jsonl": json.dumps({**RECORD, "attempt": "1"}) + "\n",
    "list-values/grid/journal.jsonl": json.dumps({**RECORD, "values": ["1"]}) + "\n",
    "newer/grid/journal.jsonl": json.dumps({**RECORD, "format": 99, "patas": "9.0"}) + "\n",
    "list-definition/grid/experiment.yaml": "- cmd\n- x\n",
    "bad-definition/grid/experiment.yaml": "cmd: 'x\n",
    "bad-study/s/study.journal": "[1, 2]\n",
})
FOLDERS = ("journal-folder/grid/journal.jsonl", "definition-folder/grid/experiment.yaml")
# The port of the `patas dashboard --port 47213` row, held in use while the rows run.
BUSY_PORT = 47213


def rows() -> list[tuple[str, int, str]]:
    table = (REPO / "docs" / "errors.md").read_text().splitlines()
    found = [ROW.match(line) for line in table if line.startswith("| `patas")]
    assert all(found), "a row of docs/errors.md does not have the form this test reads"
    return [(m.group(1), int(m.group(2)), m.group(4)) for m in found if m]


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file's content hash and modification time, and every folder, by path."""
    return {
        str(p.relative_to(folder)): (hashlib.md5(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) if p.is_file() else ("folder", 0)
        for p in folder.rglob("*")
    }


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bad-input")
    assert patas("explore", "--cmd", "echo 'Test accuracy: 0.{i}'", "--va", "i", "1", "5", "1", "-y", cwd=folder).code == 0
    assert patas("parse", "-e", "pataslab/grid", "-p", "acc", r"Test accuracy: (@float@)", cwd=folder).code == 0
    for name, content in FILES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    for name in FOLDERS:
        (folder / name).mkdir(parents=True)
    shutil.copy(folder / "pataslab/grid/grid.csv", folder / "grid.csv")
    return folder


@pytest.fixture(scope="module", autouse=True)
def busy_port():
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the dashboard binds
        try:
            taken.bind(("127.0.0.1", BUSY_PORT))
            taken.listen()
        except OSError:
            pass  # another process listens there already: in use all the same
        yield


def test_the_table_has_at_least_thirty_rows():
    assert len(rows()) >= 30


@pytest.mark.parametrize("command, status, message", rows(), ids=lambda v: v if isinstance(v, str) and v.startswith("patas") else "")
def test_bad_input(prepared: Path, command: str, status: int, message: str):
    before = snapshot(prepared)
    run = patas(*shlex.split(command)[1:], cwd=prepared)
    assert run.code == status, run.stderr
    assert run.stderr.startswith(message), run.stderr
    assert "Traceback" not in run.stderr
    if status == 1:
        assert run.stderr.count("\n") == 1, run.stderr
    assert snapshot(prepared) == before
