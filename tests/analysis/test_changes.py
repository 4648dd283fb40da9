import math

import pandas as pd
import pytest

from patas.analysis.changes import Change, ChangeError, apply_changes

FRAME = pd.DataFrame({"n": [1, 2, 4], "act": ["relu", "tanh", None], "acc": [0.5, float("nan"), 0.25]})
COLUMNS = {"x": "n", "y": "acc", "hue": "act"}


def test_expressions_see_every_plotted_column_and_the_row_number():
    changed = apply_changes(FRAME, COLUMNS, [Change("x", "math.log2(X[i]) + i"), Change("hue", "H[i].upper()")])
    assert changed.n.tolist() == [0.0, 2.0, 4.0]
    assert changed.act.tolist()[:2] == ["RELU", "TANH"] and changed.act.isna().iloc[2]
    assert FRAME.n.tolist() == [1, 2, 4]  # the caller's frame is left alone


def test_empty_values_stay_empty_and_whole_numbers_stay_whole():
    changed = apply_changes(FRAME, COLUMNS, [Change("y", "int(Y[i] * 100)")])
    assert str(changed.acc.dtype) == "Int64"
    assert changed.acc.tolist()[0] == 50 and changed.acc.isna().iloc[1] and changed.acc.tolist()[2] == 25


def test_expressions_may_read_other_rows_and_columns():
    changed = apply_changes(FRAME, COLUMNS, [Change("y", "Y[i] / Y[0] if X[i] < 4 else math.inf")])
    assert changed.acc.tolist()[0] == 1.0 and math.isinf(changed.acc.tolist()[2])


def test_changing_a_role_without_a_column_is_an_error():
    with pytest.raises(ChangeError, match=r"^--style-change 'S\[i\]': there is no --style-column to change$"):
        apply_changes(FRAME, COLUMNS, [Change("style", "S[i]")])


def test_a_name_error_names_the_option_and_row():
    with pytest.raises(ChangeError, match=r"^--x-change 'Q\[i\]': NameError: name 'Q' is not defined \(row 0\)$"):
        apply_changes(FRAME, COLUMNS, [Change("x", "Q[i]")])


def test_a_change_shows_in_every_role_of_its_column_and_a_second_change_is_refused():
    columns = {"x": "n", "y": "acc", "hue": "n"}
    changed = apply_changes(FRAME, columns, [Change("x", "X[i] * 10")])
    assert changed.n.tolist() == [10, 20, 40]  # the hue plots the same, changed, column
    with pytest.raises(ChangeError) as error:
        apply_changes(FRAME, columns, [Change("x", "X[i] * 10"), Change("hue", "H[i]")])
    assert str(error.value) == (
        "--hue-change 'H[i]': n is also the --x-column, which --x-change 'X[i] * 10' changes"
        " (give one change: it applies to every role the column plays)"
    )
