#!/usr/bin/env python3
"""Part (a) of bench_explore.py only, for two patas checkouts side by side (issue 15 (a)).

    python3 bench/bench_dispatch.py --before /tmp/bench-main --after . --rounds 3

Each round runs, interleaved: xargs -P2 (dash), GNU parallel --results (unless --no-parallel),
then `patas explore --cmd 'echo {i}'` of each checkout (with --no-sync too, unless --sync-only).
Per row: best and median wall time, the ratio to xargs, and CPU ms per task of the coordinator
(its own getrusage), of the agent and of its supervisors (sampled from /proc), and of the rest
(the tasks' shells: all children's CPU minus those). The load average is printed each round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
import subprocess
import tempfile
import time

from bench_explore import (
    Contender,
    Expected,
    OUT,
    USAGE_FILE,
    bench_environment,
    children_cpu_s,
    output_failure,
    parallel_argv,
    parallel_outputs,
    patas_argv,
    patas_outputs,
    read_usage,
    remove_tree,
    xargs_argv,
    xargs_outputs,
)
from linux_processes import cpu_seconds, descendants

SAMPLE_S = 0.02
SUPERVISOR_NAME = "patas-supervise"


@dataclass(frozen=True)
class Sample:
    wall_s: float
    total_cpu_s: float
    coordinator_cpu_s: float | None
    agent_cpu_s: float | None
    supervisors_cpu_s: float | None
    failure: str | None


class Watcher(threading.Thread):
    """The last CPU reading of the agent and of each supervisor, until told to stop."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.cpu: dict[tuple[int, str], tuple[str, float]] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(SAMPLE_S):
            try:
                found = list(descendants(self.root))
            except OSError:
                continue  # a process ended while its children were listed: look again
            for process in found:
                kind = "agent" if "patas.agent" in process.command else None
                if kind is not None:
                    try:
                        name = Path(f"/proc/{process.pid}/comm").read_text().strip()
                    except OSError:
                        continue
                    kind = "supervisor" if name == SUPERVISOR_NAME else "agent"
                    cpu = cpu_seconds(process)
                    if cpu is not None:
                        self.cpu[(process.pid, process.start_ticks)] = (kind, cpu)

    def finish(self) -> tuple[float | None, float | None]:
        self._stop_event.set()
        self.join()
        agent = [c for k, c in self.cpu.values() if k == "agent"]
        supervisors = [c for k, c in self.cpu.values() if k == "supervisor"]
        return (sum(agent) if agent else None), (sum(supervisors) if supervisors else None)


def run(contender: Contender, scratch: Path, expected: Expected, pythonpath: str | None) -> Sample:
    usage_file = scratch / USAGE_FILE
    usage_file.unlink(missing_ok=True)
    os.sync()
    env = bench_environment(scratch)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    before = children_cpu_s()
    started = time.perf_counter()
    process = subprocess.Popen(contender.argv, cwd=scratch, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watcher = Watcher(process.pid) if contender.patas else None
    if watcher:
        watcher.start()
    _, stderr = process.communicate()
    wall = time.perf_counter() - started
    agent, supervisors = watcher.finish() if watcher else (None, None)
    failure = None
    if process.returncode != 0:
        failure = f"exit {process.returncode}: {stderr.decode()[-300:]}"
    else:
        failure = output_failure(contender.outputs(scratch), expected)
    remove_tree(scratch / OUT)
    usage = read_usage(usage_file)
    return Sample(wall, children_cpu_s() - before, usage.cpu_s if usage else None, agent, supervisors, failure)


def ms_per_task(value: float | None, tasks: int) -> str:
    return "-" if value is None else f"{value * 1000 / tasks:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", default="/tmp/bench-main")
    parser.add_argument("--after", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--no-parallel", action="store_true")
    parser.add_argument("--sync-only", action="store_true")
    options = parser.parse_args()
    tasks = options.tasks
    expected = Expected(tasks, sum(len(f"{i}\n") for i in range(tasks)))
    variables = [("i", tasks)]
    rows: list[tuple[Contender, str | None]] = [(Contender("xargs -P2 sh", xargs_argv(tasks, "sh", "echo {}"), xargs_outputs), None)]
    if not options.no_parallel:
        rows.append((Contender("parallel --results", parallel_argv(tasks, "echo {}"), parallel_outputs), None))
    variants = [((), "")] + ([] if options.sync_only else [(("--no-sync",), " --no-sync")])
    for name, path in (("before", options.before), ("after", options.after)):
        for extra, suffix in variants:
            rows.append((Contender(f"patas {name}{suffix}", patas_argv("echo {i}", variables, extra), patas_outputs, patas=True),
                         str(Path(path).resolve())))
    samples: dict[str, list[Sample]] = {c.label: [] for c, _ in rows}
    with tempfile.TemporaryDirectory(prefix="bench-dispatch-") as tmp:
        scratch = Path(tmp)
        for contender, path in rows:  # warm up: bytecode and page cache
            if contender.patas:
                run(Contender("warm", patas_argv("echo {i}", [("i", 4)]), patas_outputs, patas=True), scratch,
                    Expected(4, 8), path)
        for round_number in range(1, options.rounds + 1):
            print(f"round {round_number}, load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
            for contender, path in rows:
                sample = run(contender, scratch, expected, path)
                samples[contender.label].append(sample)
                print(f"  {contender.label:26s} {sample.wall_s:6.2f} s  {sample.failure or ''}", file=sys.stderr, flush=True)
    xargs_best = min(s.wall_s for s in samples[rows[0][0].label])
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| row | best s | median s | xargs / row (best) | CPU ms/task: all | coordinator | agent | supervisors | tasks |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for contender, _ in rows:
        good = [s for s in samples[contender.label] if s.failure is None]
        if not good:
            print(f"| {contender.label} | failed | | | | | | | |")
            continue
        best = min(good, key=lambda s: s.wall_s)
        median = statistics.median(s.wall_s for s in good)
        def med(attribute: str) -> float | None:
            values = [getattr(s, attribute) for s in good if getattr(s, attribute) is not None]
            return statistics.median(values) if values else None
        total, coordinator, agent, supervisors = med("total_cpu_s"), med("coordinator_cpu_s"), med("agent_cpu_s"), med("supervisors_cpu_s")
        rest = None
        if contender.patas and None not in (total, coordinator, agent):
            rest = total - coordinator - agent - (supervisors or 0.0)
        print(f"| {contender.label} | {best.wall_s:.2f} | {median:.2f} | {xargs_best / best.wall_s:.2f}x | "
              f"{ms_per_task(total, tasks)} | {ms_per_task(coordinator, tasks)} | {ms_per_task(agent, tasks)} | "
              f"{ms_per_task(supervisors, tasks)} | {ms_per_task(rest, tasks)} |")


if __name__ == "__main__":
    main()
