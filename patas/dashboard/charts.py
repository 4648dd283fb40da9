"""The experiment page's charts, as Vega-Lite specifications with their data inline.

The numbers come from `patas.analysis.summary` (mean and confidence interval per configuration);
this module only says how to draw them. The browser draws them with the vendored Vega-Lite, as
SVG, with tooltips.

- lines: the metric's mean against one parameter, a band for its confidence interval, one line
  per value of a second parameter if given;
- heatmap: the mean against two parameters, the best configuration outlined;
- best so far (search experiments): each trial's objective in trial order, and the best value
  found up to each trial;
- parallel coordinates (search experiments): one line per trial across the parameters and the
  objective, each axis scaled to its own range, coloured by the objective.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from patas.dashboard.results import ChartError, Results, records, summary_rows

if TYPE_CHECKING:
    import pandas as pd

SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"
TRIAL_COLUMN = "trial"  # a search's parsed table numbers its trials in the study's order
WIDTH_PX = 560
HEIGHT_PX = 320
BAND_OPACITY = 0.25


class ChartKind(enum.Enum):
    LINES = "lines"
    HEATMAP = "heatmap"
    BEST_SO_FAR = "best_so_far"
    PARALLEL = "parallel"


def chart(results: Results, kind: ChartKind, metric: str, x: str | None, y: str | None, maximize: bool | None) -> dict[str, Any]:
    """The Vega-Lite specification of the chart asked for."""
    if metric not in results.metrics:
        raise ChartError(f"no numeric column {metric!r} in the table (columns: {', '.join(results.metrics) or 'none'})")
    if maximize is None:
        maximize = results.objective.maximize if results.objective is not None else True
    if kind is ChartKind.BEST_SO_FAR:
        return best_so_far(results.frame, metric, maximize)
    if kind is ChartKind.PARALLEL:
        return parallel_coordinates(results.frame, results.parameters, metric)
    x = _parameter(results, x, "x")
    if kind is ChartKind.LINES:
        by = [x] if not y or y == x else [x, _parameter(results, y, "colour")]
        return lines(summary_rows(results, metric, maximize, by), results.frame, metric, x, by[1] if len(by) > 1 else None)
    y = _parameter(results, y, "y")
    if y == x:
        raise ChartError("a heatmap needs two different parameters")
    return heatmap(summary_rows(results, metric, maximize, [x, y]), results.frame, metric, x, y)


def _parameter(results: Results, name: str | None, axis: str) -> str:
    if name in results.parameters:
        return name  # type: ignore[return-value]
    raise ChartError(f"the {axis} axis needs one of the parameters: {', '.join(results.parameters) or 'none'}")


def _x_type(frame: pd.DataFrame, column: str) -> str:
    from pandas.api.types import is_numeric_dtype

    return "quantitative" if column in frame.columns and is_numeric_dtype(frame[column]) else "ordinal"


def _base(title: str, data: list[dict[str, Any]]) -> dict[str, Any]:
    return {"$schema": SCHEMA, "title": title, "width": WIDTH_PX, "height": HEIGHT_PX, "data": {"values": data}}


def lines(rows: list[dict[str, Any]], frame: pd.DataFrame, metric: str, x: str, colour: str | None) -> dict[str, Any]:
    """Mean ± confidence interval of `metric` against `x`, one line per value of `colour`."""
    encoding: dict[str, Any] = {"x": {"field": x, "type": _x_type(frame, x)}}
    if colour is not None:
        encoding["color"] = {"field": colour, "type": "nominal"}
    tooltip = [{"field": c} for c in (x, colour) if c] + [
        {"field": "mean", "format": ".4g"}, {"field": "ci_low", "format": ".4g"}, {"field": "ci_high", "format": ".4g"},
        {"field": "n"}, {"field": "verdict"},
    ]  # fmt: skip
    band = {"mark": {"type": "area", "opacity": BAND_OPACITY}, "encoding": {"y": {"field": "ci_low", "type": "quantitative", "title": metric, "scale": {"zero": False}}, "y2": {"field": "ci_high"}}}
    line = {"mark": {"type": "line", "point": True}, "encoding": {"y": {"field": "mean", "type": "quantitative", "title": metric}, "tooltip": tooltip}}
    spec = _base(f"{metric}: mean and 95% interval against {x}", sorted(rows, key=lambda r: (str(r.get(colour)), _sort_key(r[x]))))
    spec.update(encoding=encoding, layer=[band, line])
    return spec


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, (int, float)) else (1, str(value))


def heatmap(rows: list[dict[str, Any]], frame: pd.DataFrame, metric: str, x: str, y: str) -> dict[str, Any]:
    """Mean of `metric` for each pair of values of `x` and `y`; the best pair outlined."""
    tooltip = [{"field": x}, {"field": y}, {"field": "mean", "format": ".4g"}, {"field": "n"}, {"field": "verdict"}]
    encoding = {"x": {"field": x, "type": "ordinal", "sort": None}, "y": {"field": y, "type": "ordinal", "sort": None}}
    cells = {"mark": "rect", "encoding": {"color": {"field": "mean", "type": "quantitative", "title": metric}, "tooltip": tooltip}}
    best = {
        "transform": [{"filter": "datum.verdict == 'best'"}],
        "mark": {"type": "rect", "fill": None, "stroke": "black", "strokeWidth": 3},
    }
    text = {"mark": {"type": "text", "fontSize": 10}, "encoding": {"text": {"field": "mean", "format": ".3g"}}}
    ordered = sorted(rows, key=lambda r: (_sort_key(r[y]), _sort_key(r[x])))
    spec = _base(f"{metric}: mean per {x} and {y} (best outlined)", ordered)
    spec.update(encoding=encoding, layer=[cells, text, best])
    return spec


def best_so_far(frame: pd.DataFrame, metric: str, maximize: bool) -> dict[str, Any]:
    """Each trial's `metric` in trial order (the study's `trial` column, else task ids), and the
    best found up to each trial; trials without a value (pruned, failed) are left out."""
    order = TRIAL_COLUMN if TRIAL_COLUMN in frame.columns else "task_id"
    trials = frame[["task_id", metric] + ([order] if order != "task_id" else [])].dropna(subset=[metric])
    trials = trials.sort_values([order, "task_id"]).reset_index(drop=True)
    best = trials[metric].cummax() if maximize else trials[metric].cummin()
    data = [{"trial": i + 1, "task_id": t, metric: v, "best": b} for i, (t, v, b) in enumerate(zip(trials["task_id"], trials[metric], best))]
    points = {
        "mark": {"type": "point", "filled": True, "opacity": 0.6},
        "encoding": {"y": {"field": metric, "type": "quantitative", "scale": {"zero": False}}, "tooltip": [{"field": "trial"}, {"field": "task_id"}, {"field": metric}]},
    }
    line = {"mark": {"type": "line", "interpolate": "step-after", "color": "firebrick"}, "encoding": {"y": {"field": "best", "type": "quantitative", "title": metric}}}
    spec = _base(f"{metric}: each trial, and the best so far ({'highest' if maximize else 'lowest'})", records_of(data))
    spec.update(encoding={"x": {"field": "trial", "type": "quantitative"}}, layer=[points, line])
    return spec


def records_of(data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import pandas as pd

    return records(pd.DataFrame(data)) if data else []


def parallel_coordinates(frame: pd.DataFrame, parameters: list[str], metric: str) -> dict[str, Any]:
    """One line per trial through an axis per parameter and one for the metric, each scaled to
    [0, 1]: a number from its lowest to its highest value, a category by its place among the
    sorted categories."""
    trials = frame[["task_id", *parameters, metric]].dropna(subset=[metric])
    axes = [*parameters, metric]
    positions = {axis: _positions(trials[axis]) for axis in axes}
    data = []
    for index, row in enumerate(trials.itertuples(index=False)):
        values = dict(zip(["task_id", *axes], row))
        for axis in axes:
            data.append({"trial": index, "task_id": values["task_id"], "axis": axis, "position": positions[axis][index],
                         "value": str(values[axis]), metric: values[metric]})  # fmt: skip
    spec = _base(f"{metric} and the parameters, one line per trial", records_of(data))
    spec["width"] = max(WIDTH_PX, 120 * len(axes))
    spec.update(
        mark={"type": "line", "opacity": 0.6, "point": True},
        encoding={
            "x": {"field": "axis", "type": "nominal", "sort": axes, "title": None, "axis": {"labelAngle": 0}},
            "y": {"field": "position", "type": "quantitative", "title": "each axis from its lowest to its highest value"},
            "detail": {"field": "trial", "type": "nominal"},
            "color": {"field": metric, "type": "quantitative"},
            "tooltip": [{"field": "task_id"}, {"field": "axis"}, {"field": "value"}, {"field": metric}],
        },
    )  # fmt: skip
    return spec


def _positions(column: pd.Series) -> list[float]:
    """Each value's place on its axis, from 0 to 1."""
    from pandas.api.types import is_numeric_dtype

    if is_numeric_dtype(column):
        numbers = column.astype(float)
        low, high = numbers.min(), numbers.max()
        return [0.5 if high == low or v != v else (v - low) / (high - low) for v in numbers]
    categories = sorted({str(v) for v in column})
    place = {c: (i / (len(categories) - 1) if len(categories) > 1 else 0.5) for i, c in enumerate(categories)}
    return [place[str(v)] for v in column]
