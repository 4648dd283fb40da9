#!/usr/bin/env python3
"""Part (b) of bench_explore.py — 40 tasks × 25 MB on 2 local slots — for two checkouts of
patas side by side: this one and another (`--before`, e.g. a worktree of main), with the
`xargs -P2 sh -c 'head … > file'` baseline, interleaved round by round.

    python bench/bench_local_streaming.py --before /tmp/bench-main --rounds 3

A second baseline syncs each file (`sync -d`, an fdatasync) as patas does before it counts a
task: the disk's own limit for durable output. Per row: best and median wall time, the ratio of its best rate to xargs' best, CPU seconds per
GB of the coordinator and of the agent (in the best round), the coordinator's peak RSS, and the
load average when each round started. Only (b) runs: (a) and (c) are bench_explore.py's.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from bench_explore import (
    BIG_XARGS,
    OUT,
    Contender,
    Expected,
    Row,
    patas_argv,
    patas_outputs,
    remove_tree,
    run_once,
    warm_up,
    xargs_argv,
    xargs_outputs,
)

REPO = Path(__file__).resolve().parent.parent
DURABLE_XARGS = "xargs -P2, sh > file && sync -d file"


def contenders(checkouts: dict[str, Path], tasks: int, task_bytes: int) -> list[Contender]:
    """xargs, then each checkout with and without --no-sync; `env PYTHONPATH=` picks the checkout
    (env execs, so the coordinator keeps the pid the agent watcher looks under)."""
    generator = f"head -c {task_bytes} /dev/zero"
    # The same, each file made durable as patas makes it (fdatasync) before the next starts: what
    # the disk allows with patas' guarantee, the ceiling of the rows without --no-sync.
    durable = xargs_argv(tasks, "sh", generator)
    durable[-1] = durable[-1].replace(f"> {OUT}/{{}}'", f"> {OUT}/{{}} && sync -d {OUT}/{{}}'")
    rows = [Contender(BIG_XARGS, xargs_argv(tasks, "sh", generator), xargs_outputs), Contender(DURABLE_XARGS, durable, xargs_outputs)]
    for name, checkout in checkouts.items():
        for extra in ((), ("--no-sync",)):
            argv = ["env", f"PYTHONPATH={checkout}", *patas_argv(generator, [("i", tasks)], extra)]
            rows.append(Contender(f"patas {name}{' --no-sync' if extra else ''}", argv, patas_outputs, patas=True))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the other checkout (e.g. /tmp/bench-main)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--bytes", type=int, default=25_000_000, help="output of each task")
    args = parser.parse_args()
    rows = contenders({"before": args.before.resolve(), "this": REPO}, args.tasks, args.bytes)
    expected = Expected(args.tasks, args.tasks * args.bytes)
    gigabytes = expected.total_bytes / 1e9
    runs: dict[str, list] = {c.label: [] for c in rows}
    loads: list[str] = []
    with tempfile.TemporaryDirectory(prefix="patas-bench-stream-") as folder:
        scratch = Path(folder)
        warm_up(scratch)
        for round_number in range(1, args.rounds + 1):
            loads.append(" ".join(f"{load:.2f}" for load in os.getloadavg()))
            print(f"round {round_number}/{args.rounds}, load {loads[-1]}", file=sys.stderr)
            for contender in rows:
                runs[contender.label].append(run_once(contender, scratch, expected))
        remove_tree(scratch / OUT)
    table = [Row(c.label, runs[c.label], expected.total_bytes / 1e6) for c in rows]
    xargs = table[0]
    print(f"{args.tasks} tasks × {args.bytes / 1e6:.0f} MB, 2 slots, {args.rounds} rounds; load at each round: {'; '.join(loads)}")
    print("| row | best s | median s | vs xargs (best) | coordinator CPU-s/GB | agent CPU-s/GB | coordinator peak RSS MB | failed |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in table:
        ratio = row.rate / xargs.rate if row.rate and xargs.rate else None
        cells = [
            row.label, _n(row.best_s), _n(row.median_s), _n(ratio),
            _n(row.coordinator_cpu_s / gigabytes if row.coordinator_cpu_s is not None else None),
            _n(row.agent_cpu_s / gigabytes if row.agent_cpu_s is not None else None),
            _n(row.peak_rss_mb, 0), str(len(row.failures)),
        ]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    return 0


def _n(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


if __name__ == "__main__":
    sys.exit(main())
