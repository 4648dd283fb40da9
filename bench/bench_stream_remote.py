#!/usr/bin/env python3
"""Benchmark streaming from a remote node: task output over the run's CURVE-encrypted ZeroMQ
connection, against OpenSSH streaming the same bytes, on one simulated SSH node.

How to run (as root, after `pip install -e .`; Linux; needs sshd, iproute2 and util-linux, like
the cluster tests):

    python bench/bench_stream_remote.py                  # 40 tasks x 25 MB, 3 interleaved rounds
    python bench/bench_stream_remote.py --rounds 1 --mb 5
    python bench/bench_stream_remote.py --write-docs     # also write the results to docs/benchmarks.md
    python bench/bench_stream_remote.py --baseline main  # also patas at a commit (`git archive`)

Without root (or namespaces, sshd, ...) it says why and exits with status 0.

What runs, on one node of `tests/sshcluster.py` (its own user, network namespace and sshd,
reached over a veth bridge) with 2 slots:
- patas: `patas explore --cmd 'head -c BYTES /dev/zero' --node node0 2`: every byte goes pipe →
  agent → ZeroMQ over TCP with CURVE → coordinator → its attempt file, fdatasync'ed before the
  task counts. Its rate is the bytes over the span from the first task's start to the last
  task's end (the journal's times), so the agent's start-up is not counted; the wall time from
  launch to exit is shown beside it.
- patas --no-sync: the same, without the fdatasync of each output (what the disk costs).
- with `--baseline REV`: patas at that commit too (its package exported with `git archive`, its
  own agent payload shipped), to measure a change side by side with what it changes.
- OpenSSH: two `ssh node0 'head -c HALF /dev/zero' > file` at once (two streams, as two slots),
  each over its own connection (AES-GCM or ChaCha20 as negotiated), files fsync'ed at the end.
- prototype (`bench/stream_floor.py`): the floor of any such design, everything else removed: a
  minimal sender on the node (pyzmq DEALER, the same task 2 at a time, patas's chunk, window and
  pipe size) and a minimal receiver here (ROUTER, a file per task, fdatasync and rename at the
  task's end on a thread of its own); CURVE durable, CURVE without fdatasync, and plain TCP
  (durable) for CURVE's share. Timed over the same span as patas (first task start to last task
  end, as the sender sees them).
The contenders take turns, round by round; each figure is the best round, the median beside it.
CPU of each side: the coordinator's is the getrusage of this script's children for the run
(patas and its ssh; the receiver and the sender's ssh; the ssh clients); the node's is every
process of the node's user but the tasks (`head`) and shells, read from /proc every
SAMPLE_INTERVAL_S (the agent and its supervisors, or the sender, or sshd, and each row's ssh
session), so it misses up to that much of a process's last moments. Before each run the same
contender runs SLOTS tasks x 1 MB: its CPU is the start-up column, and CPU-s per GB is the
difference of the two runs per GB of difference (streaming alone), median of the rounds.
The target (issue 15 b): ≥ 500 MB/s through CURVE.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import zmq

import bench_cluster as cluster_bench  # bench/ is on sys.path as the script's folder
from bench_explore import children_cpu_s
from benchmarks_doc import write_section

from patas.agent.task_process import PIPE_BYTES, READ_CHUNK_BYTES
from patas.broker.run.coordinator import OUTPUT_WINDOW_BYTES
from tests.sshcluster import ClusterUnavailable, SimulatedCluster, build_cluster

SLOTS = 2
TASKS = 40
MB = 25
TARGET_MB_S = 500
# Below this, the CPU of streaming is within the noise of start-up's (the small run taken away):
# the CPU-s per GB figures and the findings built on them are left out.
MIN_MEASURED_MB = 200
PATAS = "patas, CURVE over TCP"
PATAS_NO_SYNC = "patas --no-sync"
OPENSSH = "OpenSSH, 2 streams"
FLOOR = "prototype, CURVE, durable"
FLOOR_NO_SYNC = "prototype, CURVE, no sync"
FLOOR_PLAIN = "prototype, plain TCP, durable"
HEADING = "## Streaming from a remote node"
FLOOR_SCRIPT = Path(__file__).with_name("stream_floor.py")
SAMPLE_INTERVAL_S = 0.05
# The node's processes that are neither a task nor a shell: the ones that carry the bytes.
TASK_COMMANDS = ("head", "bash", "sh")


class BenchError(Exception):
    pass


@dataclass
class Results:
    tasks: int
    mb: int
    rounds: int
    rates: dict[str, list[float]] = field(default_factory=dict)  # MB/s
    walls: dict[str, list[float]] = field(default_factory=dict)  # s, launch to exit
    cpu: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # (coordinator, node) CPU-s per round
    start_up: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # the same, of SLOTS tasks x 1 MB
    load: list[float] = field(default_factory=list)
    patas: str = ""
    names: list[str] = field(default_factory=list)  # the contenders, in the order the table shows them
    threads: list[dict[str, float]] = field(default_factory=list)  # CPU-s by thread of FLOOR's receiver, per round
    threads_small: list[dict[str, float]] = field(default_factory=list)  # the same, of its SLOTS x 1 MB runs

    @property
    def total_mb(self) -> int:
        return self.tasks * self.mb


def patas_round(cluster: SimulatedCluster, scratch: Path, env: dict[str, str], tasks: int, mb: int, *extra: str) -> tuple[float, float]:
    """(MB/s over the tasks' span, wall seconds) of one patas run."""
    lab = scratch / "lab"
    shutil.rmtree(lab, ignore_errors=True)
    command = f"head -c {mb * 1_000_000} /dev/zero"
    argv = cluster_bench.patas_command() + cluster_bench.explore_arguments(cluster, command, tasks, lab, quiet=True)
    argv[argv.index("--node") + 2] = str(SLOTS)
    argv += extra
    started = time.monotonic()
    done = subprocess.run(argv, cwd=scratch, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise BenchError(f"patas: exit status {done.returncode}: {done.stderr.strip()[-2000:]}")
    records = [json.loads(line) for line in (lab / "grid" / "journal.jsonl").read_text().splitlines()]
    attempts = [r for r in records if r.get("outcome") == "done"]
    sizes = [(lab / "grid" / str(r["task_id"]) / "stdout").stat().st_size for r in attempts]
    if len(attempts) != tasks or any(size != mb * 1_000_000 for size in sizes):
        raise BenchError(f"patas: {len(attempts)} of {tasks} tasks done, output sizes {sorted(set(sizes))}")
    span = max(r["ended_at"] for r in attempts) - min(r["started_at"] for r in attempts)
    shutil.rmtree(lab, ignore_errors=True)
    return tasks * mb / span, wall


def openssh_round(cluster: SimulatedCluster, scratch: Path, tasks: int, mb: int) -> tuple[float, float]:
    """(MB/s, wall seconds) of SLOTS parallel ssh streams carrying the same bytes in all."""
    node = cluster.nodes[0]
    each = tasks * mb * 1_000_000 // SLOTS
    paths = [scratch / f"ssh-{n}.out" for n in range(SLOTS)]
    started = time.monotonic()
    streams = []
    for path in paths:
        with path.open("wb") as out:
            ssh = ["ssh", "-F", str(cluster.ssh_config_path), node.name, f"head -c {each} /dev/zero"]
            streams.append(subprocess.Popen(ssh, stdout=out, stderr=subprocess.PIPE))
    failed = [s.stderr.read().decode(errors="replace") for s in streams if s.wait() != 0]  # type: ignore[union-attr]
    for path in paths:
        with path.open("rb") as out:
            os.fsync(out.fileno())
    wall = time.monotonic() - started
    sizes = [path.stat().st_size for path in paths]
    for path in paths:
        path.unlink()
    if failed or any(size != each for size in sizes):
        raise BenchError(f"ssh: {failed or sizes}")
    return tasks * mb / wall, wall


class NodeCpu:
    """CPU seconds of the node user's processes, by command name, sampled from /proc while a
    round runs (a process's last value seen before it exits, less what it had used when the
    round started: a process of the previous round may still be ending)."""

    def __init__(self, uid: int) -> None:
        self.uid = uid
        self.seen: dict[int, tuple[str, float]] = {}  # pid → (command, CPU seconds)
        self.before: dict[int, float] = {}  # pid → CPU seconds when the round started
        self._tick = os.sysconf("SC_CLK_TCK")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> NodeCpu:
        self._scan()
        self.before = {pid: cpu for pid, (_, cpu) in self.seen.items()}  # what the last run's stragglers had used
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self._scan()
        self._scan()

    def _scan(self) -> None:
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                self._read(entry.name)

    def _read(self, pid: str) -> None:
        try:
            if os.stat(f"/proc/{pid}").st_uid != self.uid:
                return
            with open(f"/proc/{pid}/stat", "rb") as stat:
                text = stat.read().decode(errors="replace")
        except OSError:
            return
        command, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        self.seen[int(pid)] = (command, (int(rest[11]) + int(rest[12])) / self._tick)  # utime, stime

    def carriers(self) -> float:
        """CPU seconds of every process but the tasks and shells."""
        return sum(cpu - self.before.get(pid, 0.0) for pid, (command, cpu) in self.seen.items() if command not in TASK_COMMANDS)


@dataclass(frozen=True)
class CurveKeys:
    server_public: str
    server_secret: str
    client_public: str
    client_secret: str

    @classmethod
    def new(cls) -> CurveKeys:
        server, client = zmq.curve_keypair(), zmq.curve_keypair()
        return cls(*(key.decode() for key in (*server, *client)))


def floor_round(
    cluster: SimulatedCluster, scratch: Path, tasks: int, mb: int, keys: CurveKeys | None, sync: bool, threads: list[dict[str, float]]
) -> tuple[float, float]:
    """(MB/s over the tasks' span, wall seconds) of the prototype (bench/stream_floor.py); the
    CPU seconds of each of the receiver's threads are appended to `threads`."""
    folder = scratch / "floor"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    started = time.monotonic()
    receive = [sys.executable, str(FLOOR_SCRIPT), "receive", cluster.coordinator_address, str(folder), "--tasks", str(tasks)]
    receive += (["--keys", keys.server_secret, keys.client_public] if keys else []) + ([] if sync else ["--no-sync"])
    receiver = subprocess.Popen(receive, stdout=subprocess.PIPE, text=True)
    assert receiver.stdout is not None
    port = receiver.stdout.readline().strip()
    send = ["send", f"tcp://{cluster.coordinator_address}:{port}", "--tasks", str(tasks), "--slots", str(SLOTS)]
    # On the command line: a key pair made for this benchmark's run only, on a node of its own.
    send += (["--keys", keys.server_public, keys.client_public, keys.client_secret] if keys else [])
    send += ["--chunk", str(READ_CHUNK_BYTES), "--pipe", str(PIPE_BYTES), "--window", str(OUTPUT_WINDOW_BYTES)]  # patas's
    send += ["--", "head", "-c", str(mb * 1_000_000), "/dev/zero"]
    # The node's python3 has no pyzmq of its own: it takes the copy patas's agent payload brought.
    remote = "cd && PYTHONPATH=$(ls -d ~/.cache/patas/agent-*/ | head -n 1) exec python3 - " + shlex.join(send)
    with FLOOR_SCRIPT.open("rb") as program:
        sender = subprocess.run(["ssh", "-F", str(cluster.ssh_config_path), cluster.nodes[0].name, remote],
                                stdin=program, capture_output=True, text=True, check=False)  # it gives up in time itself
    if sender.returncode != 0:
        receiver.kill()  # it would wait for the tasks for ever
        receiver.wait()
        raise BenchError(f"prototype: the sender's exit status {sender.returncode}: {sender.stderr.strip()[-2000:]}")
    outcome = receiver.stdout.read()
    if receiver.wait() != 0:
        raise BenchError(f"prototype: the receiver's exit status {receiver.returncode}")
    wall = time.monotonic() - started
    result = json.loads(outcome)
    threads.append(result["threads"])
    sizes = [(folder / str(n) / "stdout").stat().st_size for n in range(tasks)]
    if any(size != mb * 1_000_000 for size in sizes):
        raise BenchError(f"prototype: output sizes {sorted(set(sizes))}")
    shutil.rmtree(folder, ignore_errors=True)
    return tasks * mb / (result["last_end"] - result["first_start"]), wall


def measured(run: Callable[[], tuple[float, float]], cluster: SimulatedCluster) -> tuple[tuple[float, float], tuple[float, float]]:
    """What `run` returns, and the CPU seconds it took on the coordinator and on the node."""
    before = children_cpu_s()
    with NodeCpu(cluster.nodes[0].uid) as node:
        outcome = run()
    return outcome, (children_cpu_s() - before, node.carriers())


def run_benchmark(cluster: SimulatedCluster, scratch: Path, tasks: int, mb: int, rounds: int, baseline: str | None) -> Results:
    env = cluster_bench.bench_environment(scratch, None)
    results = Results(tasks, mb, rounds)
    results.patas, _ = cluster_bench.patas_identity(scratch, env, None)
    keys = CurveKeys.new()
    contenders: dict[str, Callable[[int, int], tuple[float, float]]] = {  # (tasks, MB each) → (MB/s, wall s)
        PATAS: lambda n, size: patas_round(cluster, scratch, env, n, size),
        PATAS_NO_SYNC: lambda n, size: patas_round(cluster, scratch, env, n, size, "--no-sync"),
        FLOOR: lambda n, size: floor_round(cluster, scratch, n, size, keys, True, results.threads if n == tasks else results.threads_small),
        FLOOR_NO_SYNC: lambda n, size: floor_round(cluster, scratch, n, size, keys, False, []),
        FLOOR_PLAIN: lambda n, size: floor_round(cluster, scratch, n, size, None, True, []),
        OPENSSH: lambda n, size: openssh_round(cluster, scratch, n, size),
    }
    results.load.append(os.getloadavg()[0])
    patas_round(cluster, scratch, env, SLOTS, 1)  # untimed: installs the agent (and pyzmq) on the node
    if baseline is not None:
        commit, source = cluster_bench.export_commit(baseline, scratch)
        old = cluster_bench.bench_environment(scratch, source)
        name = f"patas at {commit[:10]}"
        contenders = {PATAS: contenders.pop(PATAS), name: lambda n, size: patas_round(cluster, scratch, old, n, size), **contenders}
        patas_round(cluster, scratch, old, SLOTS, 1)  # untimed: installs its agent
    results.names = list(contenders)
    for number in range(rounds):
        names = tuple(contenders)
        order = names[number % len(names):] + names[: number % len(names)]
        for name in order if number % 2 == 0 else reversed(order):
            start_up = measured(lambda: contenders[name](SLOTS, 1), cluster)[1]
            (rate, wall), cpu = measured(lambda: contenders[name](tasks, mb), cluster)
            results.rates.setdefault(name, []).append(rate)
            results.walls.setdefault(name, []).append(wall)
            results.cpu.setdefault(name, []).append(cpu)
            results.start_up.setdefault(name, []).append(start_up)
            print(f"round {number + 1}: {name}: {rate:.0f} MB/s ({wall:.2f} s launch to exit; CPU s coordinator"
                  f" {cpu[0]:.2f}, node {cpu[1]:.2f}; with {SLOTS} x 1 MB {start_up[0]:.2f}, {start_up[1]:.2f})", file=sys.stderr)
    results.load.append(os.getloadavg()[0])
    return results


def measurable(results: Results) -> bool:
    return results.total_mb >= MIN_MEASURED_MB


def streaming_cpu(results: Results, name: str) -> tuple[float, float]:
    """CPU-s per GB of each side (coordinator, node) once start-up is taken away: the median over
    the rounds of (the run's CPU - the small run's) / (the run's bytes - the small run's)."""
    gigabytes = (results.total_mb - SLOTS) / 1000
    per_round = [(whole[0] - small[0], whole[1] - small[1]) for whole, small in zip(results.cpu[name], results.start_up[name])]
    return statistics.median(c for c, _ in per_round) / gigabytes, statistics.median(n for _, n in per_round) / gigabytes


def report(results: Results) -> str:
    lines = [
        f"{results.tasks} tasks x {results.mb} MB ({results.total_mb} MB) from 1 simulated SSH node, {SLOTS} slots;"
        f" {results.rounds} interleaved round(s); best (median).",
        "",
        f"The prototype (`bench/stream_floor.py`) is all any such design must do, nothing else: a pyzmq sender on the node"
        f" running the same task {SLOTS} at a time with patas's {READ_CHUNK_BYTES // 1024} KiB reads,"
        f" {PIPE_BYTES // 2**20} MiB pipes and {OUTPUT_WINDOW_BYTES // 2**20} MiB window, and a receiver here writing"
        " a file per task, fdatasync'ed and renamed at its end on a thread of its own. MB/s over the tasks' span (first"
        f" start to last end); CPU-s per GB of streaming alone (a {SLOTS} x 1 MB run's CPU taken away), median of the"
        " rounds, node side without the tasks.",
        "",
        "| contender | MB/s best | MB/s median | wall s best | CPU-s/GB coordinator | CPU-s/GB node | start-up CPU-s"
        " coordinator, node | vs prototype | vs OpenSSH |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    ssh_best, floor_best = max(results.rates[OPENSSH]), max(results.rates[FLOOR])
    for name in results.names:
        rates, walls = results.rates[name], results.walls[name]
        per_gb = " | ".join(f"{cpu:.2f}" for cpu in streaming_cpu(results, name)) if measurable(results) else "– | –"
        start_up = [statistics.median(side) for side in zip(*results.start_up[name])]
        lines.append(f"| {name} | {max(rates):.0f} | {statistics.median(rates):.0f} | {min(walls):.2f} | {per_gb} |"
                     f" {start_up[0]:.2f}, {start_up[1]:.2f} | {max(rates) / floor_best:.2f}x | {max(rates) / ssh_best:.2f}x |")
    best = max(results.rates[PATAS])
    verdict = "met" if best >= TARGET_MB_S else f"MISSED by {100 * (1 - best / TARGET_MB_S):.0f}%"
    lines += ["", f"Target (issue 15 b): patas streams ≥ {TARGET_MB_S} MB/s through CURVE: **{verdict}** ({best:.0f} MB/s;"
              f" {max(results.rates[PATAS_NO_SYNC]):.0f} MB/s without fdatasync); the prototype with everything else"
              f" removed: {floor_best:.0f} MB/s through CURVE, {max(results.rates[FLOOR_PLAIN]):.0f} MB/s over plain TCP."]
    lines += ["", findings(results) if measurable(results) else
              f"At {results.total_mb} MB in all, streaming's CPU cannot be told from start-up's: no CPU-s per GB, and no"
              f" findings (run at least {MIN_MEASURED_MB} MB: the default is {TASKS} x {MB} MB)."]
    lines += ["", f"{results.patas}; Python {sys.version.split()[0]}; {os.cpu_count()} CPUs; 1-minute load average"
              f" {results.load[0]:.2f} before, {results.load[-1]:.2f} after."]
    return "\n".join(lines) + "\n"


def findings(results: Results) -> str:
    """What stops the target here, in numbers from this run."""
    cores = os.cpu_count() or 1
    floor, plain, patas = (sum(streaming_cpu(results, name)) for name in (FLOOR, FLOOR_PLAIN, PATAS))
    coordinator, node = streaming_cpu(results, FLOOR)
    gigabytes = (results.total_mb - SLOTS) / 1000
    by_thread = {  # streaming alone, as streaming_cpu
        name: statistics.median(whole.get(name, 0.0) - small.get(name, 0.0) for whole, small in zip(results.threads, results.threads_small))
        / gigabytes for name in results.threads[0]
    }
    busiest = max(by_thread, key=by_thread.__getitem__)
    floor_best, patas_best = max(results.rates[FLOOR]), max(results.rates[PATAS])
    return (
        f"The ceiling here is the prototype's: {floor_best:.0f} MB/s through CURVE with every output durable, and patas"
        f" streams at {patas_best / floor_best:.2f}x of it ({patas:.2f} CPU-s per GB for both sides against the prototype's"
        f" {floor:.2f}). The simulated node is a namespace of this machine, so the task, the sender, the receiver and the"
        f" disk share its {cores} cores: {floor:.2f} CPU-s per GB ({coordinator:.2f} coordinator, {node:.2f} node) caps it"
        f" at {cores * 1000 / floor:.0f} MB/s before the tasks' own CPU. CURVE is {floor - plain:.2f} of those CPU-s"
        f" ({100 * (floor - plain) / floor:.0f}%: libzmq encrypts each message apart, with copies of its own on both sides);"
        f" plain TCP needs {plain:.2f} and reaches {max(results.rates[FLOOR_PLAIN]):.0f} MB/s. 500 MB/s on {cores} cores"
        f" allows {cores * 1000 / TARGET_MB_S:.1f} CPU-s per GB for both sides together: "
        + (f"the prototype alone needs {floor:.2f} through CURVE, so not on this machine, whatever patas does."
           if floor > cores * 1000 / TARGET_MB_S else "the prototype fits in that, so what patas spends above it is what stops it.")
        + " With a node of its own, the coordinator's side alone would be bound by its busiest thread,"
        f" {busiest} at {by_thread[busiest]:.2f} CPU-s per GB in the prototype's receiver"
        f" ({', '.join(f'{name} {cpu:.2f}' for name, cpu in sorted(by_thread.items()) if cpu >= 0.01)}), that is"
        f" {1000 / by_thread[busiest]:.0f} MB/s (arithmetic, not measured here: this machine has no second one)."
        " Sending 1 MiB chunks instead of 256 KiB (fewer messages through CURVE) was tried and measured no faster"
        " for patas, side by side in 5 rounds (commit d178aa9, reverted)."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=TASKS)
    parser.add_argument("--mb", type=int, default=MB, help="MB each task prints")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--baseline", metavar="REV", help="also measure patas at this commit")
    arguments = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="patas-bench-stream-"))
    try:
        try:
            cluster = build_cluster(1)
        except ClusterUnavailable as why:
            print(f"skipped: no simulated cluster here ({why})")
            return 0
        try:
            results = run_benchmark(cluster, scratch, arguments.tasks, arguments.mb, arguments.rounds, arguments.baseline)
        finally:
            cluster.close()
    except (BenchError, cluster_bench.BenchError) as error:
        print(f"bench_stream_remote: {error}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    text = report(results)
    print(text)
    if arguments.write_docs:
        command = "python bench/bench_stream_remote.py" + (f" --rounds {arguments.rounds}" if arguments.rounds != 3 else "")
        command += f" --baseline {arguments.baseline}" if arguments.baseline else ""
        when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        fence = "<!-- not run: a benchmark (minutes of a busy machine; needs root) -->\n```sh\n" + command + "\n```\n"
        write_section(HEADING, f"{HEADING}\n\n{fence}\nMeasured {when}.\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
