"""`import patas` gives the public functions, and importing it stays cheap."""

import subprocess
import sys

import pytest

import patas
from tests.running import ENV

HEAVY = ("pandas", "duckdb", "seaborn", "matplotlib", "zmq", "paramiko", "optuna")


def test_import_patas_loads_nothing_heavy(tmp_path):
    code = f"import sys, patas; print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))"
    done = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, cwd=tmp_path)
    assert done.stdout.strip() == "[]", done.stderr


@pytest.mark.parametrize("name", list(patas.EXPORTS))
def test_every_export_is_what_the_table_names(name):
    import importlib

    module_name, attribute = patas.EXPORTS[name]
    module = importlib.import_module(module_name)
    assert getattr(patas, name) is (module if attribute is None else getattr(module, attribute))
    assert name in dir(patas) and name in patas.__all__


def test_the_documented_api():
    from patas.analysis import draw, parse, query, summary

    assert (patas.parse, patas.query, patas.summary) == (parse.parse, query.query, summary.summarize)
    assert (patas.draw.heatmap, patas.draw.categories, patas.draw.lines) == (draw.heatmap, draw.categories, draw.lines)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="module 'patas' has no attribute 'querry'"):
        patas.querry  # noqa: B018
