"""Issue 9 §1 end to end: `patas explore` never runs a value as code, in any shell context."""

import pytest

from tests.running import patas

PWNED = "x; touch PWNED"


@pytest.mark.parametrize(
    "command, value",
    [
        ('echo "$(echo {v})"', PWNED),
        ('echo "`echo {v}`"', PWNED),
        ("# don't forget\necho {v}", PWNED),
        ("cat <<'EOF'\n{v}\nEOF", PWNED),
        ("cat <<EOF\n{v}\nEOF", "$(touch PWNED)"),
        ("echo $(( {v} ))", "x[$(touch PWNED)]"),
        ('bash -c "echo {v}"', PWNED),
    ],
)
def test_a_value_is_printed_or_the_template_refused_and_nothing_runs(tmp_path, command, value):
    run = patas("explore", "--cmd", command, "--vl", "v", value, "-y", cwd=tmp_path)
    assert not (tmp_path / "PWNED").exists()
    if run.code == 0:
        assert (tmp_path / "pataslab/grid/0/stdout").read_text() == value + "\n"
    else:
        assert run.code == 1 and run.stderr.count("\n") == 1, run.stderr
        assert run.stderr.startswith("Error: --cmd: command ") and '"$PATAS_VAR_v"' in run.stderr
        assert not (tmp_path / "pataslab").exists()


def test_a_value_handed_to_another_shell_is_warned_about_before_the_run(tmp_path):
    run = patas("explore", "--cmd", 'bash -c "echo {v}"', "--vl", "v", "a", "b", "-y", cwd=tmp_path)
    assert run.code == 0, run.stderr
    warnings = [line for line in run.stderr.splitlines() if line.startswith("Warning: ")]
    assert warnings == [
        "Warning: --cmd: command 'bash -c \"echo {v}\"' hands {v} to another shell (bash), which parses it again;"
        " patas quotes it for bash too, as the command string is written out in full;"
        ' write "$PATAS_VAR_v" inside the inner command instead, which that shell expands as data'
    ]
    assert run.stderr.index("Warning: ") == 0  # before the plan and the run
