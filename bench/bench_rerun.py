#!/usr/bin/env python3
"""Benchmark a rerun of a big lab: how fast `patas explore` plans when most tasks are done.

How to run (Linux; it builds a scratch lab of 1,000,000 tasks under /tmp, ~0.5 GB, removed at exit):

    python bench/bench_rerun.py                   # 1,000,000 tasks, 3 rounds
    python bench/bench_rerun.py --quick           # 10,000 tasks, 1 round: a smoke check
    python bench/bench_rerun.py --side 316        # 99,856 tasks
    python bench/bench_rerun.py --compare OLD     # also run the patas package found in folder OLD,
                                                  # interleaved with this checkout's, and give ratios
    python bench/bench_rerun.py --keep DIR        # build the lab in DIR and keep it (the next run reuses its folders)
    python bench/bench_rerun.py --write-docs      # also write the results to docs/benchmarks.md

What it measures (target (c) of issue 15), on a lab built directly (the real `AttemptRecord.to_json`
of every task's key from `sweep.tasks`, one folder per done task, as a real run leaves them):

  - every task done: `patas explore` of the same grid says "Nothing to run"; its wall time from
    launch to exit, and the peak RSS of the patas process (its own `ru_maxrss`).
  - all but the grid's last LEFT tasks done: the time from launch until the first new task starts
    (the task's command creates a file the benchmark waits for); the run is then interrupted.

Rounds are interleaved (every checkout once, then the next round); each row reports its best round
(the machine is shared: the best run is the least disturbed) with the median beside it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

# bench/ is on sys.path as the script's own folder
from benchmarks_doc import DOCS_FILE, write_section

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from patas.broker.run.plan_index import INDEX_FILE  # noqa: E402  (this checkout's, after the path)
if TYPE_CHECKING:
    from patas.common.config import Experiment
    from patas.common.lab import AttemptRecord
DOCS_HEADING = "## Reruns of big labs"
EXPERIMENT = "big"
STARTED_FILE = "started"  # the first new task creates it
LEFT = 1000  # tasks not done in the second case (the grid's last ones: every done task is skipped first)
FIRST_TASK_TIMEOUT_S = 300.0
POLL_S = 0.005

# Targets of issue 15 (c).
TARGET_NOTHING_S = 4.0
TARGET_NOTHING_MB = 300.0
TARGET_FIRST_TASK_S = 5.0

# Runs the patas CLI in this process and, at exit, writes its own peak RSS (kB) to $BENCH_USAGE_FILE:
# VmHWM, the coordinator alone, not the agent it starts. Not ru_maxrss: Linux starts a child's at
# its parent's, and this benchmark holds the whole journal. It also writes where the patas it ran
# comes from: `python -c` puts the current folder first on sys.path, so a child started from a
# checkout's root imports that checkout whatever PYTHONPATH says (how earlier --compare runs
# timed one checkout twice); the child starts in the scratch folder and this is checked.
COORDINATOR = """
import atexit, os, sys
def _record_usage():
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(os.environ["BENCH_USAGE_FILE"], "w") as f:
        f.write(peak + " " + os.path.dirname(os.path.dirname(os.path.abspath(patas.__file__))))
atexit.register(_record_usage)
sys.argv[0] = "patas"
import patas
from patas.cli.main import main
main()
"""


@dataclass(frozen=True)
class Sizes:
    side: int  # the grid is side × side tasks
    rounds: int


FULL = Sizes(side=1000, rounds=3)
QUICK = Sizes(side=100, rounds=1)


@dataclass
class Checkout:
    label: str
    pythonpath: Path
    nothing_s: list[float] = field(default_factory=list)
    nothing_mb: list[float] = field(default_factory=list)
    first_task_s: list[float] = field(default_factory=list)


class BenchError(Exception):
    """A run did not do what it should: nothing can be measured."""


def experiment_yaml(scratch: Path, side: int) -> str:
    started = scratch / STARTED_FILE
    return (
        f"name: {EXPERIMENT}\n"
        f"cmd: touch {started}; echo {{a}} {{b}}\n"
        "vars:\n"
        f"  - {{name: a, type: arithmetic, min: 0, max: {side}, step: 1}}\n"  # max is exclusive
        f"  - {{name: b, type: arithmetic, min: 0, max: {side}, step: 1}}\n"  # max is exclusive
    )


@dataclass(frozen=True)
class BuiltLab:
    journal: bytes  # every task done, in grid order
    cut: int  # the journal's length without its last LEFT records
    last_ids: tuple[int, ...]  # the ids of the last LEFT tasks
    build_s: float
    mkdir_s: float


def build_lab(scratch: Path, experiment_file: Path) -> BuiltLab:
    """The lab of a run that did every task: a journal record and a folder for each.

    Each line is the real `AttemptRecord.to_json` of its task, made fast: one record is written by
    `to_json` with marker values, and each task's line is that text with its own values put in
    (keys from `sweep.task_keys`); a sample of lines is checked against `to_json` itself."""
    from patas.common.config import load_experiment
    from patas.common.lab import ExperimentLab
    from patas.common.sweep import task_keys

    experiment = load_experiment(experiment_file)
    lab = ExperimentLab(scratch / "lab", EXPERIMENT)
    lab.path.mkdir(parents=True, exist_ok=True)
    lab.write_definition(experiment.to_record())
    started = time.perf_counter()
    template = _line_template(experiment, scratch)
    a_values, b_values = (v.values for v in experiment.variables)
    side = len(b_values)
    lines = [
        template.format(task_id, key, a_values[task_id // side], b_values[task_id % side], task_id % 2).encode()
        for task_id, key in enumerate(task_keys(experiment))
    ]
    for task_id in [*range(50), *range(len(lines) - 50, len(lines)), *range(0, len(lines), 10007)]:
        if lines[task_id] != _record(experiment, task_id, scratch).to_json().encode() + b"\n":
            raise BenchError(f"the fast journal line of task {task_id} differs from AttemptRecord.to_json's")
    journal = b"".join(lines)
    cut = len(journal) - sum(len(line) for line in lines[-LEFT:])
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    for task_id in range(len(lines)):
        os.makedirs(lab.task_dir(task_id), exist_ok=True)  # a kept lab (--keep) has them already
    mkdir_s = time.perf_counter() - started
    return BuiltLab(journal, cut, tuple(range(len(lines) - LEFT, len(lines))), build_s, mkdir_s)


_NOW = 1.7e9  # the records' start time (any fixed time: lines of the same length for every build)


def _record(experiment: "Experiment", task_id: int, scratch: Path) -> "AttemptRecord":
    """The journal record of task `task_id` done, as a run on this machine writes it."""
    from patas.common.lab import AttemptRecord, Outcome
    from patas.common.sweep import task_at

    task = task_at(experiment, task_id)
    return AttemptRecord(
        task_id=task_id, key=task.key, attempt=1, outcome=Outcome.DONE, exit_code=0,
        combination_id=task.combination_id, repeat_id=task.repeat_id, values=dict(task.values),
        experiment_id=0, experiment_name=EXPERIMENT, max_tries=experiment.max_tries,
        started_at=_NOW, ended_at=_NOW + 0.001, cluster_name="local", node_name="localhost",
        hostname=platform.node(), cluster_in_lab=0, node_in_lab=0, node_in_cluster=0,
        worker_in_lab=task_id % 2, worker_in_cluster=task_id % 2, worker_in_node=task_id % 2,
        work_dir=str(scratch), stdout_bytes=8,
    )  # fmt: skip


def _line_template(experiment: "Experiment", scratch: Path) -> str:
    """`to_json` of a record with marker values, as a format string: {0} task id, {1} key, {2} a,
    {3} b, {4} worker."""
    from dataclasses import replace

    markers = ("71717171", "7272727272", "7373737373", "7474747474", "75757575")
    record = replace(
        _record(experiment, 0, scratch), task_id=int(markers[0]), combination_id=int(markers[0]), key=markers[1],
        values={"a": markers[2], "b": markers[3]}, worker_in_lab=int(markers[4]), worker_in_cluster=int(markers[4]),
        worker_in_node=int(markers[4]),
    )  # fmt: skip
    text = record.to_json().replace("{", "{{").replace("}", "}}")
    for number, marker in enumerate(markers):
        text = text.replace(marker, "{%d}" % number)
    return text + "\n"


def patas_argv(experiment_file: Path, scratch: Path) -> list[str]:
    return [sys.executable, "-c", COORDINATOR, "explore", "--experiment", str(experiment_file),
            "-o", str(scratch / "lab"), "-j", "2", "-y", "-q"]  # fmt: skip


def environment(checkout: Checkout, scratch: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(checkout.pythonpath), BENCH_USAGE_FILE=str(scratch / "usage"))
    env.pop("PATAS_DEBUG", None)
    return env


def run_patas(checkout: Checkout, experiment_file: Path, scratch: Path, **popen: object) -> subprocess.Popen:
    """`patas explore` of the checkout, started in the scratch folder (see COORDINATOR)."""
    return subprocess.Popen(patas_argv(experiment_file, scratch), env=environment(checkout, scratch), cwd=scratch,
                            stdin=subprocess.DEVNULL, **popen)  # type: ignore[call-overload]  # fmt: skip


def peak_rss_mb(checkout: Checkout, scratch: Path) -> float:
    """The peak RSS the run recorded, after checking that it ran the checkout's patas."""
    peak, imported = (scratch / "usage").read_text().split(" ", 1)
    if Path(imported).resolve() != checkout.pythonpath.resolve():
        raise BenchError(f"{checkout.label}: ran the patas of {imported}, not of {checkout.pythonpath}")
    return int(peak) / 1024


# Each case's journal gets the same modification time whenever it is put back (written over the
# same file: the same inode), so that it is the journal the case's index was written for, as a
# run leaves them; the index checks the journal's identity (see patas/broker/run/plan_index.py).
JOURNAL_MTIME_NS = {"cut": 1_700_000_000_000_000_000, "full": 1_700_000_001_000_000_000}


def set_journal(scratch: Path, case: str, data: bytes, index: bytes | None = None) -> None:
    """The journal of the case and the plan index the run that left it wrote (None: no index)."""
    journal = scratch / "lab" / EXPERIMENT / "journal.jsonl"
    journal.write_bytes(data)
    os.utime(journal, ns=(JOURNAL_MTIME_NS[case], JOURNAL_MTIME_NS[case]))
    index_path = scratch / "lab" / EXPERIMENT / INDEX_FILE
    if index is None:
        index_path.unlink(missing_ok=True)
    else:
        index_path.write_bytes(index)


@dataclass(frozen=True)
class Indexes:
    """The plan index a run leaves with every task done, and with all but LEFT done, by
    checkout (each writes its own format; b"" for a checkout without an index)."""

    full: dict[str, bytes]
    cut: dict[str, bytes]
    build_s: float  # this checkout's longer of the two to build from the journal alone


# Plans the lab with the plan index and writes it, as a run does when it ends (`save_indexes`);
# prints the seconds it took. A checkout without a plan index writes none.
INDEX_BUILDER = """
import sys, time
from patas.broker.run import plan
from patas.common.config import load_experiment
from patas.common.lab import ExperimentLab
started = time.perf_counter()
if hasattr(plan, "save_indexes"):
    experiment = load_experiment(sys.argv[1])
    plan.save_indexes([plan.plan_experiment(0, experiment, ExperimentLab(sys.argv[2], sys.argv[3]), redo=False, use_index=True)])
print(time.perf_counter() - started)
"""


def build_indexes(built: BuiltLab, checkouts: list["Checkout"], experiment_file: Path, scratch: Path) -> Indexes:
    """Each case's index as a run of each checkout that ended with that journal writes it."""
    lab = scratch / "lab" / EXPERIMENT
    made: dict[str, dict[str, bytes]] = {"cut": {}, "full": {}}
    slowest = 0.0
    for case, journal, folders in (("cut", built.journal[: built.cut], False), ("full", built.journal, True)):
        for task_id in built.last_ids:
            if folders:
                (lab / str(task_id)).mkdir(exist_ok=True)
            else:
                shutil.rmtree(lab / str(task_id), ignore_errors=True)
        for checkout in checkouts:
            set_journal(scratch, case, journal)
            done = subprocess.run([sys.executable, "-c", INDEX_BUILDER, str(experiment_file), str(scratch / "lab"), EXPERIMENT],
                                  env=environment(checkout, scratch), cwd=scratch, capture_output=True, text=True, check=True)  # fmt: skip
            if checkout.pythonpath == REPO:
                slowest = max(slowest, float(done.stdout))
            made[case][checkout.label] = (lab / INDEX_FILE).read_bytes() if (lab / INDEX_FILE).exists() else b""
    return Indexes(made["full"], made["cut"], slowest)


def nothing_to_run(checkout: Checkout, built: BuiltLab, indexes: Indexes, experiment_file: Path, scratch: Path) -> None:
    set_journal(scratch, "full", built.journal, indexes.full[checkout.label] or None)
    lab = scratch / "lab" / EXPERIMENT
    for task_id in built.last_ids:
        (lab / str(task_id)).mkdir(exist_ok=True)
    os.sync()
    started = time.perf_counter()
    process = run_patas(checkout, experiment_file, scratch, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, stderr = process.communicate()
    elapsed = time.perf_counter() - started
    if process.returncode != 0 or "Nothing to run" not in stderr:
        raise BenchError(f"{checkout.label}: expected 'Nothing to run', got exit {process.returncode}: {stderr[-500:]}")
    checkout.nothing_s.append(elapsed)
    checkout.nothing_mb.append(peak_rss_mb(checkout, scratch))


def first_task(checkout: Checkout, built: BuiltLab, indexes: Indexes, experiment_file: Path, scratch: Path) -> None:
    set_journal(scratch, "cut", built.journal[: built.cut], indexes.cut[checkout.label] or None)
    lab = scratch / "lab" / EXPERIMENT
    for task_id in built.last_ids:
        shutil.rmtree(lab / str(task_id), ignore_errors=True)
    marker = scratch / STARTED_FILE
    marker.unlink(missing_ok=True)
    os.sync()
    started = time.perf_counter()
    process = run_patas(checkout, experiment_file, scratch, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while not marker.exists():
            if process.poll() is not None:
                raise BenchError(f"{checkout.label}: patas exited {process.returncode} before a task started: "
                                 f"{process.stderr.read().decode()[-500:]}")  # fmt: skip
            if time.perf_counter() - started > FIRST_TASK_TIMEOUT_S:
                raise BenchError(f"{checkout.label}: no task started within {FIRST_TASK_TIMEOUT_S:g} s")
            time.sleep(POLL_S)
        checkout.first_task_s.append(time.perf_counter() - started)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def best(values: list[float]) -> str:
    return f"{min(values):.2f}" if values else "–"


def median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else "–"


def verdict(value: list[float], target: float) -> str:
    if not value:
        return "–"
    return "met" if min(value) <= target else f"missed by {min(value) / target:.2f}x"


def report(checkouts: list[Checkout], sizes: Sizes, built: BuiltLab, indexes: Indexes, command: str) -> str:
    total = sizes.side * sizes.side
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    lines = [
        DOCS_HEADING,
        "",
        f"A rerun of a {total:,}-task lab (`echo {{a}} {{b}}`, {sizes.side}×{sizes.side}), measured by"
        f" `{command}` on {datetime.date.today()}, {os.cpu_count()} CPUs, load average {load}"
        f" (shared machine: best of {sizes.rounds} interleaved rounds, median in brackets).",
        f"Building the lab: journal {built.build_s:.1f} s, {total:,} task folders {built.mkdir_s:.1f} s;"
        f" the plan index from the journal alone (a first rerun without one) {indexes.build_s:.1f} s.",
        "",
        "| checkout | every task done: \"Nothing to run\" (s) | its peak RSS (MB) "
        f"| {LEFT:,} left: first task starts after (s) |",
        "|---|---|---|---|",
    ]
    for c in checkouts:
        lines.append(f"| {c.label} | {best(c.nothing_s)} ({median(c.nothing_s)}) | {best(c.nothing_mb)} ({median(c.nothing_mb)})"
                     f" | {best(c.first_task_s)} ({median(c.first_task_s)}) |")  # fmt: skip
    mine = checkouts[0]
    lines += [
        f"| target | ≤ {TARGET_NOTHING_S:g}: {verdict(mine.nothing_s, TARGET_NOTHING_S)}"
        f" | ≤ {TARGET_NOTHING_MB:g}: {verdict(mine.nothing_mb, TARGET_NOTHING_MB)}"
        f" | ≤ {TARGET_FIRST_TASK_S:g}: {verdict(mine.first_task_s, TARGET_FIRST_TASK_S)} |",
    ]
    for other in checkouts[1:]:
        ratios = [min(a) / min(b) if a and b else float("nan") for a, b in
                  ((mine.nothing_s, other.nothing_s), (mine.nothing_mb, other.nothing_mb), (mine.first_task_s, other.first_task_s))]  # fmt: skip
        lines.append(f"| {mine.label} / {other.label} | {ratios[0]:.2f}x | {ratios[1]:.2f}x | {ratios[2]:.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 tasks, 1 round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--side", type=int, default=None, help="a grid of SIDE × SIDE tasks")
    parser.add_argument("--compare", type=Path, default=None, metavar="OLD",
                        help="a folder holding another patas package, run interleaved with this one")  # fmt: skip
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="build the lab in DIR and keep it; a later run with the same DIR and size reuses its task folders")  # fmt: skip
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    sizes = Sizes(args.side or sizes.side, args.rounds or sizes.rounds)
    checkouts = [Checkout("this checkout", REPO)]
    if args.compare is not None:
        checkouts.append(Checkout(f"--compare {args.compare}", args.compare.resolve()))
    scratch = Path(tempfile.mkdtemp(prefix="bench-rerun-")) if args.keep is None else args.keep.resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        experiment_file = scratch / "experiment.yaml"
        experiment_file.write_text(experiment_yaml(scratch, sizes.side))
        print(f"building a {sizes.side * sizes.side:,}-task lab in {scratch}", file=sys.stderr)
        built = build_lab(scratch, experiment_file)
        print(f"  journal {built.build_s:.1f} s, folders {built.mkdir_s:.1f} s", file=sys.stderr)
        indexes = build_indexes(built, checkouts, experiment_file, scratch)
        print(f"  plan index from the journal alone {indexes.build_s:.1f} s", file=sys.stderr)
        # One untimed run first: the first to read a lab just built pays for its cold caches.
        nothing_to_run(Checkout(checkouts[0].label, REPO), built, indexes, experiment_file, scratch)
        for round_number in range(sizes.rounds):
            for checkout in checkouts:
                nothing_to_run(checkout, built, indexes, experiment_file, scratch)
                first_task(checkout, built, indexes, experiment_file, scratch)
                print(f"  round {round_number + 1}, {checkout.label}: nothing to run {checkout.nothing_s[-1]:.2f} s"
                      f" {checkout.nothing_mb[-1]:.0f} MB, first task {checkout.first_task_s[-1]:.2f} s", file=sys.stderr)  # fmt: skip
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)
    command = "python bench/bench_rerun.py" + " ".join(a for a in [""] + sys.argv[1:] if a != "--write-docs")
    text = report(checkouts, sizes, built, indexes, command)
    print(text)
    if args.write_docs:
        write_section(DOCS_HEADING, text)
        print(f"written to {DOCS_FILE}", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except BenchError as error:
        sys.exit(f"bench_rerun: {error}")
