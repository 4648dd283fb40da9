"""One run per experiment folder: an exclusive lock held from planning to the end of the run.

    pataslab/<experiment>/.lock     flock()ed by the run; holds {"pid", "host", "since"} as JSON

Two `patas explore` of one experiment into one pataslab would otherwise both plan the same tasks,
both commit them and interleave their writes. The lock is taken before the journal is read, so
a second run is refused before it has planned or written anything. `flock` locks belong to the
open file, so the kernel releases them when the holder dies, even by SIGKILL: a lock file left
behind by a killed run does not stop the next one.

The holder removes the file when it releases the lock (a lab at rest has no `.lock`), which is
safe only because whoever takes the lock checks afterwards that the file it locked is still the
one at the path: a run that opened the file just before the holder removed it locks a dead file,
notices, and tries again.

Readers (parse, query) do not lock: they read only what the journal says is committed.
`holder` tells who runs a sweep in a folder, for commands that want to find it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from patas.common.errors import LabError

LOCK_FILE = ".lock"
# A reader probing the lock (see `holder`) holds it for microseconds; a run that finds it taken
# tries again for this long before concluding that another run holds it.
ACQUIRE_PATIENCE_S = 0.2
_RETRY_INTERVAL_S = 0.01


@dataclass(frozen=True)
class LockHolder:
    """The process that holds an experiment folder's lock (fields unknown while it writes them)."""

    pid: int | None
    host: str
    since: float | None

    def describe(self) -> str:
        if self.pid is None:
            return "starting"
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since)) if self.since else "?"
        return f"pid {self.pid} on host {self.host}, since {since}"


class LabInUseError(LabError):
    """Another run holds the experiment folder."""


class LabLock:
    """The held lock of one experiment folder; `release` (or the with-block's end) lets it go."""

    def __init__(self, folder: Path, fd: int, created: list[Path]) -> None:
        self.folder = folder
        self._fd: int | None = fd
        self._created = created  # folders made to hold the lock, removed again if left empty

    def __enter__(self) -> "LabLock":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.folder / LOCK_FILE)  # while still held: see the module docstring
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None
        for folder in reversed(self._created):  # a run refused or failed before it started
            try:
                folder.rmdir()
            except OSError:
                break  # not empty: the run wrote into it


def acquire(folder: Path) -> LabLock:
    """Lock the experiment folder (creating it if needed) or raise LabInUseError naming the holder."""
    created = _make_folders(folder)
    path = folder / LOCK_FILE
    deadline = time.monotonic() + ACQUIRE_PATIENCE_S
    try:
        while True:
            fd = _open(path)
            if _try_lock(fd, fcntl.LOCK_EX):
                if _is_current(fd, path):
                    lock = LabLock(folder, fd, created)
                    _write_holder(lock, fd, path)
                    return lock
                os.close(fd)  # the holder removed it as we opened it: lock the new one
                continue
            holder = _read_holder(fd)
            os.close(fd)
            if time.monotonic() >= deadline:
                raise LabInUseError(
                    f"{folder} is in use by another patas explore ({holder.describe()});"
                    " wait for it to finish, or use -o or --name for another lab"
                )
            time.sleep(_RETRY_INTERVAL_S)
    except BaseException:
        for made in reversed(created):
            try:
                made.rmdir()
            except OSError:
                break
        raise


def holder(folder: Path) -> LockHolder | None:
    """Who runs a sweep in the experiment folder now, or None if no run holds it."""
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        if _try_lock(fd, fcntl.LOCK_SH):
            return None
        return _read_holder(fd)
    finally:
        os.close(fd)  # also drops the probe's shared lock, if it got one


def _make_folders(folder: Path) -> list[Path]:
    """Create the folder and its missing parents; the ones created, outermost first."""
    missing = []
    for candidate in (folder, *folder.parents):
        if os.path.lexists(candidate):
            break
        missing.append(candidate)
    created = []
    try:
        for candidate in reversed(missing):
            os.mkdir(candidate)
            created.append(candidate)
        if not folder.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
    except OSError as error:
        for made in reversed(created):
            made.rmdir()
        raise _lab_error(folder, error) from None
    return created


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as error:
        raise _lab_error(path, error) from None


def _try_lock(fd: int, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _is_current(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _write_holder(lock: LabLock, fd: int, path: Path) -> None:
    data = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode()
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    except OSError as error:
        lock.release()  # a full disk, say: leave nothing behind
        raise _lab_error(path, error) from None


def _read_holder(fd: int) -> LockHolder:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return LockHolder(int(data["pid"]), str(data["host"]), float(data["since"]))
    except (OSError, ValueError, KeyError, TypeError):
        return LockHolder(None, "", None)  # the holder has not written it yet


def _lab_error(path: Path, error: OSError) -> LabError:
    if isinstance(error, NotADirectoryError) or error.errno == errno.EEXIST:
        reason = "a file is in the way, not a folder"
    else:
        reason = error.strerror or str(error)
    return LabError(f"{path}: {reason} (use -o to write the pataslab elsewhere)")
