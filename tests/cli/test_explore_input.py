"""`patas explore` end to end on input that YAML or a filter used to get wrong: what the program
receives is what was typed, and a filter selects by arithmetic."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

from tests.running import done_ids, patas

# YAML 1.1 read these as 8, 31, True, None, 1000.0, ...: the program must get the text.
AS_TYPED = ["010", "0x1F", "yes", "~", "1e3", ".5", "on", "2024-01-01", "null", "0o17", "-.inf", ""]
PRINT_ARGV = "python3 -c 'import sys; print(repr(sys.argv[1:]))'"


def test_yaml_values_reach_the_program_exactly_as_typed(tmp_path):
    items = "".join(f"      - {value}\n" for value in AS_TYPED)
    (tmp_path / "experiment.yaml").write_text(f"name: typed\ncmd: {PRINT_ARGV} {{a}}\nvars:\n  - name: a\n    values:\n{items}")
    run = patas("explore", "--experiment", "experiment.yaml", "-y", "-q", cwd=tmp_path)
    assert run.code == 0, run.stderr
    lab = tmp_path / "pataslab" / "typed"
    received = [ast.literal_eval((lab / str(task_id) / "stdout").read_text()) for task_id in range(len(AS_TYPED))]
    assert received == [[value] for value in AS_TYPED]


def md5s(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_filter_says_truthfully_whether_it_selects_nothing_or_only_done_tasks(tmp_path):
    grid = ["explore", "--cmd", "echo {a}", "--va", "a", "0", "3000", "1", "-y", "-q"]
    assert patas(*grid, "--filter-tasks", "0:1", cwd=tmp_path).code == 0
    lab = tmp_path / "pataslab" / "grid"
    before = md5s(lab)
    done = patas(*grid, "--filter-tasks", "0:1", cwd=tmp_path)
    assert done.code == 0
    assert "Nothing to run: every task --filter-tasks 0:1 selects is done (use --redo to run them again)." in done.stderr
    beyond = patas(*grid, "--filter-tasks", "5000:6000", cwd=tmp_path)
    assert (beyond.code, beyond.stderr) == (1, "Error: --filter-tasks 5000:6000 selects no task (grid has task ids 0 to 2999)\n")
    assert md5s(lab) == before


def test_a_filter_on_a_grid_of_ten_to_the_23_tasks_runs_its_ten_tasks_at_once(tmp_path):
    variables = [word for i in range(23) for word in ("--va", f"v{i}", "0", "10", "1")]
    run = patas("explore", "--cmd", "echo {v0} {v22}", *variables, "--filter-tasks", "0:9", "-y", "-q", cwd=tmp_path, timeout=60)
    assert run.code == 0, run.stderr
    lab = tmp_path / "pataslab" / "grid"
    assert done_ids(lab) == list(range(10))
    assert (lab / "7" / "stdout").read_text() == "0 7\n"
