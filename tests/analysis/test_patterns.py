import pytest
from hypothesis import given
from hypothesis import strategies as st

from patas.analysis.patterns import PatternError, compile_breaker, compile_pattern, compile_patterns, last_match


def first_group(regex: str, text: str):
    match = compile_pattern("v", regex).regex.search(text)
    return match.group(1) if match else None


@pytest.mark.parametrize(
    "text, value",
    [
        ("acc: 3", "3"),
        ("acc: -0.5", "-0.5"),
        ("acc: +1.25e-3", "+1.25e-3"),
        ("acc: .5", ".5"),
        ("acc: 7.", "7."),
        ("acc: 1E5", "1E5"),
        ("acc: nan", "nan"),
        ("acc: NaN", "NaN"),
        ("acc: inf", "inf"),
        ("acc: -Infinity", "-Infinity"),
    ],
)
def test_float_placeholder_takes_signs_decimals_exponents_nan_inf(text, value):
    assert first_group(r"acc: (@float@)", text) == value


def test_float_placeholder_does_not_take_a_word_starting_with_inf():
    assert first_group(r"acc: (@float@)", "acc: info") is None


def test_int_slug_and_str_placeholders():
    assert first_group(r"epoch (@int@)", "epoch -12 of 20") == "-12"
    assert first_group(r"act=(@slug@)", "act=leaky_relu-2, next") == "leaky_relu-2"
    assert first_group(r"model (@str@)", 'model "res net" loaded') == "res net"
    assert first_group(r"model (@str@) (@int@)".replace("(@int@)", "@int@"), 'model "a" 3') == "a"
    assert first_group(r'(@str@ \d)', '"a b" 3') == '"a b" 3'


def test_patterns_match_per_line_anchors():
    assert first_group(r"^loss (@float@)$", "x\nloss 0.5\ny") == "0.5"


def test_pattern_without_group_is_an_error_naming_it():
    with pytest.raises(PatternError) as error:
        compile_pattern("acc", "Test accuracy: @float@")
    assert str(error.value) == (
        "-p acc 'Test accuracy: @float@': no capture group; put parentheses around the value"
        " to collect, e.g. '(@float@)'"
    )


def test_pattern_with_several_groups_is_an_error():
    with pytest.raises(PatternError, match=r"^-p acc '\(a\)\(b\)': 2 capture groups, expected one; make the others"):
        compile_pattern("acc", "(a)(b)")


def test_invalid_regex_is_an_error_with_the_reason():
    with pytest.raises(PatternError) as error:
        compile_pattern("acc", "Test (@float@")
    assert str(error.value) == "-p acc 'Test (@float@': invalid regex: missing ), unterminated subpattern"


def test_bad_name_and_duplicate_names_are_errors():
    with pytest.raises(PatternError) as error:
        compile_pattern("test acc", "(x)")
    assert str(error.value) == "-p 'test acc' '(x)': the name must be letters, digits and _ (it becomes column out_test acc)"
    with pytest.raises(PatternError, match="^-p acc: the name is used twice"):
        compile_patterns([("acc", "(x)"), ("acc", "(y)")])


def test_breaker_may_have_any_groups_but_must_be_valid():
    assert compile_breaker("^Epoch (a)(b)").groups == 2
    with pytest.raises(PatternError, match=r"^-n 'Epoch \[': invalid regex: "):
        compile_breaker("Epoch [")


def test_unknown_placeholder_is_an_error_listing_the_placeholders():
    with pytest.raises(PatternError) as error:
        compile_pattern("acc", "Test accuracy: (@flaot@)")
    assert str(error.value) == (
        "-p acc 'Test accuracy: (@flaot@)': unknown placeholder @flaot@ (did you mean @float@?);"
        " the placeholders are @float@ @int@ @slug@ @str@"
    )
    assert first_group(r"user\@host@ (@int@)", "user@host@ 3") == "3"  # a literal @word@ is escaped


@pytest.mark.parametrize(
    "regex, kind",
    [
        (r"acc: (@float@)%", "number"),
        (r"(?:epoch|step) (@int@)", "integer"),
        (r"[(](@slug@)[)]", "string"),
        (r"model (@str@)", "string"),
        (r"x (?P<v>@float@)", "number"),
        (r"\((@int@)\)", "integer"),
        (r"[]()](@int@)", "integer"),
        (r"(@float@|n/a)", None),
        (r"(\d+) ms", None),
    ],
)
def test_a_group_that_is_one_placeholder_gives_the_column_its_type(regex, kind):
    pattern = compile_pattern("v", regex)
    assert (pattern.kind.value if pattern.kind else None) == kind


def test_carriage_returns_end_lines_for_anchors():
    from patas.analysis.patterns import line_text

    text = line_text(" 10%\r 55%\r100%\r\nratio 3\r\n")
    assert text == " 10%\n 55%\n100%\nratio 3\n"
    assert compile_pattern("p", r"^ *(@int@)%$").regex.findall(text) == ["10", "55", "100"]
    assert line_text("plain\n") == "plain\n"


# Regex pieces that hold no capturing group, some with parentheses that are not one.
_NON_CAPTURING = [r"\(", r"\)", r"[(]", r"[)(]", r"[]()]", r"[^]()]", r"(?:a|b)", r"(?i:x)", r"(?=y)", r"(?<!z)",
                  r"\\", r"[\]()]", "abc", " +", r"\d+", r"(?:(?:a))", "@float@", "@int@"]  # fmt: skip


@given(
    prefix=st.lists(st.sampled_from(_NON_CAPTURING), max_size=4),
    body=st.lists(st.sampled_from(_NON_CAPTURING + ["@float@", "@slug@"]), min_size=1, max_size=3),
    suffix=st.lists(st.sampled_from(_NON_CAPTURING), max_size=4),
    named=st.booleans(),
)
def test_group_text_finds_the_one_capturing_group_whatever_surrounds_it(prefix, body, suffix, named):
    from patas.analysis.patterns import group_text

    inner = "".join(body)
    text = "".join(prefix) + ("(?P<v>" if named else "(") + inner + ")" + "".join(suffix)
    assert compile_pattern("v", text).regex.groups == 1  # the premise: Python sees one group
    assert group_text(text) == inner


@given(st.text(alphabet="ab \r\n", max_size=40))
def test_line_text_breaks_lines_where_a_terminal_would(text):
    import re

    from patas.analysis.patterns import line_text

    assert line_text(text).split("\n") == re.split(r"\r\n|\r|\n", text)


LINE = st.text(st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)), max_size=8)


@given(st.lists(LINE, max_size=6), st.booleans())
def test_a_pattern_that_can_match_nothing_still_gives_the_last_line(lines, newline_at_end):
    # `.*` also matches the empty string after each line; such a match found nothing and is skipped.
    text = "\n".join(lines) + ("\n" if newline_at_end and lines else "")
    filled = [line for line in lines if line]
    for regex in ("(.*)", "^(.*)$", "(.*)$"):
        match = last_match(compile_pattern("v", regex).regex, text)
        assert (match.group(1) if match else None) == (filled[-1] if filled else None), regex


def test_an_empty_group_in_a_match_that_is_not_empty_counts():
    regex = compile_pattern("v", r"loss=(\d*)").regex
    assert last_match(regex, "loss=3\nloss=\n").group(1) == ""
    assert last_match(compile_pattern("v", "(a*)").regex, "bbb") is None
    assert last_match(regex, "loss=3\nloss=4\n", 0, 7).group(1) == "3"  # within text[start:end]
