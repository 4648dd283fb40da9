#!/usr/bin/env python3
"""Benchmark `patas parse` side by side with the original patas 2.0.6 and an awk baseline.

    python bench/bench_parse.py [--tasks 3000] [--lines 100] [--runs 3] [--skip-original]

Builds (once, cached under --workdir) an experiment of 3,000 done tasks whose outputs have ~100
lines (95 epoch lines and the five metric lines of examples/basic_usage), in our pataslab layout
and in the original's (a YAML file per task), then times in one run:

  * `patas parse` end to end (a new process, as a user runs it), 2 processes and 1;
  * the library call alone (no interpreter start-up), and three ways of matching, in-process;
  * the original patas 2.0.6 (`pip install patas==2.0.6 pyyaml` into a venv the script creates;
    2.0.6 needs PyYAML but does not declare it);
  * an awk program that extracts the same five values from the same files.

All three tools must agree on the values (the script checks the sum of out_test_acc). Results
are wall-clock times on a warm page cache; the median of --runs runs is reported, and variants
that are compared with each other take turns run by run.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from original_patas import ORIGINAL_VERSION, original_patas  # bench/ is on sys.path as the script's folder

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from patas.analysis.parse import parse_experiment
from patas.analysis.patterns import compile_patterns
from patas.common.config import experiment_from_flags
from patas.common.lab import AttemptRecord, ExperimentLab, Outcome
from patas.common.sweep import tasks
from patas.common.variables import arithmetic_variable, list_variable

PATTERNS = {
    "train_time": r"Time to train \(ms\): (@float@)",
    "test_time": r"Time to test \(ms\):  (@float@)",
    "train_acc": r"Train accuracy:     (@float@)",
    "test_acc": r"Test accuracy:      (@float@)",
    "loss": r"Final Loss:         (@float@)",
}
AWK_PROGRAM = r"""
BEGIN { OFS = "," ; print "file,train_time,test_time,train_acc,test_acc,loss" }
FNR == 1 && NR > 1 { print prev, a, b, c, d, e ; a = b = c = d = e = "" }
{ prev = FILENAME }
/^Time to train \(ms\): / { a = $5 }
/^Time to test \(ms\):  / { b = $5 }
/^Train accuracy:     / { c = $3 }
/^Test accuracy:      / { d = $3 }
/^Final Loss:         / { e = $3 }
END { print prev, a, b, c, d, e }
"""


def main() -> None:
    args = _arguments()
    ours, original = build_labs(args.workdir, args.tasks, args.lines)
    results: list[tuple[str, float, str]] = []

    def record(name: str, seconds: float, note: str = "") -> None:
        results.append((name, seconds, note))
        print(f"  {name}: {seconds:.3f} s ({args.tasks / seconds:,.0f} tasks/s) {note}", flush=True)

    print(f"{args.tasks} tasks, {args.lines} lines each; median of {args.runs} runs")
    cli = [sys.executable, "-m", "patas", "parse", "-e", str(ours.path)]
    for name, regex in PATTERNS.items():
        cli += ["-p", name, regex]
    # Variants that are compared take turns, so a busy moment on a shared machine hits both alike.
    both, one = _medians(args.runs, lambda: _run(cli), lambda: _run([*cli, "-j", "1"]))
    record("patas parse (CLI, 2 processes)", both)
    record("patas parse (CLI, -j 1)", one)
    ours_sum = _column_sum(ours.path / "grid.csv", "out_test_acc")
    both, one = _medians(args.runs, lambda: _library(ours, 2), lambda: _library(ours, 1))
    record("library parse_experiment, 2 processes", both)
    record("library parse_experiment, 1 process", one)
    for name, strategy in STRATEGIES.items():
        record(f"matching only: {name}", _median(args.runs, lambda s=strategy: _matching(ours, s)), "(files in memory)")
    awk_csv = args.workdir / "awk.csv"
    awk = f"awk '{AWK_PROGRAM}' {ours.path}/*/stdout > {awk_csv}"
    record("awk (one process, same five values)", _median(args.runs, lambda: _run(["bash", "-c", awk])))
    _check_agree("awk", ours_sum, _column_sum(awk_csv, "test_acc"))
    if not args.skip_original:
        _time_original(args, original, ours_sum, record)
    _print_summary(results, args.tasks)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (other work slows every figure)")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=3000, help="tasks (a multiple of 300)")
    parser.add_argument("--lines", type=int, default=100, help="lines per task output")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per measurement")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/patas-bench"))
    parser.add_argument("--skip-original", action="store_true", help="do not install or time patas 2.0.6")
    return parser.parse_args()


# -- the labs ------------------------------------------------------------------------------------


def build_labs(workdir: Path, task_count: int, lines: int) -> tuple[ExperimentLab, Path]:
    """Our lab and the original's, with the same outputs; reused when already built."""
    base = workdir / f"parse-{task_count}x{lines}"
    ours = ExperimentLab(base / "ours", "grid")
    original = base / "original" / "grid"
    if (base / "complete").exists():
        return ours, original
    print(f"building the labs in {base} (once) ...", flush=True)
    variables = [
        arithmetic_variable("neurons", 1, 51, 2, "bench"),
        list_variable("preprocessing", ["fast", "medium", "intense"], "bench"),
        list_variable("activation", ["relu", "leaky_relu", "sigmoid", "tanh"], "bench"),
    ]
    experiment = experiment_from_flags("grid", ["./main.py {neurons} {activation} {preprocessing}"], variables,
                                       max(1, task_count // 300), 3, str(base), None)  # fmt: skip
    ours.path.mkdir(parents=True, exist_ok=True)
    ours.write_definition(experiment.to_record())
    _write_original_experiment(original, experiment)
    random.seed(1)
    journal = []
    for task in tasks(experiment):
        task_id = task.natural_id(experiment.repeat)
        text = _output(dict(task.values), lines)
        started = 1_684_350_895.0 + task_id * 0.25
        journal.append(_record(experiment, task, task_id, started).to_json() + "\n")
        ours.task_dir(task_id).mkdir(exist_ok=True)
        (ours.task_dir(task_id) / "stdout").write_text(text)
        _write_original_task(original, task, task_id, started, text)
    ours.journal_path.write_text("".join(journal))
    (base / "complete").touch()
    return ours, original


def _output(values: dict[str, str], lines: int) -> str:
    """What examples/basic_usage/main.py prints, with enough epochs for `lines` lines."""
    neurons = int(values["neurons"])
    accuracy = min(0.999, 0.9 * (1 - 2.718 ** (-neurons / 8)) + random.gauss(0, 0.01))
    epochs = max(1, lines - 5)
    out = [f"Epoch {e:2d}/{epochs}: loss {(1 - accuracy) + 0.5 / e:.4f}" for e in range(1, epochs + 1)]
    out += [
        f"Time to train (ms): {neurons * 3.5 + random.uniform(50, 70):.3f}",
        f"Time to test (ms):  {neurons * 0.1 + random.uniform(2, 4):.3f}",
        f"Train accuracy:     {accuracy:.3f}",
        f"Test accuracy:      {max(0.0, accuracy - 0.02):.3f}",
        f"Final Loss:         {1 - accuracy:.3f}",
    ]
    return "\n".join(out) + "\n"


def _record(experiment, task, task_id: int, started: float) -> AttemptRecord:
    return AttemptRecord(
        task_id=task_id, key=task.key, attempt=1, outcome=Outcome.DONE, exit_code=0,
        combination_id=task.combination_id, repeat_id=task.repeat_id, values=dict(task.values),
        experiment_id=0, experiment_name="grid", max_tries=3, started_at=started, ended_at=started + 0.2,
        cluster_name="cluster", node_name="node0", hostname="localhost", cluster_in_lab=0, node_in_lab=0,
        node_in_cluster=0, worker_in_lab=task_id % 2, worker_in_cluster=task_id % 2,
        worker_in_node=task_id % 2, work_dir=experiment.workdir,
    )  # fmt: skip


def _write_original_experiment(folder: Path, experiment) -> None:
    """The original's experiment info.yml: what its parser reads for the input columns."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    info = {"experiment_name": "grid", "workdir": experiment.workdir, "repeat": experiment.repeat,
            "variables": {v.name: list(v.values) for v in experiment.variables}}  # fmt: skip
    (folder / "info.yml").write_text(yaml.dump(info, default_flow_style=False))


def _write_original_task(folder: Path, task, task_id: int, started: float, text: str) -> None:
    """A task folder as patas 2.0.6 leaves it: info.yml, success.stdout and .success."""
    import datetime

    import yaml

    start = datetime.datetime.fromtimestamp(started)
    env = {"PATAS_CLUSTER_NAME": "cluster", "PATAS_NODE_NAME": "node0", "PATAS_CLUSTER_IN_LAB": "0",
           "PATAS_NODE_IN_LAB": "0", "PATAS_NODE_IN_CLUSTER": "0", "PATAS_WORKER_IN_LAB": str(task_id % 2),
           "PATAS_WORKER_IN_CLUSTER": str(task_id % 2), "PATAS_WORKER_IN_NODE": str(task_id % 2)}  # fmt: skip
    result = {"env_variables": env, "started_at": start, "ended_at": start + datetime.timedelta(seconds=0.2),
              "duration": 0.2, "status": 0}  # fmt: skip
    info = {"task_id": task_id, "repeat_id": task.repeat_id, "experiment_id": 0, "experiment_name": "grid",
            "combination_id": task.combination_id, "combination": dict(task.values), "max_tries": 3, "tries": 1,
            "results": [result], "output_dir": str(folder / str(task_id)), "work_dir": str(folder),
            "commands": [], "success": True, "assigned_to": 0}  # fmt: skip
    task_dir = folder / str(task_id)
    task_dir.mkdir(exist_ok=True)
    (task_dir / "info.yml").write_text(yaml.dump(info, default_flow_style=False))
    (task_dir / "success.stdout").write_text(text)
    (task_dir / ".success").touch()


# -- what is timed -------------------------------------------------------------------------------


def _run(command: list[str]) -> None:
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _median(runs: int, action: Callable[[], object]) -> float:
    return _medians(runs, action)[0]


def _medians(runs: int, *actions: Callable[[], object]) -> list[float]:
    """Each action's median time over `runs` rounds in which they take turns."""
    times: list[list[float]] = [[] for _ in actions]
    for _ in range(runs):
        for action, spent in zip(actions, times):
            start = time.perf_counter()
            action()
            spent.append(time.perf_counter() - start)
    return [statistics.median(spent) for spent in times]


def _library(lab: ExperimentLab, workers: int) -> None:
    parse_experiment(lab.path, PATTERNS, workers=workers, output=lab.path.parent / "library.csv")


def _per_line(text: str, regexes: list[re.Pattern[str]]) -> list[str | None]:
    """The original's way (without its YAML): every pattern on every line, in Python."""
    values: list[str | None] = [None] * len(regexes)
    for line in text.splitlines():
        for index, regex in enumerate(regexes):
            match = regex.search(line)
            if match:
                values[index] = match.group(1)
    return values


def _whole_text(text: str, regexes: list[re.Pattern[str]]) -> list[str | None]:
    """Ours: one scan of the whole text per pattern; the last match wins."""
    values = []
    for regex in regexes:
        match = None
        for match in regex.finditer(text):
            pass
        values.append(match.group(1) if match else None)
    return values


def _combined(regexes: list[re.Pattern[str]]) -> Callable[[str], list[str | None]]:
    """One alternation of all patterns, one scan; the group that matched says which pattern."""
    combined = re.compile("|".join(f"(?:{r.pattern})" for r in regexes), re.MULTILINE)

    def match(text: str) -> list[str | None]:
        values: list[str | None] = [None] * len(regexes)
        for found in combined.finditer(text):
            values[found.lastindex - 1] = found.group(found.lastindex)
        return values

    return match


Matcher = Callable[[list[re.Pattern[str]]], Callable[[str], list[str | None]]]
STRATEGIES: dict[str, Matcher] = {
    "per line (original)": lambda regexes: lambda text: _per_line(text, regexes),
    "whole text (ours)": lambda regexes: lambda text: _whole_text(text, regexes),
    "one combined regex": _combined,
}
_TEXTS: dict[Path, list[str]] = {}


def _matching(lab: ExperimentLab, strategy: Matcher) -> None:
    if lab.path not in _TEXTS:
        _TEXTS[lab.path] = [(lab.path / str(t) / "stdout").read_text() for t in sorted(lab.task_folders())]
    match = strategy([p.regex for p in compile_patterns(PATTERNS)])
    for text in _TEXTS[lab.path]:
        match(text)


def _time_original(args: argparse.Namespace, original: Path, expected: float, record: Callable[..., None]) -> None:
    patas = original_patas(args.workdir)
    if patas is None:
        return
    command = [str(patas), "parse", "-e", str(original)]
    for name, regex in PATTERNS.items():
        command += ["-p", name, regex]
    try:
        seconds = _median(1, lambda: _run(command))
    except subprocess.CalledProcessError as error:
        print(f"  original patas {ORIGINAL_VERSION}: failed to run ({error}); skipped")
        return
    record(f"original patas {ORIGINAL_VERSION} (CLI)", seconds, "(1 run)")
    _check_agree(f"patas {ORIGINAL_VERSION}", expected, _column_sum(original / "grid.csv", "out_test_acc"))


def _column_sum(path: Path, column: str) -> float:
    import csv

    with open(path, newline="") as stream:
        return sum(float(row[column]) for row in csv.DictReader(stream) if row[column])


def _check_agree(name: str, expected: float, got: float) -> None:
    if abs(expected - got) > 1e-6:
        raise SystemExit(f"{name} disagrees with patas parse: sum(test_acc) {got} != {expected}")


def _print_summary(results: list[tuple[str, float, str]], task_count: int) -> None:
    ours = next(seconds for name, seconds, _ in results if name.startswith("patas parse (CLI, 2"))
    print("\n| what | seconds | tasks/s | time vs `patas parse` |")
    print("| --- | ---: | ---: | ---: |")
    for name, seconds, note in results:
        print(f"| {name} {note} | {seconds:.3f} | {task_count / seconds:,.0f} | {seconds / ours:.2f}x |")


if __name__ == "__main__":
    main()
