"""Each attempt's own folder on the node (`PATAS_TASK_DIR`), and sending back the files a task
wrote there (see `patas.common.collected_files` for which).

Folders live under one scratch folder per agent process, `$TMPDIR/patas-<agent>-XXXX/`, made
private (0700) like every folder in it: `task-XXXX/`, empty when an attempt starts. Once an
attempt's files are sent (or it is cancelled), its folder is removed with all in it; one the
attempt left empty, still private and its own, is kept for a later attempt instead, since
removing a folder costs milliseconds on a busy disk (3.4 ms measured here, against 40 us to see
that it is empty): a sweep of short tasks that never use it would pay that per task. The scratch
folder goes when the agent exits; an agent that is SIGKILLed leaves it in the node's temporary
folder, which the system cleans.

The walk happens once the task and everything it started are dead, so the set of files is fixed;
each file is then read in chunks as the broker's window allows, never whole, and no further than
the size it had when walked (a stray process writing on cannot make a task exceed its limit).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass

from patas.common.byte_sizes import size_text
from patas.common.collected_files import CollectRule, compile_globs

# How many of the largest files the message of a task over its limit names.
LARGEST_NAMED = 3


class TaskFolders:
    """The agent's scratch folder and the attempts' folders in it."""

    def __init__(self, agent_id: str) -> None:
        self._prefix = "patas-" + re.sub(r"[^A-Za-z0-9_.-]", "_", agent_id) + "-"
        self._root: str | None = None
        self._spare: list[str] = []  # folders attempts left empty, for the next ones

    def create(self) -> str:
        """An empty private folder for one attempt; raises OSError (a full or read-only disk)."""
        while self._spare:
            folder = self._spare.pop()
            if _empty_and_private(folder):
                return folder
            self.remove(folder)  # something wrote there since: it is no attempt's to reuse
        if self._root is None or not os.path.isdir(self._root):
            self._root = tempfile.mkdtemp(prefix=self._prefix)
        return tempfile.mkdtemp(prefix="task-", dir=self._root)

    def release(self, folder: str) -> None:
        """An attempt is done with its folder: kept for a later one if left empty, else removed."""
        if _empty_and_private(folder):
            self._spare.append(folder)
        else:
            self.remove(folder)

    @staticmethod
    def remove(folder: str) -> None:
        """Remove an attempt's folder and all in it (symbolic links are removed, not followed)."""
        try:
            os.rmdir(folder)  # most tasks leave it empty: one system call
        except FileNotFoundError:
            return
        except NotADirectoryError:
            os.unlink(folder)  # the task left a link or a file in its place
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            shutil.rmtree(folder, onerror=_make_removable)

    def close(self) -> None:
        """Remove the scratch folder (at the agent's exit)."""
        self._spare.clear()
        if self._root is not None:
            shutil.rmtree(self._root, onerror=_make_removable)
            self._root = None


def _empty_and_private(folder: str) -> bool:
    """The folder is still a real folder of this user's, 0700, with nothing in it."""
    try:
        info = os.lstat(folder)
        return (
            stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == stat.S_IRWXU and info.st_uid == os.getuid()
            and not os.listdir(folder)
        )  # fmt: skip
    except OSError:
        return False


def _make_removable(function: object, path: str, exc_info: object) -> None:
    """A task may leave a folder without write or search permission: grant them, try again."""
    try:
        parent = os.path.dirname(path)
        os.chmod(parent, stat.S_IRWXU)
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, stat.S_IRWXU)
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    except OSError:
        pass  # left for the system's cleaning of its temporary folder


@dataclass
class AttemptFiles:
    """One running attempt's folder, what to collect from it, and once it ended, the sender."""

    folder: str
    rule: CollectRule
    sender: FileSender | None = None
    ended_at: float = 0.0  # when the task ended (time.time()), before its files were sent


@dataclass(frozen=True)
class FoundFile:
    path: str  # relative to the task's folder
    size: int  # when walked: no more is sent


@dataclass(frozen=True)
class Chunk:
    path: bytes
    offset: int
    eof: bool
    data: bytes


class FileSender:
    """The files of a finished task to send back, as chunks. `error` says why none are sent
    (over the limit); `count` is how many files were sent once `done`."""

    def __init__(self, folder: str, rule: CollectRule) -> None:
        self.folder = folder
        self.files = find_files(folder, rule) if rule.globs else []
        self.error = over_limit(self.files, rule.limit_bytes)
        if self.error:
            self.files = []
        self.count = 0
        self._next = 0
        self._stream: int | None = None  # the file being read, its descriptor
        self._offset = 0

    @property
    def done(self) -> bool:
        return self._next >= len(self.files)

    def next_chunk(self, max_bytes: int) -> Chunk | None:
        """The next chunk of at most `max_bytes` (None once every file is sent). A file that
        vanished or changed into something else since the walk is sent empty."""
        if self.done:
            return None
        found = self.files[self._next]
        if self._stream is None:
            self._stream = _open_regular(self.folder, found.path)
            self._offset = 0
        wanted = min(max_bytes, found.size - self._offset)
        data = _read(self._stream, wanted) if self._stream >= 0 and wanted > 0 else b""
        chunk_offset = self._offset
        self._offset += len(data)
        eof = len(data) < max_bytes or self._offset >= found.size
        if eof:
            self._close_stream()
            self._next += 1
            self.count += 1
        return Chunk(os.fsencode(found.path), chunk_offset, eof, data)

    def close(self) -> None:
        self._close_stream()

    def _close_stream(self) -> None:
        if self._stream is not None and self._stream >= 0:
            os.close(self._stream)
        self._stream = None


def find_files(folder: str, rule: CollectRule) -> list[FoundFile]:
    """The regular files under `folder` that a glob matches, or that are inside a folder one
    matches, in path order; symbolic links are neither followed nor listed."""
    pattern = compile_globs(rule.globs)
    found: list[FoundFile] = []
    try:
        real = stat.S_ISDIR(os.lstat(folder).st_mode)
    except OSError:
        real = False
    if real:  # not a link the task left in its place
        _walk(folder, "", pattern, False, found)
    return sorted(found, key=lambda f: f.path)


def _walk(folder: str, prefix: str, pattern: re.Pattern[str], matched: bool, found: list[FoundFile]) -> None:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return  # a folder the task made unreadable: nothing in it is sent
    for entry in entries:
        relative = prefix + entry.name
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        hit = matched or pattern.fullmatch(relative) is not None
        if stat.S_ISDIR(info.st_mode):
            _walk(entry.path, relative + "/", pattern, hit, found)
        elif stat.S_ISREG(info.st_mode) and hit:
            found.append(FoundFile(relative, info.st_size))


def over_limit(files: list[FoundFile], limit_bytes: int) -> str:
    """Why these files cannot all be sent ('' if they can): what they take, the limit and the
    largest of them."""
    total = sum(f.size for f in files)
    if total <= limit_bytes:
        return ""
    largest = sorted(files, key=lambda f: -f.size)[:LARGEST_NAMED]
    named = ", ".join(f"{f.path} {size_text(f.size)}" for f in largest)
    return (
        f"its collected files take {size_text(total)}, more than the collect limit of {size_text(limit_bytes)}"
        f" (largest: {named}); raise --collect-limit or collect fewer files"
    )


def _open_regular(folder: str, relative: str) -> int:
    """A descriptor on the file if it is still a regular file inside `folder`, reached through
    no link (a process that outlived the task may have swapped a folder for one), else -1."""
    path = os.path.join(folder, relative)
    if os.path.realpath(path) != os.path.join(os.path.realpath(folder), relative):
        return -1
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return -1
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return -1
    return fd


def _read(fd: int, size: int) -> bytes:
    parts, left = [], size
    while left > 0:
        try:
            data = os.read(fd, left)
        except OSError:
            break
        if not data:
            break
        parts.append(data)
        left -= len(data)
    return b"".join(parts)
