import datetime as dt
import json
import os

import pytest

from patas.analysis.table import ColumnType, Table, TableError, read_schema, schema_path, typed, value_type


@pytest.mark.parametrize(
    "values, expected",
    [
        (["1", "-2", None, "+3"], [1, -2, None, 3]),
        (["1", "2.5", "", "1e-3"], [1.0, 2.5, None, 0.001]),
        (["nan", "0.5"], [pytest.approx(float("nan"), nan_ok=True), 0.5]),
        (["relu", "1"], ["relu", "1"]),
        (["1_2", "3"], ["1_2", "3"]),
        ([None, ""], [None, None]),
    ],
)
def test_columns_become_numbers_only_when_every_value_is_one(values, expected):
    assert typed(values)[0] == expected


@pytest.mark.parametrize(
    "values, kind, expected, kind_out",
    [
        ([None, None], ColumnType.NUMBER, [None, None], ColumnType.NUMBER),
        (["1", None], ColumnType.NUMBER, [1.0, None], ColumnType.NUMBER),
        (["3", "-1"], ColumnType.INTEGER, [3, -1], ColumnType.INTEGER),
        ([str(2**63), "1"], ColumnType.INTEGER, [float(2**63), 1.0], ColumnType.NUMBER),
        (["7", None], ColumnType.STRING, ["7", None], ColumnType.STRING),
        ([None], None, [None], None),
    ],
)
def test_a_declared_type_holds_even_without_values(values, kind, expected, kind_out):
    assert typed(values, kind) == (expected, kind_out)


def test_value_types():
    assert value_type([1, None, 2]) is ColumnType.INTEGER
    assert value_type([1, 2.5]) is ColumnType.NUMBER
    assert value_type([dt.datetime(2023, 5, 17)]) is ColumnType.DATETIME
    assert value_type(["a", 1]) is ColumnType.STRING
    assert value_type([None]) is None


def test_a_csv_schema_is_only_believed_for_the_csv_it_describes(tmp_path):
    target = tmp_path / "t.csv"
    Table({"a": [None, None], "b": ["x", "y"]}, {"a": ColumnType.NUMBER}).write(target)
    assert schema_path(target) == tmp_path / "t.schema.json"
    assert read_schema(target) == {"a": ColumnType.NUMBER}
    fields = json.loads(schema_path(target).read_text())["fields"]
    assert fields == [{"name": "a", "type": "number"}, {"name": "b", "type": "any"}]
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # edited since
    assert read_schema(target) is None
    schema_path(target).write_text("{not json")
    assert read_schema(target) is None


def test_missing_pyarrow_names_the_users_file_before_any_work(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    target = tmp_path / "results.parquet"
    with pytest.raises(TableError) as error:
        Table({"a": [1]}, {"a": ColumnType.INTEGER}).write(target)
    assert str(error.value) == f"{target}: writing Parquet needs pyarrow (pip install 'patas[parquet]')"


def test_a_parquet_writing_failure_names_the_users_file(tmp_path, monkeypatch):
    import pyarrow.parquet

    def full(table, where, **options):
        raise OSError(f"Failed to open local file '{where}'. Detail: [errno 28] No space left on device")

    monkeypatch.setattr(pyarrow.parquet, "write_table", full)
    target = tmp_path / "results.parquet"
    with pytest.raises(TableError) as error:
        Table({"a": [1]}, {"a": ColumnType.INTEGER}).write(target)
    assert str(error.value) == (
        f"{target}: cannot write the table (Failed to open local file '{target}'. Detail: [errno 28] No space left on device)"
    )
    assert list(tmp_path.iterdir()) == []
