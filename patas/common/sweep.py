"""The sweep: an experiment's variables → combinations → tasks.

Tasks are generated lazily, in a fixed order, so a grid of a million tasks costs no memory up
front. A task's identity (`key`) is a digest of its rendered commands, its variable values and its
repeat number: it does not change when other values are added to the grid, which is how a rerun
recognises the work already done.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from typing import Iterator

from patas.common.config import Experiment

KEY_BYTES = 12


@dataclass(frozen=True)
class Task:
    """One run of an experiment's commands with one combination of values."""

    key: str
    combination_id: int
    repeat_id: int
    values: tuple[tuple[str, str], ...]
    commands: tuple[str, ...]

    def natural_id(self, repeat: int) -> int:
        """The task id the original patas gives: combination_id * repeat + repeat_id."""
        return self.combination_id * repeat + self.repeat_id


def tasks(experiment: Experiment) -> Iterator[Task]:
    """Every task of the experiment, combination by combination, repeats together."""
    names = [v.name for v in experiment.variables]
    value_lists = [v.values for v in experiment.variables]
    for combination_id, combo in enumerate(itertools.product(*value_lists)):
        values = dict(zip(names, combo))
        commands = tuple(t.render(values) for t in experiment.commands)
        pairs = tuple(zip(names, combo))
        base = combination_digest(commands, pairs)
        for repeat_id in range(experiment.repeat):
            yield Task(task_key(base, repeat_id), combination_id, repeat_id, pairs, commands)


def combination_digest(commands: tuple[str, ...], pairs: tuple[tuple[str, str], ...]) -> "hashlib._Hash":
    digest = hashlib.blake2b(digest_size=KEY_BYTES)
    for command in commands:
        digest.update(command.encode() + b"\0")
    digest.update(b"\1")
    for name, value in sorted(pairs):
        digest.update(f"{name}={value}".encode() + b"\0")
    return digest


def task_key(base: "hashlib._Hash", repeat_id: int) -> str:
    digest = base.copy()
    digest.update(b"\2%d" % repeat_id)
    return digest.hexdigest()
