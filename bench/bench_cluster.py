#!/usr/bin/env python3
"""Benchmark patas on 4 simulated SSH nodes x 2 slots: agent start-up and throughput vs GNU parallel.

How to run (as root, after `pip install -e .`; Linux; needs sshd, iproute2, util-linux and GNU
parallel, like the cluster tests):

    python bench/bench_cluster.py               # 2,000 tasks, 3 interleaved rounds: ~15 minutes
    python bench/bench_cluster.py --quick       # 200 tasks, 1 round: a smoke check of ~1 minute
    python bench/bench_cluster.py --write-docs  # also write the results to docs/benchmarks.md
    python bench/bench_cluster.py --commit HEAD # measure a commit (git archive), not the working tree

Without root (or without namespaces, sshd, ...) it says why and exits with status 0.

The nodes are `tests/sshcluster.py`'s: real sshd processes, one Linux user each, in their own
network, mount and UTS namespaces, joined by a bridge; the coordinator reaches them over TCP.
What it measures (the bench bullet of issue 4), all in one run on the same cluster:

  (a) Time from launching `patas explore` until the 4th agent is ready, with a cold cache (every
      node's ~/.cache/patas wiped first, so the agent, pyzmq and msgpack are uploaded) and a warm
      one (the next run). Method: patas is launched with stderr on a pipe, which it writes the line
      `nodeX: ready on HOST with N workers` to the moment the broker handles that agent's hello;
      this script reads stderr line by line and stamps each line with time.monotonic() as it
      arrives. The sweep is 8 tasks of `sleep 1` (one per slot), so the run lasts until every agent
      has said hello. The patas command is the installed entry point next to sys.executable (a
      pyenv shim would add its own ~0.2 s).
  (b) Where that start-up time goes: the same runs through bench/cluster_timing.py, which runs the
      patas CLI in-process with timers wrapped around SSH connect, probe, install, broker set-up,
      agent start and each hello (monotonic clock, shared with this process).
  (c) Throughput for 2,000 `echo {i}` tasks, every output kept on the coordinator: `patas explore
      ... -q` vs `parallel -S 2/node0,...,2/node3 --ssh 'ssh -F SSH_CONFIG' --results DIR`, and GNU
      parallel again with OpenSSH connection sharing (ControlMaster), which removes its per-task SSH
      handshake. Wall clock from launch to exit; every output file is checked.

Method. A first untimed patas run fills the coordinator's bytecode cache (PYTHONPYCACHEPREFIX in
the scratch folder, as after a normal install). Then each round runs (a), (b) and then the (c)
contenders in an order that rotates from round to round; every figure is the median of the
rounds. After every run the script waits until no process of any node user is left (an agent that
outlived its run would be reported). The cluster is torn down and the scratch folder removed
whatever happens; only processes this script started are ever killed, by PID.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import logging
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from benchmarks_doc import DOCS_FILE, write_section  # bench/ is on sys.path as the script's folder

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for tests.sshcluster

from tests.sshcluster import ClusterUnavailable, SimulatedCluster, build_cluster

NODES = 4
SLOTS = 2
STARTUP_COMMAND = "sleep 1"  # long enough that no run ends before every agent has said hello
STARTUP_TASKS = NODES * SLOTS
THROUGHPUT_COMMAND = "echo {i}"
WARM_TARGET_S = 2.0
RATIO_TARGET = 3.0
RUN_TIMEOUT_S = 900.0  # GNU parallel needs ~2 minutes for 2,000 tasks here
IDLE_TIMEOUT_S = 15.0
TIMING_SCRIPT = Path(__file__).with_name("cluster_timing.py")
DOCS_HEADING = "## cluster"
# Building the agent payload more than once per run, each taking longer than this, is reported.
PAYLOAD_NOTICE_S = 0.02
READY_LINE = re.compile(r"^(\S+): ready on \S+ with \d+ workers")
NODES_LINE = re.compile(r"^(Nodes:|\d+/\d+ nodes up:)")
PATAS_SUMMARY = re.compile(r" in ([\d.]+) s \(")

PATAS = "patas"
PARALLEL = "GNU parallel -S"
PARALLEL_MUX = "GNU parallel -S, ssh ControlMaster"


@dataclass(frozen=True)
class Sizes:
    tasks: int
    rounds: int


FULL = Sizes(tasks=2000, rounds=3)
QUICK = Sizes(tasks=200, rounds=1)


class BenchError(Exception):
    pass


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- running commands --------------------------------------------------------------------------


@dataclass
class Finished:
    returncode: int
    wall_s: float
    stderr_lines: list[tuple[float, str]]  # (seconds since launch, line)

    def tail(self, lines: int = 8) -> str:
        return "\n".join(text for _, text in self.stderr_lines[-lines:])


def run_timed(argv: list[str], cwd: Path, env: dict[str, str], stdin_path: Path | None = None) -> Finished:
    """Run a command to its end, stamping each stderr line as it arrives; killed (its process
    group, which it leads) after RUN_TIMEOUT_S."""
    with open(stdin_path or os.devnull, "rb") as stdin:
        started = time.monotonic()
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=stdin, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, start_new_session=True)
    watchdog = threading.Timer(RUN_TIMEOUT_S, _kill_group, [process])
    watchdog.start()
    lines = []
    try:
        assert process.stderr is not None
        for raw in process.stderr:
            lines.append((time.monotonic() - started, raw.decode(errors="replace").rstrip()))
        returncode = process.wait()
        wall_s = time.monotonic() - started
    finally:
        watchdog.cancel()
        if process.poll() is None:  # this script was interrupted
            _kill_group(process)
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
    return Finished(returncode, wall_s, lines)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def bench_environment(scratch: Path, source: Path | None) -> dict[str, str]:
    """Bytecode cached (in the scratch folder) as after a normal install, even where
    PYTHONDONTWRITEBYTECODE is set: else every patas start would compile patas again. With
    `source`, patas is imported from there (ahead of the installed one)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(scratch / "pycache")
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
    return env


def export_commit(revision: str, scratch: Path) -> tuple[str, Path]:
    """`git archive` the patas package of a commit into the scratch folder: the runs then measure
    that commit, whatever others change in the working tree meanwhile."""
    found = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{revision}^{{commit}}"],
                           capture_output=True, text=True, check=False)
    if found.returncode != 0:
        raise BenchError(f"--commit {revision}: {found.stderr.strip()}")
    commit = found.stdout.strip()
    source = scratch / "source"
    source.mkdir()
    archive = subprocess.Popen(["git", "-C", str(REPO), "archive", commit, "patas"], stdout=subprocess.PIPE)
    unpack = subprocess.run(["tar", "-x", "-C", str(source)], stdin=archive.stdout, capture_output=True, check=False)
    assert archive.stdout is not None
    archive.stdout.close()
    if archive.wait() != 0 or unpack.returncode != 0:
        raise BenchError(f"cannot export patas at {commit}: {unpack.stderr.decode(errors='replace').strip()}")
    return commit, source


_IDENTITY = (
    "import json, os, patas\n"
    "from patas.broker.ssh.agent_payload import LOCAL_PLATFORM, payload_for\n"
    "root = os.path.dirname(os.path.dirname(os.path.abspath(patas.__file__)))\n"
    "print(json.dumps([patas.__version__, root, len(payload_for(LOCAL_PLATFORM, False).archive)]))\n"
)


def patas_identity(scratch: Path, env: dict[str, str], commit: str | None) -> tuple[str, int]:
    """Which patas the runs import (version, where, which commit) and its agent payload's size."""
    done = subprocess.run([sys.executable, "-c", _IDENTITY], cwd=scratch, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"patas does not import with {sys.executable}: {done.stderr.strip()[-2000:]}")
    version, root, payload_bytes = json.loads(done.stdout)
    if commit:
        return f"patas {version} at commit {commit[:10]} (`git archive`)", payload_bytes
    git = ["git", "-C", root]
    head = subprocess.run(git + ["rev-parse", "--short=10", "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
    if not head:
        return f"patas {version} from {root}", payload_bytes
    dirty = subprocess.run(git + ["status", "--porcelain", "--", "patas"], capture_output=True, text=True, check=False).stdout
    return f"patas {version} at {head}{' with uncommitted changes under patas/' if dirty.strip() else ''}", payload_bytes


def patas_command() -> list[str]:
    """The installed `patas` entry point of this interpreter (not a pyenv shim on the PATH)."""
    entry_point = Path(sys.executable).with_name("patas")
    return [str(entry_point)] if entry_point.exists() else [sys.executable, "-m", "patas"]


def explore_arguments(cluster: SimulatedCluster, command: str, tasks: int, lab: Path, quiet: bool) -> list[str]:
    argv = ["explore", "--cmd", command, "--va", "i", "0", str(tasks), "1", "--workdir", "~",
            "--ssh-config", str(cluster.ssh_config_path)]
    for node in cluster.nodes:
        argv += ["--node", node.name, str(SLOTS)]
    return argv + ["-y", "-o", str(lab)] + (["-q"] if quiet else [])


# --- the cluster -------------------------------------------------------------------------------


def wipe_agent_caches(cluster: SimulatedCluster) -> None:
    for node in cluster.nodes:
        done = cluster.run_on(node, "rm -rf ~/.cache/patas")
        if done.returncode != 0:
            raise BenchError(f"{node.name}: cannot wipe ~/.cache/patas: {done.stderr.strip()}")


def wait_until_idle(cluster: SimulatedCluster, after: str, anomalies: list[str]) -> None:
    """Wait for every process of every node user to end (agents, tasks, sshd sessions)."""
    deadline = time.monotonic() + IDLE_TIMEOUT_S
    while True:
        left = {node.name: cluster.processes_of(node) for node in cluster.nodes}
        if not any(left.values()):
            return
        if time.monotonic() > deadline:
            described = "; ".join(f"{name}: {', '.join(map(_describe_pid, pids))}" for name, pids in left.items() if pids)
            anomalies.append(f"after {after}, still running {IDLE_TIMEOUT_S:.0f} s later: {described}")
            for node in cluster.nodes:
                cluster.kill_node_processes(node)
            return
        time.sleep(0.05)


def _describe_pid(pid: int) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        command = "?"
    return f"{pid} ({command[:80]})"


# --- (a), (b): start-up ------------------------------------------------------------------------


@dataclass
class Startup:
    all_ready_s: float
    first_ready_s: float
    sessions_open_s: float | None  # the "Nodes:" line: every node connected, probed, installed
    wall_s: float
    run_phase_s: float | None  # patas's summary: from starting agents to the last task done
    tasks_per_node: dict[str, int]  # which nodes ran the sweep's tasks (from the journal)
    task_span_s: float  # first task started to last task ended (from the journal)
    timeline: dict[str, float] = field(default_factory=dict)  # milestone -> s since launch
    durations: dict[str, list[float]] = field(default_factory=dict)  # step -> per-call seconds


def measure_startup(cluster: SimulatedCluster, scratch: Path, env: dict[str, str], cold: bool,
                    instrumented: bool, anomalies: list[str]) -> Startup:
    if cold:
        wipe_agent_caches(cluster)
    lab = scratch / "lab-startup"
    shutil.rmtree(lab, ignore_errors=True)
    events_file = scratch / "events.json"
    events_file.unlink(missing_ok=True)
    launcher = [sys.executable, str(TIMING_SCRIPT), str(events_file)] if instrumented else patas_command()
    argv = launcher + explore_arguments(cluster, STARTUP_COMMAND, STARTUP_TASKS, lab, quiet=False)
    launched = time.monotonic()
    done = run_timed(argv, scratch, env)
    what = f"{'cold' if cold else 'warm'} start-up{' (instrumented)' if instrumented else ''}"
    wait_until_idle(cluster, what, anomalies)
    ready = {m.group(1): t for t, line in done.stderr_lines if (m := READY_LINE.match(line))}
    if done.returncode != 0 or len(ready) != NODES:
        raise BenchError(f"{what}: exit status {done.returncode}, {len(ready)}/{NODES} agents ready:\n{done.tail()}")
    outputs = list((lab / "grid").glob("*/stdout"))
    if len(outputs) != STARTUP_TASKS:
        raise BenchError(f"{what}: {len(outputs)} outputs instead of {STARTUP_TASKS}")
    sessions = next((t for t, line in done.stderr_lines if NODES_LINE.match(line)), None)
    summary = next((m for _, line in done.stderr_lines if (m := PATAS_SUMMARY.search(line))), None)
    journal = [json.loads(line) for line in (lab / "grid" / "journal.jsonl").read_text().splitlines() if line]
    tasks_per_node = dict(collections.Counter(record["node_name"] for record in journal))
    span = max(r["ended_at"] for r in journal) - min(r["started_at"] for r in journal)
    result = Startup(max(ready.values()), min(ready.values()), sessions, done.wall_s,
                     float(summary.group(1)) if summary else None, tasks_per_node, span)
    if instrumented:
        result.timeline, result.durations = read_events(events_file, launched)
    shutil.rmtree(lab, ignore_errors=True)
    return result


# Milestones of the instrumented run, in the order they happen: (label, step, which end of it,
# and whether the first or the last node to get there counts).
MILESTONES = [
    ("Python interpreter running", "interpreter", "end", max),
    ("patas, click, rich, pyzmq, paramiko imported", "imports", "end", max),
    ("options parsed, sweep planned: connecting to the nodes", "open sessions", "start", min),
    ("all 4 SSH connections authenticated", "ssh connect", "end", max),
    ("all 4 nodes probed (python3 -c ...)", "probe", "end", max),
    ("all 4 agent payloads checked / installed", "install (digest, upload if missing)", "end", max),
    ("nodes ready, plan printed, run starts", "coordinator run", "start", min),
    ("broker listening (CURVE authenticator, socket)", "broker socket", "end", max),
    ("all 4 agents started (exec over SSH)", "start agents (all)", "end", max),
    ("4th agent's hello handled", "hello", "end", max),
]
# Per-call durations reported beside the milestones.
STEPS = [
    ("ssh connect", "SSH connect + authentication, per node"),
    ("probe", "probe, per node"),
    ("install (digest, upload if missing)", "install step, per node (payload digest; upload + unpack if cold)"),
    ("payload archive + digest", "payload archive + digest, per call"),
    ("CURVE authenticator", "CURVE authenticator (ZAP thread) start"),
    ("broker socket", "broker socket bind"),
    ("start agent", "agent start over SSH, per node (open channel, exec, send config)"),
    ("agent start -> hello", "agent started -> its hello handled, per node"),
]


def read_events(path: Path, launched: float) -> tuple[dict[str, float], dict[str, list[float]]]:
    data = json.loads(path.read_text())
    events = data["events"] + [{"step": "interpreter", "node": "", "start": launched, "end": data["interpreter_ready"]}]
    started_agent = {e["node"]: e["end"] for e in events if e["step"] == "start agent"}
    for hello in [e for e in events if e["step"] == "hello"]:
        if hello["node"] in started_agent:
            events.append({"step": "agent start -> hello", "node": hello["node"],
                           "start": started_agent[hello["node"]], "end": hello["end"]})
    timeline = {}
    for label, step, end, pick in MILESTONES:
        times = [e[end] - launched for e in events if e["step"] == step]
        if times:
            timeline[label] = pick(times)
    durations: dict[str, list[float]] = {}
    for event in events:
        durations.setdefault(event["step"], []).append(event["end"] - event["start"])
    return timeline, durations


def agent_import_times(cluster: SimulatedCluster) -> dict[str, float]:
    """On node0, with its warm cache: python3's own start, and starting it to import the agent
    (best of 5, timed by bash inside the node)."""
    node = cluster.nodes[0]
    script = (
        "TIMEFORMAT=%R; cd ~/.cache/patas/agent-* || exit 1; "
        "for i in 1 2 3 4 5; do { time python3 -c pass; } 2>&1; done; echo -; "
        "for i in 1 2 3 4 5; do { time PYTHONPATH=. python3 -c 'import patas.agent.agent'; } 2>&1; done"
    )
    done = cluster.run_on(node, script)
    if done.returncode != 0:
        return {}
    bare, _, agent = done.stdout.partition("-")
    return {"python3 -c pass": min(map(float, bare.split())), "python3 -c 'import patas.agent.agent'": min(map(float, agent.split()))}


# --- (c): throughput ---------------------------------------------------------------------------


@dataclass
class Throughput:
    wall_s: float
    reported_s: float | None = None  # patas's own summary: the run without connecting


@dataclass
class Contender:
    name: str
    run: Callable[[], Throughput]


def patas_throughput(cluster: SimulatedCluster, scratch: Path, env: dict[str, str], tasks: int,
                     anomalies: list[str]) -> Throughput:
    lab = scratch / "lab-throughput"
    shutil.rmtree(lab, ignore_errors=True)
    done = run_timed(patas_command() + explore_arguments(cluster, THROUGHPUT_COMMAND, tasks, lab, quiet=True), scratch, env)
    wait_until_idle(cluster, "patas throughput run", anomalies)
    if done.returncode != 0:
        raise BenchError(f"patas: exit status {done.returncode}:\n{done.tail()}")
    check_outputs(PATAS, {p.parent.name: p for p in (lab / "grid").glob("*/stdout")}, tasks, by_task_id=True)
    shutil.rmtree(lab, ignore_errors=True)
    summary = next((m for _, line in done.stderr_lines if (m := PATAS_SUMMARY.search(line))), None)
    return Throughput(done.wall_s, float(summary.group(1)) if summary else None)


def parallel_ssh(cluster: SimulatedCluster, mux_dir: Path | None) -> str:
    ssh = f"ssh -F {cluster.ssh_config_path}"
    if mux_dir is not None:
        ssh += f" -o ControlMaster=auto -o ControlPath={mux_dir}/%C -o ControlPersist=60"
    return ssh


def parallel_argv(cluster: SimulatedCluster, results: Path, mux_dir: Path | None) -> list[str]:
    servers = ",".join(f"{SLOTS}/{node.name}" for node in cluster.nodes)
    return ["parallel", "--will-cite", "-S", servers, "--ssh", parallel_ssh(cluster, mux_dir), "--results", str(results), "echo"]


def parallel_throughput(cluster: SimulatedCluster, scratch: Path, env: dict[str, str], tasks: int,
                        mux: bool, anomalies: list[str]) -> Throughput:
    results = scratch / "parallel-results"
    shutil.rmtree(results, ignore_errors=True)
    inputs = scratch / "inputs"
    inputs.write_text("".join(f"{i}\n" for i in range(tasks)))
    mux_dir = scratch / "mux" if mux else None
    if mux_dir is not None:
        mux_dir.mkdir(mode=0o700, exist_ok=True)
    try:
        done = run_timed(parallel_argv(cluster, results, mux_dir), scratch, env, stdin_path=inputs)
    finally:
        if mux_dir is not None:
            stop_ssh_masters(cluster, mux_dir, anomalies)
    name = PARALLEL_MUX if mux else PARALLEL
    wait_until_idle(cluster, f"{name} run", anomalies)
    if done.returncode != 0:
        raise BenchError(f"{name}: exit status {done.returncode}:\n{done.tail()}")
    check_outputs(name, {p.parent.name: p for p in (results / "1").glob("*/stdout")}, tasks, by_task_id=False)
    shutil.rmtree(results, ignore_errors=True)
    return Throughput(done.wall_s)


def stop_ssh_masters(cluster: SimulatedCluster, mux_dir: Path, anomalies: list[str]) -> None:
    """End the ControlPersist masters the run left (`ssh -O exit`), then any whose command line
    still names this run's socket folder, by PID."""
    for node in cluster.nodes:
        subprocess.run(["ssh", "-F", str(cluster.ssh_config_path), "-o", f"ControlPath={mux_dir}/%C", "-O", "exit",
                        node.name], stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False)
    deadline = time.monotonic() + 5
    while (masters := _processes_naming(str(mux_dir))) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in masters:
        anomalies.append(f"ssh master {pid} survived `ssh -O exit`; killed")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(mux_dir, ignore_errors=True)


def _processes_naming(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    if stat[0] not in ("Z", "X"):
                        pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def check_outputs(name: str, files: dict[str, Path], tasks: int, by_task_id: bool) -> None:
    """Every task's output is there and right: patas names folders by task id (= i here), GNU
    parallel by the argument (= i)."""
    if len(files) != tasks:
        raise BenchError(f"{name}: {len(files)} outputs instead of {tasks}")
    wrong = [key for key, path in files.items() if path.read_text() != f"{key}\n"]
    if wrong:
        raise BenchError(f"{name}: {len(wrong)} wrong outputs, e.g. {files[wrong[0]]}: {files[wrong[0]].read_text()[:50]!r}")


# --- the benchmark -----------------------------------------------------------------------------


@dataclass
class Results:
    sizes: Sizes
    startup: dict[str, list[Startup]] = field(default_factory=dict)  # "cold"/"warm"[" instrumented"]
    throughput: dict[str, list[Throughput]] = field(default_factory=dict)
    agent_imports: dict[str, float] = field(default_factory=dict)
    anomalies: list[str] = field(default_factory=list)
    load: list[float] = field(default_factory=list)
    has_parallel: bool = True
    patas: str = ""  # which patas was measured
    payload_bytes: int = 0


def run_benchmark(cluster: SimulatedCluster, scratch: Path, sizes: Sizes, has_parallel: bool, revision: str | None) -> Results:
    commit, source = export_commit(revision, scratch) if revision else (None, None)
    env = bench_environment(scratch, source)
    results = Results(sizes, has_parallel=has_parallel)
    results.patas, results.payload_bytes = patas_identity(scratch, env, commit)
    progress(f"measuring {results.patas}")
    results.load.append(os.getloadavg()[0])
    progress("warm-up run (bytecode cache on the coordinator)")
    measure_startup(cluster, scratch, env, cold=True, instrumented=False, anomalies=results.anomalies)
    contenders = [Contender(PATAS, lambda: patas_throughput(cluster, scratch, env, sizes.tasks, results.anomalies))]
    if has_parallel:
        contenders += [
            Contender(PARALLEL, lambda: parallel_throughput(cluster, scratch, env, sizes.tasks, False, results.anomalies)),
            Contender(PARALLEL_MUX, lambda: parallel_throughput(cluster, scratch, env, sizes.tasks, True, results.anomalies)),
        ]
    for round_index in range(sizes.rounds):
        for instrumented in (False, True):
            for cold in (True, False):
                key = f"{'cold' if cold else 'warm'}{' instrumented' if instrumented else ''}"
                run = measure_startup(cluster, scratch, env, cold, instrumented, results.anomalies)
                results.startup.setdefault(key, []).append(run)
                progress(f"round {round_index + 1}/{sizes.rounds}: {key} start-up: 4th agent ready after {run.all_ready_s:.3f} s")
        shift = round_index % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            run = contender.run()
            results.throughput.setdefault(contender.name, []).append(run)
            progress(f"round {round_index + 1}/{sizes.rounds}: {contender.name}: {sizes.tasks} tasks in {run.wall_s:.2f} s"
                     f" ({sizes.tasks / run.wall_s:.1f} tasks/s)")
        results.load.append(os.getloadavg()[0])
    results.agent_imports = agent_import_times(cluster)
    return results


# --- reporting ---------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float], digits: int = 2) -> str:
    text = f"{median(values):.{digits}f}"
    return text if len(values) == 1 else f"{text} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def startup_rows(results: Results) -> list[list[str]]:
    rows = []
    for key, label in [("", "plain `patas explore`"), (" instrumented", "through bench/cluster_timing.py")]:
        cold, warm = results.startup.get("cold" + key, []), results.startup.get("warm" + key, [])
        if not cold or not warm:
            continue
        rows.append([f"4th agent ready, {label}", spread([r.all_ready_s for r in cold]), spread([r.all_ready_s for r in warm])])
        if not key:
            rows.append(["1st agent ready", spread([r.first_ready_s for r in cold]), spread([r.first_ready_s for r in warm])])
            opened = [r.sessions_open_s for r in cold + warm]
            if all(t is not None for t in opened):
                rows.append(["nodes connected (`Nodes:` line printed)", spread([r.sessions_open_s for r in cold]),  # type: ignore[misc]
                             spread([r.sessions_open_s for r in warm])])  # type: ignore[misc]
    return rows


def breakdown_rows(results: Results) -> list[list[str]]:
    cold, warm = results.startup.get("cold instrumented", []), results.startup.get("warm instrumented", [])
    rows = []
    previous = {"cold": 0.0, "warm": 0.0}
    for label, *_ in MILESTONES:
        cells = [label]
        for name, runs in (("cold", cold), ("warm", warm)):
            times = [r.timeline[label] for r in runs if label in r.timeline]
            if not times:
                cells.append("")
                continue
            value = median(times)
            cells.append(f"{value:.3f} (+{value - previous[name]:.3f})")
            previous[name] = value
        rows.append(cells)
    return rows


def step_rows(results: Results) -> list[list[str]]:
    cold, warm = results.startup.get("cold instrumented", []), results.startup.get("warm instrumented", [])
    rows = []
    for step, label in STEPS:
        calls = [len(r.durations.get(step, [])) for r in cold + warm]
        cells = [label + (f" ({median(calls):.0f} calls per run)" if step == "payload archive + digest" and calls else "")]
        for runs in (cold, warm):
            values = [d for r in runs for d in r.durations.get(step, [])]
            cells.append(f"{median(values):.3f} (max {max(values):.3f})" if values else "")
        rows.append(cells)
    return rows


def throughput_rows(results: Results) -> list[list[str]]:
    tasks = results.sizes.tasks
    base = results.throughput.get(PARALLEL)
    base_rate = tasks / median([r.wall_s for r in base]) if base else None
    rows = []
    for name, runs in results.throughput.items():
        rate = tasks / median([r.wall_s for r in runs])
        rates = [tasks / r.wall_s for r in runs]
        ratio = f"{rate / base_rate:.1f}x" if base_rate else ""
        rows.append([name, spread([r.wall_s for r in runs]), f"{rate:.1f}", f"{min(rates):.1f}-{max(rates):.1f}", ratio])
    patas_runs = results.throughput.get(PATAS, [])
    reported = [r.reported_s for r in patas_runs if r.reported_s]
    if reported:
        rate = tasks / median(reported)
        ratio = f"{rate / base_rate:.1f}x" if base_rate else ""
        rows.append(["patas, its run phase only (its summary line: agents started to last task done)",
                     spread(reported), f"{rate:.1f}", "", ratio])
    return rows


def table(header: list[str], rows: list[list[str]], align: str) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---:" if a == "r" else "---" for a in align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def verdicts(results: Results) -> list[str]:
    lines = []
    warm = results.startup.get("warm", [])
    if warm:
        value = median([r.all_ready_s for r in warm])
        margin = WARM_TARGET_S - value
        state = "met" if margin >= 0 else "missed"
        lines.append(f"Warm start to all agents ready ≤ {WARM_TARGET_S:.0f} s: **{state}** — median {value:.2f} s"
                     f" ({abs(margin):.2f} s {'under' if margin >= 0 else 'over'} the target; slowest round"
                     f" {max(r.all_ready_s for r in warm):.2f} s).")
    patas_runs, base = results.throughput.get(PATAS), results.throughput.get(PARALLEL)
    if patas_runs and base:
        ratio = median([r.wall_s for r in base]) / median([r.wall_s for r in patas_runs])
        state = "met" if ratio >= RATIO_TARGET else "missed"
        lines.append(f"Throughput ≥ {RATIO_TARGET:.0f}x GNU parallel -S: **{state}** — {ratio:.1f}x"
                     f" ({ratio / RATIO_TARGET:.1f}x the target), over {results.sizes.tasks:,} tasks, whole commands.")
    elif patas_runs:
        lines.append("Throughput vs GNU parallel: not measured (GNU parallel is not installed).")
    return lines


def _milestone(runs: list[Startup], label: str) -> float | None:
    times = [r.timeline[label] for r in runs if label in r.timeline]
    return median(times) if times else None


def _step(runs: list[Startup], step: str) -> float | None:
    values = [d for r in runs for d in r.durations.get(step, [])]
    return median(values) if values else None


def findings(results: Results) -> list[str]:
    """What the numbers say, in sentences (each only when its numbers are there)."""
    out = []
    warm, cold = results.startup.get("warm instrumented", []), results.startup.get("cold instrumented", [])
    labels = [label for label, *_ in MILESTONES]
    m = {label: (_milestone(cold, label), _milestone(warm, label)) for label in labels}
    if all(value[1] is not None for value in m.values()):
        w = {label: value[1] for label, value in m.items()}
        imported, planned, connected, probed, installed, started, hello = (w[labels[i]] for i in (1, 2, 3, 4, 5, 8, 9))
        payload, calls = _step(warm, "payload archive + digest"), median([len(r.durations.get("payload archive + digest", [])) for r in warm])
        to_hello = _step(warm, "agent start -> hello")
        node_import = results.agent_imports.get("python3 -c 'import patas.agent.agent'")
        out.append(
            f"**Warm start, {hello:.2f} s in the instrumented runs**: {imported:.2f} s to start Python and import patas"
            f" (click, rich, pyzmq, paramiko with cryptography); {planned - imported:.2f} s to parse the options and plan"
            f" the sweep; {connected - planned:.2f} s to connect to the 4 nodes (in parallel,"
            f" {_step(warm, 'ssh connect'):.2f} s each: TCP, key exchange, public-key authentication with paramiko);"
            f" {probed - connected:.2f} s to probe them (`python3 -c ...` over an exec channel);"
            f" **{installed - probed:.2f} s to find the agent already installed**; {started - installed:.2f} s for the"
            f" broker and starting the 4 agents; {hello - started:.2f} s until the last hello"
            f" ({to_hello:.2f} s per agent from its exec to its hello"
            + (f", of which {node_import:.2f} s is python3 starting and importing pyzmq and the agent on the node" if node_import else "")
            + ")."
        )
        if calls > 1 and payload > PAYLOAD_NOTICE_S:
            out.append(
                f"**Performance problem: the payload is rebuilt on every run, once per node.** `_install` calls"
                f" `payload_for()`, which reads pyzmq (with its bundled libzmq), msgpack and the agent, gzips them into"
                f" an archive and hashes it, only to learn the cache folder's name `agent-<digest>`; on a warm node the"
                f" archive is then thrown away. The 4 connection threads reach it at the same moment and `lru_cache` does"
                f" not make them wait for each other, so it is built {calls:.0f} times per run, {payload:.2f} s each on"
                f" 2 busy cores: {installed - probed:.2f} s of the warm start-up ({(installed - probed) / hello:.0%})."
                f" Hashing the installed files once (or a lock around `payload_for`) and building the archive only for a"
                f" node that lacks it would take this to about 0."
            )
        if all(value[0] is not None for value in m.values()):
            c = {label: value[0] for label, value in m.items()}
            out.append(
                f"**Cold start** adds the upload: the install step takes {c[labels[5]] - c[labels[4]]:.2f} s instead of"
                f" {installed - probed:.2f} s (SFTP of the archive, then `python3 -c` unpacking it), and each agent"
                f" needs {_step(cold, 'agent start -> hello'):.2f} s instead of {to_hello:.2f} s to say hello (Python"
                f" compiles the shipped modules' bytecode on first import)."
            )
    plain = results.startup.get("cold", []) + results.startup.get("warm", [])
    if plain:
        used = [len(r.tasks_per_node) for r in plain]
        spans = [r.task_span_s for r in plain]
        if max(used) < NODES:
            out.append(
                f"**Scheduling problem (tail imbalance).** In the start-up sweep, {STARTUP_TASKS} tasks of"
                f" `{STARTUP_COMMAND}` on {NODES} x {SLOTS} = {STARTUP_TASKS} slots, the tasks ran on only"
                f" {median(used):.0f} of the {NODES} nodes ({', '.join(f'{n}: {k}' for n, k in sorted(plain[-1].tasks_per_node.items()))}"
                f" in the last run), so from the first task's start to the last one's end took {median(spans):.2f} s"
                f" (median; range {min(spans):.2f}-{max(spans):.2f}) where one round of 1-s tasks on all slots"
                f" would take about 1 s. `Scheduler.assign()`"
                f" fills one agent's whole room — its slots plus one prefetched task per slot — before the next agent gets"
                f" any, so the first agents to say hello queue tasks that idle slots elsewhere could run. With short tasks"
                f" this is invisible; with few long tasks (8 one-hour trainings on 8 slots) it doubles the run."
                f" Handing out running slots across agents first, and prefetch only while more tasks wait than slots"
                f" are free, would fix it."
            )
    tasks = results.sizes.tasks
    rates = {name: tasks / median([r.wall_s for r in runs]) for name, runs in results.throughput.items()}
    if PATAS in rates and PARALLEL in rates:
        per_task = {name: NODES * SLOTS / rate for name, rate in rates.items()}
        text = (
            f"**Throughput**: GNU parallel -S keeps each of its {NODES * SLOTS} slots busy {per_task[PARALLEL]:.2f} s per task:"
            f" a new `ssh` connection (handshake, authentication, a session on the node), `perl` on the node running"
            f" the command through `$SHELL`, and a local perl fork. "
        )
        if PARALLEL_MUX in per_task:
            text += (
                f"Sharing one SSH connection per node (ControlMaster) removes the handshake but still costs"
                f" {per_task[PARALLEL_MUX]:.2f} s per task (an ssh client, a remote shell and perl per task). "
            )
        text += (
            f"patas pays SSH once per node and sends tasks over ZeroMQ: {per_task[PATAS]:.3f} slot-seconds per task"
            f" including its start-up; what remains per task is starting the command on the node and writing and"
            f" fsyncing its output on the coordinator."
        )
        out.append(text)
    return out


def report(results: Results) -> str:
    rounds = results.sizes.rounds
    parts = [
        f"Start-up, seconds from launching the command (median of {rounds} round{'s' if rounds > 1 else ''}, range in brackets):",
        "",
        table(["", "cold cache", "warm cache"], startup_rows(results), "lrr"),
        "",
        f"Throughput, {results.sizes.tasks:,} tasks `echo {{i}}` on 4 nodes x 2 slots, every output kept on the coordinator:",
        "",
        table(["", "seconds", "tasks/s (of the median time)", "tasks/s range", "vs GNU parallel -S"], throughput_rows(results), "lrrrr"),
        "",
        "Where the start-up goes (instrumented runs; seconds since launch, median; in brackets the step since the previous line):",
        "",
        table(["milestone", "cold", "warm"], breakdown_rows(results), "lrr"),
        "",
        "Durations of single steps (median over nodes and rounds):",
        "",
        table(["step", "cold s", "warm s"], step_rows(results), "lrr"),
    ]
    if results.agent_imports:
        parts += ["", "On a node (node0, warm cache, best of 5): " + "; ".join(
            f"`{what}` {seconds:.3f} s" for what, seconds in results.agent_imports.items()) + "."]
    parts += ["", *verdicts(results)]
    parts += ["", *("- " + finding for finding in findings(results))]
    if results.anomalies:
        parts += ["", "Anomalies:", *[f"- {a}" for a in results.anomalies]]
    return "\n".join(parts)


def versions(results: Results) -> str:
    import paramiko

    def first_line(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
            return (done.stdout or done.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    return (f"{results.patas}, Python {platform.python_version()}, paramiko {paramiko.__version__},"
            f" {first_line(['ssh', '-V'])}, {first_line(['parallel', '--version'])}")


def docs_section(results: Results, text: str, command: str) -> str:
    date = datetime.date.today().isoformat()
    tasks = results.sizes.tasks
    load = ", ".join(f"{x:.1f}" for x in results.load)
    return f"""{DOCS_HEADING}

```sh
{command}
```

Measured {date} on 4 simulated nodes (`tests/sshcluster.py`: a real sshd per node, one Linux user
each, own network, mount and UTS namespaces, reached over a bridge) x 2 slots, on this project's
2-core machine, shared with other work (load average during the run: {load}). {versions(results)}.

- **Start-up**: wall clock from launching `patas explore` (the installed entry point, not a pyenv
  shim) until the 4th `nodeX: ready on ...` line, which patas writes to stderr as the broker
  handles that agent's hello; the script reads stderr line by line and stamps each line with
  `time.monotonic()` as it arrives. The sweep is 8 tasks of `sleep 1` (as many as slots), so every
  agent says hello before the run ends. *Cold*: each node's `~/.cache/patas` wiped first (the
  agent, pyzmq and msgpack, {results.payload_bytes / 1e6:.1f} MB gzipped, are uploaded and unpacked); *warm*: the next run.
  The nodes sit on a local bridge, so the upload itself is quick here; over a slow link it would
  add its transfer time to the cold figure.
- **Throughput**: wall clock of the whole command, launch to exit, so each tool pays for its own
  start; then every output file is checked ({tasks:,} files, `i\\n` each). The commands:
  `patas explore --cmd 'echo {{i}}' --va i 0 {tasks} 1 --workdir '~' --ssh-config SSH_CONFIG --node node0 2
  ... --node node3 2 -y -q -o DIR` and `seq 0 {tasks - 1} | parallel --will-cite -S
  2/node0,2/node1,2/node2,2/node3 --ssh 'ssh -F SSH_CONFIG' --results DIR echo`, and the same with
  `--ssh 'ssh -F SSH_CONFIG -o ControlMaster=auto -o ControlPath=DIR/%C -o ControlPersist=60'`.
  GNU parallel needed no other option: its remote side is `exec perl -e ...` on each node, and the
  simulated nodes share the coordinator's /usr (perl included); a node without perl could not serve
  it. Its own `-M` (`--controlmaster`), tried here, ran the tasks but then did not exit for ten
  minutes (a leftover parallel process kept its output pipes open), so OpenSSH's options are used
  instead.
- Each round runs the start-up measurements (plain, then instrumented; cold, then warm) and then
  the three throughput contenders, in an order rotated from round to round; every figure is the
  median of the rounds. After every run the script waits until no process of any node user is
  left.

{text}
"""


def write_docs(section: str) -> None:
    write_section(DOCS_HEADING, section)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK.tasks} tasks, {QUICK.rounds} round")
    parser.add_argument("--write-docs", action="store_true", help=f"write the results into {DOCS_FILE.relative_to(REPO)}")
    parser.add_argument("--commit", metavar="REV", help="measure patas as committed at REV (git archive), not the"
                        " working tree: others may be changing it while the benchmark runs")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    logging.basicConfig(level=logging.WARNING)
    if os.geteuid() != 0:
        print("bench_cluster: skipped: a simulated cluster needs root (users, network namespaces, mounts)")
        return 0
    has_parallel = shutil.which("parallel") is not None
    if not has_parallel:
        progress("GNU parallel is not installed (apt-get install parallel): measuring patas alone")
    progress(f"building {NODES} simulated nodes")
    try:
        cluster = build_cluster(NODES)
    except ClusterUnavailable as error:
        print(f"bench_cluster: skipped: this machine cannot build a simulated cluster: {error.reason}")
        return 0
    scratch = Path(tempfile.mkdtemp(prefix="patas-bench-cluster-"))
    try:
        results = run_benchmark(cluster, scratch, sizes, has_parallel, args.commit)
    except BenchError as error:
        print(f"bench_cluster: failed: {error}", file=sys.stderr)
        return 1
    finally:
        cluster.close()
        shutil.rmtree(scratch, ignore_errors=True)
    text = report(results)
    print(text)
    if args.write_docs:
        command = "python bench/bench_cluster.py" + (" --quick" if args.quick else "")
        command += f" --commit {args.commit}" if args.commit else ""
        write_docs(docs_section(results, text, command))
        progress(f"wrote the {DOCS_HEADING} section of {DOCS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
