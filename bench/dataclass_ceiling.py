#!/usr/bin/env python3
"""What row (d) of bench_explore.py (a 1-task local explore, launch to exit) would take if
dataclasses did not compile their methods at import (issue 15 (d)): a prototype, side by side
with patas as it is.

    .venv/bin/python bench/dataclass_ceiling.py --rounds 30

`dataclasses` builds every class's `__init__`, `__repr__`, `__eq__`, `__hash__`, `__setattr__`
and `__delattr__` from source text with `exec`, in every process, at every start: patas's
62 dataclasses on a plain run's path cost ~50 ms of parsing and compiling. The prototype row runs
the same command line with `dataclasses._create_fn` (CPython 3.11's) replaced by one that takes
the compiled code of each method's text from a marshal cache filled by the untimed first run: the
classes, their methods and every guarantee are the same, only the compiling is gone. It stands in
for a dataclass implementation that builds classes without compiling (msgspec's `Struct`,
written in C): it measures the ceiling, it is not a way to run patas.

Both rows run the coordinator in the benchmark's process tree as bench_explore.py's COORDINATOR
wrapper does (the CLI in the interpreter's own `main`), interleaved, alternating which goes first,
each on a fresh lab; each prints its best, first quartile and median wall time, and the load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ARGS = ["explore", "--cmd", "echo {i}", "--va", "i", "0", "1", "1", "--node", "localhost", "2", "-y", "-q"]

AS_IS = "import sys; sys.argv[0] = 'patas'; from patas.cli.main import main; main()"

# CPython 3.11's dataclasses._create_fn, the same text built the same way, compiled once.
WITHOUT_COMPILING = """
import atexit, dataclasses, marshal, sys
CACHE = sys.argv.pop(1)
try:
    with open(CACHE, "rb") as f:
        codes = marshal.load(f)
except OSError:
    codes = {}
compiled = {}

def _create_fn(name, args, body, *, globals=None, locals=None, return_type=dataclasses.MISSING):
    if locals is None:
        locals = {}
    return_annotation = ""
    if return_type is not dataclasses.MISSING:
        locals["_return_type"] = return_type
        return_annotation = "->_return_type"
    args = ",".join(args)
    body = "\\n".join(f"  {b}" for b in body)
    text = f" def {name}({args}){return_annotation}:\\n{body}"
    text = f"def __create_fn__({', '.join(locals.keys())}):\\n{text}\\n return {name}"
    code = codes.get(text)
    if code is None:
        code = compiled[text] = compile(text, "<string>", "exec")
    ns = {}
    exec(code, globals, ns)
    return ns["__create_fn__"](**locals)

dataclasses._create_fn = _create_fn

def _save():
    if compiled:
        with open(CACHE, "wb") as f:
            marshal.dump({**codes, **compiled}, f)

atexit.register(_save)
sys.argv[0] = "patas"
from patas.cli.main import main
main()
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    rounds = parser.parse_args().rounds
    if sys.version_info[:2] != (3, 11):
        print(f"dataclass_ceiling: the prototype mirrors CPython 3.11's dataclasses; this is {sys.version.split()[0]}", file=sys.stderr)
        return 1
    scratch = Path(tempfile.mkdtemp(prefix="dataclass-ceiling-"))
    try:
        rows = {"patas as it is": [sys.executable, "-c", AS_IS],
                "dataclasses without compiling": [sys.executable, "-c", WITHOUT_COMPILING, str(scratch / "codes.marshal")]}
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPATH"] = str(REPO)
        times: dict[str, list[float]] = {label: [] for label in rows}
        for label in rows:  # untimed: bytecode and the prototype's cache are filled alike
            run(rows[label], scratch, env)
        for round_number in range(rounds):
            for label in rows if round_number % 2 == 0 else reversed(rows):
                times[label].append(run(rows[label], scratch, env))
        for label, measured in times.items():
            ordered = sorted(measured)
            print(f"{label:30s} best {ordered[0] * 1e3:6.1f} ms  q1 {ordered[len(ordered) // 4] * 1e3:6.1f}"
                  f"  median {statistics.median(ordered) * 1e3:6.1f}")
        ours, ceiling = (sorted(times[label]) for label in rows)
        ratios = {"best": ceiling[0] / ours[0], "q1": ceiling[len(ceiling) // 4] / ours[len(ours) // 4],
                  "median": statistics.median(ceiling) / statistics.median(ours)}
        print("without compiling / as it is: " + ", ".join(f"{name} {ratio:.2f}" for name, ratio in ratios.items()))
        print("load average:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(argv: list[str], scratch: Path, env: dict[str, str]) -> float:
    """One run's wall time; any failure ends the benchmark (no number for a run that failed)."""
    started = time.perf_counter()
    done = subprocess.run(argv + ARGS, cwd=scratch, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    shutil.rmtree(scratch / "pataslab", ignore_errors=True)
    if done.returncode != 0 or "Finished: 1 done, 0 failed" not in done.stderr:
        sys.exit(f"dataclass_ceiling: a run failed (exit {done.returncode}): {done.stderr.strip()[-300:]}")
    return elapsed


if __name__ == "__main__":
    sys.exit(main())
