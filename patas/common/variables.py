"""Sweep variables: a name and the values it takes.

Values are kept as the strings that will be written into commands, so what a user typed is what
the program receives. Arithmetic and geometric ranges are computed with `Decimal` so that
`--va lr 0.1 0.5 0.1` gives 0.1 0.2 0.3 0.4 rather than binary-float noise.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Iterator
from decimal import Decimal, DecimalException, InvalidOperation, localcontext

from patas.common.errors import ConfigError, excerpt

# A range that would produce more values than this is almost certainly a typo (a step of 1e-9).
MAX_RANGE_VALUES = 10_000_000
# The values of one variable are held in memory as text: beyond this many bytes (in UTF-8) it is
# refused before memory runs out (`--vg a 1e-100000 1 1.1` is 2.4 million values of 100 KB each).
MAX_VARIABLE_BYTES = 64 * 2**20
# Linux's MAX_ARG_STRLEN, 32 pages of 4 KiB: the longest single argument `execve` accepts, its
# terminating NUL included. A command runs as one argument of `bash -c`, so neither it nor any
# value can be longer.
MAX_ARGUMENT_BYTES = 131_072
# str() of an int refuses more than 4,300 digits (sys.get_int_max_str_digits): longer values are
# formatted by Decimal.
_INT_DIGITS = 4_000
# Digits of precision for the logarithms that count a geometric range before building it.
_COUNT_PRECISION = 60

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class VariableKind(enum.Enum):
    LIST = "list"
    ARITHMETIC = "arithmetic"
    GEOMETRIC = "geometric"
    # Ranges a search samples from (--vu, --vlog, --vi): no list of values, only bounds.
    UNIFORM = "uniform"
    LOGUNIFORM = "loguniform"
    INT = "int"

    @property
    def is_continuous(self) -> bool:
        """A range sampled by a search, which a grid cannot enumerate."""
        return self in _SAMPLED_KINDS


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
    texts = tuple(str(v) for v in values)
    size = _ValuesSize(name, where)
    seen: set[str] = set()
    for number, value in enumerate(texts, 1):
        size.add(value, number)
        if value in seen:
            raise ConfigError(
                f"{where}: variable '{name}' lists the value '{excerpt(value)}' twice"
                " (give each value once; --repeat runs a combination several times)"
            )
        seen.add(value)
    return Variable(name, VariableKind.LIST, texts)


def arithmetic_variable(name: str, low: object, high: object, step: object, where: str) -> Variable:
    """Values from LOW up to HIGH (exclusive) by STEP, like Python's range()."""
    check_name(name, where)
    lo, hi, st = (_number(v, name, part, where) for v, part in ((low, "min"), (high, "max"), (step, "step")))
    if st == 0:
        raise ConfigError(f"{where}: variable '{name}' has step 0 (use a non-zero step)")
    count = _range_count(lo, hi, st)
    if count <= 0:
        direction = "below" if st > 0 else "above"
        raise ConfigError(
            f"{where}: variable '{name}' is empty: min {low} is not {direction} max {high}"
            f" with step {step} (max is exclusive, as in range())"
        )
    _check_size(count, name, where, "step")
    places = _decimal_places(lo, st)
    # Numbers hold no NUL and are ASCII: the first and the last value are the longest (or as long).
    longest = max(len(_format(lo, places)), len(_format(lo + st * (count - 1), places)))
    check_argument_size(longest, f"a value of variable '{name}'", where)
    if count * longest > MAX_VARIABLE_BYTES:
        raise ConfigError(
            f"{where}: variable '{name}' would take {count:,} values of up to {longest:,} bytes,"
            f" more than {MAX_VARIABLE_BYTES // 2**20} MiB (check its step)"
        )
    if longest < _INT_DIGITS:
        values = tuple(_scaled_range(lo, st, count, places))
    else:
        values = tuple(_format(lo + st * i, places) for i in range(count))
    return Variable(name, VariableKind.ARITHMETIC, values, (str(low), str(high), str(step)))


def _scaled_range(lo: Decimal, step: Decimal, count: int, places: int) -> Iterator[str]:
    """lo + step*i formatted with `places` decimals, computed in integers (10x faster than Decimal)."""
    scale = 10**places
    first, by = int(lo * scale), int(step * scale)  # exact: `places` covers both numbers' decimals
    if places == 0:
        yield from map(str, range(first, first + by * count, by))
        return
    for scaled in range(first, first + by * count, by):
        digits = str(abs(scaled)).rjust(places + 1, "0")
        yield f"{'-' if scaled < 0 else ''}{digits[:-places]}.{digits[-places:]}"


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
    with localcontext() as context:
        context.prec = _COUNT_PRECISION
        # lo * fa**(n-1) < hi: about ln(hi/lo) / ln(fa) values, known before building any.
        _check_size(int((hi.ln() - lo.ln()) / fa.ln()), name, where, "factor")
    size = _ValuesSize(name, where)
    values = []
    value = lo
    while value < hi:
        values.append(size.add(_format(value, _decimal_places(value)), len(values) + 1))
        _check_size(len(values), name, where, "factor")
        value *= fa
    return Variable(name, VariableKind.GEOMETRIC, tuple(values), (str(low), str(high), str(factor)))


_SAMPLED_KINDS = frozenset({VariableKind.UNIFORM, VariableKind.LOGUNIFORM, VariableKind.INT})
_SAMPLED_OPTIONS = {VariableKind.UNIFORM: "--vu", VariableKind.LOGUNIFORM: "--vlog", VariableKind.INT: "--vi"}


def sampled_variable(kind: VariableKind, name: str, low: object, high: object, where: str) -> Variable:
    """A range a search samples: uniform or log-uniform reals, or integers, from LOW to HIGH
    (both included, as Optuna's distributions have them)."""
    check_name(name, where)
    lo, hi = (_number(v, name, part, where) for v, part in ((low, "low"), (high, "high")))
    if kind is VariableKind.INT and (lo != lo.to_integral_value() or hi != hi.to_integral_value()):
        raise ConfigError(f"{where}: variable '{name}' takes integers; LOW {low} and HIGH {high} must be whole numbers")
    if lo >= hi:
        raise ConfigError(f"{where}: variable '{name}' needs LOW below HIGH, got {low} and {high}")
    if kind is VariableKind.LOGUNIFORM and lo <= 0:
        raise ConfigError(f"{where}: variable '{name}' is log-uniform: LOW must be above 0, got {low} (use {_SAMPLED_OPTIONS[VariableKind.UNIFORM]} for a range through 0)")
    return Variable(name, kind, (), (str(low), str(high), ""))


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
        raise ConfigError(f"{where}: variable '{name}' {part} '{excerpt(str(text))}' is not a number") from None
    if not number.is_finite():
        raise ConfigError(f"{where}: variable '{name}' {part} '{excerpt(str(text))}' is not a finite number")
    return number


def _range_count(lo: Decimal, hi: Decimal, step: Decimal) -> int:
    """How many of lo, lo+step, ... come before hi; MAX_RANGE_VALUES + 1 stands for "too many"."""
    try:
        span = (hi - lo) / step
    except DecimalException:  # beyond Decimal's exponent range: far too many
        return MAX_RANGE_VALUES + 1
    if span > MAX_RANGE_VALUES:
        return MAX_RANGE_VALUES + 1
    whole = int(span)
    return whole + 1 if span > whole else whole


def _check_size(count: int, name: str, where: str, part: str) -> None:
    if count > MAX_RANGE_VALUES:
        raise ConfigError(
            f"{where}: variable '{name}' would take more than {MAX_RANGE_VALUES:,} values"
            f" (check its {part})"
        )


def check_value(value: str, what: str, where: str) -> int:
    """A value can reach a program as an argument: no NUL byte, not longer than the OS allows.
    Returns its size in bytes."""
    if "\0" in value:
        raise ConfigError(f"{where}: {what} holds a NUL byte (\\0); no program can receive one (remove it)")
    return check_argument_size(len(value.encode("utf-8", "surrogateescape")), what, where)


def check_argument_size(size: int, what: str, where: str) -> int:
    """Refuse `what`, of `size` bytes, if it cannot be one argument of a program; return `size`."""
    if size >= MAX_ARGUMENT_BYTES:
        raise ConfigError(
            f"{where}: {what} is {size:,} bytes; the OS takes at most {MAX_ARGUMENT_BYTES - 1:,} bytes"
            " in one argument (pass large data through a file)"
        )
    return size


class _ValuesSize:
    """Checks each value of a variable as it is made, and their total size against MAX_VARIABLE_BYTES."""

    def __init__(self, name: str, where: str) -> None:
        self.name, self.where, self.total = name, where, 0

    def add(self, value: str, number: int) -> str:
        self.total += check_value(value, f"value {number:,} of variable '{self.name}'", self.where)
        if self.total > MAX_VARIABLE_BYTES:
            raise ConfigError(
                f"{self.where}: variable '{self.name}' would take more than {MAX_VARIABLE_BYTES // 2**20} MiB"
                f" of values ({number:,} values reach it; check its bounds)"
            )
        return value


def _decimal_places(*numbers: Decimal) -> int:
    return max(max(0, -n.normalize().as_tuple().exponent) if n else 0 for n in numbers) if numbers else 0


def _format(value: Decimal, places: int) -> str:
    if places == 0:
        return str(int(value))
    return f"{value:.{places}f}"
