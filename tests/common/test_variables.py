import pytest

from patas.common.errors import ConfigError
from patas.common.variables import arithmetic_variable, geometric_variable, list_variable


def test_arithmetic_is_like_range_with_max_exclusive():
    assert arithmetic_variable("n", "1", "51", "2", "--va").values == tuple(str(i) for i in range(1, 51, 2))


def test_arithmetic_floats_come_out_clean():
    assert arithmetic_variable("lr", "0.1", "0.5", "0.1", "--va").values == ("0.1", "0.2", "0.3", "0.4")
    assert arithmetic_variable("x", "0.5", "2.0", "0.5", "--va").values == ("0.5", "1.0", "1.5")
    assert arithmetic_variable("x", "1e-3", "4e-3", "1e-3", "--va").values == ("0.001", "0.002", "0.003")


def test_arithmetic_counts_down_with_a_negative_step():
    assert arithmetic_variable("x", "10", "0", "-3", "--va").values == ("10", "7", "4", "1")


@pytest.mark.parametrize(
    "low, high, step, message",
    [
        ("1", "5", "0", "has step 0"),
        ("5", "1", "1", "is empty: min 5 is not above max 1"),
        ("a", "5", "1", "min 'a' is not a number"),
        ("1", "inf", "1", "max 'inf' is not a finite number"),
        ("0", "1", "1e-12", "would take more than"),
    ],
)
def test_arithmetic_errors_name_the_variable(low, high, step, message):
    with pytest.raises(ConfigError) as error:
        arithmetic_variable("n", low, high, step, "--va n")
    assert str(error.value).startswith("--va n: variable 'n'")
    assert message in str(error.value)


def test_geometric_multiplies_below_max():
    assert geometric_variable("b", "1", "1024", "2", "--vg").values == ("1", "2", "4", "8", "16", "32", "64", "128", "256", "512")
    assert geometric_variable("lr", "0.001", "1", "10", "--vg").values == ("0.001", "0.01", "0.1")


@pytest.mark.parametrize(
    "low, high, factor, message",
    [("0", "10", "2", "needs min > 0"), ("1", "10", "1", "needs factor > 1"), ("10", "1", "2", "is empty")],
)
def test_geometric_errors(low, high, factor, message):
    with pytest.raises(ConfigError, match=message):
        geometric_variable("b", low, high, factor, "--vg b")


def test_list_keeps_values_as_typed():
    assert list_variable("act", ["relu", "0.10", "a b"], "--vl").values == ("relu", "0.10", "a b")


def test_empty_list_and_bad_names_are_errors():
    with pytest.raises(ConfigError, match="has no values"):
        list_variable("act", [], "--vl act")
    with pytest.raises(ConfigError, match="is not an identifier"):
        list_variable("2x", ["a"], "--vl 2x")
