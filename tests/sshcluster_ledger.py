"""What a simulated cluster created on this machine, written down so that it can be undone.

A build writes its ledger (user, network namespace, veth and bridge names, all carrying the
build's random token) under `STATE_DIR` before it creates anything, and teardown works from the
ledger alone: it ends the processes inside the recorded network namespaces or owned by the
recorded users (by PID), then deletes the recorded veths, bridge, namespaces and users. A test
session that died without tearing down is cleaned up by the next build, which reaps every ledger
whose owner process is gone; the live cluster of another session is never touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

STATE_DIR = Path("/run/patas-sshcluster")
NETNS_DIR = Path("/run/netns")
# Present while a cluster created NETNS_DIR (which `ip netns add` also turns into a mount point):
# the last cluster to go removes both, leaving the machine as it was found.
NETNS_DIR_MARK = STATE_DIR / "created-run-netns"
KILL_TIMEOUT_S = 5.0
# Long, because killing useradd or userdel midway leaves /etc/passwd locked.
TOOL_TIMEOUT_S = 60.0
POLL_INTERVAL_S = 0.002
TOOL_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# /proc/PID/stat states of a process that has ended (PID 1 here reaps zombies late).
ENDED_STATES = ("Z", "X", "x")


class ClusterError(Exception):
    """Building, changing or tearing down a simulated cluster failed where it should work."""


@dataclass
class Ledger:
    token: str
    owner_pid: int
    owner_start: int
    bridge: str
    netns: list[str]
    veths: list[str]
    users: list[str]
    workdir: str | None  # deleted at teardown: the cluster made it

    @property
    def path(self) -> Path:
        return STATE_DIR / f"{self.token}.json"

    def save(self) -> None:
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps(asdict(self)))
        partial.replace(self.path)

    @classmethod
    def load(cls, path: Path) -> Ledger:
        return cls(**json.loads(path.read_text()))

    def owner_alive(self) -> bool:
        fields = stat_fields(self.owner_pid)
        return fields is not None and fields[0] not in ENDED_STATES and int(fields[19]) == self.owner_start


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None if gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rindex(")") + 2:].split()


def start_time(pid: int) -> int:
    fields = stat_fields(pid)
    assert fields is not None, f"process {pid} is gone"
    return int(fields[19])


def live_pids(*, uids: Iterable[int] = (), net_namespaces: Iterable[int] = ()) -> list[int]:
    """PIDs of live (not zombie) processes owned by one of `uids` (real or effective) or inside
    one of the network namespaces (by inode)."""
    uids, net_namespaces = set(uids), set(net_namespaces)
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and _matches(int(entry.name), uids, net_namespaces):
            found.append(int(entry.name))
    return found


def _matches(pid: int, uids: set[int], net_namespaces: set[int]) -> bool:
    try:
        if net_namespaces and os.stat(f"/proc/{pid}/ns/net").st_ino in net_namespaces:
            return _alive(pid)
        if uids:
            status = Path(f"/proc/{pid}/status").read_text()
            real, effective = status.split("\nUid:", 1)[1].split()[:2]
            return bool({int(real), int(effective)} & uids) and _alive(pid)
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return False


def _alive(pid: int) -> bool:
    fields = stat_fields(pid)
    return fields is not None and fields[0] not in ENDED_STATES


def kill_until_gone(select: Callable[[], list[int]], timeout_s: float = KILL_TIMEOUT_S) -> None:
    """SIGKILL every PID `select` returns, again and again, until it returns none."""
    deadline = time.monotonic() + timeout_s
    while pids := [pid for pid in select() if pid != os.getpid()]:
        if time.monotonic() > deadline:
            raise ClusterError(f"processes still alive after SIGKILL: {sorted(pids)}")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(POLL_INTERVAL_S)


@contextlib.contextmanager
def state_lock() -> Iterator[None]:
    """Serialises builds and teardowns of every cluster on the machine (all sessions)."""
    while True:
        STATE_DIR.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(STATE_DIR, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        with contextlib.suppress(FileNotFoundError):
            if os.stat(STATE_DIR).st_ino == os.fstat(fd).st_ino:
                break
        os.close(fd)  # the directory was removed while we waited: take the new one
    try:
        yield
    finally:
        os.close(fd)


def reap_stale() -> list[str]:
    """Tear down the clusters of sessions that ended without doing it; call under state_lock."""
    reaped = []
    for path in sorted(STATE_DIR.glob("*.json")):
        ledger = Ledger.load(path)
        if not ledger.owner_alive():
            undo(ledger)
            forget(ledger)
            reaped.append(ledger.token)
    return reaped


def release(ledger: Ledger, children: Sequence[subprocess.Popen[bytes]] = ()) -> None:
    """Undo everything in the ledger, reap our own `children`, and drop the ledger."""
    undo(ledger, children)
    with state_lock():
        forget(ledger)


def undo(ledger: Ledger, children: Sequence[subprocess.Popen[bytes]] = ()) -> None:
    uids = [_uid(user) for user in ledger.users if user_exists(user)]
    namespaces = [os.stat(NETNS_DIR / name).st_ino for name in ledger.netns if (NETNS_DIR / name).exists()]
    kill_until_gone(lambda: live_pids(uids=uids, net_namespaces=namespaces))
    for child in children:
        child.kill()
        child.wait()
    commands = [f"link del {veth}" for veth in ledger.veths if link_exists(veth)]
    commands += [f"link del {ledger.bridge}"] if link_exists(ledger.bridge) else []
    commands += [f"netns del {name}" for name in ledger.netns if (NETNS_DIR / name).exists()]
    unlinking = start(["ip", "-batch", "-"], stdin="\n".join(commands) + "\n") if commands else None
    for user in ledger.users:
        if user_exists(user):
            # -f: a killed process of the user may linger as a zombie, which userdel counts.
            run(["userdel", "-f", user])
    if unlinking:
        finish(unlinking)
    if ledger.workdir:
        shutil.rmtree(ledger.workdir, ignore_errors=True)


def forget(ledger: Ledger) -> None:
    """Drop the ledger, and what only clusters needed once none is left; call under state_lock."""
    ledger.path.unlink(missing_ok=True)
    if any(STATE_DIR.glob("*.json")):
        return
    if NETNS_DIR_MARK.exists() and NETNS_DIR.is_dir() and not any(NETNS_DIR.iterdir()):
        if _is_mount_point(NETNS_DIR):
            run(["umount", "-n", str(NETNS_DIR)])
        NETNS_DIR.rmdir()
    if NETNS_DIR_MARK.exists() and not NETNS_DIR.exists():
        NETNS_DIR_MARK.unlink()
    with contextlib.suppress(OSError):
        STATE_DIR.rmdir()


def run(argv: list[str], *, stdin: str | None = None) -> str:
    """Run a tool (from TOOL_PATH) to completion: its stdout, or ClusterError with its stderr."""
    return finish(start(argv, stdin=stdin))


def start(argv: list[str], *, stdin: str | None = None) -> tuple[subprocess.Popen[str], str | None]:
    process = subprocess.Popen(
        argv, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env={"PATH": TOOL_PATH, "LANG": "C.UTF-8"},
    )
    return process, stdin


def finish(started: tuple[subprocess.Popen[str], str | None]) -> str:
    process, stdin = started
    stdout, stderr = process.communicate(stdin, timeout=TOOL_TIMEOUT_S)
    if process.returncode != 0:
        raise ClusterError(f"{' '.join(process.args)} exited with status {process.returncode}: {stderr.strip()}")
    return stdout


def _is_mount_point(path: Path) -> bool:
    with open("/proc/self/mountinfo") as mounts:
        return any(line.split()[4] == str(path) for line in mounts)


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _uid(name: str) -> int:
    return pwd.getpwnam(name).pw_uid
