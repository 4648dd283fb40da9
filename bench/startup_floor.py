#!/usr/bin/env python3
"""The floor of starting and stopping a 1-task run from Python on this machine (issue 15 (d)): a
prototype coordinator and agent with everything but the essentials removed, timed beside patas.

    python3 bench/startup_floor.py --rounds 9 \
        --python /root/.pyenv/versions/3.11.7/bin/python3 /tmp/venv/bin/python

The prototype pays what any design like patas's must pay for one task, and nothing more:

- coordinator: the interpreter under test with its normal `site`; first of all it starts the
  agent (`python -S -c ...` on its own import path, as patas does), so that the agent boots on
  the second core meanwhile; then it imports click, zmq and msgpack, parses a click command line
  shaped like `patas explore`'s, creates the lab, writes its definition (JSON, fsynced and renamed
  into place; patas writes experiment.yaml with PyYAML, the "+ PyYAML" row does that instead),
  binds a ROUTER on `ipc://` in a 0700 `mkdtemp` folder (no CURVE, as patas's local agents), hands
  the endpoint to the agent on its stdin, waits for its hello, sends the task (msgpack), receives
  its completion, fdatasyncs the output, renames it into place, appends and fsyncs one journal
  line, tells the agent to stop and waits for its exit on a pidfd.
- agent: `python -S`, imports zmq and msgpack, connects, says hello; for the task it creates the
  output file (O_EXCL) in the task's folder and `os.posix_spawnp`s `bash -c 'echo 0'` with that
  file as stdout, waits on the child's pidfd, reports its exit status; it exits when told to stop.

Rows, for each interpreter given with --python, interleaved over the rounds: `python -S -c pass`,
`python -c pass`, `python -c 'import click, zmq, msgpack'` (the coordinator's imports), `python -S`
importing zmq and msgpack on the same import path (the agent's), the prototype, the prototype
without any fsync, the prototype with both processes ending by `os._exit` (no interpreter
finalization), the prototype with PyYAML, and patas itself (row (d) of bench_explore.py: the same
command line and COORDINATOR wrapper, this checkout on PYTHONPATH). Each row: best and median
wall time from starting the command to its exit, and the median CPU over the rounds: all its
processes (RUSAGE_CHILDREN), the coordinator alone (its own RUSAGE_SELF at exit) and the agent alone (the prototype's agent writes
its own RUSAGE_SELF at exit; patas's is sampled from /proc every 20 ms, as bench_explore does, so
it may miss the agent's last few milliseconds). Bytecode is cached as after an install (every row
runs once untimed first), even where PYTHONDONTWRITEBYTECODE is set. Any failed run aborts the
whole benchmark with one line and exit status 1: no number is printed for a run that failed.

--timeline adds to every round a run of the prototype with its steps marked (perf_counter, the
same clock in every process; a run of its own, so that no row pays for the marks) and prints the
median ms from launch to each.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Callable

# bench/ is on sys.path as the script's own folder
from bench_explore import (
    OUT,
    REPO,
    STARTUP_EXPECTED,
    TARGET_STARTUP_S,
    USAGE_FILE,
    AgentWatcher,
    bench_environment,
    children_cpu_s,
    output_failure,
    patas_outputs,
    read_usage,
    startup_contenders,
)

DEFAULT_ROUNDS = 9
AGENT_USAGE_FILE = "agent_usage"  # where the prototype's agent writes its own CPU seconds
# Environment variables the prototype reads (spelled out again inside AGENT and COORDINATOR_BODY).
DEFINITION_FORMAT = "FLOOR_DEFINITION"  # "json" or "yaml"
SYNC = "FLOOR_SYNC"  # "no": no fsync at all (the row that shows what the three fsyncs cost)
EXIT = "FLOOR_EXIT"  # "os._exit": both processes end without the interpreter's finalization
TASK_COMMAND = "echo {i}"
RUN_TIMEOUT_S = 60.0  # a run taking longer has hung: it fails
PROTOTYPE = "prototype"  # the row every other is compared with
PATAS = "patas, 1 task (row (d))"

# The prototype's agent. Its import path comes after -c's code on its command line, as patas's
# AGENT_BOOT takes it; the endpoint comes on its stdin once the coordinator has bound it.
AGENT = r"""
import os, sys, time
marks = [("agent: first line", time.perf_counter())]
trace = os.environ.get("FLOOR_TRACE")  # where to write the marks: only in the timeline's runs
mark = (lambda name: marks.append((name, time.perf_counter()))) if trace else (lambda name: None)
sys.path[:] = sys.argv[1:]
import resource, select, msgpack, zmq

mark("agent: imported zmq, msgpack")
endpoint = b""
while chunk := os.read(0, 4096):
    endpoint += chunk
mark("agent: got the endpoint")
context = zmq.Context()
socket = context.socket(zmq.DEALER)
socket.RCVTIMEO = 30_000  # ms: never outlive a coordinator that died
socket.connect(endpoint.decode().strip())
socket.send(msgpack.packb(["hello"]))
mark("agent: hello sent")
while True:
    message = msgpack.unpackb(socket.recv())
    if message[0] == "stop":
        mark("agent: stop received")
        break
    mark("agent: task received")
    _, task, argv, path = message
    out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=[
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0), (os.POSIX_SPAWN_DUP2, out, 1)])
    os.close(out)
    pidfd = os.pidfd_open(pid)
    waiting = select.poll()
    waiting.register(pidfd, select.POLLIN)
    waiting.poll()
    os.close(pidfd)
    _, status = os.waitpid(pid, 0)
    mark("agent: task exited")
    socket.send(msgpack.packb(["done", task, os.waitstatus_to_exitcode(status)]))
socket.close(0)
context.term()
mark("agent: done")
usage = resource.getrusage(resource.RUSAGE_SELF)
with open(os.environ["BENCH_AGENT_USAGE_FILE"], "w") as f:
    f.write(f"{usage.ru_maxrss} {usage.ru_utime + usage.ru_stime}")
if trace:
    with open(trace + ".agent", "w") as f:
        f.writelines(f"{t} {name}\n" for name, t in marks)
if os.environ.get("FLOOR_EXIT") == "os._exit":
    os._exit(0)  # skips the interpreter's finalization: nothing is left to flush
"""

# The prototype's coordinator (after `agent_code = <AGENT>`). Its usage is recorded at exit
# exactly as bench_explore's COORDINATOR wrapper records patas's.
COORDINATOR_BODY = r"""
import os, sys, time
marks = [("coordinator: first line", time.perf_counter())]
trace = os.environ.get("FLOOR_TRACE")  # where to write the marks: only in the timeline's runs
mark = (lambda name: marks.append((name, time.perf_counter()))) if trace else (lambda name: None)
stdin_read, stdin_write = os.pipe()  # both close-on-exec: the agent gets only its fd 0
agent_pid = os.posix_spawn(sys.executable, [sys.executable, "-S", "-c", agent_code,
                           *[os.path.abspath(p) for p in sys.path if p]],
                           os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, stdin_read, 0)])
os.close(stdin_read)
agent_pidfd = os.pidfd_open(agent_pid)
mark("coordinator: agent started")

import atexit, resource
def _record_usage():
    mark("coordinator: exiting")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open(os.environ["BENCH_USAGE_FILE"], "w") as f:
        f.write(f"{usage.ru_maxrss} {usage.ru_utime + usage.ru_stime}")
    if trace:
        with open(trace + ".coordinator", "w") as f:
            f.writelines(f"{t} {name}\n" for name, t in marks)
atexit.register(_record_usage)

import gc, select, tempfile, click, msgpack, zmq
mark("coordinator: imported click, zmq, msgpack")

SYNC = os.environ.get("FLOOR_SYNC") != "no"

def write_durably(path, data):
    temporary = path + ".tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    os.write(fd, data)
    if SYNC:
        os.fsync(fd)
    os.close(fd)
    os.rename(temporary, path)

def encode_definition(definition):
    if os.environ.get("FLOOR_DEFINITION") == "yaml":
        import yaml
        return "experiment.yaml", yaml.safe_dump(definition, sort_keys=False).encode()
    import json
    return "experiment.json", json.dumps(definition).encode()

def run(command, variables, lab, nodes):
    mark("coordinator: command line parsed")
    experiment = os.path.join(os.path.abspath(lab), "grid")
    task_folder = os.path.join(experiment, "0")
    os.makedirs(task_folder)
    name, data = encode_definition(dict(cmd=command, variables=[list(v) for v in variables],
                                        nodes=[list(n) for n in nodes]))
    write_durably(os.path.join(experiment, name), data)
    mark("coordinator: lab and definition written")
    private = tempfile.mkdtemp(prefix="floor-")  # mode 0700: only this user may connect
    endpoint = f"ipc://{private}/broker"
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.RCVTIMEO = 30_000  # ms: fail, not hang, if the agent never answers
    router.bind(endpoint)
    os.write(stdin_write, endpoint.encode() + b"\n")
    os.close(stdin_write)
    mark("coordinator: bound, endpoint sent")
    identity, hello = router.recv_multipart()
    mark("coordinator: hello received")
    attempt = os.path.join(task_folder, "attempt-1.stdout")
    argv = ["bash", "-c", command.format(i=0)]
    router.send_multipart([identity, msgpack.packb(["task", 0, argv, attempt])])
    _, task, exit_code = msgpack.unpackb(router.recv_multipart()[1])
    mark("coordinator: completion received")
    if SYNC:
        fd = os.open(attempt, os.O_RDONLY | os.O_CLOEXEC)
        os.fdatasync(fd)
        os.close(fd)
    os.rename(attempt, os.path.join(task_folder, "stdout"))
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
    journal = os.open(os.path.join(experiment, "journal.jsonl"), flags, 0o644)
    os.write(journal, b'{"task_id": %d, "outcome": "done", "exit_code": %d}\n' % (task, exit_code))
    if SYNC:
        os.fsync(journal)
    os.close(journal)
    mark("coordinator: output and journal durable")
    router.send_multipart([identity, msgpack.packb(["stop"])])
    exited = select.poll()
    exited.register(agent_pidfd, select.POLLIN)
    exited.poll()
    _, status = os.waitpid(agent_pid, 0)
    mark("coordinator: agent exited")
    router.close(0)
    context.term()
    os.unlink(os.path.join(private, "broker"))
    os.rmdir(private)
    if os.waitstatus_to_exitcode(status) != 0 or exit_code != 0:
        sys.exit(f"agent exit status {os.waitstatus_to_exitcode(status)}, task exit status {exit_code}")
    if os.environ.get("FLOOR_EXIT") == "os._exit":
        _record_usage()
        os._exit(0)  # skips the interpreter's finalization: nothing is left to flush

@click.group()
def cli():
    pass

@cli.command()
@click.option("--cmd", "command", required=True)
@click.option("--va", "variables", type=(str, int, int, int), multiple=True)
@click.option("-o", "lab", required=True, type=click.Path(file_okay=False))
@click.option("--node", "nodes", type=(str, int), multiple=True)
@click.option("-y", "yes", is_flag=True)
@click.option("-q", "quiet", is_flag=True)
def explore(command, variables, lab, nodes, yes, quiet):
    run(command, variables, lab, nodes)

try:
    cli(prog_name="floor")
finally:
    gc.freeze()  # as patas does as it ends: the collections at exit skip every object made so far
"""
COORDINATOR = f"agent_code = {AGENT!r}\n{COORDINATOR_BODY}"


@dataclass(frozen=True)
class Measured:
    """One successful run."""

    launched_at: float  # perf_counter() as the command started: the timeline's origin
    wall_s: float
    total_cpu_s: float
    coordinator_cpu_s: float | None
    agent_cpu_s: float | None


class RunFailed(Exception):
    """A run exited non-zero or left wrong output: nothing it measured may be shown."""


class AgentCpu(Enum):
    """How a row's agent CPU is known."""

    NONE = "no agent"
    OWN = "the agent writes its own RUSAGE_SELF at exit"  # the prototype's
    SAMPLED = "sampled from /proc"  # patas's, by bench_explore's AgentWatcher


@dataclass(frozen=True)
class Contender:
    """One row: a command line, what it needs in its environment, and how to check its run."""

    label: str
    argv: list[str]
    env: dict[str, str]
    check: Callable[[Path], str | None]  # the failure, given the scratch folder; None if fine
    agent: AgentCpu = AgentCpu.NONE


def nothing_to_check(scratch: Path) -> str | None:
    return None


def lab_check(definition: str) -> Callable[[Path], str | None]:
    """The 1-task lab is there: its output, its journal line and its definition."""

    def check(scratch: Path) -> str | None:
        experiment = scratch / OUT / "grid"
        journal = experiment / "journal.jsonl"
        lines = journal.read_text().splitlines() if journal.exists() else []
        if len(lines) != 1:
            return f"{journal} holds {len(lines)} lines, expected 1"
        if not (experiment / definition).is_file():
            return f"no {experiment / definition}"
        return output_failure(patas_outputs(scratch), STARTUP_EXPECTED)

    return check


def contenders(python: str) -> list[Contender]:
    prototype = [python, "-c", COORDINATOR, "explore", "--cmd", TASK_COMMAND, "--va", "i", "0", "1", "1",
                 "-o", OUT, "--node", "localhost", "2", "-y", "-q"]  # fmt: skip
    (patas,) = startup_contenders([REPO])  # row (d): `env PYTHONPATH=<checkout> python -c COORDINATOR explore ...`
    patas_argv = [python if word == sys.executable else word for word in patas.argv]
    return [
        Contender("python -S -c pass", [python, "-S", "-c", "pass"], {}, nothing_to_check),
        Contender("python -c pass", [python, "-c", "pass"], {}, nothing_to_check),
        Contender("python -c 'import click, zmq, msgpack'", [python, "-c", "import click, zmq, msgpack"], {},
                  nothing_to_check),
        Contender("python -S -c 'import zmq, msgpack' (the agent's floor)",
                  [python, "-S", "-c", f"import sys; sys.path[:] = {site_path(python)!r}; import zmq, msgpack"], {},
                  nothing_to_check),
        Contender(PROTOTYPE, prototype, {DEFINITION_FORMAT: "json"}, lab_check("experiment.json"), AgentCpu.OWN),
        Contender(f"{PROTOTYPE}, no fsync", prototype, {DEFINITION_FORMAT: "json", SYNC: "no"},
                  lab_check("experiment.json"), AgentCpu.OWN),
        Contender(f"{PROTOTYPE}, both exit by os._exit", prototype, {DEFINITION_FORMAT: "json", EXIT: "os._exit"},
                  lab_check("experiment.json"), AgentCpu.OWN),
        Contender(f"{PROTOTYPE} + PyYAML", prototype, {DEFINITION_FORMAT: "yaml"}, lab_check("experiment.yaml"),
                  AgentCpu.OWN),
        Contender(PATAS, patas_argv, {}, lab_check("experiment.yaml"), AgentCpu.SAMPLED),
    ]


def site_path(python: str) -> list[str]:
    """The import path `python` has with its `site`: what the agents get on their command line."""
    show = "import os, sys; print(os.pathsep.join(os.path.abspath(p) for p in sys.path if p))"
    found = subprocess.run([python, "-c", show], capture_output=True, text=True, cwd=tempfile.gettempdir())
    if found.returncode != 0:
        raise RunFailed(f"{python} does not start: {found.stderr.strip()[-300:]}")
    return found.stdout.strip().split(os.pathsep)


def run_once(contender: Contender, scratch: Path) -> Measured:
    """One timed run, from starting the command to its exit; RunFailed if it failed."""
    for leftover in (USAGE_FILE, AGENT_USAGE_FILE):
        (scratch / leftover).unlink(missing_ok=True)
    env = {**bench_environment(scratch), **contender.env}
    if contender.agent is AgentCpu.OWN:  # the prototype; its private socket folder goes in the scratch folder too
        env.update(BENCH_AGENT_USAGE_FILE=str(scratch / AGENT_USAGE_FILE), TMPDIR=str(scratch))
    os.sync()  # do not make this run pay for the previous run's dirty pages
    try:
        cpu_before = children_cpu_s()
        launched_at, wall_s, sampled_agent_s = timed_run(contender, env, scratch)
        total_cpu_s = children_cpu_s() - cpu_before
        failure = contender.check(scratch)
        if failure:
            raise RunFailed(failure)
        return Measured(launched_at, wall_s, total_cpu_s, *process_cpu(contender, scratch, sampled_agent_s))
    finally:
        shutil.rmtree(scratch / OUT, ignore_errors=True)


def timed_run(contender: Contender, env: dict[str, str], scratch: Path) -> tuple[float, float, float | None]:
    """When it started, wall seconds from start to exit, and the agent's CPU sampled meanwhile
    (patas's rows)."""
    with open(scratch / "stderr", "w+") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(contender.argv, cwd=scratch, env=env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=stderr)
        watcher = AgentWatcher(process.pid) if contender.agent is AgentCpu.SAMPLED else None
        if watcher:
            watcher.start()
        try:
            exited = wait_for_exit(process, RUN_TIMEOUT_S)
            wall_s = time.perf_counter() - started
            if not exited:
                raise RunFailed(f"still running after {RUN_TIMEOUT_S:.0f} s")
            returncode = process.wait()
        finally:
            if process.poll() is None:  # it hung, or this script was interrupted
                process.kill()
                process.wait()
            sampled_agent_s = watcher.finish() if watcher else None
        if returncode != 0:
            stderr.seek(0)
            last_lines = " / ".join(stderr.read().strip().splitlines()[-2:])
            raise RunFailed(f"exit status {returncode}: {last_lines}")
    return started, wall_s, sampled_agent_s


def wait_for_exit(process: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Whether `process` exited within `timeout_s`, seen the moment it does (on its pidfd):
    `Popen.wait(timeout)` polls with sleeps of up to 50 ms, which would round every time up."""
    pidfd = os.pidfd_open(process.pid)
    try:
        waiting = select.poll()
        waiting.register(pidfd, select.POLLIN)
        return bool(waiting.poll(timeout_s * 1000))
    finally:
        os.close(pidfd)


def process_cpu(contender: Contender, scratch: Path, sampled_agent_s: float | None) -> tuple[float | None, float | None]:
    """The coordinator's and the agent's own CPU seconds (None for rows without them)."""
    if contender.agent is AgentCpu.NONE:
        return None, None
    coordinator = read_usage(scratch / USAGE_FILE)
    if coordinator is None:
        raise RunFailed("the coordinator wrote no usage at exit")
    if contender.agent is AgentCpu.SAMPLED:
        if sampled_agent_s is None:
            raise RunFailed("the agent was never seen among the coordinator's children")
        return coordinator.cpu_s, sampled_agent_s
    agent = read_usage(scratch / AGENT_USAGE_FILE)
    if agent is None:
        raise RunFailed("the agent wrote no usage at exit")
    return coordinator.cpu_s, agent.cpu_s


# --- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    python: str
    label: str
    runs: list[Measured]

    @property
    def best(self) -> Measured:
        """The fastest round: the least disturbed."""
        return min(self.runs, key=lambda r: r.wall_s)

    @property
    def median_s(self) -> float:
        return statistics.median(r.wall_s for r in self.runs)

    def median_cpu_s(self, of: Callable[[Measured], float | None]) -> float | None:
        """The median over the rounds: steadier than any one round's CPU."""
        values = [v for v in map(of, self.runs) if v is not None]
        return statistics.median(values) if values else None


def cell(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def table(rows: list[Row]) -> str:
    """A markdown table, each interpreter's rows with their ratios to its prototype's."""
    lines = ["| python | row | best s | median s | best / prototype | median / prototype | median CPU s: all | "
             "coordinator | agent |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        prototype = next(r for r in rows if r.python == row.python and r.label == PROTOTYPE)
        cpu = [row.median_cpu_s(lambda r: r.total_cpu_s), row.median_cpu_s(lambda r: r.coordinator_cpu_s),
               row.median_cpu_s(lambda r: r.agent_cpu_s)]
        lines.append(f"| {row.python} | {row.label} | {cell(row.best.wall_s)} | {cell(row.median_s)} | "
                     f"{row.best.wall_s / prototype.best.wall_s:.2f}x | {row.median_s / prototype.median_s:.2f}x | "
                     + " | ".join(map(cell, cpu)) + " |")
    return "\n".join(lines)


def verdicts(rows: list[Row]) -> list[str]:
    lines = []
    for python in dict.fromkeys(r.python for r in rows):
        floor = next(r for r in rows if r.python == python and r.label == PROTOTYPE).best.wall_s
        patas = next(r for r in rows if r.python == python and r.label == PATAS).best.wall_s
        reachable = "within" if floor <= TARGET_STARTUP_S else "above"
        lines.append(f"{python}: floor {floor:.3f} s, {reachable} the {TARGET_STARTUP_S} s target "
                     f"({floor - TARGET_STARTUP_S:+.3f} s); patas {patas:.3f} s, {patas / floor:.2f}x the floor "
                     f"({patas - floor:+.3f} s), {'meets' if patas <= TARGET_STARTUP_S else 'misses'} the target "
                     f"({patas - TARGET_STARTUP_S:+.3f} s)")
    return lines


# --- the prototype's timeline ------------------------------------------------------------------

TRACE = "FLOOR_TRACE"  # the prototype's processes write their marks to this path + ".coordinator"/".agent"
EXIT_MARK = "exit, as the benchmark sees it"


TRACED = f"{PROTOTYPE}, marking its steps"  # the timeline's runs, never a row of the table


def traced_contender(python: str, scratch: Path) -> Contender:
    prototype = next(c for c in contenders(python) if c.label == PROTOTYPE)
    return dataclasses.replace(prototype, label=TRACED, env={**prototype.env, TRACE: str(scratch / "trace")})


def add_marks(marks: dict[str, list[float]], run: Measured, scratch: Path, python: str) -> None:
    """The marks of a traced run, as ms from its launch, by name."""
    for name, at in read_marks(scratch / "trace", python):
        marks.setdefault(name, []).append((at - run.launched_at) * 1000)
    marks.setdefault(EXIT_MARK, []).append(run.wall_s * 1000)


def read_marks(trace: Path, python: str) -> list[tuple[str, float]]:
    marks = []
    for role in ("coordinator", "agent"):
        path = trace.with_name(f"{trace.name}.{role}")
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            raise RunFailed(f"{PROTOTYPE} with {python} wrote no {role} marks to {path}") from None
        path.unlink()
        for line in lines:
            at, name = line.split(" ", 1)
            marks.append((name, float(at)))
    return marks


def timeline_table(medians: dict[str, dict[str, float]]) -> str:
    pythons = list(medians)
    first = medians[pythons[0]]
    names = sorted(first, key=first.__getitem__)
    lines = ["| the prototype: median ms from launch | " + " | ".join(pythons) + " |",
             "| --- |" + " ---: |" * len(pythons)]
    lines += [f"| {name} | " + " | ".join(f"{medians[p].get(name, float('nan')):.1f}" for p in pythons) + " |"
              for name in names]
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------------------


def measure(pythons: list[str], rounds: int, scratch: Path,
            with_timeline: bool) -> tuple[list[Row], dict[str, dict[str, float]], list[float]]:
    """Every row of every interpreter once untimed (bytecode cached, page cache warm), then once
    per round, interleaved, every other round in reverse; with_timeline, a traced run of the
    prototype among them (so under the same load), whose marks' medians come back per
    interpreter; and the 1-minute load average before each round and after the last."""
    everything = [(python, c) for python in pythons for c in contenders(python)]
    everything += [(python, traced_contender(python, scratch)) for python in pythons if with_timeline]
    for python, contender in everything:
        attempt(python, contender, scratch, "warm-up")
    runs: dict[tuple[str, str], list[Measured]] = {(p, c.label): [] for p, c in everything}
    marks: dict[str, dict[str, list[float]]] = {python: {} for python in pythons if with_timeline}
    loads = []
    for number in range(1, rounds + 1):
        loads.append(os.getloadavg()[0])
        print(f"round {number}/{rounds} (load {loads[-1]:.2f})", file=sys.stderr, flush=True)
        in_order = everything if number % 2 else everything[::-1]  # no row always right after the same one
        for python, contender in in_order:
            run = attempt(python, contender, scratch, f"round {number}")
            runs[python, contender.label].append(run)
            if contender.label == TRACED:
                add_marks(marks[python], run, scratch, python)
    loads.append(os.getloadavg()[0])
    rows = [Row(p, label, measured) for (p, label), measured in runs.items() if label != TRACED]
    medians = {python: {name: statistics.median(ms) for name, ms in by_name.items()} for python, by_name in marks.items()}
    return rows, medians, loads


def attempt(python: str, contender: Contender, scratch: Path, when: str) -> Measured:
    try:
        return run_once(contender, scratch)
    except RunFailed as failure:
        raise RunFailed(f"{contender.label} with {python} failed ({when}): {failure}") from None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help=f"interleaved rounds (default {DEFAULT_ROUNDS})")
    parser.add_argument("--python", nargs="+", default=[sys.executable], metavar="PATH",
                        help="the interpreters to measure, each in its own rows (default: this one)")
    parser.add_argument("--timeline", action="store_true",
                        help="also run the prototype once a round marking its steps, and print the median "
                             "time from launch to each")
    arguments = parser.parse_args()
    if arguments.rounds < 1:
        parser.error("--rounds must be at least 1")
    missing = [p for p in arguments.python if not (shutil.which(p) and os.access(shutil.which(p), os.X_OK))]
    if missing:
        parser.error(f"--python: no such interpreter: {', '.join(missing)}")
    scratch = Path(tempfile.mkdtemp(prefix="patas-startup-floor-"))
    try:
        rows, medians, loads = measure(arguments.python, arguments.rounds, scratch, arguments.timeline)
    except RunFailed as failure:
        print(f"Error: {failure}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"1 task, launch → exit; best of {arguments.rounds} interleaved round(s), median beside it, CPU the "
          f"median of the rounds; {os.cpu_count()} cores; 1-minute load {loads[0]:.2f} before, {loads[-1]:.2f} after "
          f"(range {min(loads):.2f}–{max(loads):.2f})\n")
    print(table(rows))
    print()
    for line in verdicts(rows):
        print(f"- {line}")
    if medians:
        print(f"\n{timeline_table(medians)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
