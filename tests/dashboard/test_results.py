"""What the experiment page is told about its results (`/api/experiments/NAME/results`), from a
real dashboard over the lab a real sweep wrote."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pytest

from tests.dashboard.served import http_get, start_dashboard
from tests.running import ENV, patas


def results(served, name: str = "grid") -> dict:  # type: ignore[no-untyped-def]
    status, _, body = http_get(f"{served.base}/api/experiments/{name}/results?token={served.token}")
    assert status == 200, body
    return json.loads(body)


@pytest.mark.parametrize("lab", ["pataslab", "my lab"])
def test_before_any_parse_the_page_gives_a_parse_command_that_works_where_the_dashboard_runs(tmp_path, lab):
    assert patas("explore", "--cmd", "echo 'acc 0.{i}'", "--va", "i", "1", "4", "1", "-o", lab, "-y", cwd=tmp_path).code == 0
    served = start_dashboard(tmp_path, "-o", lab)
    try:
        before = results(served)
        assert (before["metrics"], before["rows"]) == ([], 0)
        command = before["note"].removeprefix("No parsed values yet: run ").removesuffix(" (the page reads its table).")
        assert command.startswith("patas parse -e ") and command.endswith(" -p NAME REGEX"), before["note"]
        words = shlex.split(command.replace("NAME REGEX", "acc 'acc (@float@)'"))
        parsed = subprocess.run([sys.executable, "-m", "patas", *words[1:]], cwd=tmp_path, env=ENV, capture_output=True, text=True)
        assert parsed.returncode == 0, parsed.stderr
        after = results(served)
        assert (after["metrics"], after["rows"], after["note"]) == (["out_acc"], 3, None)
    finally:
        served.stop()


def test_a_table_without_numbers_says_so(tmp_path):
    assert patas("explore", "--cmd", "echo 'name n{i}'", "--va", "i", "1", "3", "1", "-y", cwd=tmp_path).code == 0
    assert patas("parse", "-e", "pataslab/grid", "-p", "name", "name (@slug@)", cwd=tmp_path).code == 0
    served = start_dashboard(tmp_path)
    try:
        info = results(served)
        assert (info["metrics"], info["rows"]) == ([], 2)
        assert info["note"] == "pataslab/grid/grid.csv has no numeric out_* column: parse with (@int@) or (@float@)."
    finally:
        served.stop()
