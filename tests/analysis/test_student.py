"""Student's t quantile, against published table values, scipy when it is installed, and its own CDF."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patas.analysis.student import t_cdf, t_quantile

# Two-sided 95% critical values, from any table of Student's t (e.g. NIST/SEMATECH e-Handbook 1.3.6.7.2).
TABLE_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 10: 2.228, 29: 2.045, 30: 2.042, 100: 1.984}


@pytest.mark.parametrize("df, expected", TABLE_975.items())
def test_matches_the_printed_table(df, expected):
    assert round(t_quantile(0.975, df), 3) == expected


def test_closed_forms():
    # df=1 is the Cauchy distribution and df=2 has an algebraic quantile.
    for p in (0.6, 0.9, 0.975, 0.999):
        assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-12)
        assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-12)


def test_tends_to_the_normal_quantile():
    assert t_quantile(0.975, 10**6) == pytest.approx(1.959964, abs=1e-5)


def test_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 4, 7, 19, 49, 99, 999, 99_999):
        for p in (0.55, 0.9, 0.975, 0.995, 0.9995):
            assert t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-9)


@given(st.floats(min_value=1e-6, max_value=1 - 1e-6), st.integers(min_value=1, max_value=10**5))
def test_the_quantile_inverts_the_cdf(p, df):
    # lgamma's rounding at large df limits the CDF to about 1e-11; intervals need far less.
    assert t_cdf(t_quantile(p, df), df) == pytest.approx(p, abs=1e-10)
    assert t_quantile(1 - p, df) == pytest.approx(-t_quantile(p, df), rel=1e-9, abs=1e-12)


def test_rejects_impossible_arguments():
    with pytest.raises(ValueError):
        t_quantile(1.0, 3)
    with pytest.raises(ValueError):
        t_cdf(1.0, 0)
