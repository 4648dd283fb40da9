"""`patas.explore(...)` from Python: the documented example, counts, the early stop, bad input."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

import patas
from patas.common.errors import ConfigError
from tests.running import ENV, REPO

DOC = (REPO / "docs" / "explore.md").read_text()


def test_the_documented_example_runs_as_printed(tmp_path):
    (block,) = re.findall(r"```python\n(import patas\n.*?)```", DOC, re.S)
    shutil.copy2(REPO / "examples" / "basic_usage" / "main.py", tmp_path)
    done = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "pataslab/grid\n"
    assert len(list((tmp_path / "pataslab/grid").glob("*/stdout"))) == 8


def test_import_patas_stays_cheap():
    code = "import sys, patas; print(sorted({m.split('.')[0] for m in sys.modules} & {'zmq', 'rich', 'click', 'yaml', 'pandas'}))"
    done = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True)
    assert done.stdout.strip() == "[]", done.stderr
    assert "explore" in dir(patas)


def test_counts_resuming_and_the_early_stop(tmp_path):
    first = patas.explore("echo {a} {b}", {"a": [1, 2], "b": "x"}, jobs=2, lab=tmp_path / "lab")
    assert (first.total, first.done, first.failed, first.ok) == (2, 2, 0, True)
    assert (tmp_path / "lab/grid/1/stdout").read_text() == "2 x\n"
    again = patas.explore("echo {a} {b}", {"a": [1, 2], "b": "x"}, jobs=2, lab=tmp_path / "lab")
    assert (again.skipped, again.done, again.ok) == (2, 0, True)

    typo = patas.explore("./nope {i}", {"i": range(50)}, jobs=2, lab=tmp_path / "lab", name="typo", workdir=tmp_path)
    assert typo.halted == "the first 10 tasks tried all failed" and not typo.ok
    # The stop comes at the 10th failure; an attempt whose end arrives after it is abandoned.
    (ids,) = typo.failures.values()
    assert list(typo.failures) == ["cannot run (exit 127)"] and (typo.failed, typo.retried) == (10, 0)
    assert len(ids) == 10 and set(ids) <= set(range(14))  # two slots, each with one task queued
    assert typo.not_run == 40

    everything = patas.explore("exit 1 {i}", {"i": range(12)}, jobs=2, lab=tmp_path / "lab", name="all", max_tries=1, halt="never")
    assert (everything.failed, everything.halted) == (12, None)


def test_bad_input_raises_the_cli_message(tmp_path):
    with pytest.raises(ConfigError, match="no variable is named 'neuron'"):
        patas.explore("./main.py {neuron}", {"neurons": [1]}, lab=tmp_path)
    with pytest.raises(ConfigError, match="jobs= runs tasks on this machine"):
        patas.explore("echo", jobs=2, nodes=["localhost"], lab=tmp_path)
    with pytest.raises(ConfigError, match="--halt 'sometimes'"):
        patas.explore("echo", halt="sometimes", lab=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_shipped_code_runs_from_its_read_only_copy_and_editing_it_mid_way_changes_nothing(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    (project / "version.txt").write_text("v1\n")
    monkeypatch.chdir(project)
    monkeypatch.setenv("PATAS_CACHE", str(tmp_path / "cache"))
    command = "cat version.txt; pwd; stat -c %a . version.txt"
    first = patas.explore(command, {"i": range(3)}, jobs=2, ship=["."])
    assert first.ok
    outputs = [(project / f"pataslab/grid/{i}/stdout").read_text().split("\n") for i in range(3)]
    assert {o[0] for o in outputs} == {"v1"} and {(o[2], o[3]) for o in outputs} == {("555", "444")}
    assert outputs[0][1].startswith(str(tmp_path / "cache/snapshots/"))
    (project / "version.txt").write_text("v2\n")  # the next run gets the new code; the old copy stays
    second = patas.explore(command, {"i": range(3)}, jobs=2, ship=["."], redo=True)
    assert second.ok and (project / "pataslab/grid/0/stdout").read_text().startswith("v2\n")
    assert (tmp_path / outputs[0][1] / "version.txt").read_text() == "v1\n"
    with pytest.raises(ConfigError, match="ship_limit= 'lots': expected a size"):
        patas.explore("true", ship=["."], ship_limit="lots")


@pytest.mark.parametrize(
    "values, message",
    [
        ([b"x"], "variables['v']: b'x' is a bytes, not a value for a command line (give text or numbers)"),
        ([1, None], "variables['v']: None is a NoneType, not a value for a command line (give text or numbers)"),
        ([[1, 2]], "variables['v']: [1, 2] is a list, not a value for a command line (give text or numbers)"),
        ({"a": 1}, "variables['v']: a dict, not a list of values"),
    ],
)
def test_a_value_with_no_one_text_is_refused_and_nothing_runs(tmp_path, values, message):
    with pytest.raises(ConfigError) as error:
        patas.explore("echo {v}", {"v": values}, jobs=1, lab=tmp_path / "lab")
    assert str(error.value) == message
    assert not (tmp_path / "lab").exists()


def test_numbers_of_any_kind_reach_the_command_as_str_writes_them(tmp_path):
    import numpy as np

    values = [0.1, 1e20, True, np.float64(0.25), np.int64(3), "a b"]
    result = patas.explore("printf '%s\\n' {v}", {"v": values}, jobs=2, lab=tmp_path / "lab")
    assert result.ok
    assert [(tmp_path / f"lab/grid/{i}/stdout").read_text() for i in range(6)] == [f"{v}\n" for v in values]
