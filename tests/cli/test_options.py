"""The variadic options of `--vl` and `--node`: where their values end."""

from __future__ import annotations

import click
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from patas.cli.options import VariadicOption


@click.command()
@click.option("--vl", cls=VariadicOption)
@click.option("--repeat", type=int, default=1)
def sweep(vl: tuple[tuple[str, ...], ...], repeat: int) -> None:
    click.echo(repr((vl, repeat)))


def parsed(*words: str) -> click.testing.Result:
    return CliRunner().invoke(sweep, list(words))


NUMBERS = st.one_of(st.floats(), st.integers()).map(str) | st.sampled_from(["-inf", "-nan", "-Infinity", "-.5", "-1e-3", "-0"])


@given(st.lists(NUMBERS, min_size=1, max_size=6))
def test_numbers_negative_or_not_are_values(values):
    result = parsed("--vl", "x", *values, "--repeat", "2", "--vl", "y", "a")
    assert result.exit_code == 0, result.output
    assert result.output == repr(((("x", *values), ("y", "a")), 2)) + "\n"


def test_a_word_that_looks_like_an_option_ends_the_values():
    assert parsed("--vl", "x", "1", "--repeat", "3").output == repr(((("x", "1"),), 3)) + "\n"
    mistyped = parsed("--vl", "x", "1", "--reapet", "3")
    assert mistyped.exit_code == 2 and "No such option '--reapet'" in mistyped.output
    assert "No such option '-x'" in parsed("--vl", "x", "-x").output
