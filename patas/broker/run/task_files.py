"""Receiving the files a task wrote in its folder on its node (`--collect`), and committing them.

An attempt's files are written, as their chunks arrive, under `<task>/attempt-<n>.files/`. When
the attempt succeeds that folder is renamed to `<task>/files/` in the same commit as its stdout
and stderr (see `committer`): each file is fdatasync'ed, the task's previous `files/` removed
(after the `replacing` record is durable), then the folder renamed, and only then is the `done`
record appended. A failed or interrupted attempt's folder stays where it is, as its output does;
a task killed while its files travel never has a half file under `files/`.

Everything a node sends is checked before anything is created: a path must be relative, without
NUL, `.` or `..` components (`path_problem`), files come one at a time from offset 0, and all of
an attempt's files together stay within its limit. An attempt that breaks a rule fails with the
reason; the rest of what it sends is dropped, so a hostile agent cannot write outside the task's
`files` folder, nor fill the disk.
"""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass, field
from typing import IO

from patas.broker.run.committer import lab_error
from patas.common.byte_sizes import size_text
from patas.common.collected_files import path_problem

FILES = "files"
# Errors a path from a node can cause by itself (a name too long, a file where a folder is
# expected): the attempt fails. Any other (a full disk) is the lab's, and stops the run.
_PATH_ERRNOS = frozenset((errno.ENAMETOOLONG, errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.ELOOP))


def staging_path(task_folder: str, attempt: int) -> str:
    return f"{task_folder}/attempt-{attempt}.{FILES}"


@dataclass(eq=False)  # one of a kind: compared by identity
class ReceivedFiles:
    """The files of one attempt, written as they arrive."""

    staging: str  # <task>/attempt-<n>.files
    limit_bytes: int
    error: str = ""  # the first rule the attempt broke; what follows is dropped
    paths: list[str] = field(default_factory=list)  # every file created, for the commit
    completed: int = 0
    received_bytes: int = 0
    _current: bytes | None = None  # the path of the file being written
    _handle: IO[bytes] | None = None
    _written: int = 0

    def write(self, path: bytes, offset: int, eof: bool, data: bytes) -> None:
        """Write one chunk; a chunk that breaks a rule sets `error` instead (and stops the rest)."""
        if self.error:
            return
        self.received_bytes += len(data)
        problem = self._problem(path, offset)
        if not problem and self.received_bytes > self.limit_bytes:
            problem = f"more than its collect limit of {size_text(self.limit_bytes)}"
        if problem:
            self.refuse(problem)
            return
        if self._handle is None:
            self._open(path)
            if self.error:
                return
        assert self._handle is not None
        try:
            self._handle.write(data)
        except OSError as error:
            raise lab_error(error, self.paths[-1]) from error
        self._written += len(data)
        if eof:
            self._close()
            self.completed += 1

    def finish(self, announced: int) -> str:
        """Close what is open; why the attempt's files are not all here ('' if they are)."""
        incomplete = self._current is not None
        self._close()
        if self.error:
            return self.error
        if incomplete or announced != self.completed:
            return f"its node announced {announced} collected file(s) but {self.completed} arrived whole"
        return ""

    def close(self) -> None:
        """Close the file being written, if any (the attempt will not finish here)."""
        self._close()

    def commit(self, target: str) -> FilesCommit:
        return FilesCommit(self.staging if self.paths else None, target, tuple(self.paths))

    def _problem(self, path: bytes, offset: int) -> str:
        if self._current is not None and path != self._current:
            return f"a file ({_shown(path)}) before the end of the previous one ({_shown(self._current)})"
        if self._current is None and offset != 0:
            return f"a file ({_shown(path)}) that does not start at offset 0"
        if self._current is not None and offset != self._written:
            return f"a chunk of {_shown(path)} at offset {offset} instead of {self._written}"
        problem = path_problem(path)
        return f"{problem} ({_shown(path)})" if problem else ""

    def _open(self, path: bytes) -> None:
        relative = os.fsdecode(path)
        target = f"{self.staging}/{relative}"
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as error:
            if error.errno in _PATH_ERRNOS:
                self.refuse(f"a file it cannot be stored as ({_shown(path)}: {error.strerror})")
                return
            raise lab_error(error, target) from error
        self.paths.append(target)
        self._handle = os.fdopen(fd, "wb")
        self._current = path
        self._written = 0

    def _close(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            try:
                handle.close()
            except OSError as error:
                raise lab_error(error, handle.name) from error
        self._current = None

    def refuse(self, problem: str) -> None:
        self.error = f"its node sent {problem}; none of its files are kept"
        self._close()


def _shown(path: bytes) -> str:
    return repr(path.decode(errors="replace")[:200])


@dataclass(frozen=True)
class FilesCommit:
    """Committing an attempt's files: `staging` (None: it sent none) becomes `target`, the
    task's `files` folder, in place of what was there."""

    staging: str | None
    target: str
    paths: tuple[str, ...]  # the files in staging, to fdatasync

    def apply(self, sync: bool) -> None:
        """Make the files durable, remove the task's committed ones, rename these into place.
        The committer calls it only once no `done` record vouches for the task's folder."""
        if sync:
            for path in self.paths:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                try:
                    os.fdatasync(fd)
                finally:
                    os.close(fd)
        if os.path.lexists(self.target):
            if os.path.isdir(self.target) and not os.path.islink(self.target):
                shutil.rmtree(self.target)
            else:
                os.unlink(self.target)
        if self.staging is not None:
            os.rename(self.staging, self.target)
