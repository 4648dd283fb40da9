"""Option types the original patas's command line needs and click lacks."""

from __future__ import annotations

from typing import Any

import click


class VariadicOption(click.Option):
    """An option that takes one or more values, like argparse's nargs='+'.

    `--vl activation relu tanh --node localhost` gives `("activation", "relu", "tanh")`: values
    run up to the next word that looks like an option; a number is a value, negative or not
    (`-1`, `-.5`, `-1e-3`, `-inf`, `-nan`). Repeating the option gives one tuple per use. This
    is how the original patas's README writes --vl and --node, and users' fingers know it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("multiple", True)
        kwargs.setdefault("type", click.UNPROCESSED)
        super().__init__(*args, **kwargs)

    def add_to_parser(self, parser: Any, ctx: click.Context) -> None:
        super().add_to_parser(parser, ctx)
        # click's parser has no variadic options; wrap the parsed option so it takes the words
        # that follow its first value (the parser's option tables are private but long-stable).
        for name in self.opts:
            parser_option = parser._long_opt.get(name) or parser._short_opt.get(name)
            parser_option.process = _greedy(parser_option.process)


def _greedy(process: Any) -> Any:
    def take_following(value: str, state: Any) -> None:
        values = [value]
        while state.rargs and not _is_option_word(state.rargs[0]):
            values.append(state.rargs.pop(0))
        process(tuple(values), state)

    return take_following


def _is_option_word(word: str) -> bool:
    if not word.startswith("-") or word == "-":
        return False
    try:
        float(word)  # a negative number: a value
    except ValueError:
        return True
    return False
