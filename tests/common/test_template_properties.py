"""Property: a hostile value rendered into any command template reaches the program exactly, or
the template is refused before anything runs; no value ever runs as code.

Templates are built from a grammar: an argument shape (how the placeholder is written in the
word), wrapped in commands that nest it (`$(...)`, backticks, "...", subshells, `case`, loops,
comments and here-documents around it), optionally with a second use of the value in a place
where it must be refused (arithmetic, `${...}`, a comment, a here-document body, a pattern).
Every rendered command runs through real bash (see tests/common/bash_argv.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patas.common.errors import TemplateError
from patas.common.template import compile_template
from tests.common.bash_argv import MARKER, Bash

EXAMPLES = 3000


@dataclass(frozen=True)
class Shape:
    """How the placeholder is written in the dumped argument, and what that argument must be."""

    text: str
    expected: Callable[[str], str]


ARGUMENTS = [
    Shape("{v}", lambda v: v),
    Shape("'{v}'", lambda v: v),
    Shape('"{v}"', lambda v: v),
    Shape("$'{v}'", lambda v: v),
    Shape("x{v}y", lambda v: f"x{v}y"),
    Shape("'a b'{v}\"c\"", lambda v: f"a b{v}c"),
    Shape('"<{v}>"', lambda v: f"<{v}>"),
    Shape("'<{v}>'", lambda v: f"<{v}>"),
    Shape("$'\\t{v}\\n'", lambda v: f"\t{v}\n"),
    Shape("x*{v}", lambda v: f"x*{v}"),  # no file matches in the scratch folder
    Shape("~{v}", lambda v: f"~{v}"),
    Shape("a=~{v}", lambda v: f"a=~{v}"),
    Shape("--opt={v}", lambda v: f"--opt={v}"),
    Shape('"$(printf %s x)"{v}', lambda v: f"x{v}"),
    Shape("{{v}}{v}", lambda v: "{v}" + v),
]


def _backticked(inner: str, in_double_quotes: bool) -> str:
    """`inner` written as a backtick body (bash removes one backslash before \\ ` $ there, and
    before " in one inside "...", where a bare " is refused: see shell_lexer)."""
    escaped = re.sub(r'([\\`$"])' if in_double_quotes else r"([\\`$])", r"\\\1", inner)
    return f'"`{escaped}`"' if in_double_quotes else f"`{escaped}`"


def _nested_shell(inner: str, quote: str) -> str:
    """`bash -c` with `inner` as its command string, written in '...' or "..."."""
    if quote == "'":
        return "bash -c '" + inner.replace("'", "'\\''") + "'"
    return 'bash -c "' + re.sub(r'([\\"$`])', r"\\\1", inner) + '"'


WRAPPERS: list[Callable[[str], str]] = [
    lambda c: _nested_shell(c, "'"),
    lambda c: _nested_shell(c, '"'),
    lambda c: c,
    lambda c: f'echo "$( {c})"',  # `$((` would start arithmetic
    lambda c: f"echo $( {c})",
    lambda c: "echo " + _backticked(c, in_double_quotes=False),
    lambda c: "echo " + _backticked(c, in_double_quotes=True),
    lambda c: f'echo "a $(echo "b $( {c})")"',
    lambda c: f"( {c})",
    lambda c: f"{{ {c}; }}",
    lambda c: f"if true; then {c}; fi",
    lambda c: f"false || {c}",
    lambda c: f"{c} | cat",
    lambda c: f"for i in 1; do {c}; done",
    lambda c: f"function f {{ {c}; }}; f",
    lambda c: f"case x in x) {c};; y) echo ')';; esac",
    lambda c: f"case \"$( {c})\" in *) ;; esac",
    lambda c: f"# don't forget ` $( \"\n{c}",
    lambda c: f"{c} # it's done {{{{x}}}}\ntrue",
    lambda c: f"cat <<'EOF' >/dev/null\nit's \"quoted\" $(x) `y`\nEOF\n{c}",
    lambda c: f"cat <<EOF >/dev/null\nit's $(echo a) ${{HOME}}\nEOF\n{c}",
    lambda c: f"x=$( {c}); echo \"$x\"",
    lambda c: f"[[ -n 'a b' && x == x* ]] && {c}",
    lambda c: f"echo $(( 1 + 2 )) \"${{HOME:-it is}}\" >/dev/null; {c}",
    lambda c: f"awk '{{print $1}}' </dev/null; {c}",
]

REFUSED_USES = [
    "# {v}\n",
    "echo $(( {v} ));",
    "(( {v} ));",
    "echo ${x:-{v}};",
    "echo \"${x:-'{v}'}\";",
    "cat <<EOF\n{v}\nEOF\n",
    "cat <<'EOF'\n{v}\nEOF\n",
    "[[ x == {v} ]];",
    "[[ x =~ \"{v}\" ]];",
    "[[ {v} -eq 1 ]];",
    "case x in {v}) ;; esac;",
    "let {v};",
    "printf -v {v} %s x;",
    "declare -i n='{v}';",
    "a[{v}]=1;",
    "echo \\{v};",
    'echo "\\{v}";',
    "cat <<{v}\nEOF\n",  # where the body ends would depend on the value
]

ALPHABET = "'\"$`\\\n\t *?~-;|&(){}[]#!<>=,:@%+./^ab9é日\u00a0"
HOSTILE = [
    "", "-x", "--", "~", "~root", "*", "[a]", "a b", "\\", "\\'", "'", '"', "EOF", "\n", "é日本",
    f"x; touch {MARKER}", f"$(touch {MARKER})", f"`touch {MARKER}`", f"'; touch {MARKER}; '",
    f'"; touch {MARKER}; "', f"x[$(touch {MARKER})]", f"\\'; touch {MARKER} #", f"\\\"`touch {MARKER}`",
    f"$'\\''; touch {MARKER}'", "${HOME}", "{v}", "relu", "33", "if", "a=b", "1,2",
]  # fmt: skip
VALUES = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(ALPHABET, max_size=12),
    st.lists(st.sampled_from(HOSTILE), min_size=2, max_size=4).map("".join),
)


@dataclass(frozen=True)
class Case:
    template: str
    argument: Shape
    refused: bool


@st.composite
def cases(draw: st.DrawFn) -> Case:
    argument = draw(st.sampled_from(ARGUMENTS))
    command = f"dump {argument.text}"
    refused_use = draw(st.one_of(st.none(), st.sampled_from(REFUSED_USES)))
    if refused_use is not None:
        command = refused_use + command
    for wrapper in draw(st.lists(st.sampled_from(WRAPPERS), max_size=3)):
        command = wrapper(command)
    return Case(command, argument, refused_use is not None)


@pytest.fixture(scope="module")
def bash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bash]:
    shell = Bash(tmp_path_factory.mktemp("bash"))
    yield shell
    shell.close()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=cases(), value=VALUES)
def test_a_value_reaches_the_program_exactly_or_the_template_is_refused(bash: Bash, case: Case, value: str) -> None:
    try:
        template = compile_template(case.template, ["v"], "--cmd")
    except TemplateError as error:
        assert case.refused, f"a safe template was refused: {error}"
        assert "$PATAS_VAR_v" in str(error)
        return
    assert not case.refused, f"a template that must be refused was accepted: {case.template!r}"
    rendered = template.render({"v": value})
    assert bash.calls(rendered) == [[case.argument.expected(value)]], rendered
    assert not bash.marker_appeared(), rendered
