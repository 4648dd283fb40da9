"""YAML text for a run's definition (`experiment.yaml`), written without importing PyYAML.

Every run writes its definition before its first record, on the path of its first task, and
PyYAML's import alone costs ~20 ms there (90 M instructions: its loader, scanner and resolver
come with its dumper). A definition is a tree of mappings, lists, strings, numbers, booleans and
nulls, and this writes exactly that, in block style:

- every string double-quoted, in printable ASCII: `\\"` and `\\\\`, and every other character as
  `\\uXXXX`, or `\\UXXXXXXXX` beyond the 16-bit plane (a lone surrogate, as a command line
  may carry, is a character like another);
- integers as they are; floats as Python writes them, with the `.0` and the exponent's sign
  YAML 1.1 needs to read them as floats (`1e-05` alone would read as a string), and `.inf`,
  `-.inf`, `.nan`;
- `true`, `false`, `null`, and `[]` and `{}` for empty collections;
- keys plain when they are lowercase identifiers YAML reads as strings (`max_tries`, not `on`),
  else quoted as strings are.

PyYAML reads it back to the same tree (a property test checks that on arbitrary trees), and
everything that reads YAML still does so through PyYAML.
"""

from __future__ import annotations

import math
import re
from typing import Any

_ESCAPED = re.compile(r'[^\x20-\x7e]|["\\]')  # what a double-quoted scalar writes as an escape
_PLAIN_KEY = re.compile(r"[a-z_][a-z0-9_]*\Z")
_YAML_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})  # YAML 1.1 reads these otherwise


def dump(data: dict[str, Any]) -> str:
    """`data` as a YAML document that `yaml.safe_load` reads back equal."""
    return "".join(f"{line}\n" for line in _mapping(data))


def _mapping(data: dict[str, Any]) -> list[str]:
    lines = []
    for key, value in data.items():
        head = f"{_key(key)}:"
        if isinstance(value, (dict, list)) and value:
            # A list under a key is written at the key's indentation, as PyYAML writes it.
            lines += [head, *(("  " if isinstance(value, dict) else "") + line for line in _block(value))]
        else:
            lines.append(f"{head} {_scalar(value)}")
    return lines


def _block(value: dict[str, Any] | list[Any]) -> list[str]:
    if isinstance(value, dict):
        return _mapping(value)
    lines = []
    for item in value:
        if isinstance(item, (dict, list)) and item:
            first, *rest = _block(item)
            lines += [f"- {first}", *(f"  {line}" for line in rest)]
        else:
            lines.append(f"- {_scalar(item)}")
    return lines


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (dict, list)):
        return "{}" if isinstance(value, dict) else "[]"  # empty (see _mapping and _block)
    raise TypeError(f"a definition holds no {type(value).__name__}")


def _float(value: float) -> str:
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)  # the shortest that reads back the same: 0.1, 1e-05, 1.5e+16
    mantissa, _, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return f"{mantissa}e{exponent}" if exponent else mantissa


def _key(key: str) -> str:
    return key if _PLAIN_KEY.match(key) and key not in _YAML_WORDS else _string(key)


def _string(text: str) -> str:
    return f'"{_ESCAPED.sub(_escape, text)}"'


def _escape(match: re.Match[str]) -> str:
    character = match.group()
    if character in '"\\':
        return "\\" + character
    code = ord(character)
    return f"\\u{code:04X}" if code < 0x10000 else f"\\U{code:08X}"
