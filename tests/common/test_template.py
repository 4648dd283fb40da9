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


# Issue 9 §1: each of these ran the value as code with the old three-context scanner.
PWNED = "x; touch PWNED"
REPRODUCTIONS_THAT_NOW_QUOTE = [
    ('echo "$(echo {v})"', PWNED, PWNED + "\n"),
    ('echo "`echo {v}`"', PWNED, PWNED + "\n"),
    ("# don't forget\necho {v}", PWNED, PWNED + "\n"),  # a quote inside a comment
    ('bash -c "echo {v}"', PWNED, PWNED + "\n"),  # re-parsed by a second shell: quoted for both
]
REPRODUCTIONS_THAT_ARE_REFUSED = [
    ("cat <<EOF\n{v}\nEOF", "a here-document"),
    ("echo $(( {v} ))", "arithmetic"),
]


def run_in(folder, command: str) -> str:
    return subprocess.run(["bash", "-c", command], cwd=folder, capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("text, value, output", REPRODUCTIONS_THAT_NOW_QUOTE)
def test_reproductions_print_the_value_and_run_nothing(tmp_path, text, value, output):
    rendered = compile_template(text, ["v"], "--cmd").render({"v": value})
    assert run_in(tmp_path, rendered) == output
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("text, place", REPRODUCTIONS_THAT_ARE_REFUSED)
def test_reproductions_in_places_no_quoting_protects_are_refused(text, place):
    with pytest.raises(TemplateError) as error:
        compile_template(text, ["v"], "--cmd")
    one_line = text.replace("\n", "\\n")
    assert str(error.value) == (
        f"--cmd: command '{one_line}' puts {{v}} in {place}, where a value can run as code or change meaning;"
        ' use "$PATAS_VAR_v" there instead'
    )


def test_a_refused_place_names_the_shell_that_parses_it():
    with pytest.raises(TemplateError, match=r"in arithmetic of the command bash runs"):
        compile_template('bash -c "echo \\$(( {v} ))"', ["v"], "--cmd")


def test_a_value_handed_to_another_shell_is_warned_about_once():
    template = compile_template("ssh node echo {v} {v}", ["v"], "--cmd")
    assert template.warnings == (
        "--cmd: command 'ssh node echo {v} {v}' hands {v} to another shell (ssh), which parses it again;"
        " patas cannot see how ssh reads it, so a value can run as code there;"
        ' write "$PATAS_VAR_v" inside the inner command instead, which that shell expands as data',
    )
    assert "patas quotes it for bash too" in compile_template("bash -c 'echo {v}'", ["v"], "--cmd").warnings[0]
    assert compile_template("bash ./run.sh {v}", ["v"], "--cmd").warnings == ()


@pytest.mark.parametrize(
    "value, rendered",
    [("relu", "echo relu"), ("33", "echo 33"), ("1e-05", "echo 1e-05"), ("", "echo ''"), ("~", "echo '~'"),
     ("a=b", "echo 'a=b'"), ("if", "echo 'if'"), ("it's", "echo 'it'\\''s'")],
)  # fmt: skip
def test_plain_tokens_stay_bare_and_anything_else_is_single_quoted(value, rendered):
    assert compile_template("echo {v}", ["v"], "--cmd").render({"v": value}) == rendered


def test_values_in_backticks_are_escaped_for_each_level(tmp_path):
    template = compile_template("echo `echo \\`printf %s {v}\\``", ["v"], "--cmd")
    for value in ["a`b", "a\\b", "$(touch PWNED)", "'\"", "`touch PWNED`"]:
        assert run_in(tmp_path, template.render({"v": value})) == value + "\n"
    assert not (tmp_path / "PWNED").exists()


# What bash 5.2 trips on in a backtick body inside "...": a `"` (of the value, or bare in the
# template) with `{` and `<(` near it. Found by test_template_properties.
BACKTICK_TRAPS = ["'{<(", '"{<(', "{<(", '{">(', "'{<(\"`", "'`{<("]


@pytest.mark.parametrize(
    "command", ["echo \"`printf %s '{v}'`\"", 'echo "`printf %s {v}`"', 'echo "`printf %s \\"{v}\\"`"', 'echo "`bash -c \\"printf %s {v}\\"`"'],
)
def test_a_value_reaches_a_backtick_body_inside_double_quotes_exactly(tmp_path, command):
    template = compile_template(command, ["v"], "--cmd")
    for value in BACKTICK_TRAPS:
        assert run_in(tmp_path, template.render({"v": value})) == value + "\n", template.render({"v": value})


@pytest.mark.parametrize("command", ['echo "`printf %s "{v}"`"', 'echo "`bash -c "printf %s {v}"`"'])
def test_bare_double_quotes_in_a_backtick_body_inside_double_quotes_are_refused(command):
    # No quoting of the value helps there: bash's scan for the body's end goes wrong first.
    with pytest.raises(TemplateError) as error:
        compile_template(command, ["v"], "--cmd")
    assert 'puts {v} in "..." without backslashes inside `...` inside "..." (write \\"...\\" or $(...))' in str(error.value)


def test_a_nul_character_in_a_command_is_an_error():
    with pytest.raises(TemplateError, match="contains a NUL character"):
        compile_template("echo a\0b {v}", ["v"], "experiment.yaml")


def test_a_huge_command_is_cut_in_the_message_and_its_size_said():
    with pytest.raises(TemplateError) as error:
        compile_template("echo {nam} " + "x" * 140_000, ["name"], "--cmd")
    message = str(error.value)
    assert len(message) < 600 and "(140,011 bytes)" in message and "did you mean 'name'" in message
