"""The pataslab folder: where every task's output and metadata land on the coordinator.

    pataslab/<experiment>/
        experiment.yaml         the definition of the last run, in the YAML schema of --experiment
        journal.jsonl           one JSON line per finished attempt (the metadata of every task)
        <task_id>/stdout        the committed output of the task's successful attempt
        <task_id>/stderr        (only when the task wrote to stderr)
        <task_id>/attempt-<n>.stdout, attempt-<n>.stderr
                                an attempt's output while it runs; kept as is when it fails

A task is done when the journal holds a `done` record for it and its folder exists: the output is
written, flushed to disk and renamed into place before that record is appended, so a crash at any
instant never leaves a half-written output counted as done. Deleting a task's folder makes the next
run do that task again. Metadata goes to one journal per experiment rather than one file per task,
because creating files is the main cost of a fast sweep.
"""

from __future__ import annotations

import enum
import json
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

from patas.common.errors import LabError

DEFINITION_FILE = "experiment.yaml"
JOURNAL_FILE = "journal.jsonl"
STDOUT = "stdout"
STDERR = "stderr"
STREAMS = (STDOUT, STDERR)
_ATTEMPT_FILE = re.compile(r"attempt-(\d+)\.(stdout|stderr)\Z")


class Outcome(enum.Enum):
    """How an attempt ended."""

    DONE = "done"  # every command exited 0; output committed
    FAILED = "failed"  # a command exited non-zero or was killed by a signal
    TIMEOUT = "timeout"  # killed after the experiment's timeout
    LOST = "lost"  # its agent or node went away; the attempt's output is incomplete


@dataclass
class AttemptRecord:
    """One journal line: everything known about one attempt of one task."""

    task_id: int
    key: str
    attempt: int
    outcome: Outcome
    exit_code: int | None
    combination_id: int
    repeat_id: int
    values: dict[str, str]
    experiment_id: int
    experiment_name: str
    max_tries: int
    started_at: float
    ended_at: float
    cluster_name: str
    node_name: str
    hostname: str
    cluster_in_lab: int
    node_in_lab: int
    node_in_cluster: int
    worker_in_lab: int
    worker_in_cluster: int
    worker_in_node: int
    work_dir: str
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    error: str = ""  # why patas itself could not run the command (e.g. no such workdir)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return self.ended_at - self.started_at

    def to_json(self) -> str:
        # Not dataclasses.asdict: it deep-copies every field, a measurable cost per task.
        data = {name: getattr(self, name) for name in _RECORD_FIELDS}
        data["outcome"] = self.outcome.value
        if not self.extra:
            del data["extra"]
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> "AttemptRecord":
        data = json.loads(line)
        data["outcome"] = Outcome(data["outcome"])
        return cls(**data)


_RECORD_FIELDS = tuple(f.name for f in fields(AttemptRecord))


class ExperimentLab:
    """The folder of one experiment inside a pataslab."""

    def __init__(self, lab_root: str | Path, name: str) -> None:
        self.root = Path(lab_root)
        self.name = name
        self.path = self.root / name

    @property
    def definition_path(self) -> Path:
        return self.path / DEFINITION_FILE

    @property
    def journal_path(self) -> Path:
        return self.path / JOURNAL_FILE

    def task_dir(self, task_id: int) -> Path:
        return self.path / str(task_id)

    def attempt_path(self, task_id: int, attempt: int, stream: str) -> Path:
        return self.path / str(task_id) / f"attempt-{attempt}.{stream}"

    def committed_path(self, task_id: int, stream: str) -> Path:
        return self.path / str(task_id) / stream

    def exists(self) -> bool:
        return self.path.is_dir()

    def task_folders(self) -> set[int]:
        """The ids of the task folders present on disk (one directory listing)."""
        try:
            with os.scandir(self.path) as entries:
                return {int(e.name) for e in entries if e.name.isdigit() and e.is_dir()}
        except FileNotFoundError:
            return set()

    def attempts_on_disk(self, task_id: int) -> int:
        """The highest attempt number with files in the task's folder (0 if none)."""
        try:
            names = os.listdir(self.task_dir(task_id))
        except FileNotFoundError:
            return 0
        numbers = [int(m.group(1)) for m in map(_ATTEMPT_FILE.match, names) if m]
        return max(numbers, default=0)

    def read_journal(self) -> Iterator[AttemptRecord]:
        """Every complete record in the journal; a torn last line (a crash mid-append) is skipped."""
        try:
            stream = open(self.journal_path, encoding="utf-8")
        except FileNotFoundError:
            return
        with stream:
            for number, line in enumerate(stream, 1):
                if not line.endswith("\n"):
                    break  # the coordinator died while appending; the attempt never counted
                try:
                    yield AttemptRecord.from_json(line)
                except (ValueError, TypeError, KeyError) as error:
                    raise LabError(
                        f"{self.journal_path}:{number}: unreadable journal line ({error});"
                        " restore the file or move the experiment folder away"
                    ) from None

    def drop_torn_journal_line(self) -> None:
        """Cut a last line left unfinished by a crash, so the next record starts on its own line."""
        try:
            with open(self.journal_path, "rb+") as stream:
                size = stream.seek(0, os.SEEK_END)
                if size == 0:
                    return
                stream.seek(max(0, size - 65536))
                tail = stream.read()
                if tail.endswith(b"\n"):
                    return
                cut = tail.rfind(b"\n")
                stream.truncate(size - len(tail) + cut + 1 if cut >= 0 else max(0, size - len(tail)))
        except FileNotFoundError:
            return

    def read_definition(self) -> dict[str, Any] | None:
        import yaml

        try:
            with open(self.definition_path, encoding="utf-8") as stream:
                return yaml.safe_load(stream)
        except FileNotFoundError:
            return None

    def write_definition(self, record: dict[str, Any]) -> None:
        import yaml

        write_atomically(self.definition_path, yaml.safe_dump(record, sort_keys=False).encode())


def write_atomically(path: Path, data: bytes) -> None:
    """Write a whole file or nothing: a temporary file, flushed, then renamed over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(temporary, path)
