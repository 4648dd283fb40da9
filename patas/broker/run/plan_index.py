"""The plan index: what a rerun needs of the journal about one grid, kept beside the journal.

    pataslab/<experiment>/.plan-index

A rerun must know, for every task of its grid, whether the journal says it is done, its last
attempt and the id it was recorded under. Reading that from a journal of a million lines (a
regular expression, a key lookup and several dictionaries per line) takes longer than the whole
rerun may take, so the run that wrote the journal also writes this summary of it, by natural id
in arrays (`GridHistory`), for the grid it ran. The journal stays the truth; the index is a
cache of it that is never trusted beyond what it can check:

- it names the grid it describes by a digest of everything a task's key depends on (commands,
  variables and their values, repeat): another grid reads the journal from its start instead;
- it records how much of the journal it covers (bytes and lines), a digest of those bytes, and
  the journal file's identity when the index was written (device, inode, size, modification
  time in ns): a journal with that identity was not written since, and is trusted without being
  read; any other is read whole to check the digest, and if the covered bytes differ (replaced,
  restored from a copy, edited anywhere) it is read from its start again; lines appended after
  the covered part (a run that crashed before writing the index) are read and applied. The
  digest is a chain, one link per run's appended bytes, so that writing the index hashes only
  what the run appended;
- it ends with a digest of its own contents, and is written whole to a temporary file and
  renamed over the old one (`write_atomically`): a torn or damaged index is read as none, and a
  reader sees the old index or the new one, never a mix. It is not synced to disk: after a
  crash the file may be the old index (whose journal identity no longer matches: the journal is
  checked and its new lines read) or a torn one (read as none), and either way the journal,
  which is synced, stays the truth. Only the run holding the experiment's lock writes it.

Task folders are not in the index: whether each done task's folder exists is read from the
folder at every plan, as without the index.
"""

from __future__ import annotations

import json
import logging
import os
from array import array
from dataclasses import dataclass, field
from operator import and_
from typing import Any

from patas.common.config import Experiment
from patas.common.digests import blake2b
from patas.common.lab import ExperimentLab, JournalPosition, Outcome, PlanRecord, write_atomically
from patas.common.sweep import GridPositions, task_keys

log = logging.getLogger(__name__)

INDEX_FILE = ".plan-index"
INDEX_FORMAT = 2  # 2: the journal's identity and digest chain
_MAGIC = b"patas plan index\n"
_LENGTH_BYTES = 8  # the header's length, before the header
_CHECKSUM_BYTES = 32
_READ_BYTES = 1 << 20  # the journal is hashed by blocks of this size
_ATTEMPTS = "q"  # the array type of last attempts: the journal's integers fit 64 bits (see lab.py)
# A plan from the whole journal walks the grid's keys while the grid has at most this many tasks
# per key in the journal; beyond, it locates each journal record in the grid. Walking computes one
# key per grid task; locating decodes a record's values and computes its key, about twice as dear.
WALK_PER_JOURNAL_TASK = 2


class StaleIndex(Exception):
    """An index that does not describe this grid or this journal: read the journal instead."""


def grid_digest(experiment: Experiment) -> str:
    """A digest of everything the keys of an experiment's tasks depend on."""
    identity = [
        INDEX_FORMAT,
        [t.text for t in experiment.commands],
        [[v.name, list(v.values)] for v in experiment.variables],
        experiment.repeat,
    ]
    return blake2b(json.dumps(identity).encode(), digest_size=16).hexdigest()


@dataclass
class GridHistory:
    """What the journal says about the tasks of one grid, by natural id: the answers
    `plan.LabHistory` gives, without a dictionary entry per task."""

    digest: str
    total: int
    position: JournalPosition = JournalPosition()  # the journal is read up to here
    chain: str = ""  # the digest of the journal up to `position` (see `_chain`); "": of nothing
    links: list[int] = field(default_factory=list)  # the offsets where the chain's links end
    journal: list[int] = field(default_factory=list)  # the journal's identity when the index was written
    # Per natural id: the last attempt (0: none) and 1 where its last done record stands (folder
    # unchecked). Both stay empty while the journal has no record of the grid: a fresh grid of a
    # million tasks does not pay 9 MB for them.
    attempts: array = field(default_factory=lambda: array(_ATTEMPTS))
    done: bytearray = field(default_factory=bytearray)
    moved: dict[int, int] = field(default_factory=dict)  # natural id → task id, where the journal has another
    held: dict[int, str] = field(default_factory=dict)  # task id → key: ids a key other than that natural id's task holds
    others: dict[str, list[int]] = field(default_factory=dict)  # keys of other grids → [task id, done 0/1]
    max_id: int = -1  # the highest task id in the journal
    folders: set[int] = field(default_factory=set)  # the task folders on disk (set by the planner)
    unsaved: bool = True  # differs from the index file (a rerun with nothing new writes nothing)

    @classmethod
    def empty(cls, experiment: Experiment) -> "GridHistory":
        return cls(grid_digest(experiment), experiment.task_count)

    @classmethod
    def read(cls, experiment: Experiment, lab: ExperimentLab) -> "GridHistory":
        """The index brought up to date with the journal; the journal alone if there is none
        that fits (missing, damaged, of another grid, or of another journal)."""
        try:
            history = cls.load(lab, experiment)
        except StaleIndex as why:
            log.debug("%s: reading the whole journal (%s)", lab.path / INDEX_FILE, why)
            history = cls.from_journal(experiment, lab)
        history.catch_up(experiment, lab)
        return history

    @classmethod
    def from_journal(cls, experiment: Experiment, lab: ExperimentLab) -> "GridHistory":
        """The index of the whole journal, as applying its records in order (`catch_up`) makes
        it: the records summed up by key, then placed in the grid by one walk over its keys.
        A grid much bigger than the journal is not walked (a 10^23-task grid never ends): the
        index comes back empty and `catch_up` locates each record in the grid instead."""
        history = cls.empty(experiment)
        summary = JournalSummary.read(lab)
        if not summary.by_key or experiment.task_count > WALK_PER_JOURNAL_TASK * len(summary.by_key):
            return history
        by_key, naturals = summary.by_key, {}
        for natural, key in enumerate(task_keys(experiment)):
            if key in by_key:
                naturals[key] = natural
                if len(naturals) == len(by_key):
                    break  # every key of the journal is placed: the rest of the grid has no record
        history._place(summary, naturals)
        history._extend_chain(lab, 0)
        return history

    def _place(self, summary: "JournalSummary", naturals: dict[str, int]) -> None:
        """Fill the index from the journal's summary, `naturals` giving the grid's keys' places."""
        if naturals:  # else, as in `_apply`, none until the journal has a record of the grid
            self.attempts, self.done = array(_ATTEMPTS, [0]) * self.total, bytearray(self.total)
        for key, (task_id, attempt, done) in summary.by_key.items():
            natural = naturals.get(key)
            if natural is None:
                self.others[key] = [task_id, done]
                continue
            self.attempts[natural], self.done[natural] = attempt, done
            if task_id != natural:
                self.moved[natural] = task_id
        self.held = {task_id: key for task_id, key in summary.by_id.items() if naturals.get(key) != task_id}
        self.max_id = max(summary.by_id)
        self.position = summary.position

    # --- the answers planning asks for (the same as LabHistory's) -----------------------------

    def journal_id(self, natural: int, key: str) -> int | None:
        """The id the journal recorded the task under, None if it has no record of it."""
        return self.moved.get(natural, natural) if self.attempts and self.attempts[natural] else None

    def id_held_by_other(self, natural: int, key: str) -> bool:
        """Whether another task holds the task's natural id."""
        return natural in self.held

    def last_attempt_of(self, natural: int, key: str) -> int:
        return self.attempts[natural] if self.attempts else 0

    @property
    def max_task_id(self) -> int:
        return self.max_id

    def done_mask(self) -> bytearray:
        """1 at the natural id of each of the grid's done tasks whose folder exists; empty if none."""
        if not self.done:
            return bytearray()
        folders = self.folders
        mask = bytearray(map(and_, self.done, map(folders.__contains__, range(self.total))))
        for natural, task_id in self.moved.items():  # their folders are elsewhere
            mask[natural] = self.done[natural] and task_id in folders
        return mask

    def other_done(self) -> int:
        """Done tasks, with their folder, that this grid does not have."""
        return sum(1 for task_id, done in self.others.values() if done and task_id in self.folders)

    # --- keeping it up to date ------------------------------------------------------------------

    def catch_up(self, experiment: Experiment, lab: ExperimentLab) -> None:
        """Apply the journal's records after `position`."""
        positions = GridPositions(experiment)
        covered = self.position.offset
        for record, position in lab.read_plan_journal_from(self.position):
            self._apply(record, positions.locate(record.key, record.values, record.repeat_id))
            self.position = position
        self._extend_chain(lab, covered)

    def _extend_chain(self, lab: ExperimentLab, covered: int) -> None:
        """Add the journal's bytes from `covered` to `position` to the digest chain."""
        if self.position.offset > covered:
            self.chain = _chain(lab, self.chain, [covered, self.position.offset])
            self.links.append(self.position.offset)
            self.unsaved = True

    def _apply(self, record: PlanRecord, natural: int | None) -> None:
        key, task_id = record.key, record.task_id
        self.max_id = max(self.max_id, task_id)
        if natural is None:
            self.held[task_id] = key
            entry = self.others.setdefault(key, [task_id, 0])
            entry[0] = task_id
            if record.outcome is Outcome.DONE or record.outcome is Outcome.REPLACING:
                entry[1] = int(record.outcome is Outcome.DONE)
            return
        if task_id == natural:
            self.moved.pop(natural, None)
            self.held.pop(task_id, None)
        else:
            self.moved[natural] = task_id
            self.held[task_id] = key
        if not self.attempts:  # the grid's first record
            self.attempts = array(_ATTEMPTS, [0]) * self.total
            self.done = bytearray(self.total)
        if record.attempt > self.attempts[natural]:
            self.attempts[natural] = record.attempt
        if record.outcome is Outcome.DONE:
            self.done[natural] = 1
        elif record.outcome is Outcome.REPLACING:
            self.done[natural] = 0  # a crash while its output was being replaced

    # --- the file -------------------------------------------------------------------------------

    def save(self, lab: ExperimentLab) -> None:
        if not self.unsaved:
            return
        self.journal = _identity(lab)
        header = {
            "format": INDEX_FORMAT, "digest": self.digest, "total": self.total, "offset": self.position.offset,
            "line": self.position.line, "chain": self.chain, "links": self.links, "journal": self.journal, "max_id": self.max_id,
            "moved": list(self.moved.items()), "held": list(self.held.items()),
            "others": [[key, *entry] for key, entry in self.others.items()],
        }  # fmt: skip
        encoded = json.dumps(header, separators=(",", ":")).encode()
        arrays = (self.attempts.tobytes(), self.done) if self.attempts else (bytes(8 * self.total), bytes(self.total))
        body = b"".join((_MAGIC, len(encoded).to_bytes(_LENGTH_BYTES, "little"), encoded, *arrays))
        write_atomically(lab.path / INDEX_FILE, body + _checksum(body), durable=False)  # see the module docstring
        self.unsaved = False

    @classmethod
    def load(cls, lab: ExperimentLab, experiment: Experiment) -> "GridHistory":
        """The index of `experiment`'s grid, if it is whole and describes the journal as it is."""
        try:
            data = (lab.path / INDEX_FILE).read_bytes()
        except OSError as error:
            raise StaleIndex(error.strerror or str(error)) from None
        body, checksum = data[:-_CHECKSUM_BYTES], data[-_CHECKSUM_BYTES:]
        if not body.startswith(_MAGIC) or _checksum(body) != checksum:
            raise StaleIndex("damaged")
        start = len(_MAGIC) + _LENGTH_BYTES
        header_end = start + int.from_bytes(body[len(_MAGIC) : start], "little")
        header: dict[str, Any] = json.loads(body[start:header_end])
        total = experiment.task_count
        if header["format"] != INDEX_FORMAT or header["digest"] != grid_digest(experiment) or header["total"] != total:
            raise StaleIndex("of another grid")
        if len(body) != header_end + 9 * total:
            raise StaleIndex("damaged")
        position = JournalPosition(header["offset"], header["line"])
        links, chain = header["links"], header["chain"]
        journal = _identity(lab)
        # Unwritten since the index (same file, size and modification time): its bytes are the
        # ones the chain digests. Else read them and check.
        if journal != header["journal"] and _chain(lab, "", [0, *links]) != chain:
            raise StaleIndex("of another journal")
        attempts = array(_ATTEMPTS)
        attempts.frombytes(body[header_end : header_end + 8 * total])
        return cls(
            header["digest"], total, position, chain, links, header["journal"], attempts, bytearray(body[header_end + 8 * total :]),
            {n: task_id for n, task_id in header["moved"]}, {task_id: key for task_id, key in header["held"]},
            {key: [task_id, done] for key, task_id, done in header["others"]}, header["max_id"],
            unsaved=journal != header["journal"],  # written again with the journal's new identity
        )  # fmt: skip


@dataclass(frozen=True)
class JournalSummary:
    """The whole journal summed up by key, as applying its records in order leaves each task:
    a record's key may have several records (attempts, runs), an id several keys (grids)."""

    by_key: dict[str, tuple[int, int, int]]  # key → (its last record's task id, its highest attempt, done: 1 or 0)
    by_id: dict[int, str]  # task id → the key of its last record
    position: JournalPosition  # the end of the last record read

    @classmethod
    def read(cls, lab: ExperimentLab) -> "JournalSummary":
        by_key: dict[str, tuple[int, int, int]] = {}
        by_id: dict[int, str] = {}
        position = JournalPosition()
        for record, position in lab.read_plan_journal_from(position):
            key, attempt, outcome = record.key, record.attempt, record.outcome
            _, highest, done = by_key.get(key, (0, 0, 0))
            if outcome is Outcome.DONE or outcome is Outcome.REPLACING:
                done = int(outcome is Outcome.DONE)  # replacing: a crash while its output was being replaced
            by_key[key] = (record.task_id, attempt if attempt > highest else highest, done)
            by_id[record.task_id] = key
        return cls(by_key, by_id, position)


def _identity(lab: ExperimentLab) -> list[int]:
    """What changes when the journal is written, replaced or restored: its device, inode, size and
    modification time (ns); [] if there is none. Not its change time: a rename sets that."""
    try:
        stat = os.stat(lab.journal_path)
    except FileNotFoundError:
        return []
    return [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns]


def _chain(lab: ExperimentLab, chain: str, ends: list[int]) -> str:
    """The digest chain `chain` extended by one link per span of the journal between successive
    `ends`: each link digests the previous one and the span's bytes. "" if the journal is shorter."""
    try:
        with open(lab.journal_path, "rb") as journal:
            for start, end in zip(ends, ends[1:]):
                link = blake2b(bytes.fromhex(chain), digest_size=16)
                journal.seek(start)
                left = end - start
                while left > 0:
                    block = journal.read(min(left, _READ_BYTES))
                    if not block:
                        return ""
                    link.update(block)
                    left -= len(block)
                chain = link.hexdigest()
    except FileNotFoundError:
        return "" if len(ends) > 1 else chain
    return chain


def _checksum(body: bytes) -> bytes:
    return blake2b(body, digest_size=_CHECKSUM_BYTES).digest()
