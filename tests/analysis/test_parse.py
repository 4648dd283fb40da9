import csv
import datetime as dt
import json
from pathlib import Path

import pytest

from patas.analysis import table as table_module
from patas.analysis.parse import EXTRA_COLUMNS, Streams, default_output, parse, parse_experiment, report_lines
from patas.analysis.patterns import UnmatchedError
from patas.analysis.table import TableError, read_schema
from patas.common.errors import LabError
from patas.common.lab import Outcome
from patas.common.sweep import tasks

from .conftest import README_PATTERNS
from .labs import small_grid, write_lab

# The README's header, as the README prints it.
README_COLUMNS = (
    "in_activation in_neurons in_preprocessing out_train_time out_test_time out_train_acc"
    " out_test_acc out_loss break_id task_id repeat_id combination_id experiment_id experiment_name"
    " tries max_tries duration started_at ended_at cluster_name node_name cluster_in_lab node_in_lab"
    " node_in_cluster worker_in_lab worker_in_cluster worker_in_node output_dir work_dir"
).split()


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def test_readme_patterns_give_the_readme_columns_one_row_per_task(grid_lab):
    given = str(grid_lab.path) + "/"
    result = parse_experiment(given, README_PATTERNS, output=default_output(given))
    assert result.path == grid_lab.path / "grid.csv"
    rows = read_csv(result.path)
    assert list(rows[0]) == README_COLUMNS
    assert len(rows) == result.tasks == 120
    assert report_lines(result) == []
    first = rows[0]
    assert (first["in_activation"], first["in_neurons"], first["in_preprocessing"]) == ("relu", "1", "fast")
    assert first["break_id"] == "0" and first["tries"] == "1" and first["max_tries"] == "3"
    assert first["started_at"] == str(dt.datetime.fromtimestamp(1_684_350_895.472312))
    assert first["duration"] == "0.224591"
    assert first["output_dir"] == str(grid_lab.path / "0")
    assert first["work_dir"].endswith("examples/basic_usage")
    assert [int(r["task_id"]) for r in rows] == list(range(120))


def test_numbers_come_out_as_numbers_in_the_frame(grid_lab):
    frame = parse(grid_lab.path, README_PATTERNS)
    assert frame["in_neurons"].dtype.kind == "i"
    assert frame["out_test_acc"].dtype.kind == "f"
    assert frame["started_at"].dtype.kind == "M"
    assert 0 < frame["out_test_acc"].mean() < 1
    assert sorted(frame["in_activation"].unique()) == ["leaky_relu", "relu", "sigmoid", "tanh"]


def test_values_match_the_task_outputs(grid_lab):
    frame = parse(grid_lab.path, README_PATTERNS)
    text = (grid_lab.path / "17" / "stdout").read_text()
    row = frame[frame.task_id == 17].iloc[0]
    assert f"Test accuracy:      {row.out_test_acc:.3f}" in text
    assert f"Time to train (ms): {row.out_train_time:.3f}" in text


def test_line_breakers_make_a_row_per_block(grid_lab):
    frame = parse(grid_lab.path, {"epoch": r"Epoch +(@int@)/", "loss": r"loss (@float@)"}, breakers=[r"^Epoch"])
    assert len(frame) == 120 * 20
    first = frame[frame.task_id == 0]
    assert list(first.break_id) == list(range(20))
    assert list(first.out_epoch) == list(range(1, 21))


def test_parquet_output(grid_lab, tmp_path):
    target = tmp_path / "results.parquet"
    result = parse_experiment(grid_lab.path, README_PATTERNS, output=target)
    import pandas as pd

    frame = pd.read_parquet(target)
    assert list(frame.columns) == README_COLUMNS and len(frame) == 120
    assert frame.out_loss.tolist() == result.to_frame().out_loss.tolist()


def test_unfinished_tasks_are_counted_and_left_out_unless_asked(tmp_path):
    failing = {3: Outcome.FAILED, 4: Outcome.TIMEOUT, 5: Outcome.FAILED}
    lab = write_lab(tmp_path / "pataslab", small_grid(), outcome=lambda t: failing.get(t, Outcome.DONE))
    result = parse_experiment(lab.path, README_PATTERNS)
    assert result.tasks == 117 and 3 not in result.table.columns["task_id"]
    assert report_lines(result) == [
        "3 tasks are not done (2 failed, 1 timeout); left out (add --include-unfinished to keep them)"
    ]
    kept = parse_experiment(lab.path, README_PATTERNS, include_unfinished=True).to_frame()
    assert len(kept) == 120 and kept.columns[-1] == "outcome"
    assert kept.set_index("task_id").outcome[3] == "failed"
    assert kept.set_index("task_id").out_test_acc.notna().all()  # read from attempt-1.stdout


def test_pending_tasks_are_told_apart_from_those_the_flag_would_add(tmp_path):
    # Task 3 failed (--include-unfinished adds it); tasks 4 and 5 have no record yet (not run, or
    # running): no flag gives them a row, so none is suggested for them.
    lab = write_lab(tmp_path / "pataslab", small_grid(), outcome=lambda t: Outcome.FAILED if t == 3 else Outcome.DONE)
    journal = lab.journal_path.read_text().splitlines(keepends=True)
    lab.journal_path.write_text("".join(line for line in journal if json.loads(line)["task_id"] not in (4, 5)))
    result = parse_experiment(lab.path, README_PATTERNS)
    assert result.tasks == 117
    assert report_lines(result) == [
        "1 task is not done (1 failed); left out (add --include-unfinished to keep them)",
        "2 tasks are pending (not run yet, or still running): no row until done",
    ]
    kept = parse_experiment(lab.path, README_PATTERNS, include_unfinished=True)
    assert kept.tasks == 118 and report_lines(kept)[0].endswith("; included with column 'outcome'")


def test_a_deleted_task_folder_is_not_done(grid_lab):
    import shutil

    shutil.rmtree(grid_lab.task_dir(7))
    result = parse_experiment(grid_lab.path, README_PATTERNS)
    assert result.tasks == 119
    assert result.unfinished == {"without output folder": 1}


def test_obsolete_tasks_after_editing_the_grid(grid_lab):
    smaller = small_grid(neurons_max=10)  # neurons 1, 5, 9: tasks with 13 and 17 are obsolete
    grid_lab.write_definition(smaller.to_record())
    result = parse_experiment(grid_lab.path, README_PATTERNS)
    assert result.tasks == 72 and result.obsolete == 48
    assert set(result.table.columns["in_neurons"]) == {1, 5, 9}
    assert "48 tasks are done but not in the current experiment definition; left out" in report_lines(result)[0]
    assert parse_experiment(grid_lab.path, README_PATTERNS, include_obsolete=True).tasks == 120


def test_not_started_tasks_are_counted(grid_lab):
    grid_lab.write_definition(small_grid(repeat=3).to_record())
    result = parse_experiment(grid_lab.path, README_PATTERNS)
    assert result.tasks == 120 and result.unfinished == {"pending": 60}


def test_stderr_stream(tmp_path):
    lab = write_lab(tmp_path / "pataslab", small_grid(), output=lambda task: "")
    for task_id in (0, 1):
        (lab.task_dir(task_id) / "stderr").write_text(f"warning: value {task_id + 10}\n")
    frame = parse(lab.path, {"v": r"value (@int@)"}, streams=Streams.STDERR)
    assert frame.out_v.tolist()[:2] == [10, 11] and frame.out_v[2:].isna().all()
    both = parse(lab.path, {"v": r"value (@int@)"}, streams="both")
    assert both.out_v.tolist()[:2] == [10, 11]
    assert parse(lab.path, {"v": r"value (@int@)"}, allow_empty=True).out_v.isna().all()


def test_a_pattern_matching_nothing_is_an_error_naming_it_and_the_table_stays(grid_lab):
    target = grid_lab.path / "grid.csv"
    parse_experiment(grid_lab.path, README_PATTERNS, output=target)
    before = target.read_bytes(), (grid_lab.path / "grid.schema.json").read_bytes()
    with pytest.raises(UnmatchedError) as error:
        parse_experiment(grid_lab.path, {"acc": r"accuracy: +(@float@)", "f1": r"F1: (@float@)"}, output=target)
    assert str(error.value) == (
        f"-p f1 'F1: (@float@)': matched nothing in the stdout of any of the 120 tasks"
        f" (compare it with {grid_lab.path}/0/stdout, or add --allow-empty to keep the column empty)"
    )
    assert (target.read_bytes(), (grid_lab.path / "grid.schema.json").read_bytes()) == before
    result = parse_experiment(grid_lab.path, {"acc": r"accuracy: +(@float@)", "f1": r"F1: (@float@)"}, allow_empty=True)
    assert report_lines(result) == ["pattern 'f1' matched nothing in any task (column out_f1 is empty)"]


def test_matches_in_the_other_stream_suggest_both(tmp_path):
    lab = write_lab(tmp_path / "pataslab", small_grid(), output=lambda task: "nothing here\n")
    (lab.task_dir(5) / "stderr").write_text("value 3\n")
    with pytest.raises(UnmatchedError) as error:
        parse(lab.path, {"a": r"nothing (@slug@)", "v": r"value (@int@)"})
    assert str(error.value) == (
        "-p v 'value (@int@)': matched nothing in the stdout of any of the 120 tasks,"
        " but matches in their stderr (add --stream both)"
    )
    with pytest.raises(UnmatchedError, match=r"^-p a 'nothing \(@slug@\)': .* stderr .*, but matches in their stdout"):
        parse(lab.path, {"a": r"nothing (@slug@)"}, streams=Streams.STDERR)


def test_a_breaker_matching_nothing_is_an_error(grid_lab):
    with pytest.raises(UnmatchedError, match=r"^-n '\^Epcoh': matched no line in the stdout of any of the 120 tasks"):
        parse(grid_lab.path, {"loss": r"loss (@float@)"}, breakers=[r"^Epcoh"])
    # Test accuracy is printed after the last epoch line, so it is in no block (no row).
    with pytest.raises(UnmatchedError, match=r"^-p acc 'Test accuracy: \+\(@float@\)': matched nothing in any block"):
        parse(grid_lab.path, {"acc": r"Test accuracy: +(@float@)"}, breakers=[r"^Epoch"])


def test_with_no_done_task_there_is_nothing_to_match(tmp_path):
    lab = write_lab(tmp_path / "pataslab", small_grid(), outcome=lambda t: Outcome.FAILED)
    result = parse_experiment(lab.path, {"f1": r"F1: (@float@)"})
    assert result.tasks == 0 and report_lines(result)[0].startswith("120 tasks are not done (120 failed)")


def test_columns_take_the_placeholder_type_even_when_empty(grid_lab, tmp_path):
    patterns = {"f1": r"F1: (@float@)", "epochs": r"Epochs: (@int@)", "name": r"model (@slug@)",
                "acc": r"Test accuracy: +(@float@)", "n": r"Epoch (@int@)/", "when": r"(@float@|never)"}  # fmt: skip
    result = parse_experiment(grid_lab.path, patterns, allow_empty=True, output=tmp_path / "t.csv")
    types = {name: kind.value for name, kind in result.table.types.items() if name.startswith("out_")}
    assert types == {"out_f1": "number", "out_epochs": "integer", "out_name": "string", "out_acc": "number",
                     "out_n": "integer", "out_when": "number"}  # fmt: skip  (when: inferred)
    assert read_schema(tmp_path / "t.csv") == result.table.types
    frame = result.to_frame()
    assert frame.out_f1.dtype == "float64" and frame.out_epochs.dtype == "Int64"
    parquet = tmp_path / "t.parquet"
    parse_experiment(grid_lab.path, patterns, allow_empty=True, output=parquet)
    import pyarrow.parquet

    schema = pyarrow.parquet.read_schema(parquet)
    assert (str(schema.field("out_f1").type), str(schema.field("out_epochs").type)) == ("double", "int64")
    assert str(schema.field("out_name").type) == "string"


def test_a_table_without_rows_keeps_its_types(tmp_path):
    lab = write_lab(tmp_path / "pataslab", small_grid(), outcome=lambda t: Outcome.FAILED)
    result = parse_experiment(lab.path, {"acc": r"accuracy: (@float@)"}, output=tmp_path / "t.csv")
    assert len(result.table) == 0
    assert result.table.types["out_acc"].value == "number" and result.table.types["task_id"].value == "integer"
    assert result.table.types["started_at"].value == "datetime"


def test_parse_writes_nothing_unless_asked(grid_lab):
    before = sorted(p.name for p in grid_lab.path.iterdir())
    frame = parse(grid_lab.path, README_PATTERNS)
    assert len(frame) == 120
    assert sorted(p.name for p in grid_lab.path.iterdir()) == before


def test_progress_bars_redrawn_with_carriage_returns_anchor_at_each_redraw(tmp_path):
    # zstd --progress: the line is redrawn after each \r; the last redraw is the final state.
    bar = "\r".join(f"{percent:3d}% compressed" for percent in (10, 55, 100)) + "\r\nratio 3.2\r\n"
    lab = write_lab(tmp_path / "pataslab", small_grid(), output=lambda task: bar)
    frame = parse(lab.path, {"done": r"^ *(@int@)% compressed$", "ratio": r"^ratio (@float@)$", "rest": r"10% compressed(.*)"})
    assert frame.out_done.tolist() == [100] * 120
    assert frame.out_ratio.tolist() == [3.2] * 120
    assert frame.out_rest.isna().all()  # an empty match: `.` does not run on into the next redraw


def test_missing_folder_and_non_experiment_folder_are_errors(grid_lab, tmp_path):
    with pytest.raises(LabError, match=r"pataslab/gridd: no such folder \(experiments there: .*/pataslab/grid\)$"):
        parse_experiment(tmp_path / "pataslab/gridd", README_PATTERNS)
    with pytest.raises(LabError, match=r"pataslab: not an experiment folder \(no journal.jsonl\) \(experiments there"):
        parse_experiment(tmp_path / "pataslab", README_PATTERNS)


def test_a_crash_while_writing_leaves_the_old_table_whole(grid_lab, monkeypatch):
    result = parse_experiment(grid_lab.path, README_PATTERNS, output=grid_lab.path / "grid.csv")
    before = result.path.read_bytes()

    def crash(self, path):
        path.write_text("in_activation,half a row")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(table_module.Table, "_write_csv", crash)
    with pytest.raises(TableError, match=r"grid.csv: cannot write the table \(No space left on device\)$"):
        parse_experiment(grid_lab.path, README_PATTERNS, output=result.path)
    assert result.path.read_bytes() == before
    assert [p.name for p in grid_lab.path.iterdir() if p.name.startswith(".")] == []


def test_unknown_output_format_is_an_error(grid_lab, tmp_path):
    with pytest.raises(TableError, match=r"results.xlsx: unknown table format '.xlsx' \(name the file .csv or .parquet\)"):
        parse_experiment(grid_lab.path, README_PATTERNS, output=tmp_path / "results.xlsx")


def test_extra_columns_follow_the_original_order():
    assert EXTRA_COLUMNS == tuple(README_COLUMNS[8:])


def test_an_output_folder_that_does_not_exist_is_an_error_before_any_work(grid_lab, tmp_path, monkeypatch):
    from patas.analysis import parse as parse_module

    monkeypatch.setattr(parse_module, "Scan", None)  # would fail if the outputs were scanned
    with pytest.raises(TableError, match=r"nowhere/t.csv: no folder .*nowhere to write the table in \(create it first\)$"):
        parse_experiment(grid_lab.path, README_PATTERNS, output=tmp_path / "nowhere" / "t.csv")


def test_parse_logs_the_warnings_for_python_callers(grid_lab, caplog):
    with caplog.at_level("WARNING", logger="patas.analysis.parse"):
        frame = parse(grid_lab.path, {"f1": r"F1: (@float@)"}, allow_empty=True)
    assert frame.out_f1.isna().all()
    assert [r.getMessage() for r in caplog.records] == [
        "pattern 'f1' matched nothing in any task (column out_f1 is empty)"
    ]


def test_ids_come_from_the_current_definition_and_obsolete_rows_have_none(grid_lab):
    wider = small_grid(neurons_max=10)  # neurons 1, 5, 9: each combination renumbered
    grid_lab.write_definition(wider.to_record())
    expected = {t.key: (t.combination_id, t.repeat_id) for t in tasks(wider)}
    result = parse_experiment(grid_lab.path, README_PATTERNS, include_obsolete=True)
    columns = result.table.columns
    rows = list(zip(columns["task_id"], columns["combination_id"], columns["repeat_id"], columns["in_neurons"]))
    keys = {r.task_id: r.key for r in grid_lab.read_journal()}
    for task_id, combination_id, repeat_id, neurons in rows:
        if neurons in (13, 17):  # obsolete: no combination in the current definition
            assert (combination_id, repeat_id) == (None, None)
        else:
            assert (combination_id, repeat_id) == expected[keys[task_id]]


def test_a_task_whose_output_was_being_replaced_is_not_done(grid_lab):
    first = next(grid_lab.read_journal())
    first.outcome, first.attempt = Outcome.REPLACING, 2
    with open(grid_lab.journal_path, "a") as journal:
        journal.write(first.to_json() + "\n")
    result = parse_experiment(grid_lab.path, README_PATTERNS)
    assert result.tasks == 119 and result.unfinished == {"replacing": 1}
