"""The pataslab folder: where every task's output and metadata land on the coordinator.

    pataslab/<experiment>/
        experiment.yaml         the definition of the last run, in the YAML schema of --experiment
        journal.jsonl           one JSON line per finished attempt (the metadata of every task)
        .lock                   held by the run writing into the folder (see lab_lock)
        study.journal           a search's Optuna study (see patas/broker/run/study.py)
        .plan-index             a summary of the journal for the last grid run, so that a rerun
                                need not read every line (a cache; see broker/run/plan_index)
        <task_id>/stdout        the committed output of the task's successful attempt
        <task_id>/stderr        (only when that attempt wrote to stderr)
        <task_id>/files/        the files that attempt collected (--collect), as the task wrote them
        <task_id>/attempt-<n>.stdout, attempt-<n>.stderr, attempt-<n>.files/
                                an attempt's output and files while it runs; kept as is when it fails

A task is done when its last `done` record in the journal is not followed by a `replacing` record,
and its folder exists. The output is written, flushed to disk and renamed into place before that
record is appended, so a crash at any instant never leaves a half-written output counted as done.
Committing an attempt replaces every stream of the task: a stream the attempt did not write is
removed. When a done task's output is replaced (--redo), a `replacing` record is made durable
first, so a crash in the middle leaves a task that is not done rather than a done task whose
streams come from two attempts. Deleting a task's folder makes the next run do that task again.
Metadata goes to one journal per experiment rather than one file per task, because creating files
is the main cost of a fast sweep.
"""

from __future__ import annotations

import enum
import itertools
import json
import operator
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, TypeVar

from patas import __version__
from patas.common import yaml_writer
from patas.common.errors import ConfigError, LabError

DEFINITION_FILE = "experiment.yaml"
JOURNAL_FILE = "journal.jsonl"
STDOUT = "stdout"
STDERR = "stderr"
STREAMS = (STDOUT, STDERR)
# An attempt's collected files (--collect) are in its folder `attempt-<n>.files`: its number is taken too.
_ATTEMPT_FILE = re.compile(r"attempt-(\d+)\.(stdout|stderr|files)\Z")
# A task folder's name is its id as str(int) writes it: ASCII digits, no leading zero.
_NAME = operator.attrgetter("name")
_TASK_FOLDER = re.compile(r"(?:0|[1-9][0-9]*)\Z")
# The journal's format. Records without a "format" field are format 1 (patas before 3.0 wrote
# no version); format 2 adds the `replacing` outcome and the "format" and "patas" fields; format 3
# adds "code" (the shipped code's version) and the `pruned` outcome. A record is written in the
# oldest format that holds it, so a run that neither ships code nor prunes writes lines an older
# patas still reads.
JOURNAL_FORMAT = 3
BASE_FORMAT = 2
CODE_FORMAT = 3
PRUNED_FORMAT = 3
# A torn last journal line is looked for backwards from the end, this many bytes at a time.
_TAIL_BLOCK_BYTES = 65536


class Outcome(enum.Enum):
    """How an attempt ended."""

    DONE = "done"  # every command exited 0; output committed
    FAILED = "failed"  # a command exited non-zero or was killed by a signal
    TIMEOUT = "timeout"  # killed after the experiment's timeout
    LOST = "lost"  # its agent or node went away; the attempt's output is incomplete
    # About to replace the task's committed output (--redo): until this attempt's `done` record
    # follows, the task is not done, whatever earlier records say.
    REPLACING = "replacing"
    # Stopped early by a search's pruner (its intermediate values fell behind): not a failure,
    # never tried again; the output it printed so far is committed as the task's output.
    PRUNED = "pruned"


@dataclass(frozen=True)
class CodeVersion:
    """The code an attempt ran (--ship): its snapshot's digest, and the git commit of the shipped
    folder with whether shipped files differed from it ("" and False outside a git work tree)."""

    digest: str
    commit: str = ""
    dirty: bool = False

    def to_record(self) -> dict[str, Any]:
        return {"digest": self.digest, "commit": self.commit, "dirty": self.dirty}

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> "CodeVersion":
        if set(data) != {"digest", "commit", "dirty"} or not (
            type(data["digest"]) is str and type(data["commit"]) is str and type(data["dirty"]) is bool
        ):
            raise RecordError('\'code\' must be {"digest": string, "commit": string, "dirty": true or false}')
        return cls(data["digest"], data["commit"], data["dirty"])


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
    code: CodeVersion | None = None  # the shipped code it ran (None: nothing was shipped)
    extra: dict[str, Any] = field(default_factory=dict)
    format: int = BASE_FORMAT
    patas: str = __version__  # the version that wrote the record, to name in an upgrade hint

    @property
    def duration(self) -> float:
        return self.ended_at - self.started_at

    def to_json(self) -> str:
        # Not dataclasses.asdict: it deep-copies every field, a measurable cost per task.
        data = {name: getattr(self, name) for name in _RECORD_FIELDS}
        data["outcome"] = self.outcome.value
        if self.code is None:
            del data["code"]
        else:
            data["code"] = self.code.to_record()
            data["format"] = max(self.format, CODE_FORMAT)
        if not self.extra:
            del data["extra"]
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str | bytes) -> "AttemptRecord":
        """The record of one journal line; RecordError says what is wrong with it."""
        try:
            data = json.loads(line)
        except ValueError as error:
            raise RecordError(f"not JSON ({error})") from None
        if type(data) is not dict:
            raise RecordError("not a JSON object")
        version = data.get("format", 1)
        if type(version) is not int:
            raise RecordError(f"'format' must be an integer, got {version!r}")
        if version > JOURNAL_FORMAT:
            writer = f"patas {data['patas']}" if type(data.get("patas")) is str else "a newer patas"
            raise NewerJournalError(f"written by {writer} (journal format {version}); upgrade patas to read it")
        _check_fields(data)
        data["outcome"] = Outcome(data["outcome"])
        if "code" in data:
            data["code"] = CodeVersion.from_record(data["code"])
        data["format"] = version
        data.setdefault("patas", "")  # an old journal's: its version was not written
        return cls(**data)


_RECORD_FIELDS = tuple(f.name for f in fields(AttemptRecord))
# Fields with a default: older journals lack some of them.
_OPTIONAL_FIELDS = frozenset(("stdout_bytes", "stderr_bytes", "error", "code", "extra", "format", "patas"))
_INT, _FLOAT, _STR, _OPTIONAL_INT = (int,), (int, float), (str,), (int, type(None))
# Each field's JSON types, checked exactly (`type(x) in kinds`, so that `true` is no integer).
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "task_id": _INT, "key": _STR, "attempt": _INT, "outcome": _STR, "exit_code": _OPTIONAL_INT,
    "combination_id": _INT, "repeat_id": _INT, "values": (dict,), "experiment_id": _INT,
    "experiment_name": _STR, "max_tries": _INT, "started_at": _FLOAT, "ended_at": _FLOAT,
    "cluster_name": _STR, "node_name": _STR, "hostname": _STR, "cluster_in_lab": _INT,
    "node_in_lab": _INT, "node_in_cluster": _INT, "worker_in_lab": _INT, "worker_in_cluster": _INT,
    "worker_in_node": _INT, "work_dir": _STR, "stdout_bytes": _INT, "stderr_bytes": _INT,
    "error": _STR, "code": (dict,), "extra": (dict,), "format": _INT, "patas": _STR,
}  # fmt: skip
_OUTCOMES = frozenset(o.value for o in Outcome)


class PlanRecord(NamedTuple):
    """The fields of a journal line that planning a rerun reads."""

    task_id: int
    key: str
    attempt: int
    outcome: Outcome
    repeat_id: int
    values_json: str  # the record's "values" object as JSON, decoded only for the few that need it

    @property
    def values(self) -> dict[str, str]:
        values: dict[str, str] = json.loads(self.values_json)
        return values

    @classmethod
    def from_json(cls, line: bytes) -> "PlanRecord":
        """A line exactly as `AttemptRecord.to_json` writes it (no `extra`, this format) is read by
        one regular expression, several times faster than `json.loads`; any other line, valid or
        not, goes through `AttemptRecord.from_json`, so what is accepted or refused, and why, is
        the same."""
        pattern = _WRITTEN_LINE or _written_line_pattern()
        try:
            match = pattern.fullmatch(line.decode()) if pattern is not None else None
        except UnicodeDecodeError:
            match = None
        if match is None:
            record = AttemptRecord.from_json(line)
            return cls(record.task_id, record.key, record.attempt, record.outcome, record.repeat_id, json.dumps(record.values))
        task_id, key, attempt, outcome, repeat_id, values = match.groups()
        return cls(int(task_id), key, int(attempt), _OUTCOME_OF[outcome], int(repeat_id), values)


_Record = TypeVar("_Record", AttemptRecord, PlanRecord)
_OUTCOME_OF = {o.value: o for o in Outcome}


def _written_line_pattern() -> re.Pattern[str] | None:
    """None for the first lines a process reads, which `AttemptRecord.from_json` reads: compiling
    the pattern (~5 ms) costs as much as reading ~150 lines that way, and a small lab's rerun, or
    the plan index catching up with a short run's lines, reads fewer."""
    global _LINES_BEFORE_PATTERN
    if _LINES_BEFORE_PATTERN:
        _LINES_BEFORE_PATTERN -= 1
        return None
    return _compile_written_line()


def _compile_written_line() -> re.Pattern[str]:
    """A journal line as `to_json` writes it without `extra`: its fields in order, each value of
    its JSON type, in the compact form json.dumps gives. Every line it matches, `json.loads`
    reads to the same values and `_check_fields` accepts; integers are bounded to 18 digits and
    the key to a string without escapes, so their text is their value; other lines do not match."""
    string = r'"[^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*)*"'
    integer = r"-?(?:0|[1-9][0-9]{0,17})"
    number = r"-?(?:0|[1-9][0-9]{0,17})(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?"
    values = rf"\{{(?:{string}:{string}(?:,{string}:{string})*)?\}}"
    captured = {
        "task_id": r"(0|[1-9][0-9]{0,17})", "key": r'"([^"\\\x00-\x1f]*)"', "attempt": r"([1-9][0-9]{0,17})",
        "outcome": '"(' + "|".join(o.value for o in Outcome) + ')"', "repeat_id": f"({integer})",
        "values": f"({values})", "format": f"[{BASE_FORMAT}-{JOURNAL_FORMAT}]",
    }  # fmt: skip
    by_type = {_INT: integer, _FLOAT: number, _STR: string, _OPTIONAL_INT: f"(?:null|{integer})"}
    code = r'(?:,"code":\{"digest":"[0-9a-f]*","commit":"[0-9a-f]*","dirty":(?:true|false)\})?'
    text = ""
    for name in _RECORD_FIELDS:
        if name == "code":
            text += code  # optional, with its comma: written only for shipped code
        elif name != "extra":
            text += ("," if text else "") + f'"{name}":' + (captured[name] if name in captured else by_type[_FIELD_TYPES[name]])
    global _WRITTEN_LINE
    _WRITTEN_LINE = re.compile(r"\{" + text + r"\}\n")
    return _WRITTEN_LINE


class RecordError(ValueError):
    """A journal line that is not a record of this format."""


class NewerJournalError(RecordError):
    """A journal line written by a newer patas, in a format this one does not know."""


def _written_shapes() -> dict[tuple[str, ...], frozenset[tuple[type, ...]]]:
    """The key orders `to_json` writes (with and without `extra` and `code`), each with its valid types."""
    shapes = {}
    for left_out in ((), ("extra",), ("code",), ("extra", "code")):
        names = tuple(n for n in _RECORD_FIELDS if n not in left_out)
        shapes[names] = frozenset(itertools.product(*(_FIELD_TYPES[n] for n in names)))
    return shapes


# Checking a record field by field costs about as much as parsing its JSON; a record as this
# version writes it is recognised by its key order and the tuple of its value types at once.
_WRITTEN_SHAPES = _written_shapes()
# Compiled once a process has read more journal lines than it is worth (`_written_line_pattern`).
_WRITTEN_LINE: re.Pattern[str] | None = None
_LINES_BEFORE_PATTERN = 128


def _check_fields(data: dict[str, Any]) -> None:
    valid_types = _WRITTEN_SHAPES.get(tuple(data))
    if valid_types is None or tuple(map(type, data.values())) not in valid_types:
        _check_each_field(data)
    if data["outcome"] not in _OUTCOMES:
        raise RecordError(f"unknown outcome {json.dumps(data['outcome'])}")
    if data["task_id"] < 0 or data["attempt"] < 1:
        raise RecordError("task_id must be at least 0 and attempt at least 1")
    if not all(type(v) is str for v in data["values"].values()):
        raise RecordError("'values' must map each variable to a string")


def _check_each_field(data: dict[str, Any]) -> None:
    for name in data.keys() - _FIELD_TYPES.keys():
        raise RecordError(f"unknown field '{name}'")
    for name, kinds in _FIELD_TYPES.items():
        if name not in data:
            if name in _OPTIONAL_FIELDS:
                continue
            raise RecordError(f"no field '{name}'")
        if type(data[name]) not in kinds:
            raise RecordError(f"'{name}' must be {' or '.join(_JSON_NAMES[k] for k in kinds)}, got {json.dumps(data[name])}")


_JSON_NAMES = {int: "an integer", float: "a number", str: "a string", dict: "an object", type(None): "null"}


class JournalPosition(NamedTuple):
    """A place in the journal: just after line `line` (0: the start), `offset` bytes in."""

    offset: int = 0
    line: int = 0


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
        # One C-level pipeline, no Python step per entry: a rerun of a big lab lists a million.
        try:
            with os.scandir(self.path) as entries:
                return set(map(int, filter(_TASK_FOLDER.match, map(_NAME, filter(os.DirEntry.is_dir, entries)))))
        except (FileNotFoundError, NotADirectoryError):
            return set()

    def attempts_on_disk(self, task_id: int) -> int:
        """The highest attempt number with files in the task's folder (0 if none)."""
        try:
            names = os.listdir(self.task_dir(task_id))
        except (FileNotFoundError, NotADirectoryError):
            return 0
        numbers = [int(m.group(1)) for m in map(_ATTEMPT_FILE.match, names) if m]
        return max(numbers, default=0)

    def read_journal(self) -> Iterator[AttemptRecord]:
        """Every complete record in the journal; a torn last line (a crash mid-append) is skipped."""
        return (record for record, _ in self._read_lines(AttemptRecord.from_json, JournalPosition()))

    def read_plan_journal(self) -> Iterator[PlanRecord]:
        """What planning needs of every complete record, read as exactly and strictly as
        `read_journal` reads it, at a fraction of the cost (see PlanRecord.from_json)."""
        return (record for record, _ in self._read_lines(PlanRecord.from_json, JournalPosition()))

    def read_plan_journal_from(self, start: "JournalPosition") -> Iterator[tuple[PlanRecord, "JournalPosition"]]:
        """As `read_plan_journal`, from the line that starts at `start` on, each record with the
        position just after its line (where a reader that has read it goes on from)."""
        return self._read_lines(PlanRecord.from_json, start)

    def _read_lines(self, read: Callable[[bytes], _Record], start: "JournalPosition") -> Iterator[tuple[_Record, "JournalPosition"]]:
        try:
            stream = open(self.journal_path, "rb")
        except FileNotFoundError:
            return
        except OSError as error:
            raise self._unreadable(self.journal_path, error) from None
        with stream:
            offset, number = start
            try:
                stream.seek(offset)
                for number, line in enumerate(stream, number + 1):
                    if not line.endswith(b"\n"):
                        break  # the coordinator died while appending; the attempt never counted
                    offset += len(line)
                    yield read(line), JournalPosition(offset, number)
            except NewerJournalError as error:
                raise LabError(f"{self.journal_path}:{number}: {error}") from None
            except RecordError as error:
                raise LabError(
                    f"{self.journal_path}:{number}: unreadable journal line ({error});"
                    f" restore the file or move {self.path} away"
                ) from None
            except OSError as error:
                raise self._unreadable(self.journal_path, error) from None

    def drop_torn_journal_line(self) -> None:
        """Cut a last line left unfinished by a crash, so the next record starts on its own line.

        The line may be of any length: the file is searched backwards, block by block, for the
        newline that ends the last complete record."""
        try:
            with open(self.journal_path, "rb+") as stream:
                end = stream.seek(0, os.SEEK_END)
                if end == 0:
                    return
                stream.seek(end - 1)
                if stream.read(1) == b"\n":
                    return
                stream.truncate(_end_of_last_line(stream, end))
        except FileNotFoundError:
            return

    def read_definition(self) -> dict[str, Any] | None:
        """The definition the last run recorded, checked and in `Experiment.to_record` form."""
        from patas.common.config import load_experiment

        if not os.path.lexists(self.definition_path):
            return None
        try:
            return load_experiment(self.definition_path).to_record()
        except ConfigError as error:
            raise LabError(f"{error} (the record of the last run; fix it or move {self.path} away)") from None

    def write_definition(self, record: dict[str, Any]) -> None:
        write_atomically(self.definition_path, yaml_writer.dump(record).encode())

    def _unreadable(self, path: Path, error: OSError) -> LabError:
        reason = "is a folder, not a file" if isinstance(error, IsADirectoryError) else (error.strerror or str(error))
        return LabError(f"{path}: {reason} (restore the file or move {self.path} away)")


def _end_of_last_line(stream: Any, end: int) -> int:
    """The offset just after the last newline before `end` (0 if there is none)."""
    position = end
    while position > 0:
        start = max(0, position - _TAIL_BLOCK_BYTES)
        stream.seek(start)
        cut = stream.read(position - start).rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        position = start
    return 0


def experiments_in(lab_root: Path) -> list[str]:
    """The experiment folders of a pataslab, by name: those with a journal, a definition or a
    run's lock (a run that has not finished a task yet)."""
    from patas.common.lab_lock import LOCK_FILE

    try:
        entries = sorted(os.scandir(lab_root), key=lambda e: e.name)
    except OSError:
        return []
    markers = (JOURNAL_FILE, DEFINITION_FILE, LOCK_FILE)
    return [e.name for e in entries if e.is_dir() and any(os.path.lexists(os.path.join(e.path, m)) for m in markers)]


def write_atomically(path: Path, data: bytes, durable: bool = True) -> None:
    """Write a whole file or nothing: a temporary file, flushed (and, if `durable`, synced to
    disk), then renamed over `path`.

    On any failure (a full disk, say) the temporary file is removed and `path` is untouched.
    Without `durable`, a crash may leave the old file, the new one, or a torn one: for a file
    that checks itself (the plan index's checksum) and can be made again."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with open(temporary, "wb") as stream:
            stream.write(data)
            stream.flush()
            if durable:
                os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
