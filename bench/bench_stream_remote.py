#!/usr/bin/env python3
"""Benchmark streaming from a remote node: task output over the run's CURVE-encrypted ZeroMQ
connection, against OpenSSH streaming the same bytes, on one simulated SSH node.

How to run (as root, after `pip install -e .`; Linux; needs sshd, iproute2 and util-linux, like
the cluster tests):

    python bench/bench_stream_remote.py                  # 40 tasks x 25 MB, 3 interleaved rounds
    python bench/bench_stream_remote.py --rounds 1 --mb 5
    python bench/bench_stream_remote.py --write-docs     # also write the results to docs/benchmarks.md

Without root (or namespaces, sshd, ...) it says why and exits with status 0.

What runs, on one node of `tests/sshcluster.py` (its own user, network namespace and sshd,
reached over a veth bridge) with 2 slots:
- patas: `patas explore --cmd 'head -c BYTES /dev/zero' --node node0 2`: every byte goes pipe →
  agent → ZeroMQ over TCP with CURVE → coordinator → its attempt file, fdatasync'ed before the
  task counts. Its rate is the bytes over the span from the first task's start to the last
  task's end (the journal's times), so the agent's start-up is not counted; the wall time from
  launch to exit is shown beside it.
- patas --no-sync: the same, without the fdatasync of each output (what the disk costs).
- OpenSSH: two `ssh node0 'head -c HALF /dev/zero' > file` at once (two streams, as two slots),
  each over its own connection (AES-GCM or ChaCha20 as negotiated), files fsync'ed at the end.
The contenders take turns, round by round; each figure is the best round, the median beside it.
The target (issue 15 b): ≥ 500 MB/s through CURVE.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import bench_cluster as cluster_bench  # bench/ is on sys.path as the script's folder
from benchmarks_doc import write_section

from tests.sshcluster import ClusterUnavailable, SimulatedCluster, build_cluster

SLOTS = 2
TASKS = 40
MB = 25
TARGET_MB_S = 500
PATAS = "patas, CURVE over TCP"
PATAS_NO_SYNC = "patas --no-sync"
OPENSSH = "OpenSSH, 2 streams"
HEADING = "## Streaming from a remote node"


class BenchError(Exception):
    pass


@dataclass
class Results:
    tasks: int
    mb: int
    rounds: int
    rates: dict[str, list[float]] = field(default_factory=dict)  # MB/s
    walls: dict[str, list[float]] = field(default_factory=dict)  # s, launch to exit
    load: list[float] = field(default_factory=list)
    patas: str = ""

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


def run_benchmark(cluster: SimulatedCluster, scratch: Path, tasks: int, mb: int, rounds: int) -> Results:
    env = cluster_bench.bench_environment(scratch, None)
    results = Results(tasks, mb, rounds)
    results.patas, _ = cluster_bench.patas_identity(scratch, env, None)
    results.load.append(os.getloadavg()[0])
    patas_round(cluster, scratch, env, 2, 1)  # untimed: installs the agent on the node
    for number in range(rounds):
        order = [PATAS, PATAS_NO_SYNC, OPENSSH] if number % 2 == 0 else [OPENSSH, PATAS_NO_SYNC, PATAS]
        for name in order:
            if name == OPENSSH:
                rate, wall = openssh_round(cluster, scratch, tasks, mb)
            else:
                rate, wall = patas_round(cluster, scratch, env, tasks, mb, *(["--no-sync"] if name == PATAS_NO_SYNC else []))
            results.rates.setdefault(name, []).append(rate)
            results.walls.setdefault(name, []).append(wall)
            print(f"round {number + 1}: {name}: {rate:.0f} MB/s ({wall:.2f} s launch to exit)", file=sys.stderr)
    results.load.append(os.getloadavg()[0])
    return results


def report(results: Results) -> str:
    lines = [
        f"{results.tasks} tasks x {results.mb} MB ({results.total_mb} MB) from 1 simulated SSH node, {SLOTS} slots;"
        f" {results.rounds} interleaved round(s); best (median).",
        "",
        "| contender | MB/s best | MB/s median | wall s best | vs OpenSSH |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    ssh_best = max(results.rates[OPENSSH])
    for name in (PATAS, PATAS_NO_SYNC, OPENSSH):
        rates, walls = results.rates[name], results.walls[name]
        lines.append(f"| {name} | {max(rates):.0f} | {statistics.median(rates):.0f} | {min(walls):.2f} | {max(rates) / ssh_best:.2f}x |")
    best = max(results.rates[PATAS])
    verdict = "met" if best >= TARGET_MB_S else f"MISSED by {100 * (1 - best / TARGET_MB_S):.0f}%"
    lines += ["", f"Target (issue 15 b): patas streams ≥ {TARGET_MB_S} MB/s through CURVE: **{verdict}** ({best:.0f} MB/s;"
              f" {max(results.rates[PATAS_NO_SYNC]):.0f} MB/s without fdatasync)."]
    lines += ["", f"{results.patas}; Python {sys.version.split()[0]}; {os.cpu_count()} CPUs; 1-minute load average"
              f" {results.load[0]:.2f} before, {results.load[-1]:.2f} after."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=TASKS)
    parser.add_argument("--mb", type=int, default=MB, help="MB each task prints")
    parser.add_argument("--write-docs", action="store_true")
    arguments = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="patas-bench-stream-"))
    try:
        try:
            cluster = build_cluster(1)
        except ClusterUnavailable as why:
            print(f"skipped: no simulated cluster here ({why})")
            return 0
        try:
            results = run_benchmark(cluster, scratch, arguments.tasks, arguments.mb, arguments.rounds)
        finally:
            cluster.close()
    except BenchError as error:
        print(f"bench_stream_remote: {error}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    text = report(results)
    print(text)
    if arguments.write_docs:
        command = "python bench/bench_stream_remote.py" + (f" --rounds {arguments.rounds}" if arguments.rounds != 3 else "")
        when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        fence = "<!-- not run: a benchmark (minutes of a busy machine; needs root) -->\n```sh\n" + command + "\n```\n"
        write_section(HEADING, f"{HEADING}\n\n{fence}\nMeasured {when}.\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
