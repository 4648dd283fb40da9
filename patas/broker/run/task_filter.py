"""`--filter-tasks [EXP:]A:B`: which task ids a run selects, and what that selects in a plan.

Imported by the runs that filter (see `ExperimentPlan.selection`); a run of every pending task
does without it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from patas.common.errors import ConfigError, excerpt


@dataclass(frozen=True)
class Selection:
    """What a task filter selects in one experiment."""

    selected: int  # tasks whose id is in the range, done or not
    done: int  # of those, the tasks already done

    def to_run(self, redo: bool) -> int:
        return self.selected if redo else self.selected - self.done


@dataclass(frozen=True)
class IdRange:
    """Task ids from `first` to `last` inclusive (`last` None: no end)."""

    first: int
    last: int | None

    def __contains__(self, task_id: int) -> bool:
        return self.first <= task_id and (self.last is None or task_id <= self.last)


_TASK_ID = re.compile(r"[0-9]*\Z")  # ASCII digits only: '²'.isdigit() is True, int('²') fails


@dataclass(frozen=True)
class TaskFilter:
    """`--filter-tasks [EXP:]A:B` (also `A:`, `:B`, `A`): task ids from A to B, inclusive."""

    experiment: str | None
    first: int | None
    last: int | None

    @classmethod
    def parse(cls, text: str) -> "TaskFilter":
        shown = excerpt(text)
        parts = text.split(":")
        experiment = None
        if len(parts) == 3 or (len(parts) == 2 and parts[0] and not _TASK_ID.match(parts[0])):
            experiment = parts.pop(0)
        if len(parts) > 2 or not all(_TASK_ID.match(p) for p in parts) or not any(parts):
            raise ConfigError(f"--filter-tasks '{shown}': expected [EXP:]A:B with task ids (A:, :B and A work too)")
        try:
            first = int(parts[0]) if parts[0] else None
            last = first if len(parts) == 1 else (int(parts[1]) if parts[1] else None)
        except ValueError:  # more digits than int() reads: no grid has such ids
            raise ConfigError(f"--filter-tasks '{shown}': task ids that long do not exist") from None
        if first is not None and last is not None and first > last:
            raise ConfigError(f"--filter-tasks '{shown}': {first} is after {last} (write {last}:{first})")
        return cls(experiment, first, last)

    def __str__(self) -> str:
        ids = "" if self.first is None else str(self.first)
        if self.last != self.first:
            ids += ":" + ("" if self.last is None else str(self.last))
        return f"{self.experiment}:{ids}" if self.experiment is not None else ids

    def ids_for(self, experiment: str) -> IdRange | None:
        """The ids this filter selects in `experiment`; None if it selects all of them."""
        if self.experiment is not None and experiment != self.experiment:
            return None
        return IdRange(self.first or 0, self.last)

    def accepts(self, experiment: str, task_id: int) -> bool:
        ids = self.ids_for(experiment)
        return ids is None or task_id in ids
