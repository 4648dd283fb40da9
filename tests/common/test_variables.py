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
        ("5", "1", "1", "is empty: min 5 is not below max 1 with step 1"),
        ("1", "5", "-1", "is empty: min 1 is not above max 5 with step -1"),
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


# ---------------------------------------------------------------------------------------------
# Ranges are bounded by count and by size before memory runs out.

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from patas.common.variables import MAX_VARIABLE_BYTES, _format, _scaled_range


def refused_quickly(make, *args):
    started = time.monotonic()
    with pytest.raises(ConfigError) as error:
        make("a", *args, "--v a")
    assert time.monotonic() - started < 2.0
    assert "\n" not in str(error.value) and len(str(error.value)) < 300
    return str(error.value)


def test_a_geometric_range_of_huge_values_is_refused_by_size_not_after_a_memory_error():
    # 2.4 million values of 100 KB each: refused once 64 MiB of them are made, in well under a second.
    message = refused_quickly(geometric_variable, "1e-100000", "1", "1.1")
    assert f"would take more than {MAX_VARIABLE_BYTES // 2**20} MiB of values" in message


def test_a_geometric_range_with_too_many_values_is_counted_before_it_is_built():
    message = refused_quickly(geometric_variable, "1", "1e9", "1.0000001")
    assert "would take more than 10,000,000 values (check its factor)" in message
    refused_quickly(geometric_variable, "1e-999999", "9e999999", "1." + "0" * 40 + "1")


@pytest.mark.parametrize(
    "low, high, step, message",
    [
        ("0", "1e999999", "1e-999999", "would take more than 10,000,000 values"),
        ("0", "3e-200000", "1e-200000", "a value of variable 'a' is 200,002 bytes; the OS takes at most 131,071 bytes"),
        ("0", "1e7", "1", "would take 10,000,000 values of up to 7 bytes, more than 64 MiB"),
        ("1", "x" * 100_000, "1", "max 'xxxxxxxx"),
    ],
)
def test_an_arithmetic_range_too_big_is_refused_before_it_is_built(low, high, step, message):
    assert message in refused_quickly(arithmetic_variable, low, high, step)


decimals = st.decimals(min_value=-10**6, max_value=10**6, allow_nan=False, allow_infinity=False, places=4)


@settings(max_examples=300, deadline=None)
@given(low=decimals, step=decimals.filter(lambda d: d != 0), count=st.integers(1, 20))
def test_integer_arithmetic_formats_ranges_exactly_as_decimal_does(low, step, count):
    from patas.common.variables import _decimal_places

    places = _decimal_places(low, step)
    assert list(_scaled_range(low, step, count, places)) == [_format(low + step * i, places) for i in range(count)]


def test_list_values_are_checked_one_by_one():
    with pytest.raises(ConfigError, match=r"--vl a: value 2 of variable 'a' holds a NUL byte"):
        list_variable("a", ["x", "y\0"], "--vl a")
    with pytest.raises(ConfigError, match=r"lists the value 'x' twice \(give each value once"):
        list_variable("a", ["x", "y", "x"], "--vl a")
    assert list_variable("a", ["1", "01", "1.0"], "--vl a").values == ("1", "01", "1.0")
