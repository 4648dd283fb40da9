"""Collect globs, the paths a node may send, and sizes (patas/common/collected_files.py)."""

from __future__ import annotations

import fnmatch
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patas.common.collected_files import check_glob, collect_rule, compile_globs, path_problem
from patas.common.errors import ConfigError


@pytest.mark.parametrize(
    "glob, matches, misses",
    [
        ("model.bin", ["model.bin"], ["x/model.bin", "model.bin2"]),
        ("*.csv", ["a.csv", ".hidden.csv"], ["d/a.csv", "a.csvx"]),
        ("**/*.csv", ["a.csv", "d/a.csv", "d/e/a.csv"], ["a.txt", "d/a.txt"]),
        ("logs/**/x", ["logs/x", "logs/a/b/x"], ["x", "other/logs/x"]),
        ("metrics/", ["metrics"], ["metrics/a"]),  # a folder: the walker takes what is under it
        ("run-?", ["run-1"], ["run-10", "run-/"]),
        ("[!a]x", ["bx"], ["ax", "/x"]),
        ("[a-c]", ["b"], ["d", "-"]),
        ("[]]", ["]"], ["a"]),
        ("a+b(c)", ["a+b(c)"], ["aab(c)"]),
    ],
)
def test_globs_match_relative_paths_component_by_component(glob, matches, misses):
    pattern = compile_globs((check_glob(glob, "--collect"),))
    assert [path for path in matches if pattern.fullmatch(path)] == matches
    assert [path for path in misses if pattern.fullmatch(path)] == []


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab*?[]!-.", min_size=1, max_size=8), st.text(alphabet="ab-]!.", min_size=1, max_size=6))
def test_within_one_component_a_glob_means_what_fnmatch_says(glob, name):
    try:
        check_glob(glob, "--collect")
    except ConfigError:
        return  # refused with a reason (an unclosed class, a '**' in a name)
    assert bool(compile_globs((glob,)).fullmatch(name)) == fnmatch.fnmatchcase(name, glob)


@pytest.mark.parametrize(
    "glob, problem",
    [
        ("/etc/passwd", "is an absolute path"),
        ("~/model.bin", "is an absolute path"),
        ("../model.bin", "goes up with '..'"),
        ("a/../../b", "goes up with '..'"),
        ("", "is empty"),
        ("/", "is empty"),
        ("a**", "'**' must be a whole path component"),
        ("[ab", "has a '[' without its ']'"),
        ("[z-a]", "has a character class with a range that runs backwards"),
        ("a\0b", "holds a NUL byte"),
    ],
)
def test_globs_that_cannot_name_a_file_in_the_task_folder_are_refused(glob, problem):
    with pytest.raises(ConfigError) as error:
        check_glob(glob, "--collect")
    assert str(error.value).startswith(f"--collect {glob!r}: {problem}")


@pytest.mark.parametrize(
    "path, problem",
    [
        (b"", "an empty path"),
        (b"/etc/passwd", "an absolute path"),
        (b"../x", "'..' component"),
        (b"a/../../x", "'..' component"),
        (b"a//b", "empty, '.' or '..'"),
        (b"./a", "'.'"),
        (b"a/", "empty"),
        (b"a\0b", "NUL"),
        (b"x" * 256, "a file name of 256 bytes"),
        (b"a/" * 2100, "a path of"),
    ],
)
def test_paths_a_node_sends_are_checked(path, problem):
    assert problem in path_problem(path)


@given(st.lists(st.sampled_from([b"a", b"..", b".", b"", b"/", b"\0", b"\xff", b"b/c", b"~"]), min_size=1, max_size=8))
def test_an_accepted_path_always_stays_under_the_folder(parts):
    path = b"".join(parts)
    if path_problem(path):
        return
    base = b"/lab/grid/0/files"
    assert os.path.normpath(os.path.join(base, path)).startswith(base + b"/")


def test_a_rule_keeps_each_glob_once_and_takes_a_size_or_bytes():
    rule = collect_rule(["a", "b/", "a"], "2M", "--collect", "--collect-limit")
    assert (rule.globs, rule.limit_bytes) == (("a", "b"), 2 * 2**20)
    assert collect_rule([], 7, "collect", "collect_limit").limit_bytes == 7
    with pytest.raises(ConfigError, match="collect_limit 0: must be at least 1 byte"):
        collect_rule(["a"], 0, "collect", "collect_limit")
