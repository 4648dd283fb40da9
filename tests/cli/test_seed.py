"""The example folder's YAML sweep, run verbatim as docs/explore.md prints it."""

from __future__ import annotations

import re
import shlex
import shutil

import pytest

from tests.cli.test_explore import README_EXPLORE
from tests.running import REPO, done_ids, patas

EXAMPLE = REPO / "examples" / "basic_usage"
DOC = (REPO / "docs" / "explore.md").read_text()


def doc_block(first_line: str) -> str:
    """The fenced block of docs/explore.md that starts with `first_line`."""
    # Fences pair up in order: every block opens with a tagged fence and closes with a bare one.
    blocks = re.findall(r"^```\w*\n(.*?)^```$", DOC, re.S | re.M)
    (block,) = [b for b in blocks if b.startswith(first_line)]
    return block


def test_the_docs_print_the_example_files_as_they_are():
    assert doc_block("# experiment.yaml\n").split("\n", 1)[1] == (EXAMPLE / "experiment.yaml").read_text()
    assert doc_block("# cluster.yaml\n").split("\n", 1)[1] == (EXAMPLE / "cluster.yaml").read_text()


# 3,000 real processes: about 100 s on a quiet 2-core machine, several minutes on a busy one.
@pytest.mark.timeout(900)
def test_the_yaml_command_runs_verbatim_and_is_the_readme_grid(tmp_path):
    folder = tmp_path / "basic_usage"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("pataslab"))
    (command,) = [line.strip() for line in doc_block("cd examples/basic_usage").splitlines()[1:] if line.strip()]
    argv = shlex.split(command)
    assert argv[:2] == ["patas", "explore"]

    run = patas(*argv[1:], cwd=folder, timeout=900)
    assert run.code == 0, run.stderr
    assert "300 combinations × 10 repeats = 3,000 tasks (0 done, 3,000 to run) → pataslab/grid" in run.stderr
    lab = folder / "pataslab" / "grid"
    assert done_ids(lab) == list(range(3000))
    assert "Test accuracy:      " in (lab / "1160" / "stdout").read_text()  # the original's relu 33 medium

    same = patas(*README_EXPLORE, cwd=folder)  # the README's flags make the same tasks
    assert same.code == 0 and "Nothing to run" in same.stderr, same.stderr
