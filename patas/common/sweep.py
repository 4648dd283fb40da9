"""The sweep: an experiment's variables → combinations → tasks.

Tasks are generated lazily, in a fixed order, so a grid of a million tasks costs no memory up
front. A task's natural id (`combination_id * repeat + repeat_id`) is its place in that order, and
the task at any place is found by arithmetic (mixed-radix decoding), without walking those before. A task's identity (`key`) is a digest of its rendered commands, its variable values and its
repeat number: it does not change when other values are added to the grid, which is how a rerun
recognises the work already done.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterator

from patas.common.config import Experiment
from patas.common.digests import blake2b
from patas.common.template import quote

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


def tasks(experiment: Experiment, first: int = 0) -> Iterator[Task]:
    """The tasks of the experiment from natural id `first` on, combination by combination,
    repeats together."""
    start, first_repeat = divmod(first, experiment.repeat)
    value_lists = [v.values for v in experiment.variables]
    combos = itertools.product(*value_lists) if start == 0 else _combinations_from(value_lists, start)
    for combination_id, combo in enumerate(combos, start):
        repeats = range(first_repeat if combination_id == start else 0, experiment.repeat)
        yield from _combination_tasks(experiment, combination_id, combo, repeats)


def task_keys(experiment: Experiment) -> Iterator[str]:
    """The keys of `tasks(experiment)`, in the same order, without building each Task: a
    rerun's plan reads a big grid's keys only, and a value's quoting for each of its slots is
    computed once rather than once per combination."""
    render = _CommandRenderer(experiment)
    names = render.names
    repeats = range(experiment.repeat)
    for combo in itertools.product(*(v.values for v in experiment.variables)):
        base = combination_digest(render(combo), tuple(zip(names, combo)))
        for repeat_id in repeats:
            yield task_key(base, repeat_id)


class _CommandRenderer:
    """An experiment's commands for a combination of values, each value's quoting for each of
    its slots computed once, not once per combination."""

    def __init__(self, experiment: Experiment) -> None:
        self.names = [v.name for v in experiment.variables]
        # For each command, its parts: literal text, or the quoted text of each value of a variable.
        self._rendered = [
            [part if isinstance(part, str) else {value: quote(value, part.placement) for value in _values_of(experiment, part.name)}
             for part in template.parts]
            for template in experiment.commands
        ]  # fmt: skip
        self._slots = [
            [(i, self.names.index(part.name)) for i, part in enumerate(t.parts) if not isinstance(part, str)] for t in experiment.commands
        ]

    def __call__(self, combo: tuple[str, ...]) -> tuple[str, ...]:
        commands = []
        for parts, command_slots in zip(self._rendered, self._slots):
            pieces = list(parts)
            for i, variable in command_slots:
                pieces[i] = parts[i][combo[variable]]
            commands.append("".join(pieces))
        return tuple(commands)


class GridPositions:
    """Where a task with given values sits in the grid (mixed radix): the inverse of `task_at`."""

    def __init__(self, experiment: Experiment) -> None:
        self.experiment = experiment
        self._positions = [{value: i for i, value in enumerate(v.values)} for v in experiment.variables]
        self._render = _CommandRenderer(experiment)

    def locate(self, key: str, values: dict[str, str], repeat_id: int) -> int | None:
        """The natural id of the grid's task with this key, values and repeat; None if the grid
        has no such task (an earlier definition's, with other values or other commands)."""
        natural = self.natural_id(values, repeat_id)
        if natural is None:
            return None
        combo = tuple(values[name] for name in self._render.names)
        base = combination_digest(self._render(combo), tuple(zip(self._render.names, combo)))
        return natural if task_key(base, repeat_id) == key else None

    def natural_id(self, values: dict[str, str], repeat_id: int) -> int | None:
        """The natural id of the grid's task with these values and repeat, None if it has none."""
        experiment = self.experiment
        if len(values) != len(self._positions) or not 0 <= repeat_id < experiment.repeat:
            return None
        combination_id = 0
        for variable, position in zip(experiment.variables, self._positions):
            index = position.get(values[variable.name]) if variable.name in values else None
            if index is None:
                return None
            combination_id = combination_id * len(position) + index
        return combination_id * experiment.repeat + repeat_id


def _values_of(experiment: Experiment, name: str) -> tuple[str, ...]:
    return next(v.values for v in experiment.variables if v.name == name)


def task_at(experiment: Experiment, natural_id: int) -> Task:
    """The task whose natural id is `natural_id` (0 <= natural_id < task_count), by arithmetic."""
    combination_id, repeat_id = divmod(natural_id, experiment.repeat)
    value_lists = [v.values for v in experiment.variables]
    combo = tuple(values[i] for values, i in zip(value_lists, _digits(combination_id, value_lists)))
    return next(_combination_tasks(experiment, combination_id, combo, range(repeat_id, repeat_id + 1)))


def combination_tasks(experiment: Experiment, combination_id: int, values: dict[str, str]) -> list[Task]:
    """The tasks (one per repeat) of one combination of values chosen outside a grid: a search's
    trial. They have keys exactly as a grid's tasks with the same values would."""
    combo = tuple(values[v.name] for v in experiment.variables)
    return list(_combination_tasks(experiment, combination_id, combo, range(experiment.repeat)))


def _combination_tasks(experiment: Experiment, combination_id: int, combo: tuple[str, ...], repeats: range) -> Iterator[Task]:
    names = [v.name for v in experiment.variables]
    commands = tuple(t.render(dict(zip(names, combo))) for t in experiment.commands)
    pairs = tuple(zip(names, combo))
    base = combination_digest(commands, pairs)
    for repeat_id in repeats:
        yield Task(task_key(base, repeat_id), combination_id, repeat_id, pairs, commands)


def _digits(combination_id: int, value_lists: list[tuple[str, ...]]) -> list[int]:
    """The index of each variable's value in combination `combination_id`; the last variable
    varies fastest, as in itertools.product."""
    digits = []
    for values in reversed(value_lists):
        combination_id, digit = divmod(combination_id, len(values))
        digits.append(digit)
    if combination_id:
        raise IndexError("combination beyond the grid")
    return digits[::-1]


def _combinations_from(value_lists: list[tuple[str, ...]], start: int) -> Iterator[tuple[str, ...]]:
    """itertools.product(*value_lists) from its `start`-th item on (an odometer)."""
    try:
        digits = _digits(start, value_lists)
    except IndexError:
        return
    while True:
        yield tuple(values[i] for values, i in zip(value_lists, digits))
        place = len(digits) - 1
        while place >= 0:
            digits[place] += 1
            if digits[place] < len(value_lists[place]):
                break
            digits[place] = 0
            place -= 1
        if place < 0:
            return


def combination_digest(commands: tuple[str, ...], pairs: tuple[tuple[str, str], ...]) -> blake2b:
    digest = blake2b(digest_size=KEY_BYTES)
    for command in commands:
        digest.update(command.encode() + b"\0")
    digest.update(b"\1")
    for name, value in sorted(pairs):
        digest.update(f"{name}={value}".encode() + b"\0")
    return digest


def task_key(base: blake2b, repeat_id: int) -> str:
    digest = base.copy()
    digest.update(b"\2%d" % repeat_id)
    return digest.hexdigest()
