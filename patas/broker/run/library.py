"""`patas.explore(...)`: a sweep run from Python, with Python values, returning its counts.

    import patas
    result = patas.explore("./main.py {neurons} {activation}",
                           {"neurons": range(1, 51, 2), "activation": ["relu", "tanh"]},
                           repeat=10, jobs=4)
    result.done, result.failed          # counts, as `patas explore -y` would report them

The same run as `patas explore -y` with the same settings: same pataslab, same resuming, same
early stop. It never asks and prints nothing; failed attempts are logged (logger `patas`).
"""

from __future__ import annotations

import logging
import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from patas.broker.run.coordinator import RunSettings
from patas.broker.run.exploration import prepare
from patas.broker.run.failures import AttemptFailure
from patas.broker.run.halt import FAIL_FAST, HaltPolicy
from patas.broker.run.scheduler import Counts
from patas.broker.ship.snapshot import DEFAULT_SHIP_LIMIT_BYTES, Snapshot
from patas.broker.ship.transfer import Delivery, Undelivered
from patas.broker.slurm.options import SlurmOptions
from patas.common.byte_sizes import parse_size
from patas.common.config import (
    DEFAULT_CLUSTER_NAME,
    DEFAULT_EXPERIMENT_NAME,
    DEFAULT_MAX_TRIES,
    Cluster,
    Node,
    experiment_from_flags,
    load_cluster,
    parse_node_spec,
)
from patas.common.collected_files import collect_rule
from patas.common.errors import ConfigError, excerpt
from patas.common.variables import list_variable

log = logging.getLogger("patas")


@dataclass(frozen=True)
class ExploreResult:
    """What a sweep did. `halted` is why it stopped early (None if it did not)."""

    total: int
    skipped: int  # done by an earlier run
    done: int
    failed: int  # given up after their tries
    retried: int  # failed attempts that were tried again
    not_run: int  # left when the run stopped early or was interrupted
    interrupted: bool
    halted: str | None
    elapsed_s: float
    folder: Path  # the experiment's folder in the pataslab
    failures: dict[str, list[int]] = field(default_factory=dict)  # kind of failure → task ids given up

    @property
    def ok(self) -> bool:
        """Every task is done (now or before)."""
        return self.done + self.skipped == self.total


def explore(
    cmd: str | Sequence[str],
    variables: Mapping[str, Iterable[object] | object] | None = None,
    *,
    repeat: int = 1,
    name: str = DEFAULT_EXPERIMENT_NAME,
    lab: str | os.PathLike[str] = "pataslab",
    jobs: int | None = None,
    nodes: Sequence[str] = (),
    cluster: str | os.PathLike[str] | None = None,
    max_tries: int = DEFAULT_MAX_TRIES,
    timeout_s: float | None = None,
    workdir: str | os.PathLike[str] | None = None,
    redo: bool = False,
    halt: str | None = None,
    collect: str | Sequence[str] = (),
    collect_limit: int | str | None = None,
    ship: Sequence[str | os.PathLike[str]] = (),
    ship_limit: str | int = DEFAULT_SHIP_LIMIT_BYTES,
    slurm: SlurmOptions | None = None,
    bind: str | None = None,
) -> ExploreResult:
    """Run `cmd` (one command or several, one after the other) for every combination of
    `variables` (name → values: a list, a range, any iterable of text or numbers; a single value
    is one value), `repeat` times each, keeping every output in `lab`/`name`.

    Where: `jobs=N` tasks at once on this machine, or `nodes` (`--node` specs such as
    "localhost 4" or "ana@gpu1 8 gpu"), or a `cluster` YAML file; default: this machine, a task
    per core; or `slurm=SlurmOptions(nodes=4, partition="gpu", ...)`: agents as Slurm jobs, which
    connect back to `bind` (an address of this machine the compute nodes reach; default: that of
    its host name). `halt` is `--halt`'s text ("now,fail=1", "never"). `collect` globs name the
    files a task writes in its folder ($PATAS_TASK_DIR) to bring back into `<task>/files/`, at
    most `collect_limit` bytes (or a size such as "2G") per task. `ship` are paths (relative to
    the current folder) copied to every node first, the tasks running in the node's copy
    (`--ship`); `ship_limit` refuses more than that many bytes (or a size such as "500MB").
    Raises `PatasError` on bad input."""
    commands = [cmd] if isinstance(cmd, str) else list(cmd)
    values = {var: _values(var, v) for var, v in (variables or {}).items()}
    experiment = experiment_from_flags(
        name,
        commands,
        [list_variable(var, vals, f"variables['{var}']") for var, vals in values.items()],
        repeat,
        max_tries,
        str(workdir) if workdir is not None else os.getcwd(),
        timeout_s,
        tuple(os.fspath(path) for path in ([ship] if isinstance(ship, (str, os.PathLike)) else ship)),
    )
    globs = [collect] if isinstance(collect, str) else list(collect)
    experiment = replace(experiment, collect=collect_rule(globs, collect_limit, "collect=", "collect_limit="))
    limit = ship_limit if isinstance(ship_limit, int) else parse_size(ship_limit, "ship_limit=")
    settings = RunSettings(halt=HaltPolicy.parse(halt) if halt is not None else FAIL_FAST, bind_host=bind)
    if slurm is not None and (jobs is not None or nodes or cluster is not None):
        raise ConfigError("slurm= runs on nodes Slurm allocates; leave out jobs=, nodes= and cluster=")
    clusters = [] if slurm is not None else _clusters(jobs, nodes, cluster)
    with prepare([experiment], clusters, Path(lab), redo, settings=settings, slurm=slurm, ship_limit_bytes=limit) as exploration:
        plan = exploration.plans[0]
        exploration.ship(_Log())
        result = exploration.run(_Log())
    counts = result.counts
    failures = {t.kind: sorted(i for ids in t.given_up.values() for i in ids) for t in result.failures.given_up()}
    return ExploreResult(
        counts.total, counts.skipped, counts.done, counts.failed, counts.retried, counts.remaining,
        result.interrupted, result.halt.reason if result.halt else None, result.elapsed_s, plan.lab.path, failures,
    )  # fmt: skip


def _values(name: str, given: Iterable[object] | object) -> list[str]:
    """A variable's values as the command line gets them: text as it is, numbers as `str` writes
    them. Anything else (bytes, None, a list) has no one text a user would expect: refused."""
    if isinstance(given, Mapping):  # its keys? its values? neither is what a user would bet on
        raise ConfigError(f"variables['{name}']: a {type(given).__name__}, not a list of values")
    values = [given] if isinstance(given, (str, bytes)) or not isinstance(given, Iterable) else list(given)
    for value in values:
        if not isinstance(value, (str, numbers.Real)):
            raise ConfigError(
                f"variables['{name}']: {excerpt(repr(value))} is a {type(value).__name__}, not a value for a command line"
                " (give text or numbers)"
            )
    return [str(value) for value in values]


def _clusters(jobs: int | None, nodes: Sequence[str], cluster: str | os.PathLike[str] | None) -> list[Cluster]:
    if jobs is not None and (nodes or cluster):
        raise ConfigError("jobs= runs tasks on this machine; leave out nodes= and cluster=")
    if jobs is not None:
        if jobs < 1:
            raise ConfigError(f"jobs={jobs}: must be at least 1")
        return [Cluster(DEFAULT_CLUSTER_NAME, (Node("node0", "localhost", workers=jobs),))]
    clusters = [load_cluster(cluster)] if cluster is not None else []
    if isinstance(nodes, str):
        nodes = [nodes]
    if nodes:
        specs = tuple(parse_node_spec(tuple(spec.split()), i) for i, spec in enumerate(nodes))
        clusters.append(Cluster(DEFAULT_CLUSTER_NAME, specs))
    return clusters or [Cluster(DEFAULT_CLUSTER_NAME, (Node("node0", "localhost"),))]


class _Log:
    """A run observer for library use: nothing on screen, failures to the `patas` logger."""

    def progress(self, counts: Counts) -> None:
        pass

    def attempt_failed(self, failure: AttemptFailure) -> None:
        log.warning("%s task %d attempt %d: %s", failure.experiment_name, failure.task_id, failure.attempt, failure.kind)

    def agent_event(self, node_name: str, message: str) -> None:
        log.info("%s: %s", node_name, message)

    def shipping(self, sent_bytes: int, total_bytes: int) -> None:
        pass

    def shipped(self, delivery: Delivery, snapshot: Snapshot) -> None:
        log.info("%s: %s", delivery.node_name, delivery.describe(snapshot))

    def undelivered(self, failure: Undelivered) -> None:
        log.warning("%s: cannot take the code: %s (left out of this run)", failure.node_name, failure.reason)
