"""Column changes for `patas draw`: a Python expression evaluated once per row, as in the original.

    --x-change 'math.log2(X[i])'   --y-change 'Y[i][:3]'   --z-change 'int(Z[i]*100)'

`X`, `Y`, `Z`, `H` (hue) and `S` (style) are the plotted columns' original values as lists and
`i` is the row number, so an expression can look at other rows (`Z[i] / Z[0]`) and other
columns; `math`, `np` (numpy) and `pd` (pandas) are available. A row whose own value is empty
stays empty. Unlike the original, the result keeps its type (the original turned x and y
results into strings), so numbers still sort as numbers. A change is to a column, so it shows in
every role that plots that column (`--x-column in_lr --hue-column in_lr`); two changes to one
column are refused, since one would silently undo the other.

The expressions are the user's own code, run with the user's rights, like the rest of the
command line; they are not a sandbox.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from patas.common.errors import PatasError

if TYPE_CHECKING:
    import pandas as pd

# The name each plotted role has inside expressions.
SYMBOLS = {"x": "X", "y": "Y", "z": "Z", "hue": "H", "style": "S"}


class ChangeError(PatasError):
    """A --*-change expression does not compile or fails on a row."""


@dataclass(frozen=True)
class Change:
    """Replace the values of the column plotted as `role` by `expression` evaluated per row."""

    role: str  # x, y, z, hue or style
    expression: str

    @property
    def option(self) -> str:
        return f"--{self.role}-change {_quote(self.expression)}"


def apply_changes(frame: pd.DataFrame, columns: dict[str, str | None], changes: Sequence[Change]) -> pd.DataFrame:
    """A copy of `frame` with each change applied to the column plotted in its role.

    `columns` maps each role (x, y, ...) to its column name, or None when the plot has none.
    """
    import numpy as np
    import pandas as pd

    context: dict[str, Any] = {"math": math, "np": np, "pd": pd}
    for role, column in columns.items():
        if column is not None:
            context[SYMBOLS[role]] = frame[column].tolist()
    changed = frame.copy()
    changed_by: dict[str, Change] = {}
    for change in changes:
        column = columns.get(change.role)
        if column is None:
            raise ChangeError(f"{change.option}: there is no --{change.role}-column to change")
        if column in changed_by:
            first = changed_by[column]
            raise ChangeError(
                f"{change.option}: {column} is also the --{first.role}-column, which {first.option} changes"
                " (give one change: it applies to every role the column plays)"
            )
        changed_by[column] = change
        code = _compile(change)
        values = context[SYMBOLS[change.role]]
        result = [None if _missing(values[i]) else _evaluate(code, change, context, i) for i in range(len(values))]
        changed[column] = pd.Series(result, index=frame.index, dtype=_dtype(result))
    return changed


def _compile(change: Change) -> Any:
    try:
        return compile(change.expression, change.option, "eval")
    except SyntaxError as error:
        raise ChangeError(f"{change.option}: not a Python expression ({error.msg})") from None


def _evaluate(code: Any, change: Change, context: dict[str, Any], row: int) -> Any:
    try:
        return eval(code, {**context, "i": row})  # the user's own expression: see the module doc
    except Exception as error:  # noqa: BLE001 — any failure of user code is theirs, reported on one line
        raise ChangeError(f"{change.option}: {type(error).__name__}: {error} (row {row})") from None


def _missing(value: Any) -> bool:
    import pandas as pd

    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _dtype(values: list[Any]) -> str | None:
    # An all-whole-number result with gaps stays whole numbers rather than floats.
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "Int64"
    return None


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
