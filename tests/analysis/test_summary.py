"""`patas summary` and `summarize`: real sweeps, parsed, summarized, checked against statistics computed here."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
import statistics
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patas.analysis.summary import SummaryError, summarize
from tests.running import REPO, patas

T_975_DF4 = 2.776445105  # Student's t, 97.5% quantile, 4 degrees of freedom (printed tables: 2.776)
# value = 10 a + b + repeat: five repeats spread 0..4 (std 1.58, interval ±1.96), so b (a step of 1)
# stays inside the interval and a (a step of 10) does not.
DETERMINISTIC = "echo \"acc: $(( PATAS_VAR_a * 10 + PATAS_VAR_b + PATAS_REPEAT_ID ))\""


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/basic_usage explored with 4 configurations x 5 repeats, and parsed."""
    folder = tmp_path_factory.mktemp("summary-example")
    shutil.copy(REPO / "examples/basic_usage/main.py", folder)
    explore = ["--cmd", "./main.py {neurons} {activation}", "--vl", "neurons", "5", "40", "--vl", "activation", "relu", "sigmoid"]
    assert patas("explore", *explore, "--repeat", "5", "-y", "-q", cwd=folder).code == 0
    assert patas("parse", "-e", "pataslab/grid", "-p", "test_acc", r"Test accuracy: +(@float@)", cwd=folder).code == 0
    return folder


@pytest.fixture(scope="module")
def deterministic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("summary-deterministic")
    run = patas("explore", "--cmd", DETERMINISTIC, "--vl", "a", "1", "3", "--vl", "b", "0", "1", "--repeat", "5", "-y", "-q", cwd=folder)
    assert run.code == 0, run.stderr
    assert patas("parse", "-e", "pataslab/grid", "-p", "acc", r"acc: (@int@)", cwd=folder).code == 0
    return folder


def outputs_by_configuration(lab: Path) -> dict[tuple[str, str], list[float]]:
    """Every task's test accuracy read straight from its stdout, grouped by (activation, neurons)."""
    found: dict[tuple[str, str], list[float]] = {}
    for line in (lab / "journal.jsonl").read_text().splitlines():
        record = json.loads(line)
        text = (lab / str(record["task_id"]) / "stdout").read_text()
        value = float(re.search(r"Test accuracy: +([\d.]+)", text).group(1))
        found.setdefault((record["values"]["activation"], record["values"]["neurons"]), []).append(value)
    return found


def test_statistics_match_an_independent_computation(example):
    frame = summarize(example / "pataslab/grid", "test_acc")
    assert list(frame.columns) == ["in_activation", "in_neurons", "n", "missing", "mean", "std", "ci_low", "ci_high", "min", "max", "verdict"]
    expected = outputs_by_configuration(example / "pataslab/grid")
    assert len(frame) == len(expected) == 4
    for row in frame.itertuples():
        values = expected[(row.in_activation, str(row.in_neurons))]
        mean, std = statistics.mean(values), statistics.stdev(values)
        margin = T_975_DF4 * std / math.sqrt(5)
        assert (row.n, row.missing) == (5, 0)
        assert row.mean == pytest.approx(mean, rel=1e-12) and row.std == pytest.approx(std, rel=1e-9)
        assert row.ci_low == pytest.approx(mean - margin, rel=1e-8) and row.ci_high == pytest.approx(mean + margin, rel=1e-8)
        assert (row.min, row.max) == (min(values), max(values))
    assert list(frame["mean"]) == sorted(frame["mean"], reverse=True)  # best first
    assert frame["verdict"][0] == "best"


def test_best_tied_and_worse(deterministic):
    frame = summarize(deterministic / "pataslab/grid", "acc")
    rows = [(r.in_a, r.in_b, r.mean, r.verdict) for r in frame.itertuples()]
    assert rows == [(3, 1, 33.0, "best"), (3, 0, 32.0, "tied"), (1, 1, 13.0, "worse"), (1, 0, 12.0, "worse")]
    low = frame["ci_low"][0]
    assert low == pytest.approx(33 - T_975_DF4 * statistics.stdev(range(5)) / math.sqrt(5))


def test_minimize_picks_the_lowest_mean(deterministic):
    frame = summarize(deterministic / "pataslab/grid", "out_acc", maximize=False, by=["a"])
    assert [(r.in_a, r.n, r.mean, r.verdict) for r in frame.itertuples()] == [(1, 10, 12.5, "best"), (3, 10, 32.5, "worse")]


def test_no_grouping_summarizes_every_row(deterministic):
    frame = summarize(deterministic / "pataslab/grid/grid.csv", "acc", by=[])
    assert list(frame.columns)[:2] == ["n", "missing"] and frame["n"][0] == 20 and frame["verdict"][0] == "best"


def test_missing_and_nan_values_are_left_out_and_counted():
    frame = pd.DataFrame({
        "in_x": ["a", "a", "a", "a", "b", "b", "c", "c"],
        "out_m": [1.0, 3.0, math.nan, None, 10.0, math.nan, math.nan, None],
    })  # fmt: skip
    result = summarize(frame, "m")
    assert [(r.in_x, r.n, r.missing) for r in result.itertuples()] == [("b", 1, 1), ("a", 2, 2), ("c", 0, 2)]
    # b has the best mean but one value: no interval, so nothing can be called tied with it.
    assert math.isnan(result["ci_low"][0]) and math.isnan(result["std"][0])
    assert list(result["verdict"].fillna("")) == ["best", "", ""]
    assert result["mean"][1] == 2.0 and result["ci_low"][1] == pytest.approx(2 - 12.7062047 * math.sqrt(2) / math.sqrt(2))


def test_a_single_value_is_never_tied():
    frame = pd.DataFrame({"in_x": ["a", "a", "a", "b"], "out_m": [5.0, 6.0, 7.0, 6.0]})
    result = summarize(frame, "m")
    assert list(zip(result["in_x"], result["verdict"].fillna(""))) == [("a", "best"), ("b", "")]


@pytest.mark.parametrize(
    "source, metric, by, message",
    [
        ("pataslab/grid", "nope", None, "--metric nope: no such column in pataslab/grid/grid.csv (columns: out_acc)"),
        ("pataslab/grid", "ac", None, "--metric ac: no such column in pataslab/grid/grid.csv (did you mean 'acc'?)"),
        ("pataslab/grid", "node_name", None, "--metric node_name: the column holds text (VARCHAR), not numbers"),
        ("pataslab/grid", "acc", ["c"], "--by c: no such column in pataslab/grid/grid.csv (columns: in_a, in_b)"),
        ("pataslab/grid", "acc", ["in_a", "a"], "--by in_a,a: in_a is named twice (name each column once)"),
        ("pataslab/nope", "acc", None, "-e pataslab/nope: no such experiment folder or table file"),
        ("pataslab/grid/0", "acc", None, "-e pataslab/grid/0: no parsed table (run `patas parse -e pataslab/grid/0 -p NAME REGEX` first)"),
    ],
)  # fmt: skip
def test_bad_input_is_one_clear_error(deterministic, monkeypatch, source, metric, by, message):
    monkeypatch.chdir(deterministic)
    with pytest.raises(SummaryError) as raised:
        summarize(source, metric, by=by)
    assert message in str(raised.value)


def test_cli_formats_are_those_of_query(deterministic):
    expected = summarize(deterministic / "pataslab/grid", "acc")
    as_csv = patas("summary", "-e", "pataslab/grid", "--metric", "acc", cwd=deterministic)
    assert as_csv.code == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [(int(r["in_a"]), int(r["in_b"]), float(r["ci_high"]), r["verdict"]) for r in rows] == list(
        zip(expected["in_a"], expected["in_b"], expected["ci_high"], expected["verdict"])
    )
    as_json = json.loads(patas("summary", "-e", "pataslab/grid", "--metric", "acc", "--format", "json", cwd=deterministic).stdout)
    assert as_json[0] == {**{k: as_json[0][k] for k in ("std", "ci_low", "ci_high")}, "in_a": 3, "in_b": 1, "n": 5, "missing": 0,
                          "mean": 33.0, "min": 31.0, "max": 35.0, "verdict": "best"}  # fmt: skip
    markdown = patas("summary", "-e", "pataslab/grid", "--metric", "acc", "--by", "a", "--minimize", "-m", cwd=deterministic).stdout
    assert markdown.splitlines() == [  # t(0.975, 9) = 2.262157 times 1.581139 / sqrt(10) = 1.131079
        "| in_a |   n | missing | mean |      std |    ci_low |   ci_high | min | max | verdict |",
        "| ---: | --: | ------: | ---: | -------: | --------: | --------: | --: | --: | ------- |",
        "|    1 |  10 |       0 | 12.5 | 1.581139 | 11.368921 | 13.631079 |  10 |  15 | best    |",
        "|    3 |  10 |       0 | 32.5 | 1.581139 | 31.368921 | 33.631079 |  30 |  35 | worse   |",
    ]


def test_cli_refuses_two_formats(deterministic):
    run = patas("summary", "-e", "pataslab/grid", "--metric", "acc", "-m", "--format", "json", cwd=deterministic)
    assert run.code == 2 and "Error: -m asks for markdown but --format asks for json; give one of them" in run.stderr


values = st.one_of(st.none(), st.just(math.nan), st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["p", "q", "r"]), values), min_size=1, max_size=40), st.booleans())
def test_any_table_matches_the_statistics_module(rows, maximize):
    frame = pd.DataFrame({"in_g": [g for g, _ in rows], "out_m": [v for _, v in rows]}, dtype=object)
    frame["out_m"] = frame["out_m"].astype(float)
    result = summarize(frame, "m", maximize=maximize)
    groups = {g: [v for h, v in rows if h == g] for g, _ in rows}
    assert sorted(result["in_g"]) == sorted(groups)
    for row in result.itertuples():
        present = [v for v in groups[row.in_g] if v is not None and not math.isnan(v)]
        assert (row.n, row.missing) == (len(present), len(groups[row.in_g]) - len(present))
        if present:
            assert row.mean == pytest.approx(statistics.fmean(present), rel=1e-9, abs=1e-6)
            assert (row.min, row.max) == (min(present), max(present))
        if len(present) >= 2:
            assert row.std == pytest.approx(statistics.stdev(present), rel=1e-6, abs=1e-6)
            assert row.ci_low <= row.mean <= row.ci_high
        else:
            assert math.isnan(row.ci_low) and math.isnan(row.ci_high)
    means = [m for m in result["mean"] if not math.isnan(m)]
    assert means == sorted(means, reverse=maximize)
    verdicts = list(result["verdict"].fillna(""))
    assert verdicts[0] == ("best" if means else "") and "best" not in verdicts[1:]
    first = result.iloc[0]
    for row in result.iloc[1:].itertuples():
        comparable = not any(math.isnan(x) for x in (first.ci_low, first.ci_high, row.ci_low, row.ci_high))
        overlaps = comparable and row.ci_low <= first.ci_high and row.ci_high >= first.ci_low
        assert verdicts[row.Index] == ("" if not comparable else "tied" if overlaps else "worse")


def test_a_lab_of_several_parsed_experiments_asks_for_one(tmp_path):
    for name in ("a", "b"):
        (tmp_path / "lab" / name).mkdir(parents=True)
        (tmp_path / "lab" / name / f"{name}.csv").write_text("in_x,out_m\n1,2.0\n")
    with pytest.raises(SummaryError, match=r"-e .*lab: holds several parsed experiments \(a, b\); give one, e.g. -e .*lab/a$"):
        summarize(tmp_path / "lab", "m")
    assert summarize(tmp_path / "lab" / "b", "m")["n"].tolist() == [1]
