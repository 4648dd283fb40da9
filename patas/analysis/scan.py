"""Scanning task outputs: read each task's files once and collect every pattern's value.

Each pattern is searched in the whole output text (one C-level scan per pattern), which measured
several times faster than testing every pattern on every line in Python; the last match wins, as
in the original patas. With line breakers (-n), the output is cut after each line a breaker
matches and every piece becomes a row; what follows the last breaker is not a row (as in the
original: a breaker closes a block, e.g. an epoch's summary line).

Big experiments are scanned by a pool of processes over chunks of tasks, so all cores read and
match; small ones are scanned in-process, where starting a pool would cost more than it saves.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

# Below this many tasks a process pool costs more (~30 ms to start) than it saves.
PARALLEL_MIN_TASKS = 500
# Chunks per worker: enough to even out slow files, few enough to keep messages cheap.
CHUNKS_PER_WORKER = 4

Values = tuple[str | None, ...]


@dataclass(frozen=True)
class ScanJob:
    """One task's files to read (in order; their texts are joined) under its id."""

    task_id: int
    paths: tuple[Path, ...]


def scan(
    jobs: Sequence[ScanJob],
    patterns: Sequence[re.Pattern[str]],
    breakers: Sequence[re.Pattern[str]],
    workers: int | None = None,
) -> dict[int, list[Values]]:
    """Each task's rows of captured values (one row without breakers), by task id."""
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(jobs) < PARALLEL_MIN_TASKS:
        return dict(scan_chunk(jobs, patterns, breakers))
    size = -(-len(jobs) // (workers * CHUNKS_PER_WORKER))
    chunks = [jobs[i : i + size] for i in range(0, len(jobs), size)]
    found: dict[int, list[Values]] = {}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for part in pool.map(scan_chunk, chunks, [patterns] * len(chunks), [breakers] * len(chunks)):
            found.update(part)
    return found


def scan_chunk(
    jobs: Sequence[ScanJob],
    patterns: Sequence[re.Pattern[str]],
    breakers: Sequence[re.Pattern[str]],
) -> list[tuple[int, list[Values]]]:
    """The rows of a chunk of tasks (runs in a pool worker, so it takes and returns plain data)."""
    return [(job.task_id, scan_text(read_text(job.paths), patterns, breakers)) for job in jobs]


def read_text(paths: Sequence[Path]) -> str:
    """The files' texts joined by a line break; a missing file reads as empty (nothing written)."""
    texts = []
    for path in paths:
        try:
            with open(path, "rb") as stream:
                texts.append(stream.read().decode("utf-8", "replace"))
        except FileNotFoundError:
            continue
    if len(texts) == 1:
        return texts[0]
    return "".join(t if not t or t.endswith("\n") else t + "\n" for t in texts)


def scan_text(text: str, patterns: Sequence[re.Pattern[str]], breakers: Sequence[re.Pattern[str]]) -> list[Values]:
    """The captured values of each row of one output."""
    if not breakers:
        return [last_values(text, 0, len(text), patterns)]
    rows = []
    start = 0
    for end in block_ends(text, breakers):
        rows.append(last_values(text, start, end, patterns))
        start = end
    return rows


def last_values(text: str, start: int, end: int, patterns: Sequence[re.Pattern[str]]) -> Values:
    """Each pattern's group in its last match within text[start:end], or None."""
    values = []
    for pattern in patterns:
        match = None
        for match in pattern.finditer(text, start, end):
            pass
        values.append(match.group(1) if match else None)
    return tuple(values)


def block_ends(text: str, breakers: Sequence[re.Pattern[str]]) -> list[int]:
    """Where each block ends: just after every line that some breaker matches."""
    ends = set()
    for breaker in breakers:
        for match in breaker.finditer(text):
            newline = text.find("\n", max(match.start(), match.end() - 1))
            ends.add(len(text) if newline < 0 else newline + 1)
    return sorted(ends)
