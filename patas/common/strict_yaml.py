"""Reading a YAML file strictly, keeping every scalar as the user typed it.

PyYAML's safe loader follows YAML 1.1: `010` becomes 8, `0x1F` 31, `yes` True and `~` None, and a
key given twice silently keeps the last value. patas passes variable values to programs as text,
so it must see what was typed. This loader:

- resolves plain scalars with the YAML 1.2 core schema (so `yes`, `on`, `2024-01-01` and `1_000`
  stay strings), and gives every number, boolean and null as a `Scalar`: a `str` holding the exact
  text typed, with `.value` the typed reading, for fields that want an integer or a number;
- refuses a key given twice in one mapping, naming both lines;
- refuses a NUL byte in any value (no program can receive one in its arguments);
- refuses bytes that are not UTF-8, naming the line and the byte offset.

Every refusal is a one-line `ConfigError` (or the error class the caller names) starting with the
file and line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Hashable

import yaml
from yaml.constructor import ConstructorError

from patas.common.errors import ConfigError, PatasError, excerpt
from patas.common.scalar import Scalar

_CORE = "tag:yaml.org,2002:"

# The YAML 1.2 core schema's implicit types (yaml.org/spec/1.2.2, section 10.3.2).
_CORE_RESOLVERS = (
    ("null", r"(?:~|null|Null|NULL|)\Z", "~nN"),
    ("bool", r"(?:true|True|TRUE|false|False|FALSE)\Z", "tTfF"),
    ("int", r"(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)\Z", "-+0123456789"),
    (
        "float",
        r"(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))\Z",
        "-+.0123456789",
    ),
)


class _DuplicateKey(yaml.MarkedYAMLError):
    pass


class _NulByte(yaml.MarkedYAMLError):
    pass


class StrictLoader(yaml.SafeLoader):
    """SafeLoader with the YAML 1.2 core schema, text-keeping scalars, and no duplicate keys."""

    def construct_scalar(self, node: yaml.Node) -> Any:
        text = super().construct_scalar(node)
        if isinstance(text, str) and "\0" in text:
            raise _NulByte(problem="a NUL byte (\\0) in a value", problem_mark=node.start_mark)
        return text

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):
            raise ConstructorError(None, None, f"expected a mapping, found {node.id}", node.start_mark)
        mapping: dict[Any, Any] = {}
        lines: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                raise ConstructorError(None, None, "a list or mapping cannot be a key", key_node.start_mark)
            if key in mapping:
                raise _DuplicateKey(
                    problem=f"key '{excerpt(str(key))}' is given twice (first on line {lines[key]}; keep one)",
                    problem_mark=key_node.start_mark,
                )
            lines[key] = key_node.start_mark.line + 1
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping


StrictLoader.yaml_implicit_resolvers = {}
for _name, _pattern, _first in _CORE_RESOLVERS:
    StrictLoader.add_implicit_resolver(_CORE + _name, re.compile(_pattern), list(_first) + ([""] if _name == "null" else []))


def _reader(convert: Any) -> Any:
    def construct(loader: StrictLoader, node: yaml.Node) -> Scalar:
        text = loader.construct_scalar(node)
        try:
            return Scalar(text, convert(text))
        except ValueError:
            raise ConstructorError(None, None, f"'{excerpt(text)}' is not a {node.tag[len(_CORE):]}", node.start_mark) from None

    return construct


def _int(text: str) -> int:
    sign, digits = (-1, text[1:]) if text.startswith("-") else (1, text.lstrip("+"))
    base = {"0o": 8, "0x": 16}.get(digits[:2], 10)
    return sign * int(digits[2:] if base != 10 else digits, base)


def _float(text: str) -> float:
    special = text.lower().lstrip("+")
    if special in (".inf", "-.inf", ".nan"):
        return float(special.replace(".", ""))
    return float(text)


def _bool(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise ValueError(text)
    return text.lower() == "true"


def _null(text: str) -> None:
    if text not in ("~", "null", "Null", "NULL", ""):
        raise ValueError(text)
    return None


for _name, _convert in (("int", _int), ("float", _float), ("bool", _bool), ("null", _null)):
    StrictLoader.add_constructor(_CORE + _name, _reader(_convert))


def load_yaml(path: str | Path, error: type[PatasError] = ConfigError) -> Any:
    """The document in the YAML file at `path`, read strictly (see the module's docstring).

    Raises `error` with one line naming the file (and the line) when it cannot be read or is not
    YAML patas accepts."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, not a YAML file") from None
    except PermissionError:
        raise error(f"{path}: permission denied") from None
    except OSError as failure:
        raise error(f"{path}: cannot be read ({failure.strerror or failure})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as bad:
        line = data.count(b"\n", 0, bad.start) + 1
        raise error(
            f"{path}: line {line}: not UTF-8 (byte 0x{data[bad.start]:02x} at offset {bad.start}); save the file as UTF-8"
        ) from None
    try:
        return yaml.load(text, Loader=StrictLoader)
    except _NulByte as nul:
        raise error(f"{path}: line {_line(nul)}: {nul.problem}; no program can receive one (remove it)") from None
    except _DuplicateKey as duplicate:
        raise error(f"{path}: line {_line(duplicate)}: {duplicate.problem}") from None
    except yaml.reader.ReaderError as unreadable:
        line = text.count("\n", 0, unreadable.position) + 1
        raise error(f"{path}: line {line}: not valid YAML: {str(unreadable).splitlines()[0]}") from None
    except yaml.YAMLError as invalid:
        mark = getattr(invalid, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(invalid, "problem", None) or str(invalid).splitlines()[0]
        raise error(f"{path}:{where} not valid YAML: {problem}") from None


def _line(failure: yaml.MarkedYAMLError) -> int:
    return failure.problem_mark.line + 1 if failure.problem_mark is not None else 1
