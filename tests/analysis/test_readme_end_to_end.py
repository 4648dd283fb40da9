"""The README's parse, query and draw commands, verbatim, on the output of a real (small) explore."""

import csv
import shutil

import pytest
from click.testing import CliRunner
from PIL import Image

from patas.cli.app import cli

from .conftest import run_patas
from .labs import EXAMPLE
from .readme import DRAWS, PARSE, QUERIES, argv

# The README's explore with fewer neurons and repeats: 2 x 3 x 4 combinations x 2 = 48 tasks.
EXPLORE = [
    "explore", "--type", "grid", "--cmd", "./main.py {neurons} {activation} {preprocessing}",
    "--va", "neurons", "1", "9", "4", "--vl", "preprocessing", "fast", "medium", "intense",
    "--vl", "activation", "relu", "leaky_relu", "sigmoid", "tanh", "--node", "localhost", "--repeat", "2",
]  # fmt: skip


@pytest.fixture(scope="module")
def explored(tmp_path_factory):
    folder = tmp_path_factory.mktemp("basic_usage")
    shutil.copy(EXAMPLE, folder / "main.py")
    run = run_patas(*EXPLORE, cwd=folder)
    assert run.code == 0, run.stderr
    return folder


def test_readme_commands_after_explore(explored, monkeypatch):
    run = run_patas(*argv(PARSE), cwd=explored)
    assert run.code == 0 and run.stderr == "Wrote pataslab/grid/grid.csv: 48 rows from 48 tasks, 29 columns\n"
    with open(explored / "pataslab/grid/grid.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert {r["in_activation"] for r in rows} == {"relu", "leaky_relu", "sigmoid", "tanh"}
    assert all(0 <= float(r["out_test_acc"]) <= 1 for r in rows)
    assert sorted(int(r["task_id"]) for r in rows) == list(range(48))

    outputs = [run_patas(*argv(command), cwd=explored) for command in QUERIES]
    assert [o.code for o in outputs] == [0, 0, 0], [o.stderr for o in outputs]
    assert len(outputs[0].stdout.splitlines()) == 2 + 2
    assert len(outputs[1].stdout.splitlines()) == 2 + 8  # 4 activations x 2 neuron counts
    assert outputs[2].stdout.splitlines()[0].split() == ["|", "in_activation", "|", "in_neurons", "|", "train_acc", "|", "test_acc", "|"]
    assert len(outputs[2].stdout.splitlines()) == 3

    monkeypatch.chdir(explored)
    for command, image, size in DRAWS:
        result = CliRunner().invoke(cli, argv(command))
        assert result.exit_code == 0, result.output
        with Image.open(explored / image) as picture:
            assert picture.size == size
