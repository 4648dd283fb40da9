"""The definition's YAML writer against PyYAML, the reader of every definition: any tree of the
kinds a definition holds, with any text in it, reads back equal."""

from __future__ import annotations

import math

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from patas.common.yaml_writer import dump

# Any character, lone surrogates (a command line decoded with surrogateescape has them) and the
# characters YAML treats apart (line breaks, the BOM, NEL, DEL, C1 controls) included.
TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
TREES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4), max_leaves=20)


def same(a: object, b: object) -> bool:
    """Equal, NaN included (a float NaN equals no other)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


@settings(max_examples=1000, deadline=None)
@given(st.dictionaries(TEXT, TREES, max_size=6))
def test_pyyaml_reads_back_what_the_writer_wrote(tree):
    text = dump(tree)
    assert text.isascii()
    assert same(yaml.safe_load(text), tree or None) or (tree == {} and yaml.safe_load(text) is None)


def test_a_definition_reads_as_yaml_people_write():
    record = {"name": "grid", "repeat": 2, "timeout": 1e-05, "cmd": ["echo {a}"], "vars": [{"name": "a", "values": ["1", "é"]}]}
    assert dump(record) == (
        'name: "grid"\nrepeat: 2\ntimeout: 1.0e-05\ncmd:\n- "echo {a}"\nvars:\n- name: "a"\n  values:\n  - "1"\n  - "\\u00E9"\n'
    )
