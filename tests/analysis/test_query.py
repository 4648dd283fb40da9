import csv
import io
import json
import shutil

import pytest

from patas.analysis.formats import display
from patas.analysis.query import QueryError, find_tables, query

from .conftest import invoke_patas, run_patas
from .readme import QUERIES, argv

# The SQL of the README's second query.
AVERAGES = argv(QUERIES[1])[1]


def markdown_rows(text: str) -> list[list[str]]:
    lines = text.splitlines()
    assert set(lines[1].replace("|", "").replace(" ", "")) <= {"-", ":"}
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in [lines[0], *lines[2:]]]


def test_readme_select_limit_markdown(parsed_workdir):
    run = invoke_patas(*argv(QUERIES[0]), cwd=parsed_workdir)
    assert run.code == 0, run.stderr
    rows = markdown_rows(run.stdout)
    assert len(rows) == 3 and len(rows[0]) == 29
    assert rows[0][:3] == ["in_activation", "in_neurons", "in_preprocessing"]
    assert rows[1][rows[0].index("experiment_name")] == "grid"
    assert rows[1][rows[0].index("started_at")].startswith("2023-05-17 ")


def test_readme_average_query(parsed_workdir):
    run = invoke_patas(*argv(QUERIES[1]), cwd=parsed_workdir)
    assert run.code == 0, run.stderr
    rows = markdown_rows(run.stdout)
    assert rows[0] == ["in_activation", "in_neurons", "avg_train_acc", "avg_test_acc"]
    assert len(rows) == 1 + 20  # 4 activations x 5 neuron counts


def test_readme_best_configuration_query(parsed_workdir):
    run = invoke_patas(*argv(QUERIES[2]), cwd=parsed_workdir)
    assert run.code == 0, run.stderr
    rows = markdown_rows(run.stdout)
    assert rows[0] == ["in_activation", "in_neurons", "train_acc", "test_acc"]
    frame = query(AVERAGES, [parsed_workdir / "pataslab"])
    best = frame.loc[frame.avg_test_acc.idxmax()]
    assert rows[1] == [best.in_activation, str(best.in_neurons), display(best.avg_train_acc), display(best.avg_test_acc)]


def test_csv_when_piped_and_json(parsed_workdir):
    sql = "SELECT in_activation, AVG(out_loss) AS loss FROM grid GROUP BY 1 ORDER BY 1"
    run = invoke_patas("query", sql, cwd=parsed_workdir)
    rows = list(csv.reader(io.StringIO(run.stdout)))
    assert rows[0] == ["in_activation", "loss"] and [r[0] for r in rows[1:]] == ["leaky_relu", "relu", "sigmoid", "tanh"]
    assert float(rows[1][1]) == pytest.approx(query(sql, [parsed_workdir / "pataslab"]).loss[0], rel=1e-12)
    data = json.loads(invoke_patas("query", sql, "--format", "json", cwd=parsed_workdir).stdout)
    assert [d["in_activation"] for d in data] == ["leaky_relu", "relu", "sigmoid", "tanh"]


def test_terminal_table_format(parsed_workdir):
    run = invoke_patas("query", "SELECT 'a|b' AS s, 1.5 AS x, NULL AS n", "--format", "table", cwd=parsed_workdir)
    assert run.stdout.splitlines() == ["s      x  n", "───  ───  ─", "a|b  1.5", "(1 row)"]


def test_python_api_returns_a_typed_frame(parsed_workdir):
    frame = query("SELECT * FROM grid", [parsed_workdir / "pataslab"])
    assert len(frame) == 120
    assert frame.out_test_acc.dtype.kind == "f" and frame.in_neurons.dtype.kind == "i"


def test_sql_error_is_one_line(parsed_workdir):
    run = run_patas("query", "selec * from grid", cwd=parsed_workdir)
    assert (run.code, run.stdout) == (1, "")
    assert run.stderr == 'Error: Parser Error: syntax error at or near "selec"\n'


def test_unknown_table_lists_the_tables(parsed_workdir):
    run = run_patas("query", "select * from gird", cwd=parsed_workdir)
    assert run.code == 1
    assert run.stderr == 'Error: Catalog Error: Table with name gird does not exist! Did you mean "grid"? (tables: grid)\n'


@pytest.mark.parametrize("command", [["query", "select count(*) from grid"], ["summary", "-e", "pataslab/grid", "--metric", "test_acc"]])
def test_a_damaged_table_file_is_one_line_naming_it(parsed_workdir, tmp_path, command):
    shutil.copytree(parsed_workdir / "pataslab", tmp_path / "pataslab")  # the parsed lab is shared: damage a copy
    (tmp_path / "pataslab/grid/grid.csv").write_bytes(b"\xff\xfe\x00")  # not UTF-8
    run = run_patas(*command, cwd=tmp_path)
    assert (run.code, run.stdout) == (1, "")
    assert run.stderr.startswith("Error: pataslab/grid/grid.csv: Invalid Input Error: CSV Error on Line: 1 ") and run.stderr.count("\n") == 1


def test_no_parsed_table_says_to_parse(tmp_path):
    run = run_patas("query", "select * from grid", cwd=tmp_path)
    assert run.code == 1
    assert run.stderr == (
        "Error: no parsed experiment in pataslab (run `patas parse -e pataslab/<experiment> -p NAME REGEX` first)\n"
    )


def test_missing_input_and_conflicting_formats(parsed_workdir):
    run = run_patas("query", "select 1", "-i", "nowhere", cwd=parsed_workdir)
    assert (run.code, run.stderr) == (1, "Error: -i nowhere: no such file or folder\n")
    run = run_patas("query", "select 1", "-m", "--format", "json", cwd=parsed_workdir)
    assert run.code == 2 and "-m asks for markdown but --format asks for json" in run.stderr


def test_any_csv_file_is_a_table(parsed_workdir, tmp_path):
    other = tmp_path / "results.csv"
    shutil.copy(parsed_workdir / "pataslab/grid/grid.csv", other)
    assert len(query("SELECT * FROM results", [other])) == 120
    assert len(query(f"SELECT * FROM '{other}'", [tmp_path / "none"] * 0)) == 120


def test_experiment_folder_and_parquet_tables(parsed_workdir, tmp_path):
    lab = tmp_path / "pataslab" / "sweep"
    lab.mkdir(parents=True)
    query(f"COPY (SELECT * FROM grid) TO '{lab / 'sweep.parquet'}'", [parsed_workdir / "pataslab"])
    assert [t.name for t in find_tables([tmp_path / "pataslab"])] == ["sweep"]
    assert [t.name for t in find_tables([lab])] == ["sweep"]
    assert query("SELECT COUNT(*) AS n FROM sweep", [lab]).n[0] == 120


def test_two_tables_with_one_name_is_an_error(parsed_workdir, tmp_path):
    copy = tmp_path / "grid" / "grid.csv"
    copy.parent.mkdir()
    shutil.copy(parsed_workdir / "pataslab/grid/grid.csv", copy)
    with pytest.raises(QueryError, match="two tables are named 'grid'"):
        find_tables([parsed_workdir / "pataslab", copy])


def test_empty_query_is_an_error(parsed_workdir):
    with pytest.raises(QueryError, match="the query is empty"):
        query("  ", [parsed_workdir / "pataslab"])


@pytest.mark.parametrize(
    "value, text",
    [(None, ""), (0.41133333, "0.411333"), (175.812, "175.812"), (1e-07, "1e-07"), (3.0, "3"), (12, "12")],
)
def test_display_rounds_floats_for_people(value, text):
    assert display(value) == text


def test_csv_through_click_and_to_a_text_only_stream(parsed_workdir, monkeypatch):
    from click.testing import CliRunner

    from patas.analysis.formats import Format
    from patas.analysis.query import print_query
    from patas.cli.app import cli

    monkeypatch.chdir(parsed_workdir)
    result = CliRunner().invoke(cli, ["query", "SELECT task_id, out_loss FROM grid ORDER BY task_id"])
    rows = list(csv.reader(io.StringIO(result.output)))
    assert result.exit_code == 0 and rows[0] == ["task_id", "out_loss"] and len(rows) == 121
    assert [int(r[0]) for r in rows[1:]] == list(range(120))  # ORDER BY survives DuckDB's writer
    text = io.StringIO()
    print_query("SELECT 'a,b' AS s, NULL AS n, TIMESTAMP '2023-05-17 19:14:55.472312' AS t", ["pataslab"], Format.CSV, text)
    assert text.getvalue() == 's,n,t\n"a,b",,2023-05-17 19:14:55.472312\n'


def test_errors_while_reading_rows_are_query_errors(parsed_workdir):
    with pytest.raises(QueryError, match=r'^Conversion Error: .*Could not convert string "relu" to .INTEGER.$'):
        query("SELECT in_activation::INTEGER FROM grid", [parsed_workdir / "pataslab"])


def test_a_column_no_task_filled_is_still_a_number_column(grid_lab, tmp_path):
    from patas.analysis.parse import parse_experiment

    patterns = {"acc": r"Test accuracy: +(@float@)", "f1": r"F1: (@float@)", "epochs": r"Epochs: (@int@)"}
    parse_experiment(grid_lab.path, patterns, allow_empty=True, output=grid_lab.path / "grid.csv")
    run = invoke_patas("query", "SELECT AVG(out_f1) AS f1, SUM(out_epochs) AS e, typeof(AVG(out_f1)) AS t FROM grid",
                       "--format", "json", cwd=tmp_path)  # fmt: skip
    assert run.code == 0, run.stderr
    assert json.loads(run.stdout) == [{"f1": None, "e": None, "t": "DOUBLE"}]
    types = query("SELECT typeof(out_epochs) AS e, typeof(task_id) AS t FROM grid LIMIT 1", tmp_path / "pataslab")
    assert types.iloc[0].tolist() == ["BIGINT", "BIGINT"]


def test_an_edited_csv_is_read_with_inferred_types(grid_lab, tmp_path):
    from patas.analysis.parse import parse_experiment

    table = grid_lab.path / "grid.csv"
    parse_experiment(grid_lab.path, {"f1": r"F1: (@float@)"}, allow_empty=True, output=table)
    lines = table.read_text().splitlines()
    header = lines[0].split(",")
    column = header.index("out_f1")
    edited = [",".join("n/a" if i == column else cell for i, cell in enumerate(line.split(","))) for line in lines[1:]]
    table.write_text("\n".join([lines[0], *edited]) + "\n")  # the schema says DOUBLE; the file is text now
    assert query("SELECT DISTINCT out_f1 FROM grid", tmp_path / "pataslab").out_f1.tolist() == ["n/a"]


def test_dataframes_are_queried_by_name_and_hide_a_table_file(parsed_workdir):
    import pandas as pd

    runs = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "y"]})
    result = query("SELECT b, SUM(a) AS s FROM runs GROUP BY b ORDER BY b", tables={"runs": runs})
    assert result.to_dict("list") == {"b": ["x", "y"], "s": [1, 5]}
    lab = parsed_workdir / "pataslab"
    both = query("SELECT (SELECT COUNT(*) FROM grid) AS g, (SELECT COUNT(*) FROM runs) AS r", lab, tables={"runs": runs})
    assert both.iloc[0].tolist() == [120, 3]
    assert query("SELECT COUNT(*) AS n FROM grid", lab, tables={"grid": runs}).n[0] == 3
    with pytest.raises(QueryError, match=r"Table with name nope does not exist.* \(tables: grid, runs\)$"):
        query("SELECT * FROM nope", lab, tables={"runs": runs})


def test_one_input_path_given_alone(parsed_workdir):
    assert len(query("SELECT * FROM grid", str(parsed_workdir / "pataslab"))) == 120
    assert len(query("SELECT * FROM grid", parsed_workdir / "pataslab" / "grid")) == 120
