"""A number, boolean or null read from YAML, kept as the text typed (see patas.common.strict_yaml).

Apart from the loader so that code reading values need not import PyYAML (~20 ms at start-up)
unless a file is read.
"""

from __future__ import annotations

from typing import Any


class Scalar(str):
    """A plain scalar that YAML reads as a number, boolean or null: the text exactly as typed
    (it is a `str`), and `value`, what it means (an int, float, bool or None)."""

    value: Any

    def __new__(cls, text: str, value: Any) -> "Scalar":
        scalar = super().__new__(cls, text)
        scalar.value = value
        return scalar


def typed(value: Any) -> Any:
    """What a loaded value means: a `Scalar`'s typed reading, anything else itself."""
    return value.value if isinstance(value, Scalar) else value
