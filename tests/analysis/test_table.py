import pytest

from patas.analysis.table import typed


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
    assert typed(values) == expected
