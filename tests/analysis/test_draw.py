import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image, ImageStat

from patas.analysis.changes import ChangeError
from patas.analysis.draw import DrawError, categories, heatmap, lines
from patas.analysis.query import query
from patas.cli.app import cli

from .conftest import run_patas
from .readme import DRAWS, argv


@pytest.fixture
def workdir(parsed_workdir, monkeypatch) -> Path:
    monkeypatch.chdir(parsed_workdir)
    return parsed_workdir


@pytest.fixture(scope="module")
def table(parsed_workdir) -> Path:
    return parsed_workdir / "pataslab/grid/grid.csv"


def check_image(path: Path, size: tuple[int, int]) -> None:
    """The file decodes, has the size asked for and is not a blank canvas."""
    with Image.open(path) as image:
        image.load()
        assert image.size == size
        assert ImageStat.Stat(image.convert("L")).stddev[0] > 5  # a blank canvas is 0


@pytest.mark.parametrize("command, image, size", DRAWS, ids=[d[1] for d in DRAWS])
def test_readme_draw_commands_verbatim(workdir, command, image, size):
    result = CliRunner().invoke(cli, argv(command))
    assert result.exit_code == 0, result.output
    check_image(workdir / image, size)
    assert f"Wrote {image} (" in result.output
    (workdir / image).unlink()


def test_heatmap_cells_are_the_mean_of_the_changed_z(table):
    import pandas as pd

    figure = heatmap(table, "in_neurons", "in_activation", "out_test_acc", y_change="Y[i][:3]",
                     z_change="int(Z[i]*100)", annot=True, fmt=".0f", z_range=(0, 100))  # fmt: skip
    frame = pd.read_csv(table)
    frame["z"] = (frame.out_test_acc * 100).astype(int)
    expected = frame.groupby(["in_activation", "in_neurons"]).z.mean()
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert texts[0] == f"{expected[('leaky_relu', 1)]:.0f}" and len(texts) == 20
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == ["lea", "rel", "sig", "tan"]
    assert figure.axes[1].get_ylim() == (0.0, 100.0)  # the colour bar follows --z-range


def test_svg_keeps_title_labels_and_legend_as_text(table, tmp_path):
    target = tmp_path / "lines.svg"
    lines(table, "in_neurons", "out_test_acc", hue="in_activation", output=target, title="Average <test> accuracy",
          x_label="Neurons", y_label="Accuracy", legend_label="Act. Function")  # fmt: skip
    svg = target.read_text()
    for text in ("Average &lt;test&gt; accuracy", "Neurons", "Accuracy", "Act. Function", "leaky_relu"):
        assert f">{text}</text>" in svg or f">{text}\n" in svg or f">{text}<" in svg, text


def test_pdf_output_and_dpi(table, tmp_path):
    categories(table, "in_activation", "out_test_acc", output=tmp_path / "bars.pdf")
    assert (tmp_path / "bars.pdf").read_bytes().startswith(b"%PDF")
    categories(table, "in_activation", "out_test_acc", output=tmp_path / "bars.png", fig_size=(4, 3), dpi=50)
    check_image(tmp_path / "bars.png", (200, 150))


def test_error_bars_only_when_asked(table):
    plain = categories(table, "in_activation", "out_test_acc")
    with_bars = categories(table, "in_activation", "out_test_acc", errorbar="sd")
    assert len(plain.axes[0].lines) == 0 and len(with_bars.axes[0].lines) >= 4


def test_log_change_on_x(table):
    figure = lines(table, "in_neurons", "out_test_acc", x_change="math.log2(X[i])")
    xs = figure.axes[0].lines[0].get_xdata()
    assert xs[0] == 0.0 and xs[-1] == pytest.approx(4.087, abs=1e-3)  # log2(1), log2(17)


def test_missing_column_lists_the_columns(table):
    with pytest.raises(DrawError) as error:
        heatmap(table, "in_neuron", "in_activation", "out_test_acc")
    message = str(error.value)
    assert message.startswith(f"--x-column in_neuron: no such column in {table} (columns: in_activation, in_neurons,")
    assert message.endswith("output_dir, work_dir)")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"z_change": "int(Z[i]*100"}, "--z-change 'int(Z[i]*100': not a Python expression ("),
        ({"z_change": "Z[i] / 0"}, "--z-change 'Z[i] / 0': ZeroDivisionError: float division by zero (row 0)"),
        ({"y_change": "Y[i].nope()"}, "--y-change 'Y[i].nope()': AttributeError: 'str' object has no attribute 'nope' (row 0)"),
    ],
)
def test_broken_change_expressions_name_the_option(table, change, message):
    with pytest.raises(ChangeError) as error:
        heatmap(table, "in_neurons", "in_activation", "out_test_acc", **change)
    assert str(error.value).startswith(message)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"fig_size": (0, 3)}, "--fig-size 0 3: width and height must be positive inches, at most 163 at 100 dpi"),
        ({"fig_size": (500, 3)}, "--fig-size 500 3: width and height must be positive inches"),
        ({"output": "plot.gif"}, "--output plot.gif: unknown image format '.gif' (use .png, .svg or .pdf)"),
        ({"fmt": ".2q"}, "--fmt .2q: not a number format (e.g. .2f, .0f, .1%)"),
        ({"aggfunc": "avg"}, "--aggfunc avg: use one of mean, median, sum, product, std, min, max, count"),
        ({"z_range": (1, 0)}, "--z-range 1 0: MIN must be below MAX (e.g. --z-range 0 1)"),
    ],
)
def test_bad_heatmap_options(table, options, message):
    with pytest.raises(DrawError) as error:
        heatmap(table, "in_neurons", "in_activation", "out_test_acc", **options)
    assert str(error.value).startswith(message)


@pytest.mark.parametrize(
    "x, y, z, message",
    [
        ("in_neurons", "in_neurons", "out_test_acc", "--y-column in_neurons: also the --x-column;"),
        ("in_neurons", "in_activation", "in_neurons", "--z-column in_neurons: also the --x-column;"),
        ("in_neurons", "out_test_acc", "out_test_acc", "--z-column out_test_acc: also the --y-column;"),
    ],
)
def test_a_heatmap_needs_three_different_columns(table, x, y, z, message):
    # A pivot of a column against itself was a pandas traceback.
    with pytest.raises(DrawError) as error:
        heatmap(table, x, y, z)
    assert str(error.value) == f"{message} a heatmap needs a different column for each of x, y and z"


def test_non_numeric_z_and_missing_input(table, tmp_path):
    with pytest.raises(DrawError, match="^--z-column in_preprocessing: text, not numbers; a heatmap plot needs numbers for z"):
        heatmap(table, "in_neurons", "in_activation", "in_preprocessing")
    with pytest.raises(DrawError, match=r"^--input .*none.csv: no such file \(run `patas parse` first\)$"):
        lines(tmp_path / "none.csv", "a", "b")


def test_legend_label_needs_a_hue(table):
    with pytest.raises(DrawError, match="--legend-label Act: there is no legend without --hue-column"):
        lines(table, "in_neurons", "out_test_acc", legend_label="Act")


def test_cli_errors_are_one_line_and_write_nothing(parsed_workdir):
    before = set(os.listdir(parsed_workdir))
    base = ["draw", "heatmap", "--input", "pataslab/grid/grid.csv", "--x-column", "in_neurons",
            "--y-column", "in_activation", "--z-column", "out_test_acc"]  # fmt: skip
    run = run_patas(*base, "--z-change", "int(Z[i]*100", cwd=parsed_workdir)
    assert run.code == 1 and run.stderr.startswith("Error: --z-change 'int(Z[i]*100': not a Python expression")
    assert run.stderr.count("\n") == 1
    run = run_patas(*base, "--fig-size", "-1", "3", cwd=parsed_workdir)
    assert run.code == 1 and run.stderr.startswith("Error: --fig-size -1 3: width and height must be positive")
    run = run_patas(*base[:-1], "out_test_accuracy", cwd=parsed_workdir)
    assert run.code == 1 and run.stderr.startswith(
        "Error: --z-column out_test_accuracy: no such column in pataslab/grid/grid.csv (columns: in_activation,"
    )
    assert run.stderr.count("\n") == 1
    run = run_patas(*base, "--errorbar", "sd", cwd=parsed_workdir)
    assert run.code == 2 and "No such option '--errorbar'" in run.stderr
    assert set(os.listdir(parsed_workdir)) == before


def test_draw_help_has_examples():
    for command in (["draw"], ["draw", "heatmap"], ["draw", "categories"], ["draw", "lines"]):
        result = CliRunner().invoke(cli, [*command, "--help"])
        assert result.exit_code == 0 and "Example:" in result.output


def test_seaborn_refusals_become_one_line_errors(table, monkeypatch):
    import seaborn as sns

    def refuse(*args, **kwargs):
        raise ValueError("Could not interpret value `x` for `hue`\nmore detail")

    monkeypatch.setattr(sns, "barplot", refuse)
    with pytest.raises(DrawError, match=r"^cannot draw this plot: Could not interpret value `x` for `hue`$"):
        categories(table, "in_activation", "out_test_acc")


@pytest.mark.parametrize("plot", [lines, categories])
def test_a_text_or_empty_y_is_refused_not_drawn_flat(table, plot):
    import pandas as pd

    name = plot.__name__
    with pytest.raises(DrawError) as error:
        plot(table, "in_neurons", "in_activation")
    assert str(error.value) == (
        f"--y-column in_activation: text, not numbers; a {name} plot needs numbers for y"
        " (numeric columns: out_train_time, out_test_time, out_train_acc, out_test_acc, out_loss, ...)"
    )
    with pytest.raises(DrawError, match=r"^--y-column started_at: timestamps, not numbers"):
        plot(pd.read_csv(table, parse_dates=["started_at"]), "in_neurons", "started_at")
    empty = pd.read_csv(table).assign(out_f1=float("nan"))  # a pattern no task matched (parse --allow-empty)
    with pytest.raises(DrawError, match=r"^--y-column out_f1: empty \(no row has a value\), so there is nothing to plot$"):
        plot(empty, "in_neurons", "out_f1")


@pytest.mark.parametrize("plot", [lines, categories])
def test_a_plot_without_a_point_is_refused_not_drawn_blank(table, plot):
    import pandas as pd

    frame = pd.read_csv(table)
    # Every row has an x or a y, none has both: the plot would be empty axes.
    frame.loc[frame.index % 2 == 0, "in_neurons"] = None
    frame.loc[frame.index % 2 == 1, "out_test_acc"] = None
    with pytest.raises(DrawError) as error:
        plot(frame, "in_neurons", "out_test_acc")
    assert str(error.value) == "--x-column in_neurons: no row has both an x and a y value, so there is nothing to plot"


def test_an_empty_z_is_refused(table):
    import pandas as pd

    empty = pd.read_csv(table).assign(out_f1=float("nan"))
    with pytest.raises(DrawError, match=r"^--z-column out_f1: empty"):
        heatmap(empty, "in_neurons", "in_activation", "out_f1")


def test_a_folder_as_input_names_the_table_to_give(parsed_workdir, tmp_path):
    for folder in ("pataslab/grid", "pataslab"):
        run = run_patas("draw", "lines", "--input", folder, "--x-column", "in_neurons", "--y-column", "out_test_acc", cwd=parsed_workdir)
        assert (run.code, run.stderr) == (1, f"Error: --input {folder}: a folder, not a table; use --input pataslab/grid/grid.csv\n")
    with pytest.raises(DrawError, match=r"a folder without a parsed table \(give a .csv or .parquet file"):
        lines(tmp_path, "a", "b")


def test_query_plots_the_result_of_sql(workdir):
    sql = "SELECT in_neurons, out_test_acc * 100 AS acc FROM grid WHERE in_neurons > 10"
    result = CliRunner().invoke(cli, ["draw", "lines", "--query", sql, "--x-column", "in_neurons", "--y-column", "acc",
                                      "--output", "q.svg"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Wrote q.svg (" in result.output
    svg = (workdir / "q.svg").read_text()
    assert ">13<" in svg or ">13\n" in svg
    (workdir / "q.svg").unlink()
    figure = lines(query(sql, workdir / "pataslab"), "in_neurons", "acc")
    assert sorted(figure.axes[0].lines[0].get_xdata()) == [13, 17]


def test_an_experiment_folder_plots_its_parsed_table(parsed_workdir):
    base = ["draw", "heatmap", "--x-column", "in_neurons", "--y-column", "in_activation", "--z-column", "out_test_acc"]
    by_folder = run_patas(*base, "-e", "pataslab/grid", "--output", "e.png", cwd=parsed_workdir)
    by_file = run_patas(*base, "--input", "pataslab/grid/grid.csv", "--output", "input.png", cwd=parsed_workdir)
    assert (by_folder.code, by_file.code) == (0, 0), by_folder.stderr + by_file.stderr
    assert (parsed_workdir / "e.png").read_bytes() == (parsed_workdir / "input.png").read_bytes()  # the same pixels
    for name in ("e.png", "input.png"):
        (parsed_workdir / name).unlink()
    missing = run_patas(*base, "-e", "pataslab/gird", cwd=parsed_workdir)
    assert (missing.code, missing.stderr) == (1, "Error: -e pataslab/gird: no such experiment folder or table file\n")


def test_query_input_and_experiment_are_one_of_them(parsed_workdir):
    base = ["draw", "lines", "--x-column", "in_neurons", "--y-column", "out_test_acc"]
    run = run_patas(*base, cwd=parsed_workdir)
    assert run.code == 2 and "Error: none of --input, -e and --query: give one" in run.stderr
    run = run_patas(*base, "--input", "pataslab/grid/grid.csv", "--query", "SELECT * FROM grid", cwd=parsed_workdir)
    assert run.code == 2 and "Error: --input and --query: give one" in run.stderr
    run = run_patas(*base, "-e", "pataslab/grid", "--input", "pataslab/grid/grid.csv", cwd=parsed_workdir)
    assert run.code == 2 and "Error: --input and -e: give one" in run.stderr
    run = run_patas(*base, "--query", "SELECT * FROM gird", cwd=parsed_workdir)
    assert run.code == 1 and run.stderr.startswith("Error: Catalog Error: Table with name gird does not exist!")
