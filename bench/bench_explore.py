#!/usr/bin/env python3
"""Benchmark `patas explore` against `xargs -P2` and GNU parallel, side by side, on 2 slots.

How to run (after `pip install -e .` in the repository; Linux only, it reads /proc):

    python bench/bench_explore.py               # full sizes, 5 rounds: about 5 minutes
    python bench/bench_explore.py --quick       # small sizes, 1 round: a smoke check of ~10 s
    python bench/bench_explore.py --install     # as root: `apt-get install -y parallel` if missing
    python bench/bench_explore.py --write-docs  # also write the results to docs/benchmarks.md
    python bench/bench_explore.py --startup-only --rounds 9 --checkouts . /tmp/bench-main

What it measures (the "Done when" of issue 2), every tool on the same 2 slots:

  (a) 2,000 trivial tasks (`echo i`), every output kept in its own file: patas vs `xargs -P2`
      writing one file per task vs GNU parallel `--results`. Extra rows show where patas spends
      its time: without fsync (`--no-sync`), with a command patas starts without a shell
      (`/bin/echo`), and the xargs baseline run through bash instead of dash.
  (b) 40 tasks each printing 25 MB (`head -c 25000000 /dev/zero`): throughput of patas vs the same
      generator redirected into files by `xargs -P2`, and the coordinator's peak RSS.
  (c) a 1,000,000-task grid: time from launch to the first committed task (its journal line),
      the coordinator's RSS after 10 s of running, and a prompt exit 130 on SIGINT.
  (d) a 1-task local explore (`echo {i}`, -y -q), from launch to exit: patas' fixed start and
      stop cost (issue 15). `--startup-only` measures this row alone; `--checkouts DIR...` runs
      it for several patas checkouts side by side (interleaved), e.g. before and after a change.

Method. Runs are interleaved (one run of every tool, then the next round) and the page cache is
flushed (`sync`) before each. Times are wall clock from starting the command to its exit, so
patas pays for starting Python, its broker and its agent. Each row reports its best round (the
machine is shared and noisy: the best run is the one least disturbed) with the median beside it.
Also per row: the CPU time of every process of the run together; for patas, that of the
coordinator alone (its own getrusage, from the `COORDINATOR` wrapper below, which runs the normal
CLI in the same process) and of the agent alone (sampled from /proc). The coordinator's peak RSS
is its own `ru_maxrss`: `/usr/bin/time` would report the largest of it, the agent and the tasks.
Every temporary folder and process the benchmark starts is removed before it exits.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# bench/ is on sys.path as the script's own folder
from benchmarks_doc import DOCS_FILE, write_section
from linux_processes import ProcessId, cpu_seconds, descendants, kill, memory_kb, still_running

SLOTS = 2
REPO = Path(__file__).resolve().parent.parent
DOCS_HEADING = "## explore"
OUT = "out"  # every tool writes its outputs to this folder, relative to the scratch folder
USAGE_FILE = "coordinator_usage"  # where COORDINATOR writes the coordinator's peak RSS and CPU
APT_INSTALL = "apt-get install -y parallel"
AGENT_MODULE = "patas.agent"  # how the agent process is recognised among the coordinator's children


@dataclass(frozen=True)
class Sizes:
    trivial_tasks: int
    big_tasks: int
    big_task_bytes: int
    grid_side: int  # the big grid has grid_side × grid_side tasks
    grid_observe_s: float  # how long the big grid runs before its RSS is read and it is stopped
    rounds: int


FULL = Sizes(trivial_tasks=2000, big_tasks=40, big_task_bytes=25_000_000, grid_side=1000, grid_observe_s=10.0, rounds=5)
QUICK = Sizes(trivial_tasks=100, big_tasks=4, big_task_bytes=2_000_000, grid_side=1000, grid_observe_s=1.0, rounds=1)

# Targets of issue 2.
TARGET_VS_XARGS = 0.6
TARGET_VS_PARALLEL = 3.0
TARGET_BIG_VS_XARGS = 0.5
TARGET_BIG_RSS_MB = 150.0
TARGET_FIRST_TASK_S = 2.0
TARGET_GRID_RSS_MB = 300.0
TARGET_STARTUP_S = 0.25  # issue 15
# Ours: what "stops promptly on SIGINT" means here.
TARGET_STOP_S = 3.0
EXIT_INTERRUPTED = 130

FIRST_TASK_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
LEFTOVER_GRACE_S = 2.0
POLL_S = 0.005
CPU_SAMPLE_S = 0.02

# Row labels that the ratios and findings refer to.
XARGS = "xargs -P2, sh (dash)"
XARGS_BASH = "xargs -P2, bash"
PARALLEL = "GNU parallel --results"
PATAS = "patas 'echo {i}'"
PATAS_NO_SYNC = "patas 'echo {i}' --no-sync"
PATAS_NO_SHELL = "patas '/bin/echo {i}'"
PATAS_NO_SHELL_NO_SYNC = "patas '/bin/echo {i}' --no-sync"
BIG_XARGS = "xargs -P2, sh > file"
BIG_PATAS = "patas"
BIG_PATAS_NO_SYNC = "patas --no-sync"
STARTUP_PATAS = "patas, 1 task"

# Runs the patas CLI in this very process and, at exit, writes the process's own peak RSS (kB)
# and CPU seconds to $BENCH_USAGE_FILE. RUSAGE_SELF counts the coordinator alone; RUSAGE_CHILDREN
# (and so `/usr/bin/time`) would fold in the agent and the tasks.
COORDINATOR = """
import atexit, os, resource, sys
def _record_usage():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open(os.environ["BENCH_USAGE_FILE"], "w") as f:
        f.write(f"{usage.ru_maxrss} {usage.ru_utime + usage.ru_stime}")
atexit.register(_record_usage)
sys.argv[0] = "patas"
from patas.cli.main import main
main()
"""


class BenchError(Exception):
    """patas cannot run here at all: nothing can be measured."""


# --- contenders ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Contender:
    """One row of a table: a command that writes one output file per task under OUT."""

    label: str
    argv: list[str]
    outputs: Callable[[Path], list[Path]]  # the per-task output files, given the scratch folder
    patas: bool = False


def patas_argv(command: str, variables: list[tuple[str, int]], extra: tuple[str, ...] = ()) -> list[str]:
    """`patas explore` on SLOTS local workers, run under the COORDINATOR wrapper."""
    argv = [sys.executable, "-c", COORDINATOR, "explore", "--cmd", command]
    for name, count in variables:
        argv += ["--va", name, "0", str(count), "1"]
    return argv + ["-o", OUT, "--node", "localhost", str(SLOTS), "-y", "-q", *extra]


def patas_outputs(scratch: Path) -> list[Path]:
    return list((scratch / OUT / "grid").glob("*/stdout"))


def xargs_argv(tasks: int, shell: str, task_command: str) -> list[str]:
    """`xargs -P2` running `shell -c 'task_command > out/i'` for i in 0..tasks-1."""
    pipeline = f"seq 0 {tasks - 1} | xargs -P{SLOTS} -I{{}} {shell} -c '{task_command} > {OUT}/{{}}'"
    return ["sh", "-c", f"mkdir -p {OUT} && {pipeline}"]


def xargs_outputs(scratch: Path) -> list[Path]:
    return list((scratch / OUT).iterdir())


def parallel_argv(tasks: int, task_command: str) -> list[str]:
    pipeline = f"seq 0 {tasks - 1} | parallel --will-cite -j{SLOTS} --results {OUT} {task_command} > /dev/null"
    return ["sh", "-c", pipeline]


def parallel_outputs(scratch: Path) -> list[Path]:
    return list((scratch / OUT / "1").glob("*/stdout"))


def trivial_contenders(tasks: int, with_parallel: bool) -> list[Contender]:
    rows = [
        Contender(XARGS, xargs_argv(tasks, "sh", "echo {}"), xargs_outputs),
        Contender(XARGS_BASH, xargs_argv(tasks, "bash", "echo {}"), xargs_outputs),
    ]
    if with_parallel:
        rows.append(Contender(PARALLEL, parallel_argv(tasks, "echo {}"), parallel_outputs))
    variables = [("i", tasks)]
    no_sync = ("--no-sync",)
    rows += [
        Contender(PATAS, patas_argv("echo {i}", variables), patas_outputs, patas=True),
        Contender(PATAS_NO_SYNC, patas_argv("echo {i}", variables, no_sync), patas_outputs, patas=True),
        Contender(PATAS_NO_SHELL, patas_argv("/bin/echo {i}", variables), patas_outputs, patas=True),
        Contender(PATAS_NO_SHELL_NO_SYNC, patas_argv("/bin/echo {i}", variables, no_sync), patas_outputs, patas=True),
    ]
    return rows


def big_output_contenders(tasks: int, task_bytes: int) -> list[Contender]:
    generator = f"head -c {task_bytes} /dev/zero"
    variables = [("i", tasks)]
    return [
        Contender(BIG_XARGS, xargs_argv(tasks, "sh", generator), xargs_outputs),
        Contender(BIG_PATAS, patas_argv(generator, variables), patas_outputs, patas=True),
        Contender(BIG_PATAS_NO_SYNC, patas_argv(generator, variables, ("--no-sync",)), patas_outputs, patas=True),
    ]


def checkout_prefix(checkout: Path) -> tuple[str, ...]:
    """What runs a patas command on `checkout` (through PYTHONPATH, so that runs differ only in
    the patas they import)."""
    return ("env", f"PYTHONPATH={checkout.resolve()}")


def startup_contenders(checkouts: list[Path]) -> list[Contender]:
    """The 1-task run of the patas that is installed, or of each checkout given (through
    PYTHONPATH, so the rows differ only in the patas they import)."""
    argv = patas_argv("echo {i}", [("i", 1)])
    if not checkouts:
        return [Contender(STARTUP_PATAS, argv, patas_outputs, patas=True)]
    return [Contender(f"{STARTUP_PATAS} ({checkout_name(c)})", [*checkout_prefix(c), *argv], patas_outputs, patas=True)
            for c in checkouts]


def checkout_name(checkout: Path) -> str:
    head = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return f"{checkout} at {head.stdout.strip()}" if head.returncode == 0 else str(checkout)


# --- running and timing ----------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """What the coordinator process itself used."""

    peak_rss_kb: int
    cpu_s: float


@dataclass(frozen=True)
class Run:
    wall_s: float
    total_cpu_s: float  # every process of the run together
    coordinator: Usage | None  # patas only
    agent_cpu_s: float | None  # patas only
    inner_s: float | None  # patas' own "Finished ... in X s": the run without start-up and shutdown
    failure: str | None = None  # why this run does not count: the tool failed or wrote wrong output


@dataclass(frozen=True)
class Completed:
    returncode: int
    stderr: str
    wall_s: float
    total_cpu_s: float
    agent_cpu_s: float | None


@dataclass(frozen=True)
class Expected:
    files: int
    total_bytes: int


STARTUP_EXPECTED = Expected(1, 2)  # the 1-task run's one output, "0\n"


class AgentWatcher(threading.Thread):
    """Samples the CPU time of the patas agent (a child of the coordinator) until told to stop."""

    def __init__(self, coordinator_pid: int) -> None:
        super().__init__(daemon=True)
        self.coordinator_pid = coordinator_pid
        self.agent: ProcessId | None = None
        self.cpu_s: float | None = None
        self._stop_sampling = threading.Event()

    def run(self) -> None:
        while not self._stop_sampling.wait(CPU_SAMPLE_S):
            if self.agent is None:
                self.agent = next((p for p in descendants(self.coordinator_pid) if AGENT_MODULE in p.command), None)
            if self.agent is not None:
                self.cpu_s = cpu_seconds(self.agent) or self.cpu_s  # the last reading before it exited

    def finish(self) -> float | None:
        self._stop_sampling.set()
        self.join()
        return self.cpu_s


def measure(contenders: list[Contender], rounds: int, scratch: Path, expected: Expected) -> dict[str, list[Run]]:
    """Every contender once per round, interleaved, each on a fresh output folder."""
    runs: dict[str, list[Run]] = {c.label: [] for c in contenders}
    for round_number in range(1, rounds + 1):
        for contender in contenders:
            progress(f"  round {round_number}/{rounds}: {contender.label}")
            runs[contender.label].append(run_once(contender, scratch, expected))
    return runs


def run_once(contender: Contender, scratch: Path, expected: Expected) -> Run:
    """One timed run; a failure is recorded in the Run (and shown), not raised: the other
    rows' numbers still mean something, and the failure is itself a finding."""
    usage_file = scratch / USAGE_FILE
    usage_file.unlink(missing_ok=True)
    os.sync()  # do not make this run pay for the previous run's dirty pages
    try:
        done = run_command(contender.argv, scratch, watch_agent=contender.patas)
        failure = run_failure(done) or output_failure(contender.outputs(scratch), expected)
    finally:
        remove_tree(scratch / OUT)
    if failure:
        progress(f"    FAILED: {failure}")
    inner_s = patas_reported_s(done.stderr) if contender.patas else None
    return Run(done.wall_s, done.total_cpu_s, read_usage(usage_file), done.agent_cpu_s, inner_s, failure)


def run_failure(done: Completed) -> str | None:
    if done.returncode == 0:
        return None
    last_lines = " / ".join(done.stderr.strip().splitlines()[-3:])
    return f"exit status {done.returncode}: {last_lines}"


def run_command(argv: list[str], scratch: Path, watch_agent: bool = False) -> Completed:
    """Run to completion, timing it; all its processes' CPU comes from RUSAGE_CHILDREN's growth."""
    cpu_before = children_cpu_s()
    with open(scratch / "stderr", "w+") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(argv, cwd=scratch, env=bench_environment(scratch), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=stderr)
        watcher = AgentWatcher(process.pid) if watch_agent else None
        if watcher:
            watcher.start()
        try:
            returncode = process.wait()
        finally:
            if process.poll() is None:  # this script was interrupted
                process.kill()
                process.wait()
        wall_s = time.perf_counter() - started
        agent_cpu_s = watcher.finish() if watcher else None
        stderr.seek(0)
        text = stderr.read()
    return Completed(returncode, text, wall_s, children_cpu_s() - cpu_before, agent_cpu_s)


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bench_environment(scratch: Path) -> dict[str, str]:
    """The environment every run gets: where the coordinator writes its usage, and Python bytecode
    cached (in the scratch folder) as after a normal install, even where PYTHONDONTWRITEBYTECODE
    is set: else every patas start would compile patas again."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(BENCH_USAGE_FILE=str(scratch / USAGE_FILE), PYTHONPYCACHEPREFIX=str(scratch / "pycache"))
    return env


def warm_up(scratch: Path) -> None:
    """One small untimed patas run: caches bytecode and warms the page cache for every row alike."""
    done = run_command(patas_argv("/bin/echo {i}", [("i", 4)]), scratch)
    remove_tree(scratch / OUT)
    if done.returncode != 0:
        raise BenchError(f"patas does not run with {sys.executable} (did you `pip install -e .`?): "
                         f"exit status {done.returncode}\n{done.stderr.strip()[-2000:]}")


def output_failure(files: list[Path], expected: Expected) -> str | None:
    total = sum(f.stat().st_size for f in files)
    if len(files) == expected.files and total == expected.total_bytes:
        return None
    return f"wrong output: {len(files)} files, {total} bytes; expected {expected.files} files, {expected.total_bytes} bytes"


def read_usage(usage_file: Path) -> Usage | None:
    try:
        rss, cpu = usage_file.read_text().split()
        return Usage(int(rss), float(cpu))
    except (OSError, ValueError):
        return None


def patas_reported_s(stderr: str) -> float | None:
    found = re.search(r" in ([\d.]+) s \(", stderr)
    return float(found.group(1)) if found else None


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- (c) the 1,000,000-task grid ---------------------------------------------------------------


@dataclass(frozen=True)
class GridResult:
    tasks: int
    first_task_s: float | None
    observed_s: float
    done_when_observed: int
    rss_kb: int | None
    hwm_kb: int | None
    exit_code: int | None  # None: it did not stop within STOP_TIMEOUT_S
    stop_s: float | None
    coordinator: Usage | None
    leftovers: list[str]


def measure_big_grid(side: int, observe_s: float, scratch: Path, prefix: tuple[str, ...] = ()) -> GridResult:
    """Launch a side×side grid (its argv after `prefix`), time its first committed task, read its
    RSS, then SIGINT it."""
    usage_file = scratch / USAGE_FILE
    usage_file.unlink(missing_ok=True)
    journal = scratch / OUT / "grid" / "journal.jsonl"
    argv = [*prefix, *patas_argv("echo {a} {b}", [("a", side), ("b", side)])]
    os.sync()
    with open(scratch / "stderr", "w") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(argv, cwd=scratch, env=bench_environment(scratch), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        first_task_s = wait_for_first_line(journal, process, started)
        time.sleep(max(0.0, started + observe_s - time.perf_counter()))
        observed_s = time.perf_counter() - started
        memory = memory_kb(process.pid)
        done = count_lines(journal)
        started_processes = list(descendants(process.pid))
        exit_code, stop_s = interrupt(process)
        leftovers = stop_leftovers(started_processes)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        remove_tree(scratch / OUT)
    return GridResult(side * side, first_task_s, observed_s, done, memory.get("VmRSS"), memory.get("VmHWM"),
                      exit_code, stop_s, read_usage(usage_file), leftovers)


def wait_for_first_line(journal: Path, process: subprocess.Popen[bytes], started: float) -> float | None:
    """Seconds from launch until the journal holds a line (a task committed), None if never."""
    while time.perf_counter() - started < FIRST_TASK_TIMEOUT_S and process.poll() is None:
        try:
            if journal.stat().st_size > 0:
                return time.perf_counter() - started
        except FileNotFoundError:
            pass
        time.sleep(POLL_S)
    return None


def count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def interrupt(process: subprocess.Popen[bytes]) -> tuple[int | None, float | None]:
    """SIGINT the coordinator (by pid): its exit status and how long it took; None if it hung."""
    sent = time.perf_counter()
    os.kill(process.pid, signal.SIGINT)
    try:
        exit_code = process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None, None
    return exit_code, time.perf_counter() - sent


def stop_leftovers(started: list[ProcessId]) -> list[str]:
    """Processes the coordinator started that outlive it: kill them (by pid) and name them."""
    deadline = time.perf_counter() + LEFTOVER_GRACE_S
    while time.perf_counter() < deadline and any(still_running(p) for p in started):
        time.sleep(0.05)
    leftovers = [p for p in started if still_running(p)]
    for p in leftovers:
        kill(p)
    return [f"{p.pid} {p.command[:80]}" for p in leftovers]


# --- results ---------------------------------------------------------------------------------


def rate_ratio(row: Row | None, base: Row | None) -> float | None:
    if row is None or base is None or row.rate is None or base.rate is None:
        return None
    return row.rate / base.rate


def median_of(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


@dataclass(frozen=True)
class Row:
    """One tool's rounds; every number comes from its successful runs only."""

    label: str
    all_runs: list[Run]
    units: float  # tasks, or MB, done per run

    @property
    def runs(self) -> list[Run]:
        return [r for r in self.all_runs if r.failure is None]

    @property
    def failures(self) -> list[str]:
        return [r.failure for r in self.all_runs if r.failure is not None]

    @property
    def best(self) -> Run | None:
        """The fastest successful round: the least disturbed. The CPU columns describe it too."""
        return min(self.runs, key=lambda r: r.wall_s, default=None)

    @property
    def best_s(self) -> float | None:
        return self.best.wall_s if self.best else None

    @property
    def median_s(self) -> float | None:
        return median_of([r.wall_s for r in self.runs])

    @property
    def rate(self) -> float | None:
        """Units per second in the best round: what ratios compare."""
        return self.units / self.best_s if self.best_s else None

    @property
    def median_rate(self) -> float | None:
        return self.units / self.median_s if self.median_s else None

    @property
    def total_cpu_s(self) -> float | None:
        return self.best.total_cpu_s if self.best else None

    @property
    def coordinator_cpu_s(self) -> float | None:
        return self.best.coordinator.cpu_s if self.best and self.best.coordinator else None

    @property
    def agent_cpu_s(self) -> float | None:
        return self.best.agent_cpu_s if self.best else None

    @property
    def peak_rss_mb(self) -> float | None:
        """The largest over all rounds, failed ones included."""
        values = [r.coordinator.peak_rss_kb for r in self.all_runs if r.coordinator]
        return max(values) / 1024 if values else None

    @property
    def overhead_s(self) -> float | None:
        """Wall time outside patas' own run (starting Python, the broker and the agent; stopping),
        in the best round."""
        if self.best is None or self.best.inner_s is None:
            return None
        return self.best.wall_s - self.best.inner_s


@dataclass(frozen=True)
class Target:
    name: str
    measured: float | None
    limit: float
    at_least: bool  # True: measured ≥ limit is met; False: measured ≤ limit is met
    unit: str

    @property
    def met(self) -> bool | None:
        if self.measured is None:
            return None
        return self.measured >= self.limit if self.at_least else self.measured <= self.limit

    def verdict(self) -> str:
        if self.measured is None:
            return "not measured"
        word = "met" if self.met else "MISSED"
        side = "above" if self.measured > self.limit else "below"
        return f"{word} ({abs(self.measured / self.limit - 1):.0%} {side} the limit)"

    def limit_text(self) -> str:
        return f"{'≥' if self.at_least else '≤'} {self.limit:g}{self.unit}"


@dataclass
class Results:
    sizes: Sizes
    trivial: list[Row]
    big: list[Row]
    grid: GridResult | None
    skipped: list[str]
    startup: list[Row] = dataclasses.field(default_factory=list)
    first_tasks: dict[str, list[float | None]] = dataclasses.field(default_factory=dict)  # --startup-only

    @staticmethod
    def row(rows: list[Row], label: str) -> Row | None:
        return next((r for r in rows if r.label == label), None)

    def ratio(self, rows: list[Row], label: str, baseline: str) -> float | None:
        row, base = self.row(rows, label), self.row(rows, baseline)
        return rate_ratio(row, base)

    def targets(self) -> list[Target]:
        startup = Target("(d) 1-task local explore, launch → exit", self.startup[0].best_s if self.startup else None,
                         TARGET_STARTUP_S, False, " s")
        grid = self.grid
        if grid is None:  # --startup-only
            return [startup]
        grid_rss_mb = grid.rss_kb / 1024 if grid.rss_kb is not None else None
        stop_s = grid.stop_s if grid.exit_code == EXIT_INTERRUPTED else None
        return [
            Target("(a) patas / xargs tasks/s", self.ratio(self.trivial, PATAS, XARGS), TARGET_VS_XARGS, True, "x"),
            Target("(a) patas / GNU parallel tasks/s", self.ratio(self.trivial, PATAS, PARALLEL), TARGET_VS_PARALLEL,
                   True, "x"),
            Target("(b) patas / xargs MB/s", self.ratio(self.big, BIG_PATAS, BIG_XARGS), TARGET_BIG_VS_XARGS, True, "x"),
            Target("(b) coordinator peak RSS", self.big_peak_rss_mb(), TARGET_BIG_RSS_MB, False, " MB"),
            Target("(c) launch → first task committed", grid.first_task_s, TARGET_FIRST_TASK_S, False, " s"),
            Target(f"(c) coordinator RSS after {grid.observed_s:.0f} s", grid_rss_mb, TARGET_GRID_RSS_MB, False, " MB"),
            Target("(c) SIGINT → exit with status 130", stop_s, TARGET_STOP_S, False, " s"),
            startup,
        ]

    def big_peak_rss_mb(self) -> float | None:
        values = [r.peak_rss_mb for r in self.big if r.peak_rss_mb is not None]
        return max(values) if values else None


# --- findings: the numbers that explain the gaps ------------------------------------------------


def extra_ms_per_task(results: Results, slower: str, faster: str) -> float | None:
    """Extra wall time per task of `slower` over `faster` (best rounds, SLOTS slots), in ms."""
    a, b = results.row(results.trivial, slower), results.row(results.trivial, faster)
    if not a or not b or a.best_s is None or b.best_s is None:
        return None
    return (a.best_s - b.best_s) / a.units * 1000


def per_unit_ms(value_s: float | None, units: float) -> str:
    return "n/a" if value_s is None else f"{value_s / units * 1000:.2f}"


def noise_finding(results: Results) -> list[str]:
    spreads = [row.median_s / row.best_s - 1 for row in results.trivial + results.big + results.startup
               if row.best_s and row.median_s and len(row.runs) > 1]
    if not spreads:
        return []
    return [f"Noise: a row's median round took {min(spreads):.0%} to {max(spreads):.0%} longer than its best; "
            "differences smaller than that between rows are not significant."]


def trivial_findings(results: Results) -> list[str]:
    lines = []
    bash_ms = extra_ms_per_task(results, XARGS_BASH, XARGS)
    if bash_ms is not None:
        lines.append(f"bash instead of dash: {bash_ms:+.2f} ms of wall time per task at {SLOTS} slots (xargs "
                     f"rows: {ratio_text(results.ratio(results.trivial, XARGS_BASH, XARGS))} the tasks/s). "
                     "patas starts `echo {i}` through bash (echo is a shell builtin); the xargs baseline's `sh` "
                     f"is {Path('/bin/sh').resolve().name} here. Against xargs running the same bash, patas "
                     f"reaches {ratio_text(results.ratio(results.trivial, PATAS, XARGS_BASH))}.")
    shell_ms = extra_ms_per_task(results, PATAS, PATAS_NO_SHELL)
    if shell_ms is not None:
        lines.append(f"patas running `echo {{i}}` through bash rather than `/bin/echo {{i}}` directly: "
                     f"{shell_ms:+.2f} ms per task.")
    sync_ms = extra_ms_per_task(results, PATAS, PATAS_NO_SYNC)
    if sync_ms is not None:
        lines.append(f"fsync of each committed output (patas' default; xargs and GNU parallel never fsync): "
                     f"{sync_ms:+.2f} ms per task.")
    best = results.ratio(results.trivial, PATAS_NO_SHELL_NO_SYNC, XARGS)
    if best is not None:
        lines.append(f"With neither (no shell, no fsync) patas reaches {ratio_text(best)} xargs' tasks/s.")
    default, xargs = results.row(results.trivial, PATAS), results.row(results.trivial, XARGS)
    if default and xargs:
        n = default.units
        lines.append(
            f"CPU per task (ms): the whole xargs run {per_unit_ms(xargs.total_cpu_s, n)}; the whole patas run "
            f"{per_unit_ms(default.total_cpu_s, n)}, of which the coordinator {per_unit_ms(default.coordinator_cpu_s, n)} "
            f"and the agent {per_unit_ms(default.agent_cpu_s, n)} (start-up included). On {os.cpu_count()} cores "
            f"running {SLOTS} slots, the coordinator's and agent's CPU is taken from the tasks'.")
    if default and default.overhead_s is not None and default.best_s is not None:
        lines.append(f"patas' start-up and shutdown (Python, broker, agent): {default.overhead_s:.2f} s of its "
                     f"{default.best_s:.2f} s for {default.units:.0f} tasks.")
    return lines


def big_output_findings(results: Results) -> list[str]:
    patas, no_sync, xargs = (results.row(results.big, label) for label in (BIG_PATAS, BIG_PATAS_NO_SYNC, BIG_XARGS))
    if not (patas and no_sync and xargs):
        return []
    gb = patas.units / 1000
    per_gb = lambda s: "n/a" if s is None else f"{s / gb:.1f}"  # noqa: E731
    return [
        f"(b) without fsync patas moves {ratio_text(results.ratio(results.big, BIG_PATAS_NO_SYNC, BIG_XARGS))} "
        "xargs' MB/s.",
        f"(b) CPU seconds per GB of output: the whole xargs run {per_gb(xargs.total_cpu_s)}; the whole patas run "
        f"{per_gb(patas.total_cpu_s)}, of which the coordinator {per_gb(patas.coordinator_cpu_s)} and the agent "
        f"{per_gb(patas.agent_cpu_s)}: a local task's stdout is its attempt file, as xargs' tasks write straight to"
        " theirs; what patas adds per GB is the fdatasync before a task counts (the disk's rate, not CPU) and the"
        " rename and journal line of each commit.",
    ]


def cpu_bound(results: Results, rows: list[Row], label: str, baseline: str, target: float, unit: str,
              rate_unit: str) -> list[str]:
    """Whether CPU explains a missed ratio: the rate that `label`'s CPU per unit allows on this
    machine's cores, and the CPU per unit that the target would need."""
    row, base = results.row(rows, label), results.row(rows, baseline)
    if not row or not base or not row.total_cpu_s or not row.rate or not base.rate:
        return []
    cores = os.cpu_count() or 1
    cpu_per_unit = row.total_cpu_s / row.units
    needed = cores / (target * base.rate)
    return [f"CPU bound of `{label}`: {cpu_per_unit * 1000:.2f} CPU-ms per {unit} on {cores} cores allows at most "
            f"{cores / cpu_per_unit:.0f} {rate_unit} ({cores / cpu_per_unit / base.rate:.2f}x `{baseline}`, measured "
            f"{row.rate / base.rate:.2f}x); {target:g}x would need at most {needed * 1000:.2f} CPU-ms per {unit}, "
            "tasks included."]


def failed_runs(results: Results) -> list[str]:
    return [f"FAILED run of `{row.label}` ({len(row.failures)} of {len(row.all_runs)}): {failure}"
            for row in results.trivial + results.big for failure in row.failures]


def findings(results: Results) -> list[str]:
    bounds = cpu_bound(results, results.trivial, PATAS, XARGS, TARGET_VS_XARGS, "task", "tasks/s")
    bounds += cpu_bound(results, results.big, BIG_PATAS, BIG_XARGS, TARGET_BIG_VS_XARGS, "MB", "MB/s")
    return (failed_runs(results) + noise_finding(results) + trivial_findings(results) + big_output_findings(results)
            + bounds + results.skipped)


def ratio_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


# --- presenting ------------------------------------------------------------------------------


def number(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def rate_table(rows: list[Row], baseline: str, unit: str) -> tuple[list[str], list[list[str]]]:
    base = Results.row(rows, baseline)
    headers = ["tool", "best s", f"{unit} best", f"{unit} median", f"vs {baseline}", "CPU s all", "CPU s coordinator",
               "CPU s agent", "coordinator peak RSS MB", "patas start+stop s", "failed runs"]
    body = [
        [
            row.label,
            number(row.best_s) or "failed",
            number(row.rate, 0),
            number(row.median_rate, 0),
            ratio_text(rate_ratio(row, base)),
            number(row.total_cpu_s),
            number(row.coordinator_cpu_s),
            number(row.agent_cpu_s),
            number(row.peak_rss_mb, 0),
            number(row.overhead_s),
            f"{len(row.failures)} of {len(row.all_runs)}" if row.failures else "",
        ]
        for row in rows
    ]
    return headers, body


def startup_table(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    headers = ["run", "best s", "median s", "CPU s all", "CPU s coordinator", "CPU s agent", "failed runs"]
    body = [
        [row.label, number(row.best_s) or "failed", number(row.median_s), number(row.total_cpu_s),
         number(row.coordinator_cpu_s), number(row.agent_cpu_s),
         f"{len(row.failures)} of {len(row.all_runs)}" if row.failures else ""]
        for row in rows
    ]
    return headers, body


def first_task_table(times: dict[str, list[float | None]]) -> tuple[list[str], list[list[str]]]:
    body = []
    for name, values in times.items():
        present = [v for v in values if v is not None]
        failed = f"{len(values) - len(present)} of {len(values)}" if len(present) < len(values) else ""
        body.append([name, number(min(present, default=None)) or "never", number(median_of(present)), failed])
    return ["checkout", "best s", "median s", "no first task"], body


def with_unit(value: float | None, unit: str, missing: str) -> str:
    return missing if value is None else f"{value:.2f} {unit}"


def grid_table(grid: GridResult) -> tuple[list[str], list[list[str]]]:
    def mb(kb: int | None) -> str:
        return "n/a" if kb is None else f"{kb / 1024:.0f} MB"

    exit_text = str(grid.exit_code) if grid.exit_code is not None else f"none: still running after {STOP_TIMEOUT_S:.0f} s"
    headers = ["measure", "value"]
    body = [
        ["tasks in the grid", f"{grid.tasks:,}"],
        ["launch → first journal line (a task committed)", with_unit(grid.first_task_s, "s", "never")],
        [f"tasks committed after {grid.observed_s:.1f} s", f"{grid.done_when_observed:,}"],
        ["coordinator VmRSS then", mb(grid.rss_kb)],
        ["coordinator VmHWM (peak) then", mb(grid.hwm_kb)],
        ["exit status after SIGINT", exit_text],
        ["SIGINT → exit", with_unit(grid.stop_s, "s", "n/a")],
        ["coordinator peak RSS, whole run", mb(grid.coordinator.peak_rss_kb if grid.coordinator else None)],
        ["processes it started still running after it exited", ", ".join(grid.leftovers) or "none"],
    ]
    return headers, body


def targets_table(targets: list[Target]) -> tuple[list[str], list[list[str]]]:
    headers = ["target", "measured", "limit", "verdict"]
    body = [[t.name, "n/a" if t.measured is None else f"{t.measured:.2f}{t.unit}", t.limit_text(), t.verdict()]
            for t in targets]
    return headers, body


def sections(results: Results) -> list[tuple[str, tuple[list[str], list[list[str]]]]]:
    s = results.sizes
    startup = (f"(d) 1 task (`echo {{i}}`, --node localhost {SLOTS} -y -q), launch → exit", startup_table(results.startup))
    targets = ("Targets (issues 2 and 15; the SIGINT limit is ours)", targets_table(results.targets()))
    if results.grid is None:  # --startup-only
        side = results.sizes.grid_side
        return [startup, (f"(d) launch → first task committed, a {side}×{side} grid", first_task_table(results.first_tasks)),
                targets]
    return [
        (f"(a) {s.trivial_tasks:,} trivial tasks, every output kept, {SLOTS} slots",
         rate_table(results.trivial, XARGS, "tasks/s")),
        (f"(b) {s.big_tasks} tasks × {s.big_task_bytes / 1e6:g} MB of output, {SLOTS} slots",
         rate_table(results.big, BIG_XARGS, "MB/s")),
        (f"(c) a {s.grid_side}×{s.grid_side} grid of `echo {{a}} {{b}}`, {SLOTS} slots", grid_table(results.grid)),
        startup,
        targets,
    ]


def text_table(headers: list[str], body: list[list[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(headers, *body)]
    lines = [headers, ["-" * w for w in widths], *body]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def markdown_table(headers: list[str], body: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def print_report(results: Results) -> None:
    print(f"\nBest of {results.sizes.rounds} interleaved round(s) per row, the median beside it; the CPU "
          "and start+stop columns describe the best round, peak RSS the largest of all rounds.")
    for title, (headers, body) in sections(results):
        print(f"\n{title}\n{text_table(headers, body)}")
    print("\nWhere the time goes:")
    for line in findings(results):
        print(f"- {line}")


def markdown_section(results: Results, command: str) -> str:
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    parts = [
        DOCS_HEADING,
        "",
        f"Measured {when} with `{command}` (from the repository root) on {machine_description()}.",
        "",
        f"Each row is the best of {results.sizes.rounds} interleaved rounds (the median beside it; the CPU and "
        "start+stop columns describe that best round, peak RSS is the largest of all rounds), timed from "
        "starting the command to its exit, with the page cache flushed before each run. The machine is shared "
        "with other work and noisy: read the ratios, not the seconds. "
        "\"CPU s all\" counts every process of the run; \"coordinator\" is the `patas explore` process alone "
        "(its own `getrusage`, as is its peak RSS), \"agent\" the local agent process alone; \"patas start+stop\" "
        "is the wall time outside the run patas itself reports. Python bytecode is cached as after a normal "
        "install (an untimed warm-up run comes first).",
    ]
    for title, (headers, body) in sections(results):
        parts += ["", f"### {title}", "", markdown_table(headers, body)]
    parts += ["", "### Where the time goes", ""]
    parts += [f"- {line}" for line in findings(results)]
    return "\n".join(parts) + "\n"


def machine_description() -> str:
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return (f"{os.cpu_count()} cores, Linux {platform.release()}, Python {platform.python_version()}, "
            f"/bin/sh → {Path('/bin/sh').resolve().name}, {parallel_version() or 'no GNU parallel'}, "
            f"patas {patas_revision()}; load average {load} at the end")


def parallel_version() -> str | None:
    if not shutil.which("parallel"):
        return None
    lines = subprocess.run(["parallel", "--version"], capture_output=True, text=True).stdout.splitlines()
    return lines[0] if lines else "GNU parallel"


def patas_revision() -> str:
    """The commit of the patas that the runs import (PYTHONPATH may point at another checkout)."""
    where = "import os, patas; print(os.path.dirname(os.path.dirname(os.path.abspath(patas.__file__))))"
    found = subprocess.run([sys.executable, "-c", where], capture_output=True, text=True, cwd=tempfile.gettempdir())
    root = found.stdout.strip()
    git = ["git", "-C", root or str(REPO)]
    head = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(git + ["status", "--porcelain", "--", "patas"], capture_output=True, text=True).stdout.strip()
    if not head:
        return f"from {root} (not a git checkout)"
    return f"at {head}{' with uncommitted changes' if dirty else ''}"


def write_docs(section: str) -> None:
    write_section(DOCS_HEADING, section)


# --- main ------------------------------------------------------------------------------------


def ensure_parallel(install: bool) -> bool:
    """Whether GNU parallel is there, installing it from apt if asked to and allowed."""
    if shutil.which("parallel"):
        return True
    if install and os.geteuid() == 0:
        progress(f"Installing GNU parallel: {APT_INSTALL}")
        if subprocess.run(APT_INSTALL.split()).returncode != 0:
            subprocess.run(["apt-get", "update"])
            subprocess.run(APT_INSTALL.split())
        return shutil.which("parallel") is not None
    return False


def trivial_expected(tasks: int) -> Expected:
    return Expected(tasks, sum(len(str(i)) + 1 for i in range(tasks)))


def run_all(sizes: Sizes, with_parallel: bool, scratch: Path) -> Results:
    skipped = [] if with_parallel else [
        f"GNU parallel is not installed, so its row and ratio are missing: `sudo {APT_INSTALL}` "
        "(or run this script as root with --install)."]
    warm_up(scratch)

    progress(f"(a) {sizes.trivial_tasks} trivial tasks")
    contenders = trivial_contenders(sizes.trivial_tasks, with_parallel)
    runs = measure(contenders, sizes.rounds, scratch, trivial_expected(sizes.trivial_tasks))
    trivial = [Row(c.label, runs[c.label], sizes.trivial_tasks) for c in contenders]

    progress(f"(b) {sizes.big_tasks} tasks × {sizes.big_task_bytes} bytes")
    contenders = big_output_contenders(sizes.big_tasks, sizes.big_task_bytes)
    expected = Expected(sizes.big_tasks, sizes.big_tasks * sizes.big_task_bytes)
    runs = measure(contenders, sizes.rounds, scratch, expected)
    total_mb = sizes.big_tasks * sizes.big_task_bytes / 1e6
    big = [Row(c.label, runs[c.label], total_mb) for c in contenders]

    progress(f"(c) a {sizes.grid_side}×{sizes.grid_side} grid, observed for {sizes.grid_observe_s:g} s")
    grid = measure_big_grid(sizes.grid_side, sizes.grid_observe_s, scratch)
    return Results(sizes, trivial, big, grid, skipped, measure_startup(sizes.rounds, scratch, []))


def measure_startup(rounds: int, scratch: Path, checkouts: list[Path]) -> list[Row]:
    progress("(d) 1 task, launch → exit")
    contenders = startup_contenders(checkouts)
    runs = measure(contenders, rounds, scratch, STARTUP_EXPECTED)
    return [Row(c.label, runs[c.label], 1) for c in contenders]


def run_startup_only(sizes: Sizes, scratch: Path, checkouts: list[Path]) -> Results:
    warm_up(scratch)
    for contender in startup_contenders(checkouts)[1:]:  # each checkout's bytecode cached alike
        run_once(contender, scratch, STARTUP_EXPECTED)
    startup = measure_startup(sizes.rounds, scratch, checkouts)
    return Results(sizes, [], [], None, [], startup, first_tasks(sizes, scratch, checkouts))


def first_tasks(sizes: Sizes, scratch: Path, checkouts: list[Path]) -> dict[str, list[float | None]]:
    """Launch → first committed task of the big grid (c), per checkout, interleaved; stopped then."""
    progress(f"(d) launch → first task of a {sizes.grid_side}×{sizes.grid_side} grid")
    prefixes = {checkout_name(c): checkout_prefix(c) for c in checkouts} or {"installed patas": ()}
    times: dict[str, list[float | None]] = {name: [] for name in prefixes}
    for _ in range(sizes.rounds):
        for name, prefix in prefixes.items():
            times[name].append(measure_big_grid(sizes.grid_side, 0.0, scratch, prefix).first_task_s)
    return times


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round: a smoke check")
    parser.add_argument("--rounds", type=int, help=f"rounds per row (default: {FULL.rounds}, or {QUICK.rounds} with --quick)")
    parser.add_argument("--install", action="store_true", help=f"as root, `{APT_INSTALL}` if parallel is missing")
    parser.add_argument("--write-docs", action="store_true", help=f"write the results into {DOCS_FILE.relative_to(REPO)}")
    parser.add_argument("--startup-only", action="store_true", help="measure row (d) alone: a 1-task run, launch to exit")
    parser.add_argument("--checkouts", nargs="+", type=Path, default=[], metavar="DIR",
                        help="with --startup-only: one row per patas checkout (its PYTHONPATH), interleaved")
    return parser.parse_args()


def command_line(arguments: argparse.Namespace) -> str:
    words = ["python", "bench/bench_explore.py"]
    words += ["--quick"] if arguments.quick else []
    words += [f"--rounds {arguments.rounds}"] if arguments.rounds else []
    words += ["--startup-only"] if arguments.startup_only else []
    words += ["--checkouts", *map(str, arguments.checkouts)] if arguments.checkouts else []
    return " ".join(words + ["--write-docs"])


def main() -> int:
    arguments = parse_arguments()
    if arguments.checkouts and not arguments.startup_only:
        print("--checkouts compares row (d) only: add --startup-only", file=sys.stderr)
        return 2
    if arguments.startup_only and arguments.write_docs:
        print(f"--write-docs writes the whole {DOCS_HEADING!r} section: leave out --startup-only", file=sys.stderr)
        return 2
    with_parallel = arguments.startup_only or ensure_parallel(arguments.install)
    if not with_parallel:
        progress(f"GNU parallel not found: skipping it. Install it with `sudo {APT_INSTALL}` "
                 "(or run this script as root with --install).")
    sizes = QUICK if arguments.quick else FULL
    if arguments.rounds:
        sizes = dataclasses.replace(sizes, rounds=arguments.rounds)
    scratch = Path(tempfile.mkdtemp(prefix="patas-bench-explore-"))
    try:
        if arguments.startup_only:
            results = run_startup_only(sizes, scratch, arguments.checkouts)
        else:
            results = run_all(sizes, with_parallel, scratch)
    except BenchError as error:
        print(f"benchmark aborted: {error}", file=sys.stderr)
        return 1
    finally:
        remove_tree(scratch)
    print_report(results)
    if arguments.write_docs:
        write_docs(markdown_section(results, command_line(arguments)))
        progress(f"\nWrote the {DOCS_HEADING!r} section of {DOCS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
