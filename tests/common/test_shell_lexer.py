import pytest

from patas.common.shell_lexer import HOLE, Context, place_holes

C = Context


def contexts(text: str) -> list[Context]:
    """The context of each `@` in `text` (written `@` here for legibility)."""
    return [p.context for p in place_holes(text.replace("@", HOLE))]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("echo @ x@y", [C.WORD, C.WORD]),
        ("echo '@' \"@\" $'@'", [C.SINGLE_QUOTES, C.DOUBLE_QUOTES, C.ANSI_C_QUOTES]),
        ("echo \"a '@' b\"", [C.DOUBLE_QUOTES]),  # ' is plain text inside "..."
        ("echo 'a \"@\" b'", [C.SINGLE_QUOTES]),
        ('echo "$(echo "$(echo @)")"', [C.WORD]),  # a command substitution body is a full command
        ('echo "$(echo \'@\')"', [C.SINGLE_QUOTES]),
        ("echo <(cat @) >(cat '@')", [C.WORD, C.SINGLE_QUOTES]),
        ("x=@ y=\"@\" cmd", [C.WORD, C.DOUBLE_QUOTES]),
        ("echo ~@ ~/@ a=~@", [C.QUOTED_WORD, C.WORD, C.QUOTED_WORD]),
        ("[[ -n @ && @ ]]", [C.QUOTED_WORD, C.QUOTED_WORD]),
        ("[[ @ == @ ]] || [[ x != \"@\" ]] || [[ x =~ ^(@|b)$ ]]", [C.QUOTED_WORD, C.PATTERN, C.PATTERN, C.PATTERN]),
        ("[[ @ -lt 3 ]] || [[ 3 -ge '@' ]] || [[ -v @ ]]", [C.ARITHMETIC, C.ARITHMETIC, C.VARIABLE_NAME]),
        ("case @ in @|'@') echo @;; (b) ;; esac", [C.WORD, C.PATTERN, C.PATTERN, C.WORD]),
        ("echo $(( @ )) $((1+'@')) $[@]; (( @ )); for ((i=@;;)); do :; done", [C.ARITHMETIC] * 5),
        ("a[@]=1 echo x[@]", [C.SUBSCRIPT, C.SUBSCRIPT]),
        ("echo ${x:-@} \"${x:-'@'}\" ${x:-$(echo @)}", [C.PARAMETER_EXPANSION, C.PARAMETER_EXPANSION, C.WORD]),
        ("echo @ # it's @", [C.WORD, C.COMMENT]),
        ("# it's\necho @", [C.WORD]),
        ("echo a#@", [C.WORD]),  # not a comment: `#` inside a word
        ("cat <<EOF\n@\nEOF\necho @", [C.HEREDOC_BODY, C.WORD]),
        ("cat <<'EOF'\n@ ' \"\nEOF\necho '@'", [C.HEREDOC_BODY, C.SINGLE_QUOTES]),
        ("cat <<-\"E\" <<F; echo @\n\t@\n\tE\n@\nF\necho @", [C.WORD, C.HEREDOC_BODY, C.HEREDOC_BODY, C.WORD]),
        ("cat <<< @", [C.WORD]),
        ("echo \\@ \"\\@\" $'\\@'", [C.ESCAPED] * 3),
        ("echo $\"@\"", [C.LOCALE_STRING]),
        ("f() { echo @; }; f @", [C.WORD, C.WORD]),
        ("function f { [[ @ -eq 1 ]]; }; function g() { (( @ )); }", [C.ARITHMETIC, C.ARITHMETIC]),
        ("let @; read @; printf -v @ %s; test -v '@'; declare -i n=@; local -n r=\"@\"", [C.EVALUATED_ARGUMENT] * 6),
        ("printf %s @; export A=@; [ @ -eq 1 ]", [C.WORD] * 3),  # data: nothing evaluates these
    ],
)
def test_each_hole_is_placed_in_its_context(text, expected):
    assert contexts(text) == expected


def test_backtick_bodies_are_counted_at_any_depth_also_inside_double_quotes():
    placements = place_holes("echo `echo @` \"`echo '@'`\" `echo \\`echo @\\``".replace("@", HOLE))
    assert [(p.context, p.backticks) for p in placements] == [(C.WORD, (False,)), (C.SINGLE_QUOTES, (True,)), (C.WORD, (False, False))]


@pytest.mark.parametrize(
    "text",
    [
        "echo '@",  # unbalanced quote
        'echo "@',
        "echo $(echo @",
        "echo `echo @",
        "echo @; ;",  # an empty command: bash refuses the line
        "cat <<@\nx\n@",  # where the body ends depends on the value
        "echo @ )",
        "echo @ ;; esac",
    ],
)
def test_text_bash_cannot_parse_makes_every_hole_unknown(text):
    assert set(contexts(text)) == {C.UNKNOWN}


@pytest.mark.parametrize(
    "text, shell",
    [
        ('bash -c "echo @"', "bash"),
        ("sh -ec 'echo @'", "sh"),
        ("timeout 5 /bin/bash -c \"$(echo @)\"", "bash"),
        ("ssh host echo @", "ssh"),
        ("eval echo @", "eval"),
        ("bash ./run.sh @", None),  # a script's argument is data
        ("echo @ | cat", None),
    ],
)
def test_a_hole_handed_to_another_shell_names_that_shell(text, shell):
    assert [p.nested_shell for p in place_holes(text.replace("@", HOLE))] == [shell]
