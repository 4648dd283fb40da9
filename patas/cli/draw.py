"""`patas draw heatmap|categories|lines`: the command-line face of `patas.analysis.draw`.

Options keep the original patas's names. The table is a file (--input), an experiment folder's
parsed table (-e, as `patas summary` takes it) or the result of SQL over ./pataslab's parsed
tables (--query). Without --output the image is written to the current
folder as `<plot>-<columns>.png` (e.g. heatmap-in_neurons-in_activation-out_test_acc.png), so
plots of different columns never overwrite each other, and the path is printed on stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from patas.analysis.draw import AGGREGATIONS, DPI, ERR_STYLES, ERRORBARS, FIG_SIZE, HEATMAP_FIG_SIZE
from patas.cli.groups import SuggestingGroup

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]
DEFAULT_IMAGE_SUFFIX = ".png"


def _options(*decorators: Decorator) -> Decorator:
    """Several click options as one decorator, in the order they are listed."""

    def apply(function: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


def _column(role: str, required: bool = False) -> Decorator:
    return click.option(f"--{role}-column", metavar="NAME", required=required, help=f"Column for {role}.")


def _label(role: str, what: str) -> Decorator:
    return click.option(f"--{role}-label", metavar="TEXT", help=f"Label of the {what}.")


def _change(role: str, symbol: str, example: str) -> Decorator:
    return click.option(
        f"--{role}-change", metavar="EXPR",
        help=f"Python expression replacing each {role} value; {symbol}[i] is row i's value, e.g. '{example}'.",
    )  # fmt: skip


def _fig_size(default: tuple[float, float]) -> Decorator:
    return _options(
        click.option("--fig-size", type=float, nargs=2, default=default, show_default=True, metavar="W H",
                     help="Figure width and height in inches."),
        click.option("--dpi", type=click.IntRange(min=10), default=DPI, show_default=True,
                     help="Pixels per inch of a .png (a 10 x 5 figure at 100 dpi is 1000 x 500 pixels)."),
    )  # fmt: skip


common = _options(
    click.option("--input", "input_path", type=click.Path(path_type=Path), metavar="FILE",
                 help="Table to plot (.csv or .parquet), e.g. pataslab/grid/grid.csv."),
    click.option("-e", "--experiment", "experiment", type=click.Path(path_type=Path), metavar="FOLDER",
                 help="Plot the parsed table of this experiment folder instead (as `patas summary -e`), e.g. pataslab/grid."),
    click.option("--query", "sql", metavar="SQL",
                 help="Plot the result of this SQL over ./pataslab's tables instead of a file "
                      "(as `patas query`), e.g. 'SELECT * FROM grid WHERE in_neurons > 10'."),
    click.option("--output", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
                 help="Image to write: .png, .svg or .pdf.  [default: <plot>-<columns>.png here]"),
    click.option("--title", metavar="TEXT", help="Title above the plot."),
    _column("x", required=True), _label("x", "x axis"), _change("x", "X", "math.log2(X[i])"),
    _column("y", required=True), _label("y", "y axis"), _change("y", "Y", "Y[i][:3]"),
)  # fmt: skip
hue = _options(
    _column("hue"), _change("hue", "H", "H[i].upper()"),
    click.option("--legend-label", metavar="TEXT", help="Title of the legend."),
)  # fmt: skip
errorbar = click.option(
    "--errorbar", type=click.Choice(ERRORBARS),
    help="Error bars: standard deviation, standard error, percentile or confidence interval.  [default: none]",
)  # fmt: skip


@click.group(cls=SuggestingGroup, context_settings={"help_option_names": ["-h", "--help"]})
def draw() -> None:
    """Plot a parsed table: heatmap, categories, lines.

    \b
    Example:
      patas draw lines --input pataslab/grid/grid.csv \\
          --x-column in_neurons --y-column out_test_acc --hue-column in_activation \\
          --errorbar sd --output lines.png
      patas draw categories --x-column in_activation --y-column acc \\
          --query 'SELECT in_activation, out_test_acc * 100 AS acc FROM grid WHERE in_neurons > 10'
    """


@draw.command()
@common
@_options(_column("z", required=True), _label("z", "colour bar"), _change("z", "Z", "int(Z[i]*100)"))
@_fig_size(HEATMAP_FIG_SIZE)
@click.option("--annot", is_flag=True, help="Write each cell's value in it.")
@click.option("--aggfunc", type=click.Choice(list(AGGREGATIONS)), default="mean", show_default=True,
              help="How the z values of one (x, y) cell are combined.")  # fmt: skip
@click.option("--fmt", default=".2f", show_default=True, metavar="SPEC", help="Format of --annot values, e.g. .0f.")
@click.option("--z-range", type=float, nargs=2, metavar="MIN MAX", help="Colour scale limits.  [default: the data's]")
def heatmap(**options: Any) -> None:
    """Colour each (x, y) cell by z aggregated over its rows.

    \b
    Example:
      patas draw heatmap --input pataslab/grid/grid.csv --x-column in_neurons \\
          --y-column in_activation --z-column out_test_acc --fig-size 15 3 --annot
    """
    from patas.analysis.draw import heatmap as draw_heatmap

    names = ("x_column", "y_column", "z_column")
    _render(draw_heatmap, "heatmap", names, options)


@draw.command()
@common
@hue
@_fig_size(FIG_SIZE)
@errorbar
def categories(**options: Any) -> None:
    """Bars: the mean of y for each x category (and hue).

    \b
    Example:
      patas draw categories --input pataslab/grid/grid.csv --x-column in_activation \\
          --hue-column in_preprocessing --y-column out_test_acc --errorbar sd
    """
    from patas.analysis.draw import categories as draw_categories

    _render(draw_categories, "categories", ("x_column", "y_column", "hue_column"), options)


@draw.command()
@common
@hue
@_options(_column("style"), _change("style", "S", "S[i][:4]"))
@_fig_size(FIG_SIZE)
@errorbar
@click.option("--err-style", type=click.Choice(ERR_STYLES), default="band", show_default=True,
              help="Draw the error as a shaded band or as bars.")  # fmt: skip
def lines(**options: Any) -> None:
    """Lines: the mean of y along x, one line per hue (and style).

    \b
    Example:
      patas draw lines --input pataslab/grid/grid.csv --x-column in_neurons \\
          --y-column out_test_acc --hue-column in_activation --errorbar sd --err-style bars
    """
    from patas.analysis.draw import lines as draw_lines

    names = ("x_column", "y_column", "hue_column", "style_column")
    _render(draw_lines, "lines", names, options)


def _render(function: Callable[..., Any], plot: str, column_options: tuple[str, ...], options: dict[str, Any]) -> None:
    """Call the library with the options renamed to its arguments; say where the image went."""
    columns = [options[name] for name in column_options if options.get(name)]
    output = options.pop("output") or Path("-".join([plot, *columns]) + DEFAULT_IMAGE_SUFFIX)
    arguments = {_argument(name): value for name, value in options.items()}
    table = _table(arguments.pop("input_path"), arguments.pop("experiment"), arguments.pop("sql"))
    figure = function(table, output=output, **arguments)
    inches = figure.get_size_inches()
    size = "x".join(f"{side:g}" for side in inches) + " in"
    if Path(output).suffix.lower() not in (".svg", ".pdf"):
        size += ", " + "x".join(str(round(side * figure.dpi)) for side in inches) + " px"
    click.echo(f"Wrote {output} ({size})", err=True)


def _table(input_path: Path | None, experiment: Path | None, sql: str | None) -> Any:
    """The table to plot: the --input file's path, the -e experiment's table's, or the --query
    result (a DataFrame)."""
    given = [option for option, value in (("--input", input_path), ("-e", experiment), ("--query", sql)) if value is not None]
    if len(given) != 1:
        which = " and ".join(given) if given else "none of --input, -e and --query"
        raise click.UsageError(f"{which}: give one, the table file, the experiment folder or the SQL that makes the table")
    if input_path is not None:
        return input_path
    if experiment is not None:
        from patas.analysis.parse import unparsed_search_table
        from patas.analysis.query import QueryError, experiment_table

        try:
            return experiment_table(experiment, "-e").path
        except QueryError:
            unparsed = unparsed_search_table(experiment)  # a search's objective is read off its outputs now
            if unparsed is None:
                raise
            return unparsed
    from patas.analysis.query import query

    return query(sql)  # type: ignore[arg-type]


def _argument(option: str) -> str:
    # --x-column → x and --hue-column → hue, the library's argument names; the rest keep theirs.
    return option.removesuffix("_column")
