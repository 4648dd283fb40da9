"""Every row of docs/errors.md, run as written: exit status, one line on stderr, no traceback,
and nothing in the pataslab changed."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

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
    "dup-key.yaml": "cmd: x\nrepeat: 2\nrepeat: 3\n",
    "latin1.yaml": "cmd: x\nname: caf\xe9\n".encode("latin-1"),
    "nul.yaml": 'cmd: "echo \\0"\n',
    "bad-workdir.yaml": "cmd: echo\nworkdir: /nonexistent/dir\n",
    "huge-value.yaml": "cmd: echo {a}\nvars: [{name: a, values: [" + "x" * 140_000 + "]}]\n",
}


def rows() -> list[tuple[str, int, str]]:
    table = (REPO / "docs" / "errors.md").read_text().splitlines()
    found = [ROW.match(line) for line in table if line.startswith("| `patas")]
    assert all(found), "a row of docs/errors.md does not have the form this test reads"
    return [(m.group(1), int(m.group(2)), m.group(4)) for m in found if m]


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bad-input")
    assert patas("explore", "--cmd", "echo 'Test accuracy: 0.{i}'", "--va", "i", "1", "5", "1", "-y", cwd=folder).code == 0
    assert patas("parse", "-e", "pataslab/grid", "-p", "acc", r"Test accuracy: (@float@)", cwd=folder).code == 0
    for name, content in FILES.items():
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    shutil.copy(folder / "pataslab/grid/grid.csv", folder / "grid.csv")
    return folder


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
