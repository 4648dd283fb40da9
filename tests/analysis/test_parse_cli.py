"""`patas parse` as a user runs it: exit codes, the lines on stderr, the file written."""

import csv

from .conftest import invoke_patas, run_patas
from .labs import small_grid, write_lab
from .readme import PARSE, argv


def test_readme_parse_command_verbatim(grid_lab, tmp_path):
    run = run_patas(*argv(PARSE), cwd=tmp_path)
    assert run.code == 0, run.stderr
    assert run.stdout == ""
    assert run.stderr == "Wrote pataslab/grid/grid.csv: 120 rows from 120 tasks, 29 columns\n"
    with open(tmp_path / "pataslab/grid/grid.csv", newline="") as stream:
        assert len(list(csv.DictReader(stream))) == 120


def test_bad_regex_is_one_error_line_and_writes_nothing(grid_lab, tmp_path):
    run = run_patas("parse", "-e", "pataslab/grid", "-p", "acc", "Test accuracy: (@float@", cwd=tmp_path)
    assert (run.code, run.stdout) == (1, "")
    assert run.stderr == "Error: -p acc 'Test accuracy: (@float@': invalid regex: missing ), unterminated subpattern\n"
    assert not (tmp_path / "pataslab/grid/grid.csv").exists()


def test_group_count_errors(grid_lab, tmp_path):
    run = run_patas("parse", "-e", "pataslab/grid", "-p", "acc", "Test accuracy: @float@", cwd=tmp_path)
    assert run.code == 1
    assert run.stderr.startswith("Error: -p acc 'Test accuracy: @float@': no capture group;")
    assert run.stderr.count("\n") == 1


def test_missing_folder_error_names_the_experiments_there(grid_lab, tmp_path):
    run = run_patas("parse", "-e", "pataslab/gird", "-p", "a", "(x)", cwd=tmp_path)
    assert run.code == 1
    assert run.stderr == f"Error: pataslab/gird: no such folder (experiments there: pataslab/grid)\n"


def test_folder_that_is_not_an_experiment(tmp_path):
    (tmp_path / "empty").mkdir()
    run = run_patas("parse", "-e", "empty", "-p", "a", "(x)", cwd=tmp_path)
    assert run.code == 1
    assert run.stderr == "Error: empty: not an experiment folder (no journal.jsonl) (run `patas explore` first)\n"


def test_a_pattern_that_also_matches_nothing_gives_each_task_s_last_line(tmp_path):
    lab = write_lab(tmp_path / "pataslab", small_grid())
    run = invoke_patas("parse", "-e", "pataslab/grid", "-p", "last", "(.*)", cwd=tmp_path)
    assert run.code == 0, run.stderr
    with open(tmp_path / "pataslab/grid/grid.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 120
    for row in rows:
        lines = (lab.task_dir(int(row["task_id"])) / "stdout").read_text().splitlines()
        assert row["out_last"] == [line for line in lines if line][-1] != ""


def test_warnings_for_unfinished_tasks_and_empty_patterns(tmp_path):
    from patas.common.lab import Outcome

    write_lab(tmp_path / "pataslab", small_grid(), outcome=lambda t: Outcome.LOST if t == 0 else Outcome.DONE)
    run = invoke_patas("parse", "-e", "pataslab/grid", "-p", "f1", "F1: (@float@)", "--allow-empty", cwd=tmp_path)
    assert run.code == 0
    assert run.stderr.splitlines() == [
        "Warning: 1 task is not done (1 lost); left out (add --include-unfinished to keep them)",
        "Warning: pattern 'f1' matched nothing in any task (column out_f1 is empty)",
        "Wrote pataslab/grid/grid.csv: 119 rows from 119 tasks, 25 columns",
    ]


def test_usage_errors_exit_2(tmp_path):
    run = run_patas("parse", "-p", "a", "(x)", cwd=tmp_path)
    assert run.code == 2 and "Missing option '-e'" in run.stderr


def test_help_has_an_example(tmp_path):
    run = invoke_patas("parse", "--help", cwd=tmp_path)
    assert run.code == 0 and "Example:" in run.stdout and "patas parse -e pataslab/grid/" in run.stdout


def test_options_reach_the_library(tmp_path):
    import pandas as pd

    from patas.common.lab import Outcome

    lab = write_lab(tmp_path / "pataslab", small_grid(), outcome=lambda t: Outcome.FAILED if t == 1 else Outcome.DONE)
    (lab.task_dir(0) / "stderr").write_text("epoch 1\nepoch 2\n")
    run = invoke_patas(
        "parse", "-e", "pataslab/grid", "-p", "epoch", "epoch (@int@)", "-n", "^epoch", "--stream", "both",
        "--include-unfinished", "-j", "1", "-o", "epochs.parquet", cwd=tmp_path,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    assert run.stderr.splitlines()[-1] == "Wrote epochs.parquet: 2 rows from 120 tasks, 26 columns"
    frame = pd.read_parquet(tmp_path / "epochs.parquet")
    assert frame.out_epoch.tolist() == [1, 2] and frame.break_id.tolist() == [0, 1]
    assert frame.columns[-1] == "outcome"


def test_a_pattern_matching_nothing_is_one_error_line_and_the_table_stays(grid_lab, tmp_path):
    assert run_patas(*argv(PARSE), cwd=tmp_path).code == 0
    table = tmp_path / "pataslab/grid/grid.csv"
    before = table.read_bytes()
    run = run_patas("parse", "-e", "pataslab/grid", "-p", "f1", "F1: (@float@)", cwd=tmp_path)
    assert (run.code, run.stdout) == (1, "")
    assert run.stderr == (
        "Error: -p f1 'F1: (@float@)': matched nothing in the stdout of any of the 120 tasks"
        " (compare it with pataslab/grid/0/stdout, or add --allow-empty to keep the column empty)\n"
    )
    assert table.read_bytes() == before


def test_unknown_placeholder_lists_the_placeholders(grid_lab, tmp_path):
    run = run_patas("parse", "-e", "pataslab/grid", "-p", "acc", "Test accuracy: +(@flaot@)", cwd=tmp_path)
    assert run.code == 1
    assert run.stderr == (
        "Error: -p acc 'Test accuracy: +(@flaot@)': unknown placeholder @flaot@ (did you mean @float@?);"
        " the placeholders are @float@ @int@ @slug@ @str@\n"
    )
