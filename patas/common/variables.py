"""Sweep variables: a name and the values it takes.

Values are kept as the strings that will be written into commands, so what a user typed is what
the program receives. Arithmetic and geometric ranges are computed with `Decimal` so that
`--va lr 0.1 0.5 0.1` gives 0.1 0.2 0.3 0.4 rather than binary-float noise.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from patas.common.errors import ConfigError

# A range that would produce more values than this is almost certainly a typo (a step of 1e-9).
MAX_RANGE_VALUES = 10_000_000

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class VariableKind(enum.Enum):
    LIST = "list"
    ARITHMETIC = "arithmetic"
    GEOMETRIC = "geometric"


@dataclass(frozen=True)
class Variable:
    """A named input whose values are combined with the other variables' values.

    `bounds` keeps MIN, MAX and STEP (or FACTOR) as the user wrote them, for ranges; it is what the
    experiment record stores, so the record can be loaded again.
    """

    name: str
    kind: VariableKind
    values: tuple[str, ...]
    bounds: tuple[str, str, str] | None = None


def list_variable(name: str, values: list[str] | tuple[str, ...], where: str) -> Variable:
    check_name(name, where)
    if not values:
        raise ConfigError(f"{where}: variable '{name}' has no values (give at least one)")
    return Variable(name, VariableKind.LIST, tuple(str(v) for v in values))


def arithmetic_variable(name: str, low: object, high: object, step: object, where: str) -> Variable:
    """Values from LOW up to HIGH (exclusive) by STEP, like Python's range()."""
    check_name(name, where)
    lo, hi, st = (_number(v, name, part, where) for v, part in ((low, "min"), (high, "max"), (step, "step")))
    if st == 0:
        raise ConfigError(f"{where}: variable '{name}' has step 0 (use a non-zero step)")
    count = _range_count(lo, hi, st)
    if count <= 0:
        direction = "above" if st > 0 else "below"
        raise ConfigError(
            f"{where}: variable '{name}' is empty: min {low} is not {direction} max {high}"
            f" with step {step} (max is exclusive, as in range())"
        )
    _check_size(count, name, where)
    places = _decimal_places(lo, st)
    values = tuple(_format(lo + st * i, places) for i in range(count))
    return Variable(name, VariableKind.ARITHMETIC, values, (str(low), str(high), str(step)))


def geometric_variable(name: str, low: object, high: object, factor: object, where: str) -> Variable:
    """Values LOW, LOW*FACTOR, LOW*FACTOR^2, ... below HIGH (exclusive, like --va)."""
    check_name(name, where)
    lo, hi, fa = (_number(v, name, part, where) for v, part in ((low, "min"), (high, "max"), (factor, "factor")))
    if lo <= 0:
        raise ConfigError(f"{where}: variable '{name}' needs min > 0 for a geometric range, got {low}")
    if fa <= 1:
        raise ConfigError(f"{where}: variable '{name}' needs factor > 1, got {factor}")
    if lo >= hi:
        raise ConfigError(f"{where}: variable '{name}' is empty: min {low} is not below max {high}")
    numbers = []
    value = lo
    while value < hi:
        numbers.append(value)
        _check_size(len(numbers), name, where)
        value *= fa
    values = tuple(_format(n, _decimal_places(n)) for n in numbers)
    return Variable(name, VariableKind.GEOMETRIC, values, (str(low), str(high), str(factor)))


def check_name(name: str, where: str) -> None:
    if not IDENTIFIER.match(name):
        raise ConfigError(
            f"{where}: variable name '{name}' is not an identifier (use letters, digits and _,"
            " not starting with a digit)"
        )


def _number(text: object, name: str, part: str, where: str) -> Decimal:
    try:
        number = Decimal(str(text).strip())
    except InvalidOperation:
        raise ConfigError(f"{where}: variable '{name}' {part} '{text}' is not a number") from None
    if not number.is_finite():
        raise ConfigError(f"{where}: variable '{name}' {part} '{text}' is not a finite number")
    return number


def _range_count(lo: Decimal, hi: Decimal, step: Decimal) -> int:
    span = (hi - lo) / step
    whole = int(span)
    return whole + 1 if span > whole else whole


def _check_size(count: int, name: str, where: str) -> None:
    if count > MAX_RANGE_VALUES:
        raise ConfigError(
            f"{where}: variable '{name}' would take more than {MAX_RANGE_VALUES:,} values"
            " (check its step)"
        )


def _decimal_places(*numbers: Decimal) -> int:
    return max(max(0, -n.normalize().as_tuple().exponent) if n else 0 for n in numbers) if numbers else 0


def _format(value: Decimal, places: int) -> str:
    if places == 0:
        return str(int(value))
    return f"{value:.{places}f}"
