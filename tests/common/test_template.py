import shlex
import subprocess

import pytest

from patas.common.errors import TemplateError
from patas.common.template import compile_template

NASTY = ["it's", 'say "hi"', "$(touch /tmp/patas-pwned)", "a b", "`id`", "\\n", "; rm -rf ~", "${HOME}"]


def shell_echo(command: str) -> str:
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=True).stdout


def test_plain_tokens_appear_unchanged():
    template = compile_template("./main.py {neurons} {activation}", ["neurons", "activation"], "--cmd")
    assert template.render({"neurons": "33", "activation": "relu"}) == "./main.py 33 relu"


@pytest.mark.parametrize("value", NASTY)
@pytest.mark.parametrize("shape", ["printf '%s|' {v}", "printf '%s|' '{v}'", 'printf \'%s|\' "{v}"', "printf '%s|' x{v}y"])
def test_values_reach_the_program_exactly_in_any_quoting_context(value, shape):
    template = compile_template(shape, ["v"], "--cmd")
    expected = value if "x{v}y" not in shape else f"x{value}y"
    assert shell_echo(template.render({"v": value})) == expected + "|"


def test_foreign_braces_pass_through_untouched():
    text = """awk '{print $1}' f; echo ${HOME} {"a": 1} {} {1} {{v}}"""
    template = compile_template(text, ["v"], "--cmd")
    assert template.render({"v": "X"}) == """awk '{print $1}' f; echo ${HOME} {"a": 1} {} {1} {v}"""


def test_unknown_variable_is_an_error_with_a_suggestion():
    with pytest.raises(TemplateError) as error:
        compile_template("./main.py {neuron}", ["neurons", "activation"], "--cmd")
    assert str(error.value) == (
        "--cmd: command './main.py {neuron}' uses {neuron} but no variable is named 'neuron'"
        " (did you mean 'neurons'?) (variables: neurons, activation; write {{neuron}} for a literal {neuron})"
    )


def test_values_never_inject_shell_code(tmp_path):
    marker = tmp_path / "pwned"
    template = compile_template("echo {v}", ["v"], "--cmd")
    shell_echo(template.render({"v": f"$(touch {shlex.quote(str(marker))})"}))
    assert not marker.exists()
