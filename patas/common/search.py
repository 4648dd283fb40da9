"""What a search is: its sampler, the value it optimises, the values it watches, when it stops.

A grid (`--type grid`) runs every combination. A search (`--type random|sobol|tpe`) lets a
sampler choose each trial's values from the variables' ranges, reads the trial's objective off
its output (`--objective`), and, with `--report` and `--prune`, stops trials whose intermediate
values fall behind. This module holds the typed definition only; running a search is
patas/broker/run/study.py. The definition is recorded in `experiment.yaml` under `search:`:

    search:
      type: tpe
      objective: {direction: max, name: test_acc, pattern: 'Test accuracy: (@float@)'}
      report: {direction: min, name: loss, pattern: 'epoch (@int@) loss (@float@)'}
      prune: asha
      trials: 200
      budget: null        # seconds, or null
      seed: 1
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass
from typing import Any, TypeVar

from patas.common.errors import ConfigError, did_you_mean
from patas.common.scalar import typed


class SearchType(enum.Enum):
    GRID = "grid"  # every combination, no sampler: patas's own sweep
    RANDOM = "random"
    SOBOL = "sobol"
    TPE = "tpe"


class Direction(enum.Enum):
    MAX = "max"
    MIN = "min"


class Pruner(enum.Enum):
    ASHA = "asha"  # Optuna's SuccessiveHalvingPruner
    MEDIAN = "median"
    HYPERBAND = "hyperband"


@dataclass(frozen=True)
class Metric:
    """A value read from a trial's output: `--objective` or `--report DIRECTION NAME PATTERN`."""

    direction: Direction
    name: str
    pattern: str

    def to_record(self) -> dict[str, str]:
        return {"direction": self.direction.value, "name": self.name, "pattern": self.pattern}


@dataclass(frozen=True)
class Search:
    type: SearchType
    objective: Metric
    report: Metric | None = None
    prune: Pruner | None = None
    trials: int | None = None  # trials to make in all (counting earlier runs'), None: until the budget
    budget_s: float | None = None  # stop starting trials this long after the run starts
    seed: int | None = None

    def to_record(self) -> dict[str, Any]:
        """The `search:` key of experiment.yaml (the dashboard reads these names)."""
        return {
            "type": self.type.value,
            "objective": self.objective.to_record(),
            "report": self.report.to_record() if self.report else None,
            "prune": self.prune.value if self.prune else None,
            "trials": self.trials,
            "budget": self.budget_s,
            "seed": self.seed,
        }

    def identity(self) -> dict[str, Any]:
        """What a rerun must keep to continue the same study (trials and budget may change)."""
        record = self.to_record()
        del record["trials"], record["budget"]
        return record


# The study, in the experiment's folder (Optuna's JournalStorage), and the study attribute that
# says where its task ids start (task id = first + trial * repeat + repeat_id).
STUDY_FILE = "study.journal"
FIRST_TASK_ATTR = "patas_first_task_id"

SEARCH_KEYS = ("type", "objective", "report", "prune", "trials", "budget", "seed")
_METRIC_KEYS = ("direction", "name", "pattern")
_METRIC_NAME = re.compile(r"[A-Za-z0-9_]+\Z")


def search_type(text: str, where: str) -> SearchType:
    return _choice(SearchType, text, "search type", where)


def metric(direction: str, name: str, pattern: str, where: str) -> Metric:
    try:
        chosen = Direction(direction)
    except ValueError:
        raise ConfigError(f"{where}: direction '{direction}' must be max or min (e.g. {where.split()[0]} max {name} PATTERN)") from None
    if not _METRIC_NAME.match(name):
        raise ConfigError(f"{where}: the name '{name}' must be letters, digits and _ (it becomes column out_{name})")
    return Metric(chosen, name, pattern)


def pruner(text: str, where: str) -> Pruner:
    return _choice(Pruner, text, "pruner", where)


_Choice = TypeVar("_Choice", bound=enum.Enum)


def _choice(kind: type[_Choice], text: str, what: str, where: str) -> _Choice:
    """The member of `kind` named `text`; else one line naming the choices."""
    try:
        return kind(text)
    except ValueError:
        names = [member.value for member in kind]
        raise ConfigError(f"{where}: unknown {what} '{text}'{did_you_mean(text, names)} (use one of {', '.join(names)})") from None


def make_search(
    kind: SearchType,
    objective: Metric | None,
    report: Metric | None,
    prune: Pruner | None,
    trials: int | None,
    budget_s: float | None,
    seed: int | None,
    where: str,
) -> Search | None:
    """A checked search, or None for a grid (which takes none of the search's settings)."""
    at = "" if where == "command line" else f"{where}: "
    if kind is SearchType.GRID:
        given = [flag for flag, value in (("trials", trials), ("budget", budget_s), ("objective", objective),
                                          ("report", report), ("prune", prune), ("seed", seed)) if value is not None]  # fmt: skip
        if given:
            raise ConfigError(f"{at}{_option(given[0], where)} needs a search: add --type random, sobol or tpe (a grid runs every combination)")
        return None
    if objective is None:
        raise ConfigError(f"{at}a {kind.value} search needs an objective (add --objective max NAME PATTERN, or min)")
    if prune is not None and report is None:
        raise ConfigError(f"{at}--prune {prune.value} needs intermediate values to compare (add --report, e.g. --report min loss 'epoch (@int@) loss (@float@)')")
    if trials is None and budget_s is None:
        raise ConfigError(f"{at}a {kind.value} search needs --trials N or --budget DURATION (when to stop)")
    if trials is not None and trials < 1:
        raise ConfigError(f"{at}--trials must be at least 1, got {trials}")
    if report is not None and report.name == objective.name:
        raise ConfigError(f"{at}--report and --objective are both named '{report.name}' (give each its own name)")
    return Search(kind, objective, report, prune, trials, budget_s, seed)


def _option(key: str, where: str) -> str:
    return f"--{key}" if where == "command line" else f"'{key}'"


_DURATION = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*(s|m|h|d)?\s*\Z")
_UNIT_S = {None: 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, where: str) -> float:
    """Seconds in `90`, `90s`, `15m`, `2h`, `1.5d`."""
    match = _DURATION.match(text)
    seconds = float(match.group(1)) * _UNIT_S[match.group(2)] if match else math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"{where} '{text}': expected a positive duration such as 90s, 15m or 2h")
    return seconds


def search_from_record(data: object, where: str) -> Search | None:
    """The `search:` key of an experiment YAML file."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: 'search' must be a mapping with type, objective, trials, ...")
    for key in data:
        if key not in SEARCH_KEYS:
            raise ConfigError(f"{where}: unknown key '{key}'{did_you_mean(str(key), SEARCH_KEYS)} (allowed: {', '.join(SEARCH_KEYS)})")
    values = {key: typed(value) for key, value in data.items()}
    kind = search_type(str(values.get("type") or "grid"), f"{where}: type")
    objective = _metric_record(values.get("objective"), f"{where}: objective")
    report = _metric_record(values.get("report"), f"{where}: report")
    prune = pruner(str(values["prune"]), f"{where}: prune") if values.get("prune") is not None else None
    trials = _whole(values.get("trials"), f"{where}: trials")
    seed = _whole(values.get("seed"), f"{where}: seed")
    budget = values.get("budget")
    if budget is not None:
        budget = parse_duration(str(budget), f"{where}: budget")
    return make_search(kind, objective, report, prune, trials, budget, seed, where)


def _metric_record(data: object, where: str) -> Metric | None:
    if data is None:
        return None
    if not isinstance(data, dict) or set(data) != set(_METRIC_KEYS):
        raise ConfigError(f"{where}: expected a mapping with {', '.join(_METRIC_KEYS)}")
    direction, name, pattern = (str(typed(data[key])) for key in _METRIC_KEYS)
    return metric(direction, name, pattern, where)


def _whole(value: object, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: must be a whole number, got {value!r}")
    return value
