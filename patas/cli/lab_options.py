"""The lab a command reads (`-o`, ./pataslab by default) and the experiment in it that the command
is about (EXPERIMENT), shared by the commands that read a lab.

EXPERIMENT is an experiment's name (`patas logs grid 0`) or its folder, as `patas explore` ends
("Outputs in pataslab/grid") and `patas parse -e` takes it (`patas logs pataslab/grid 0`): a word
with a slash is a folder, the lab is its parent, and -o may then be left out.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Callable

import click
from click.core import ParameterSource

DEFAULT_LAB = "./pataslab"


def _lab_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("-o", "--output", "lab_root", default=DEFAULT_LAB, show_default=True,
                        type=click.Path(file_okay=False), callback=_home_expanded, help=help)  # fmt: skip


def _home_expanded(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """`-o '~/labs'` (quoted, or from a script) is the home's labs, as patas's messages write
    paths under the home, not a folder named `~` here."""
    return os.path.expanduser(value)


lab_option = _lab_option("The pataslab folder.")


def experiment_in_lab(required: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """EXPERIMENT (a name or a folder; optional unless `required`) and -o: the command is called
    with `experiment`, a name (or None), and `lab_root`, the lab that holds it."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def resolved(*args: Any, experiment: str | None, lab_root: str, **kwargs: Any) -> Any:
            source = click.get_current_context().get_parameter_source("lab_root")
            name, root = experiment_and_lab(experiment, lab_root, source is not ParameterSource.DEFAULT)
            return command(*args, experiment=name, lab_root=root, **kwargs)

        with_lab = _lab_option("The pataslab folder (or give EXPERIMENT as its folder: pataslab/grid).")(resolved)
        return click.argument("experiment", required=required, shell_complete=_complete_experiment)(with_lab)

    return decorate


def _complete_experiment(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion of EXPERIMENT: the experiments of the lab (-o, if given before it)."""
    from patas.common.lab import experiments_in

    root = Path(ctx.params.get("lab_root") or DEFAULT_LAB)
    return [name for name in experiments_in(root) if name.startswith(incomplete)]


def experiment_and_lab(experiment: str | None, lab_root: str, lab_given: bool) -> tuple[str | None, str]:
    """The experiment's name and its lab, from EXPERIMENT as given and -o (`lab_given`: not by
    default). Raises click.UsageError for a folder that names none (/, ..) or is outside -o's lab."""
    if experiment is None or not _is_folder(experiment):
        return experiment, lab_root
    folder = Path(experiment)
    if folder.name in ("", ".", ".."):
        raise click.UsageError(f"EXPERIMENT {experiment}: give an experiment's name (grid) or its folder (pataslab/grid)")
    if lab_given and not _same_folder(folder.parent, Path(lab_root)):
        raise click.UsageError(f"EXPERIMENT {experiment} is not in -o {lab_root}: give its name with -o, or its folder alone")
    return folder.name, str(folder.parent)


def _is_folder(word: str) -> bool:
    return os.sep in word  # an experiment's name is a folder's: it has none


def _same_folder(one: Path, other: Path) -> bool:
    return os.path.abspath(one) == os.path.abspath(other)
