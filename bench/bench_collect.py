#!/usr/bin/env python3
"""Benchmark `--collect`: bringing 1 GB of task files back from 4 simulated SSH nodes, against
GNU parallel's `--return` over ssh, in the same run on the same cluster.

How to run (as root, after `pip install -e .`; Linux; needs sshd, iproute2, util-linux, rsync and
GNU parallel, like the cluster tests):

    python bench/bench_collect.py               # 20 tasks x 50 MiB, 1 round: a few minutes
    python bench/bench_collect.py --rounds 3    # the median of 3 interleaved rounds
    python bench/bench_collect.py --quick       # 8 tasks x 8 MiB: a smoke check
    python bench/bench_collect.py --write-docs  # also write the results to docs/benchmarks.md

Without root (or namespaces, sshd, ...) it says why and exits with status 0.

What runs. The nodes are `tests/sshcluster.py`'s (own user, private /tmp and home, own network
namespace), 4 of them with 2 slots each. Every task writes one file of `--mib` MiB (its task
number on the first line, then zeros, so every file differs and costs the nodes no CPU to make):
- patas: `patas explore --cmd '... > "$PATAS_TASK_DIR/out.bin"' --collect out.bin`: the file is
  streamed back over the run's ZeroMQ connection and committed into `pataslab/grid/<i>/files/`
  (fdatasync'ed, as by default);
- GNU parallel: `parallel -S 2/node0,... --return out-{}.bin --cleanup '... > out-{}.bin'`: each
  task over its own ssh, the file brought back by rsync over another ssh, then removed;
- GNU parallel again with OpenSSH connection sharing (ControlMaster), which saves it the ssh
  handshakes.
Wall clock from launch to exit, the agents' start included for patas (after an untimed warm-up
run, so the agent is already in each node's cache, as from the second run on). Every file is checked
afterwards (size and sha256). The contenders' order rotates from round to round; each figure is a
median. The load average is printed before and after, as this machine is shared.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import bench_cluster as cluster_bench  # bench/ is on sys.path as the script's folder
from benchmarks_doc import write_section

from tests.sshcluster import ClusterUnavailable, SimulatedCluster, build_cluster

NODES = 4
SLOTS = 2
TASKS = 20
MIB = 50
QUICK_TASKS, QUICK_MIB = 8, 8
PATAS = "patas --collect"
PARALLEL = "GNU parallel -S --return"
PARALLEL_MUX = "GNU parallel -S --return, ssh ControlMaster"
HEADING = "## collect (task files from SSH nodes)"


class BenchError(Exception):
    pass


@dataclass
class Results:
    tasks: int
    mib: int
    rounds: int
    wall: dict[str, list[float]] = field(default_factory=dict)
    load: list[float] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    patas: str = ""

    @property
    def total_bytes(self) -> int:
        return sum(expected_size(i, self.mib) for i in range(self.tasks))


def file_command(number: str, mib: int, path: str) -> str:
    return f'{{ echo {number}; head -c {mib * 2**20} /dev/zero; }} > {path}'


def expected_size(i: int, mib: int) -> int:
    return len(f"{i}\n") + mib * 2**20


def expected_digest(i: int, mib: int) -> str:
    digest = hashlib.sha256(f"{i}\n".encode())
    block = bytes(2**20)
    for _ in range(mib):
        digest.update(block)
    return digest.hexdigest()


def check_files(name: str, files: dict[int, Path], tasks: int, mib: int) -> None:
    if sorted(files) != list(range(tasks)):
        raise BenchError(f"{name}: files of tasks {sorted(files)} instead of 0..{tasks - 1}")
    for i, path in files.items():
        if path.stat().st_size != expected_size(i, mib) or sha256(path) != expected_digest(i, mib):
            raise BenchError(f"{name}: {path} is not what task {i} wrote")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()


def run_patas(cluster: SimulatedCluster, scratch: Path, env: dict[str, str], results: Results) -> float:
    lab = scratch / "lab"
    shutil.rmtree(lab, ignore_errors=True)
    command = file_command('"$PATAS_VAR_i"', results.mib, '"$PATAS_TASK_DIR/out.bin"')
    argv = cluster_bench.patas_command() + cluster_bench.explore_arguments(cluster, command, results.tasks, lab, quiet=True)
    done = cluster_bench.run_timed(argv + ["--collect", "out.bin"], scratch, env)
    cluster_bench.wait_until_idle(cluster, "the patas run", results.anomalies)
    if done.returncode != 0:
        raise BenchError(f"patas: exit status {done.returncode}:\n{done.tail()}")
    check_files(PATAS, {int(p.parent.parent.name): p for p in (lab / "grid").glob("*/files/out.bin")}, results.tasks, results.mib)
    shutil.rmtree(lab, ignore_errors=True)
    return done.wall_s


def run_parallel(cluster: SimulatedCluster, scratch: Path, env: dict[str, str], results: Results, mux: bool) -> float:
    returned = scratch / "returned"
    shutil.rmtree(returned, ignore_errors=True)
    returned.mkdir()
    inputs = scratch / "inputs"
    inputs.write_text("".join(f"{i}\n" for i in range(results.tasks)))
    mux_dir = scratch / "mux" if mux else None
    if mux_dir is not None:
        mux_dir.mkdir(mode=0o700, exist_ok=True)
    servers = ",".join(f"{SLOTS}/{node.name}" for node in cluster.nodes)
    argv = ["parallel", "--will-cite", "-S", servers, "--ssh", cluster_bench.parallel_ssh(cluster, mux_dir),
            "--return", "out-{}.bin", "--cleanup", file_command("{}", results.mib, "out-{}.bin")]  # fmt: skip
    name = PARALLEL_MUX if mux else PARALLEL
    try:
        done = cluster_bench.run_timed(argv, returned, env, stdin_path=inputs)
    finally:
        if mux_dir is not None:
            cluster_bench.stop_ssh_masters(cluster, mux_dir, results.anomalies)
    cluster_bench.wait_until_idle(cluster, f"the {name} run", results.anomalies)
    if done.returncode != 0:
        raise BenchError(f"{name}: exit status {done.returncode}:\n{done.tail()}")
    check_files(name, {int(p.name[4:-4]): p for p in returned.glob("out-*.bin")}, results.tasks, results.mib)
    shutil.rmtree(returned, ignore_errors=True)
    return done.wall_s


def run_benchmark(cluster: SimulatedCluster, scratch: Path, results: Results) -> None:
    env = cluster_bench.bench_environment(scratch, None)
    results.patas, _ = cluster_bench.patas_identity(scratch, env, None)
    cluster_bench.progress(f"measuring {results.patas}")
    cluster_bench.progress("warm-up run (the agent uploaded to the nodes, bytecode cached on the coordinator)")
    warm_up = cluster_bench.run_timed(cluster_bench.patas_command() + cluster_bench.explore_arguments(
        cluster, "true", NODES * SLOTS, scratch / "warm-up", quiet=True), scratch, env)  # fmt: skip
    cluster_bench.wait_until_idle(cluster, "the warm-up run", results.anomalies)
    if warm_up.returncode != 0:
        raise BenchError(f"patas warm-up: exit status {warm_up.returncode}:\n{warm_up.tail()}")
    results.load.append(os.getloadavg()[0])
    contenders: list[tuple[str, Callable[[], float]]] = [
        (PATAS, lambda: run_patas(cluster, scratch, env, results)),
        (PARALLEL, lambda: run_parallel(cluster, scratch, env, results, mux=False)),
        (PARALLEL_MUX, lambda: run_parallel(cluster, scratch, env, results, mux=True)),
    ]
    for round_index in range(results.rounds):
        shift = round_index % len(contenders)
        for name, run in contenders[shift:] + contenders[:shift]:
            wall_s = run()
            results.wall.setdefault(name, []).append(wall_s)
            cluster_bench.progress(f"round {round_index + 1}/{results.rounds}: {name}: {wall_s:.2f} s"
                                   f" ({results.total_bytes / wall_s / 2**20:.0f} MiB/s)")
        results.load.append(os.getloadavg()[0])


def report(results: Results, command: str) -> str:
    base = statistics.median(results.wall[PARALLEL])
    rows = []
    for name, walls in results.wall.items():
        wall = statistics.median(walls)
        spread = f"{wall:.2f}" if len(walls) == 1 else f"{wall:.2f} ({min(walls):.2f}-{max(walls):.2f})"
        rows.append(f"| {name} | {spread} | {results.total_bytes / wall / 2**20:.0f} | {base / wall:.2f}x |")
    load = ", ".join(f"{value:.2f}" for value in results.load)
    lines = [
        HEADING,
        "",
        f"{results.tasks} tasks x {results.mib} MiB ({results.total_bytes / 2**30:.2f} GiB) written on {NODES} simulated SSH nodes"
        f" x {SLOTS} slots and brought back to the coordinator; wall clock from launch to exit, every file checked"
        f" (size, sha256); {results.rounds} round(s), medians. Ratio: GNU parallel --return's time / the contender's."
        " patas fdatasyncs every file before its task counts (its default); rsync, under parallel --return, does not.",
        "",
        "| contender | wall s | MiB/s | vs parallel --return |",
        "| --- | ---: | ---: | ---: |",
        *rows,
        "",
        f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {results.patas}, Python"
        f" {platform.python_version()}, {os.cpu_count()} CPUs; 1-minute load average before and after each round: {load}"
        " (the machine is shared: ratios matter more than seconds).",
        "",
        f"Command: `{command}`",
    ]
    if results.anomalies:
        lines += ["", "Anomalies: " + "; ".join(results.anomalies)]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_TASKS} tasks x {QUICK_MIB} MiB")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--write-docs", action="store_true", help="write the results to docs/benchmarks.md")
    options = parser.parse_args()
    if shutil.which("parallel") is None or shutil.which("rsync") is None:
        print("GNU parallel and rsync are needed (apt-get install parallel rsync)", file=sys.stderr)
        return 1
    tasks, mib = (QUICK_TASKS, QUICK_MIB) if options.quick else (TASKS, MIB)
    results = Results(tasks, mib, options.rounds)
    scratch = Path(tempfile.mkdtemp(prefix="patas-bench-collect-"))
    try:
        try:
            cluster = build_cluster(NODES)
        except ClusterUnavailable as error:
            print(f"no simulated cluster here: {error.reason}", file=sys.stderr)
            return 0
        with cluster:
            run_benchmark(cluster, scratch, results)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    command = "python bench/bench_collect.py" + " ".join(["", *sys.argv[1:]]).rstrip()
    text = report(results, command.replace(" --write-docs", ""))
    print(text)
    if options.write_docs:
        write_section(HEADING, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
