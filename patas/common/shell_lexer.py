"""Where a hole in a bash command line lands: a lexer of bash's quoting and nesting.

A caller marks holes in a command line with `HOLE` (one NUL character each; a real command line
cannot hold a NUL) and asks `place_holes` what each hole lands in: a plain word, '...', "...",
$'...', or a place where text becomes code or a pattern (arithmetic, a `${...}` operand, a comment,
a here-document, a `[[ == ]]` or `case` pattern). The lexer follows bash's rules for words, the
four kinds of quotes, `$(...)` and backticks at any depth (also inside "..."), `${...}`, `$((...))`,
`((...))`, comments, here-documents, `[[ ... ]]` and `case`. Anything it cannot follow (a syntax
error, a here-document delimiter with a hole in it) makes every hole `UNKNOWN`.

Backticks matter to whoever fills a hole: bash removes one level of backslashes before `\\`, `` \\` ``
and `\\$` in a backtick body (and `\\"` in one inside "...") before it parses the body, so each
enclosing backtick body is recorded, with whether it is inside "...". Inside "`...`", "..." written
without backslashes is refused: bash 5.2 finds where such a body ends by a scan that a value can
derail (`{<(` in it makes `echo "`dump "{v}"`"` a syntax error), whatever quoting the value gets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from enum import Enum

from patas.common.shell_commands import (
    SHELLS_WITH_ANSI_C_QUOTES,
    command_string_shell,
    evaluates_next_argument,
    is_assignment,
    nested_shell,
    unquoted,
)

HOLE = "\0"

_BLANKS = " \t"
_METACHARACTERS = " \t\n;&|()<>"
# Operators, longest first so that `;;&` is not read as `;;` then `&`.
_CASE_ENDS = (";;&", ";;", ";&")
_CONTROL_OPERATORS = ("&&", "||", "|&", ";", "&", "|")
_REDIRECTIONS = ("&>>", "&>", ">>", ">&", "<&", "<>", ">|", ">", "<")
# Words after which the next word still starts a command.
_COMMAND_PREFIXES = frozenset({"!", "{", "}", "then", "else", "elif", "fi", "do", "done", "if", "while", "until", "time"})
_NEEDS_A_COMMAND = frozenset({"!", "{", "then", "else", "elif", "do", "if", "while", "until"})
_CONDITIONAL_PATTERN_OPERATORS = frozenset({"==", "=", "!=", "=~"})
_CONDITIONAL_ARITHMETIC_OPERATORS = frozenset({"-eq", "-ne", "-lt", "-le", "-gt", "-ge"})
_CONDITIONAL_NAME_OPERATORS = frozenset({"-v", "-R"})


class Context(Enum):
    """What a hole lands in; only the first five take a quoted value as plain data."""

    WORD = "a word"
    QUOTED_WORD = "a word that must be quoted"  # in `[[ ]]` or a `~user` prefix: never left bare
    SINGLE_QUOTES = "'...'"
    DOUBLE_QUOTES = '"..."'
    ANSI_C_QUOTES = "$'...'"
    ESCAPED = "the character after a backslash"
    AFTER_DOLLAR = "the character after a `$`"
    COMMENT = "a comment"
    HEREDOC_BODY = "a here-document"
    HEREDOC_DELIMITER = "a here-document delimiter"
    ARITHMETIC = "arithmetic"
    SUBSCRIPT = "an array subscript (arithmetic)"
    EVALUATED_ARGUMENT = "an argument bash evaluates (of let, read, trap, printf -v, test -v, declare -i/-n)"
    PARAMETER_EXPANSION = "a parameter expansion ${...}"
    PATTERN = "a pattern ([[ == ]], [[ =~ ]] or case)"
    VARIABLE_NAME = "a variable name ([[ -v ]])"
    LOCALE_STRING = '$"..." (a translated string)'
    UNESCAPED_QUOTES = '"..." without backslashes inside `...` inside "..." (write \\"...\\" or $(...))'
    UNKNOWN = "a place patas cannot follow (unbalanced quotes or brackets?)"

    @property
    def takes_data(self) -> bool:
        return self in _DATA_CONTEXTS


_DATA_CONTEXTS = frozenset(
    {Context.WORD, Context.QUOTED_WORD, Context.SINGLE_QUOTES, Context.DOUBLE_QUOTES, Context.ANSI_C_QUOTES}
)


@dataclass(frozen=True)
class Placement:
    """Where one hole lands: its context, how many backtick bodies enclose it, and the nested
    shell (a program that parses its arguments as code, e.g. `bash -c`) that receives it, if any,
    with where it lands there when that can be read (the word after `-c` expands nothing else)."""

    context: Context
    backticks: tuple[bool, ...] = ()  # the enclosing backtick bodies, outermost first: each inside "..."?
    nested_shell: str | None = None
    inner: Placement | None = None  # where it lands in the command string the nested shell reads


class _Lost(Exception):
    """The lexer cannot follow the text from here on."""


@dataclass
class _Heredoc:
    delimiter: str
    strip_tabs: bool


@dataclass
class _Command:
    """The simple command being read."""

    start: bool = True  # the next word is in command position
    empty: bool = True  # nothing to run yet, so a `;` or `|` now is a syntax error
    words: list[str] = field(default_factory=list)


@dataclass
class _Word:
    text: str  # as written, with quotes
    placed: list[int]  # indexes into the lexer's placements, of the holes in this word

    @property
    def bare(self) -> str | None:
        """The word if nothing in it is quoted or expanded (so it can be a reserved word)."""
        return self.text if re.fullmatch(r"[^'\"\\$`\0]+", self.text) else None


def place_holes(text: str) -> tuple[Placement, ...]:
    """The placement of every `HOLE` in the bash command line `text`, in order."""
    lexer = _Lexer(text, backticks=(), nested_shell=None)
    try:
        if lexer.command_list(closer=None) is not None:
            raise _Lost  # a `;;` or `esac` outside any case
    except _Lost:
        return (Placement(Context.UNKNOWN),) * text.count(HOLE)
    return tuple(lexer.placements)


class _Lexer:
    def __init__(
        self, text: str, backticks: tuple[bool, ...], nested_shell: str | None, unescaped_quotes: frozenset[int] = frozenset()
    ) -> None:
        self.text = text
        self.i = 0
        self.backticks = backticks
        self.unescaped_quotes = unescaped_quotes  # where a backtick body inside "..." has a bare `"`
        self.nested_shell = nested_shell
        self.placements: list[Placement] = []
        self.heredocs: list[_Heredoc] = []

    # -- characters

    def peek(self, length: int = 1) -> str:
        return self.text[self.i : self.i + length]

    def at(self, *prefixes: str) -> str | None:
        return next((p for p in prefixes if self.text.startswith(p, self.i)), None)

    def place(self, context: Context) -> int:
        self.placements.append(Placement(context, self.backticks, self.nested_shell))
        self.i += 1
        return len(self.placements) - 1

    def skip_blanks(self) -> None:
        while self.peek() in tuple(_BLANKS) or self.at("\\\n"):
            self.i += 2 if self.peek() == "\\" else 1

    # -- commands

    def command_list(self, closer: str | None) -> str | None:
        """Read commands up to `closer` (")" or None for the end); return what ended them:
        the closer, a case terminator or `esac` (the caller decides if that is allowed)."""
        command = _Command()
        while True:
            self.skip_blanks()
            char = self.peek()
            if char in ("", ")") or self.at(*_CASE_ENDS):
                return self.end_of_list(closer)
            if char == "\n":
                self.i += 1
                self.read_heredoc_bodies()
                command = _Command()
            elif char == "#":
                self.comment()
            elif (op := self.at(*_CONTROL_OPERATORS)) is not None:
                if command.empty:
                    raise _Lost  # `;` or `|` with no command before it: a syntax error
                self.i += len(op)
                command = _Command()
            elif not self.redirection(command):
                if char == "(":
                    self.parenthesis(command)
                elif (ended := self.command_word(command, self.word(command.words))) is not None:
                    return ended

    def end_of_list(self, closer: str | None) -> str | None:
        if self.peek() == "":
            if closer is not None:
                raise _Lost
            return None
        if self.peek() == ")":
            if closer != ")":
                raise _Lost
            self.i += 1
            return ")"
        end = self.at(*_CASE_ENDS)
        assert end is not None
        self.i += len(end)
        return end

    def redirection(self, command: _Command) -> bool:
        """A redirection or process substitution, if one starts here."""
        if self.at("<(", ">("):
            self.i += 2
            self.nested(")")
        elif self.at("<<<"):
            self.i += 3
            self.skip_blanks()
            self.word(command.words)
        elif self.at("<<"):
            self.heredoc()
        elif (op := self.at(*_REDIRECTIONS)) is not None:
            self.i += len(op)
            self.skip_blanks()
            self.word(command.words)
        else:
            return False
        command.empty = False
        return True

    def parenthesis(self, command: _Command) -> None:
        """`(list)`, `((arithmetic))` or the `()` of a function definition."""
        if self.at("()") and command.words:
            self.i += 2  # `name()`: a function definition; its body is a command
            command.start, command.empty = True, True
            return
        if not command.start:
            raise _Lost
        self.i += 1
        if self.peek() == "(":
            self.i += 1
            self.region(Context.ARITHMETIC, "(", ")", depth=2)
        else:
            self.nested(")")
        command.start, command.empty = False, False

    def command_word(self, command: _Command, word: _Word) -> str | None:
        """After a word: if it is in command position, the compound command it may open."""
        if not command.start:
            return None
        if word.bare == "esac":
            return "esac"
        command.empty = word.bare in _NEEDS_A_COMMAND
        command.start = word.bare in _COMMAND_PREFIXES or is_assignment(word.text)
        if word.bare in _COMMAND_PREFIXES:
            command.words.clear()  # `if`, `{`, `!`...: the simple command starts after them
        if word.bare == "[[":
            self.conditional()
        elif word.bare == "case":
            self.case()
        elif word.bare in ("for", "select"):
            self.skip_blanks()
            if self.at("(("):
                self.i += 2
                self.region(Context.ARITHMETIC, "(", ")", depth=2)
        elif word.bare == "function":
            self.skip_blanks()
            self.word([])  # the name; the body that follows is a command
            self.skip_blanks()
            if self.at("()"):
                self.i += 2
            command.start, command.empty = True, True
        return None

    def nested(self, closer: str) -> None:
        """A command list in `$(...)`, `(...)` or `<(...)`: a full command at any depth."""
        if self.command_list(closer) != closer:
            raise _Lost

    def comment(self) -> None:
        while self.peek() not in ("", "\n"):
            if self.peek() == HOLE:
                self.place(Context.COMMENT)
            else:
                self.i += 1

    # -- here-documents

    def heredoc(self) -> None:
        strip_tabs = self.at("<<-") is not None
        self.i += 3 if strip_tabs else 2
        self.skip_blanks()
        word = self.word([], refuse=Context.HEREDOC_DELIMITER)
        if word.placed:
            raise _Lost  # where the body ends depends on the value
        self.heredocs.append(_Heredoc(re.sub(r"""["'\\]""", "", word.text.replace("$'", "'")), strip_tabs))

    def read_heredoc_bodies(self) -> None:
        """At a newline: the bodies of the here-documents begun on the line just ended."""
        for heredoc in self.heredocs:
            while self.peek() != "":
                end = self.text.find("\n", self.i)
                line_end = len(self.text) if end == -1 else end
                line = self.text[self.i : line_end]
                if (line.lstrip("\t") if heredoc.strip_tabs else line) == heredoc.delimiter:
                    self.i = min(line_end + 1, len(self.text))
                    break
                for _ in range(line.count(HOLE)):
                    self.placements.append(Placement(Context.HEREDOC_BODY, self.backticks, self.nested_shell))
                self.i = min(line_end + 1, len(self.text))
        self.heredocs = []

    # -- compound commands

    def conditional(self) -> None:
        """`[[ ... ]]`: words are never split or globbed, but some operands are patterns or
        arithmetic, which is known only once the operator next to them is read."""
        words: list[_Word] = []
        while True:
            self.skip_blanks()
            if self.peek() == "":
                raise _Lost
            if self.peek() == "\n":
                self.i += 1
            elif (op := self.at("&&", "||", "(", ")", "<", ">")) is not None:
                self.i += len(op)
                words.append(_Word(op, []))
            elif words and words[-1].bare == "=~":
                words.append(self.regex())
            else:
                word = self.word([], conditional=True)
                if word.bare == "]]":
                    break
                words.append(word)
        for index, word in enumerate(words):
            before = words[index - 1].bare if index > 0 else None
            after = words[index + 1].bare if index + 1 < len(words) else None
            if before in _CONDITIONAL_PATTERN_OPERATORS:
                self.recontext(word, Context.PATTERN)
            elif before in _CONDITIONAL_NAME_OPERATORS:
                self.recontext(word, Context.VARIABLE_NAME)
            elif _CONDITIONAL_ARITHMETIC_OPERATORS & {before, after}:
                self.recontext(word, Context.ARITHMETIC)

    def regex(self) -> _Word:
        """The right side of `=~`, where bash also allows unquoted `(`, `)` and `|`."""
        start, placed, depth = self.i, [], 0
        while (char := self.peek()) != "" and (depth > 0 or char not in " \t\n"):
            if char == HOLE:
                placed.append(self.place(Context.PATTERN))
                continue
            if char == "\\":
                self.escape(placed)
                continue
            if char in "'\"`$":
                self.word_part(placed, Context.PATTERN)
                continue
            depth += {"(": 1, ")": -1}.get(char, 0)
            self.i += 1
        return _Word(self.text[start : self.i], placed)

    def recontext(self, word: _Word, context: Context) -> None:
        for index in word.placed:
            self.placements[index] = Placement(context, self.backticks, self.nested_shell)

    def case(self) -> None:
        """`case WORD in PATTERN) LIST ;; ... esac`: holes in patterns are refused."""
        self.skip_blanks()
        self.word([])
        self.skip_space_and_comments()
        if self.word([]).bare != "in":
            raise _Lost
        while True:
            self.skip_space_and_comments()
            if re.match(r"esac(?![^" + re.escape(_METACHARACTERS) + "])", self.text[self.i :]):
                self.i += len("esac")
                return
            if self.peek() == "(":
                self.i += 1
            while self.peek() != ")":
                self.skip_blanks()
                if self.peek() == "|":
                    self.i += 1
                elif self.peek() in ("", "\n"):
                    raise _Lost
                else:
                    self.word([], refuse=Context.PATTERN)
            self.i += 1
            ended = self.command_list(closer=None)
            if ended == "esac":
                return
            if ended not in _CASE_ENDS:
                raise _Lost

    def skip_space_and_comments(self) -> None:
        while True:
            self.skip_blanks()
            if self.peek() == "\n":
                self.i += 1
                self.read_heredoc_bodies()
            elif self.peek() == "#":
                self.comment()
            else:
                return

    # -- words

    def word(self, command_words: list[str], refuse: Context | None = None, conditional: bool = False) -> _Word:
        """One shell word; holes in it are data unless `refuse` says what they land in instead."""
        start, placed = self.i, []
        tilde = self.peek() == "~"
        if refuse is None and evaluates_next_argument(command_words):
            refuse = Context.EVALUATED_ARGUMENT
        outer_shell = self.nested_shell
        self.nested_shell = outer_shell or nested_shell(command_words)
        while (char := self.peek()) != "" and char not in _METACHARACTERS:
            if char == HOLE:
                if refuse is not None:
                    context = refuse
                elif self.in_subscript(start):
                    context = Context.SUBSCRIPT
                else:
                    context = Context.QUOTED_WORD if conditional or tilde else Context.WORD
                placed.append(self.place(context))
            elif char in "=:" and self.peek(2)[1:] == "~":
                self.i += 1
                tilde = True
            elif char == "/":
                self.i += 1
                tilde = False
            elif char == "\\" and self.peek(2) == "\\\n":
                self.i += 2
            elif char == "\\":
                self.escape(placed)
            elif char in "'\"`$":
                tilde = False
                self.word_part(placed, refuse)
            else:
                self.i += 1
        self.nested_shell = outer_shell
        word = _Word(self.text[start : self.i], placed)
        if placed and refuse is None:
            self.place_in_command_string(word, command_words)
        command_words.append(word.text)
        return word

    def place_in_command_string(self, word: _Word, command_words: list[str]) -> None:
        """For the word after `bash -c` (a command string) whose only expansions are holes:
        where each hole lands in the command the second shell reads."""
        shell = command_string_shell(command_words)
        inner_text = unquoted(word.text)
        if shell is None or inner_text is None:
            return
        for index, inner in zip(word.placed, place_holes(inner_text)):
            if inner.context is Context.ANSI_C_QUOTES and shell not in SHELLS_WITH_ANSI_C_QUOTES:
                inner = Placement(Context.UNKNOWN)
            self.placements[index] = replace(self.placements[index], inner=inner)

    def in_subscript(self, start: int) -> bool:
        """Inside `name[...` at the start of a word (an assignment's subscript is arithmetic)."""
        before = self.text[start : self.i]
        match = re.match(r"[A-Za-z_0-9]*\[", before)
        return match is not None and "]" not in before[match.end() :]

    def word_part(self, placed: list[int], refuse: Context | None, in_double_quotes: bool = False) -> None:
        """A quoted string or an expansion, starting at a quote, backtick or `$`."""
        if self.at("$'") and not in_double_quotes:
            self.i += 2
            self.ansi_c(placed, refuse)
        elif self.at('$"') and not in_double_quotes:
            self.i += 2
            self.double_quotes(placed, Context.LOCALE_STRING)
        elif self.peek() == "'" and not in_double_quotes:
            self.i += 1
            self.single_quotes(placed, refuse)
        elif self.peek() == '"':
            bare = self.i in self.unescaped_quotes
            self.i += 1
            self.double_quotes(placed, refuse or (Context.UNESCAPED_QUOTES if bare else None))
        elif self.peek() == "'":
            self.i += 1  # a literal quote inside "..."
        else:
            self.expansion(in_double_quotes)

    def single_quotes(self, placed: list[int], refuse: Context | None) -> None:
        while (char := self.peek()) != "'":
            if char == "":
                raise _Lost
            if char == HOLE:
                placed.append(self.place(refuse or Context.SINGLE_QUOTES))
            else:
                self.i += 1
        self.i += 1

    def ansi_c(self, placed: list[int], refuse: Context | None) -> None:
        while (char := self.peek()) != "'":
            if char == "":
                raise _Lost
            if char == HOLE:
                placed.append(self.place(refuse or Context.ANSI_C_QUOTES))
            elif char == "\\":
                self.escape(placed)
            else:
                self.i += 1
        self.i += 1

    def double_quotes(self, placed: list[int], refuse: Context | None) -> None:
        while (char := self.peek()) != '"':
            if char == "":
                raise _Lost
            if char == HOLE:
                placed.append(self.place(refuse or Context.DOUBLE_QUOTES))
            elif char == "\\":
                self.escape(placed)
            elif char in "`$":
                self.expansion(in_double_quotes=True)
            else:
                self.i += 1
        self.i += 1

    def escape(self, placed: list[int]) -> None:
        """A backslash and the character it escapes; a hole there would lose its first character."""
        self.i += 1
        if self.peek() == HOLE:
            placed.append(self.place(Context.ESCAPED))
        elif self.peek() != "":
            self.i += 1

    def expansion(self, in_double_quotes: bool) -> None:
        """`...`, $(...), $((...)), ${...}, $[...] or a plain `$`; holes in a command
        substitution are placed as in any command, in the others they are refused."""
        if self.peek() == "`":
            self.i += 1
            self.backtick(in_double_quotes)
        elif self.at("$(("):
            self.i += 3
            self.region(Context.ARITHMETIC, "(", ")", 2)
        elif self.at("$("):
            self.i += 2
            self.nested(")")
        elif self.at("${"):
            self.i += 2
            self.region(Context.PARAMETER_EXPANSION, "{", "}", 1)
        elif self.at("$["):
            self.i += 2
            self.region(Context.ARITHMETIC, "[", "]", 1)
        else:
            self.i += 1
            if self.peek() == HOLE:
                self.place(Context.AFTER_DOLLAR)

    def backtick(self, in_double_quotes: bool) -> None:
        """A backtick body: bash finds its end at the first unescaped backtick, removes the
        backslash before `\\`, `` ` ``, `$` (and `"` inside "..."), then parses it as a command."""
        unescaped = ("\\", "`", "$", '"') if in_double_quotes else ("\\", "`", "$")
        body, bare_quotes, j = [], set(), self.i
        while (char := self.text[j : j + 1]) != "`":
            if char == "":
                raise _Lost
            if char == "\\" and self.text[j + 1 : j + 2] in unescaped:
                j += 1
                char = self.text[j]
            elif char == '"' and in_double_quotes:
                bare_quotes.add(len(body))
            body.append(char)
            j += 1
        inner = _Lexer("".join(body), (*self.backticks, in_double_quotes), self.nested_shell, frozenset(bare_quotes))
        try:
            if inner.command_list(closer=None) is not None:
                raise _Lost
        finally:
            self.placements.extend(inner.placements)
        self.i = j + 1

    def region(self, context: Context, opener: str, closer: str, depth: int) -> None:
        """An arithmetic expression or a `${...}` up to its balancing closer; every hole in it
        (quoted or not) is refused as `context`, except in a nested command substitution."""
        placed: list[int] = []
        while depth > 0:
            char = self.peek()
            if char == "":
                raise _Lost
            if char == HOLE:
                self.place(context)
            elif char == "\\":
                self.i += 1
                if self.peek() not in ("", HOLE):
                    self.i += 1
            elif char in "'\"`$":
                self.word_part(placed, context)  # bash honours '...' here even inside "..."
            else:
                depth += (char == opener) - (char == closer)
                self.i += 1
