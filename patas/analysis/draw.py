"""`patas draw`: quick seaborn plots of a parsed table: heatmap, categories (bars) and lines.

Each function returns a matplotlib Figure and, given `output`, writes it in the format its
extension names (.png, .svg, .pdf, .jpg), whole or not at all. The values plotted (y of lines and
categories, z of a heatmap) must be numbers and not all empty: a text or empty column is refused
rather than drawn as nothing or as a flat line. Figures are built without pyplot,
so nothing needs a display and no global plotting state is touched; the seaborn look is applied
only while the figure is drawn and saved.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from patas.analysis.changes import Change, apply_changes
from patas.common.errors import PatasError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

HEATMAP_FIG_SIZE = (10.0, 7.0)  # inches, the original's default
FIG_SIZE = (10.0, 5.0)  # inches
DPI = 100  # pixels per inch: a 10 x 5 figure is 1000 x 500 pixels
MAX_SIDE_PX = 16_384  # Agg refuses images above 2^16 pixels a side; far beyond any screen already
IMAGE_FORMATS = (".png", ".svg", ".pdf", ".jpg", ".jpeg")
AGGREGATIONS = {"mean": "mean", "median": "median", "sum": "sum", "product": "prod", "std": "std",
                "min": "min", "max": "max", "count": "count"}  # fmt: skip
ERRORBARS = ("sd", "se", "pi", "ci")
ERR_STYLES = ("band", "bars")
SUGGESTED_COLUMNS = 5  # numeric columns named when a column is not numbers
MAX_TICKS = 30  # a lines plot gets a tick at every x value when there are at most this many


class DrawError(PatasError):
    """A plot cannot be drawn from the given table and options."""


@dataclass(frozen=True)
class Look:
    """How a plot is titled, labelled and sized."""

    title: str | None = None
    x_label: str | None = None
    y_label: str | None = None
    legend_label: str | None = None  # the colour bar's label on a heatmap
    fig_size: tuple[float, float] = FIG_SIZE
    dpi: int = DPI


def heatmap(
    data: str | Path | pd.DataFrame, x: str, y: str, z: str, *, output: str | Path | None = None,
    title: str | None = None, x_label: str | None = None, y_label: str | None = None,
    z_label: str | None = None, x_change: str | None = None, y_change: str | None = None,
    z_change: str | None = None, fig_size: tuple[float, float] = HEATMAP_FIG_SIZE, dpi: int = DPI,
    annot: bool = False, aggfunc: str = "mean", fmt: str = ".2f", z_range: tuple[float, float] | None = None,
) -> Figure:  # fmt: skip
    """z aggregated (`aggfunc`) over every (x, y) pair, as coloured cells.

    Example: heatmap("pataslab/grid/grid.csv", "in_neurons", "in_activation", "out_test_acc")
    """
    look = _look(title, x_label, y_label, z_label, fig_size, dpi)
    _check_choice("--aggfunc", aggfunc, tuple(AGGREGATIONS))
    _check_fmt(fmt)
    _check_distinct({"x": x, "y": y, "z": z}, "a heatmap")
    frame = prepare(data, {"x": x, "y": y, "z": z}, {"x": x_change, "y": y_change, "z": z_change})
    check_numbers(frame, "z", z, "heatmap")
    grid = _pivot(frame, x, y, z, aggfunc)
    low, high = z_range if z_range is not None else (None, None)
    if z_range is not None and not low < high:
        raise DrawError(f"--z-range {low:g} {high:g}: MIN must be below MAX (e.g. --z-range 0 1)")
    with _theme(), _drawing(look, output) as (figure, axes):
        import seaborn as sns

        bar = {"label": z_label} if z_label else {}
        sns.heatmap(grid, annot=annot, fmt=fmt, linewidths=0.5, vmin=low, vmax=high, ax=axes, cbar_kws=bar)
        axes.tick_params(axis="y", rotation=0)
    return figure


def categories(
    data: str | Path | pd.DataFrame, x: str, y: str, *, hue: str | None = None,
    output: str | Path | None = None, title: str | None = None, x_label: str | None = None,
    y_label: str | None = None, legend_label: str | None = None, x_change: str | None = None,
    y_change: str | None = None, hue_change: str | None = None,
    fig_size: tuple[float, float] = FIG_SIZE, dpi: int = DPI, errorbar: str | None = None,
) -> Figure:  # fmt: skip
    """The mean of y for each category of x (and of hue), as bars; `errorbar` adds error bars.

    Example: categories("pataslab/grid/grid.csv", "in_activation", "out_test_acc", errorbar="sd")
    """
    look = _look(title, x_label, y_label, legend_label, fig_size, dpi)
    _check_choice("--errorbar", errorbar, ERRORBARS)
    _check_legend(look, hue)
    frame = prepare(data, {"x": x, "y": y, "hue": hue}, {"x": x_change, "y": y_change, "hue": hue_change})
    check_numbers(frame, "y", y, "categories")
    _check_pairs(frame, x, y)
    with _theme(), _drawing(look, output) as (figure, axes):
        import seaborn as sns

        sns.barplot(data=frame, x=x, y=y, hue=hue, errorbar=errorbar, ax=axes, capsize=0.1 if errorbar else 0)
        _place_legend(axes, look)
    return figure


def lines(
    data: str | Path | pd.DataFrame, x: str, y: str, *, hue: str | None = None,
    style: str | None = None, output: str | Path | None = None, title: str | None = None,
    x_label: str | None = None, y_label: str | None = None, legend_label: str | None = None,
    x_change: str | None = None, y_change: str | None = None, hue_change: str | None = None,
    style_change: str | None = None, fig_size: tuple[float, float] = FIG_SIZE, dpi: int = DPI,
    err_style: str = "band", errorbar: str | None = None,
) -> Figure:  # fmt: skip
    """The mean of y along x, one line per hue (and style); `errorbar` adds a band or bars.

    Example: lines("pataslab/grid/grid.csv", "in_neurons", "out_test_acc", hue="in_activation")
    """
    look = _look(title, x_label, y_label, legend_label, fig_size, dpi)
    _check_choice("--errorbar", errorbar, ERRORBARS)
    _check_choice("--err-style", err_style, ERR_STYLES)
    _check_legend(look, hue or style)
    columns = {"x": x, "y": y, "hue": hue, "style": style}
    frame = prepare(data, columns, {"x": x_change, "y": y_change, "hue": hue_change, "style": style_change})
    check_numbers(frame, "y", y, "lines")
    _check_pairs(frame, x, y)
    with _theme(), _drawing(look, output) as (figure, axes):
        import seaborn as sns

        sns.lineplot(data=frame, x=x, y=y, hue=hue, style=style, err_style=err_style, errorbar=errorbar,
                     marker="o", ax=axes)  # fmt: skip
        ticks = frame[x].dropna().unique()
        if len(ticks) <= MAX_TICKS and frame[x].dtype.kind in "iuf":
            axes.set_xticks(sorted(ticks))
        _place_legend(axes, look)
    return figure


def load_table(data: str | Path | pd.DataFrame) -> pd.DataFrame:
    """The table to plot: a DataFrame as given, or read from a .csv or .parquet file."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    path = Path(data)
    if path.is_dir():
        raise DrawError(_folder_hint(data))
    if not path.is_file():
        hint = " (run `patas parse` first)" if path.suffix.lower() == ".csv" else ""
        raise DrawError(f"--input {data}: no such file{hint}")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except (ValueError, OSError, ImportError) as error:
        raise DrawError(f"--input {data}: cannot read the table ({str(error).splitlines()[0]})") from None


def _folder_hint(folder: str | Path) -> str:
    """What to give instead of a folder: the parsed tables in it (or under it, for a pataslab)."""
    from patas.analysis.query import find_tables

    tables = [str(t.path) for t in find_tables([folder])]
    if len(tables) == 1:
        return f"--input {folder}: a folder, not a table; use --input {tables[0]}"
    if tables:
        return f"--input {folder}: a folder, not a table; use one of {', '.join(tables)}"
    return f"--input {folder}: a folder without a parsed table (give a .csv or .parquet file; `patas parse` writes one)"


def check_numbers(frame: pd.DataFrame, role: str, column: str, plot: str) -> None:
    """Refuse a plotted value column that is empty or not numbers, naming it and what it holds."""
    import pandas as pd

    values = frame[column]
    if not values.notna().any():
        raise DrawError(f"--{role}-column {column}: empty (no row has a value), so there is nothing to plot")
    if pd.api.types.is_numeric_dtype(values):
        return
    numeric = [str(c) for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and frame[c].notna().any()]
    # The values a sweep is about first: outputs, then inputs, then the metadata.
    numeric.sort(key=lambda name: (not name.startswith("out_"), not name.startswith("in_")))
    more = ", ..." if len(numeric) > SUGGESTED_COLUMNS else ""
    shown = f" (numeric columns: {', '.join(numeric[:SUGGESTED_COLUMNS])}{more})" if numeric else ""
    raise DrawError(f"--{role}-column {column}: {_kind(values)}, not numbers; a {plot} plot needs numbers for {role}{shown}")


def _kind(values: pd.Series) -> str:
    """What a non-numeric column holds, in words."""
    names = {"M": "timestamps", "m": "durations"}
    return names.get(values.dtype.kind, "text")


def prepare(data: str | Path | pd.DataFrame, columns: dict[str, str | None], changes: dict[str, str | None]) -> pd.DataFrame:
    """The table with its plotted columns checked and their --*-change expressions applied."""
    frame = load_table(data)
    available = [str(c) for c in frame.columns]
    for role, column in columns.items():
        if column is not None and column not in frame.columns:
            where = f" in {data}" if isinstance(data, (str, Path)) else ""
            raise DrawError(f"--{role}-column {column}: no such column{where} (columns: {', '.join(available)})")
    wanted = [Change(role, text) for role, text in changes.items() if text]
    return apply_changes(frame, columns, wanted) if wanted else frame


def save(figure: Figure, output: str | Path, dpi: int = DPI) -> Path:
    """Write the figure in the format of the file's extension, replacing the file only when done."""
    path = Path(output)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_FORMATS:
        raise DrawError(f"--output {output}: unknown image format '{suffix}' (use .png, .svg or .pdf)")
    import matplotlib

    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        # Text stays text in SVG and PDF files: smaller, selectable, searchable.
        with matplotlib.rc_context({"svg.fonttype": "none", "pdf.fonttype": 42}):
            figure.savefig(temporary, format=suffix.lstrip(".").replace("jpg", "jpeg"), dpi=dpi)
        os.replace(temporary, path)
    except OSError as error:
        raise DrawError(f"--output {output}: cannot write the image ({error.strerror or error})") from None
    finally:
        temporary.unlink(missing_ok=True)
    return path


def _look(title: str | None, x_label: str | None, y_label: str | None, legend_label: str | None,
          fig_size: tuple[float, float], dpi: int) -> Look:  # fmt: skip
    width, height = fig_size
    if not (width > 0 and height > 0) or max(width, height) * dpi > MAX_SIDE_PX:
        raise DrawError(
            f"--fig-size {width:g} {height:g}: width and height must be positive inches,"
            f" at most {MAX_SIDE_PX // dpi} at {dpi} dpi (e.g. --fig-size 10 4)"
        )
    return Look(title, x_label, y_label, legend_label, (float(width), float(height)), dpi)


def _check_choice(option: str, value: str | None, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        raise DrawError(f"{option} {value}: use one of {', '.join(choices)}")


def _check_fmt(fmt: str) -> None:
    try:
        format(0.5, fmt)
    except ValueError:
        raise DrawError(f"--fmt {fmt}: not a number format (e.g. .2f, .0f, .1%)") from None


def _check_pairs(frame: pd.DataFrame, x: str, y: str) -> None:
    """Refuse a plot with no point: no row has both an x and a y value."""
    if not frame[[x, y]].notna().all(axis=1).any():
        raise DrawError(f"--x-column {x}: no row has both an x and a y value, so there is nothing to plot")


def _check_distinct(columns: dict[str, str], plot: str) -> None:
    """Refuse one column in two roles where the plot needs them apart (a heatmap's pivot)."""
    roles: dict[str, str] = {}
    for role, column in columns.items():
        if column in roles:
            *others, last = columns
            raise DrawError(
                f"--{role}-column {column}: also the --{roles[column]}-column;"
                f" {plot} needs a different column for each of {', '.join(others)} and {last}"
            )
        roles[column] = role


def _check_legend(look: Look, grouped_by: str | None) -> None:
    if look.legend_label and grouped_by is None:
        raise DrawError(f"--legend-label {look.legend_label}: there is no legend without --hue-column")


def _pivot(frame: pd.DataFrame, x: str, y: str, z: str, aggfunc: str) -> pd.DataFrame:
    grid = frame.pivot_table(values=z, index=y, columns=x, aggfunc=AGGREGATIONS[aggfunc], observed=True)
    if grid.empty:
        raise DrawError(f"--z-column {z}: no row has an x, a y and a z value, so there is nothing to plot")
    return grid.astype(float)


@contextmanager
def _theme() -> Iterator[None]:
    import seaborn as sns

    with sns.axes_style("darkgrid"), sns.plotting_context("notebook"):
        yield


@contextmanager
def _drawing(look: Look, output: str | Path | None) -> Iterator[tuple[Figure, Axes]]:
    """A fresh figure and axes; once drawn: labels, layout, and the file if asked for."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=look.fig_size, dpi=look.dpi)
    axes = figure.subplots()
    try:
        yield figure, axes
    except (ValueError, TypeError) as error:
        # seaborn's own refusals (e.g. data it cannot aggregate) are the user's to fix, on one line.
        raise DrawError(f"cannot draw this plot: {str(error).splitlines()[0]}") from error
    if look.title:
        axes.set_title(look.title, fontsize="large")
    if look.x_label:
        axes.set_xlabel(look.x_label)
    if look.y_label:
        axes.set_ylabel(look.y_label)
    figure.tight_layout()
    if output is not None:
        save(figure, output, look.dpi)


def _place_legend(axes: Axes, look: Look) -> None:
    """The legend outside the plot, on the right, so it never hides bars or lines."""
    import seaborn as sns

    if axes.get_legend() is None:
        return
    title = {"title": look.legend_label} if look.legend_label else {}
    sns.move_legend(axes, "upper left", bbox_to_anchor=(1.01, 1), frameon=False, **title)

