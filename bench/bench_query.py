#!/usr/bin/env python3
"""Benchmark `patas query` against DuckDB itself and the original patas 2.0.6 (csvkit).

    python bench/bench_query.py [--rows 1000000] [--runs 3] [--skip-original]

Writes (once, cached under --workdir) a parsed table `pataslab/grid/grid.csv` of --rows rows with
the columns `patas parse` writes for the README's experiment, then times, in one run, each query
below three ways, every one a new process as a user would start it (ours and DuckDB's take turns,
so a busy moment on a shared machine slows both alike):

  * `patas query SQL -i pataslab` (CSV to a pipe);
  * DuckDB itself: `python -c "import duckdb; ..."` running the same SQL on the same file and
    printing the same CSV;
  * the original patas 2.0.6 `patas query` (csvkit), once per query, with its peak memory
    (it installs into a venv on first use, as bench_parse.py does).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from original_patas import original_patas  # bench/ is on sys.path as the script's folder

QUERIES = {
    "README average by activation and neurons": """
        SELECT in_activation, in_neurons, AVG(out_train_acc) AS avg_train_acc, AVG(out_test_acc) AS avg_test_acc
        FROM grid GROUP BY in_activation, in_neurons""",
    "README best configuration": """
        WITH avg_result AS (
            SELECT in_activation, in_neurons, AVG(out_train_acc) AS train_acc, AVG(out_test_acc) AS test_acc
            FROM grid GROUP BY in_activation, in_neurons)
        SELECT * FROM avg_result AS t WHERE t.test_acc=(SELECT MAX(test_acc) FROM avg_result)""",
    "filter and count": "SELECT COUNT(*) AS n FROM grid WHERE out_test_acc > 0.8 AND in_preprocessing = 'fast'",
}
DUCKDB_ALONE = """
import csv, sys, duckdb
cursor = duckdb.execute(sys.argv[1].replace("FROM grid", "FROM read_csv_auto('" + sys.argv[2] + "')"))
writer = csv.writer(sys.stdout, lineterminator="\\n")
writer.writerow([c[0] for c in cursor.description])
writer.writerows(cursor.fetchall())
"""


def main() -> None:
    args = _arguments()
    lab = args.workdir / f"query-{args.rows}" / "pataslab"
    table = build_table(lab / "grid" / "grid.csv", args.rows)
    print(f"{args.rows:,} rows ({table.stat().st_size / 1e6:.0f} MB CSV); median of {args.runs} runs")
    original = None if args.skip_original else original_patas(args.workdir)
    lines = ["| query | `patas query` s | DuckDB alone s | patas / DuckDB | original 2.0.6 s (peak memory) |",
             "| --- | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for name, sql in QUERIES.items():
        ours, alone = _medians(
            args.runs,
            [sys.executable, "-m", "patas", "query", sql, "-i", str(lab)],
            [sys.executable, "-c", DUCKDB_ALONE, sql, str(table)],
        )
        old = _time_original(original, sql, lab) if original else "not run"
        print(f"  {name}: patas {ours:.3f} s, DuckDB {alone:.3f} s ({ours / alone:.2f}x), original {old}", flush=True)
        lines.append(f"| {name} | {ours:.3f} | {alone:.3f} | {ours / alone:.2f}x | {old} |")
    print("\n" + "\n".join(lines))
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (other work slows every figure)")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per measurement")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/patas-bench"))
    parser.add_argument("--skip-original", action="store_true", help="do not install or time patas 2.0.6")
    return parser.parse_args()


def build_table(path: Path, rows: int) -> Path:
    """A table with `patas parse`'s columns for the README's grid, made by DuckDB (seconds)."""
    if path.exists():
        return path
    import duckdb

    print(f"writing {path} (once) ...", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(".building.csv")
    duckdb.execute(f"""
        COPY (
            SELECT (['relu', 'leaky_relu', 'sigmoid', 'tanh'])[1 + i % 4] AS in_activation,
                   1 + 2 * ((i // 12) % 25) AS in_neurons,
                   (['fast', 'medium', 'intense'])[1 + (i // 4) % 3] AS in_preprocessing,
                   round(60 + random() * 180, 3) AS out_train_time, round(2 + random() * 6, 3) AS out_test_time,
                   round(random(), 3) AS out_train_acc, round(random(), 3) AS out_test_acc,
                   round(random(), 3) AS out_loss, 0 AS break_id, i AS task_id, i % 10 AS repeat_id,
                   i // 10 AS combination_id, 0 AS experiment_id, 'grid' AS experiment_name, 1 AS tries,
                   3 AS max_tries, round(0.2 + random() / 10, 6) AS duration,
                   TIMESTAMP '2023-05-17 19:14:55.472312' + to_microseconds(i * 250000) AS started_at,
                   TIMESTAMP '2023-05-17 19:14:55.696903' + to_microseconds(i * 250000) AS ended_at,
                   'cluster' AS cluster_name, 'node0' AS node_name, 0 AS cluster_in_lab, 0 AS node_in_lab,
                   0 AS node_in_cluster, i % 2 AS worker_in_lab, i % 2 AS worker_in_cluster, i % 2 AS worker_in_node,
                   '/home/user/pataslab/grid/' || i AS output_dir, '/home/user' AS work_dir
            FROM range({rows}) AS r(i)
        ) TO '{temporary}' (HEADER)""")  # fmt: skip
    os.replace(temporary, path)
    return path


def _medians(runs: int, *commands: list[str]) -> list[float]:
    """Each command's median time; the commands take turns, so a busy moment hits both alike."""
    times: list[list[float]] = [[] for _ in commands]
    for _ in range(runs):
        for command, spent in zip(commands, times):
            start = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            spent.append(time.perf_counter() - start)
    return [statistics.median(spent) for spent in times]


def _time_original(patas: Path, sql: str, lab: Path) -> str:
    """One run of the original's query, with its peak memory (its csvsql runs as a child)."""
    env = {**os.environ, "PATH": f"{patas.parent}:{os.environ['PATH']}"}
    wrapper = (
        "import resource, subprocess, sys, time; start = time.perf_counter();"
        " code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode;"
        " peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss;"
        " print(code, time.perf_counter() - start, peak)"
    )
    done = subprocess.run([sys.executable, "-c", wrapper, str(patas), "query", sql, "-i", str(lab)],
                          env=env, capture_output=True, text=True, check=False)  # fmt: skip
    code, seconds, peak_kib = done.stdout.split()
    if code != "0":
        return f"failed (exit {code})"
    return f"{float(seconds):.1f} ({int(peak_kib) / 1024**2:.1f} GiB)"


if __name__ == "__main__":
    main()
