"""Sending a snapshot to the nodes: each node is asked which blobs it lacks, and gets only those.

A remote node is reached over the SSH connection its session already holds, one exec channel per
step (as the agent payload is installed): `query` lists what is missing (or says the snapshot is
complete, the one round trip an unchanged tree costs), `receive` takes the manifest and the
missing blobs as one stream, checks each blob's digest and renames the finished snapshot into
place. A node on this machine uses the same cache format in the local cache folder, filled by
copying. Nodes are served in parallel; the bytes sent are reported as they go.
"""

from __future__ import annotations

import json
import os
import shlex
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Protocol, TypeVar

from patas.broker.ship import receiver
from patas.broker.ship.snapshot import ShipError, ShippedFile, Snapshot
from patas.common.byte_sizes import size_text
from patas.common.wording import plural

if TYPE_CHECKING:
    import paramiko

REMOTE_CACHE = ".cache/patas"  # under the node's home, beside the agent payloads
SEND_CHUNK_BYTES = 1 << 18
PROGRESS_INTERVAL_S = 0.5
SHIP_TIMEOUT_S = 3600.0
MAX_PARALLEL_SHIPS = 32
_Result = TypeVar("_Result")


def local_cache() -> Path:
    """This machine's cache: $PATAS_CACHE, else $XDG_CACHE_HOME/patas, else ~/.cache/patas."""
    if os.environ.get("PATAS_CACHE"):
        return Path(os.environ["PATAS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "patas"


@dataclass(frozen=True)
class Delivery:
    """What one node got: where its copy is, and what had to be sent for it."""

    node_name: str
    root: str  # the snapshot's folder on the node
    blobs_sent: int
    bytes_sent: int

    def describe(self, snapshot: Snapshot) -> str:
        if not self.blobs_sent:
            return f"code {snapshot.digest[:12]} already there ({plural(len(snapshot.files), 'file')})"
        return (
            f"code {snapshot.digest[:12]}: sent {self.blobs_sent} of {plural(len(snapshot.files), 'file')}"
            f" ({size_text(self.bytes_sent)})"
        )


@dataclass(frozen=True)
class Undelivered:
    """A node the code could not reach, and why: the run goes on without it."""

    node_name: str
    error: str  # the ShipError's message

    @property
    def reason(self) -> str:
        """The error without the node's name in front (most name it)."""
        return self.error.removeprefix(f"{self.node_name}: ")


class ShipObserver(Protocol):
    def shipping(self, sent_bytes: int, total_bytes: int) -> None:
        """Called at most every PROGRESS_INTERVAL_S while blobs are being sent."""

    def shipped(self, delivery: Delivery, snapshot: Snapshot) -> None: ...

    def undelivered(self, failure: Undelivered) -> None: ...


class _Unreported:
    """A ship observer that shows nothing: where progress is not shown, or a node joining a run
    that is reported once, when its agent is ready."""

    def shipping(self, sent_bytes: int, total_bytes: int) -> None:
        pass

    def shipped(self, delivery: Delivery, snapshot: Snapshot) -> None:
        pass

    def undelivered(self, failure: Undelivered) -> None:
        pass


UNREPORTED: ShipObserver = _Unreported()


class Target(Protocol):
    """Where one node keeps its cache, and how to reach it."""

    name: str

    def lacking(self, snapshot: Snapshot) -> list[ShippedFile] | None:
        """The blobs the node lacks, or None when it has the whole snapshot."""

    def send(self, snapshot: Snapshot, blobs: list[ShippedFile], progress: "_Progress") -> None:
        """Send these blobs and build the snapshot from them and those the node has."""

    def root(self, snapshot: Snapshot) -> str:
        """The snapshot's folder on the node."""


def deliver(snapshot: Snapshot, targets: list[Target], observer: ShipObserver) -> list[Delivery | Undelivered]:
    """Make the snapshot complete on every target, sending only the blobs each lacks; per target,
    in their order, what it got or why it got nothing (a node that fails leaves the others be)."""
    wanted = _in_parallel(lambda t: _or_undelivered(t, lambda: t.lacking(snapshot)), targets)
    total = sum(sum(f.size for f in blobs) for blobs in wanted if isinstance(blobs, list))
    progress = _Progress(total, observer)
    lacking = {id(t): blobs for t, blobs in zip(targets, wanted)}

    def one(target: Target) -> Delivery | Undelivered:
        blobs = lacking[id(target)]
        if isinstance(blobs, Undelivered):
            return blobs
        if blobs is None:  # complete there already: not even the manifest is sent
            return Delivery(target.name, target.root(snapshot), 0, 0)
        sent = _or_undelivered(target, lambda: target.send(snapshot, blobs, progress))
        if isinstance(sent, Undelivered):
            return sent
        return Delivery(target.name, target.root(snapshot), len(blobs), sum(f.size for f in blobs))

    results = _in_parallel(one, targets)
    for result in results:
        if isinstance(result, Undelivered):
            observer.undelivered(result)
        else:
            observer.shipped(result, snapshot)
    return results


def _or_undelivered(target: Target, action: Callable[[], _Result]) -> _Result | Undelivered:
    try:
        return action()
    except SourceError:
        raise
    except ShipError as error:
        return Undelivered(target.name, str(error))


def _in_parallel(work: Callable[[Target], _Result], targets: list[Target]) -> list[_Result]:
    if len(targets) == 1:
        return [work(targets[0])]
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_SHIPS, len(targets))) as pool:
        return list(pool.map(work, targets))


def unique_blobs(snapshot: Snapshot) -> list[ShippedFile]:
    """One file per blob (two files with the same content and mode are one blob)."""
    return list({f.blob: f for f in snapshot.files}.values())


class _Progress:
    """Bytes sent across all nodes, reported to the observer now and then (from any thread)."""

    def __init__(self, total: int, observer: ShipObserver) -> None:
        self.total = total
        self.sent = 0
        self._observer = observer
        self._lock = threading.Lock()
        self._last = 0.0

    def add(self, count: int) -> None:
        with self._lock:
            self.sent += count
            now = time.monotonic()
            if now - self._last < PROGRESS_INTERVAL_S and self.sent < self.total:
                return
            self._last = now
        self._observer.shipping(self.sent, self.total)


# --- this machine ---------------------------------------------------------------------------


class LocalTarget:
    """A node on this machine: the local cache, filled by copying."""

    def __init__(self, name: str, cache: Path | None = None) -> None:
        self.name = name
        self.cache = str(cache or local_cache())

    def lacking(self, snapshot: Snapshot) -> list[ShippedFile] | None:
        blobs = unique_blobs(snapshot)
        missing = receiver.missing(self.cache, snapshot.digest, [f.blob for f in blobs])
        if missing is None:
            return None
        lacked = set(missing)
        return [f for f in blobs if f.blob in lacked]

    def root(self, snapshot: Snapshot) -> str:
        return receiver.snapshot_path(self.cache, snapshot.digest)

    def send(self, snapshot: Snapshot, blobs: list[ShippedFile], progress: _Progress) -> None:
        try:
            for shipped in blobs:
                with open(snapshot.source(shipped), "rb") as source:
                    receiver.store_blob(self.cache, shipped.blob, shipped.size, _counting(source.read, progress))
            receiver.materialise(self.cache, snapshot.digest, _manifest(snapshot))
        except receiver.BlobChanged as error:
            raise _changed(snapshot, str(error)) from None
        except OSError as error:
            raise ShipError(f"cannot keep the code in {self.cache}: {error.strerror or error}") from None


def _counting(read: Callable[[int], bytes], progress: _Progress) -> Callable[[int], bytes]:
    def counted(size: int) -> bytes:
        chunk: bytes = read(size)
        progress.add(len(chunk))
        return chunk

    return counted


def _manifest(snapshot: Snapshot) -> dict[str, list[list[object]]]:
    manifest: dict[str, list[list[object]]] = json.loads(snapshot.manifest)
    return manifest


class SourceError(ShipError):
    """The code to ship changed here, or cannot be read: no node can take it, so it fails the
    run rather than a node."""


def _changed(snapshot: Snapshot, blob: str) -> SourceError:
    names = [f.path for f in snapshot.files if f.blob == blob.strip()]
    shown = names[0] if names else blob
    return SourceError(f"--ship: {shown} changed while it was being shipped (run again once it is written)")


# --- over SSH -------------------------------------------------------------------------------


class SSHTarget:
    """A node reached over an open SSH connection (paramiko client) whose home folder is known."""

    def __init__(self, name: str, client: "paramiko.SSHClient", home: str) -> None:
        self.name = name
        self.client = client
        self.cache = f"{home}/{REMOTE_CACHE}"

    def lacking(self, snapshot: Snapshot) -> list[ShippedFile] | None:
        blobs = unique_blobs(snapshot)
        names = "".join(f.blob + "\n" for f in blobs).encode()
        code, out, err = self._exec("query", snapshot.digest, [names])
        if code != 0:
            raise self._failure(code, err, snapshot)
        if out.strip() == "complete":
            return None
        missing = set(out.split())
        return [f for f in blobs if f.blob in missing]

    def root(self, snapshot: Snapshot) -> str:
        return receiver.snapshot_path(self.cache, snapshot.digest)

    def send(self, snapshot: Snapshot, blobs: list[ShippedFile], progress: _Progress) -> None:
        code, _, err = self._exec("receive", snapshot.digest, _stream(snapshot, snapshot.manifest, blobs, progress))
        if code != 0:
            raise self._failure(code, err, snapshot)

    def _exec(self, command: str, digest: str, chunks: Iterable[bytes]) -> tuple[int, str, str]:
        import paramiko

        words = " ".join(shlex.quote(w) for w in (command, self.cache, digest))
        line = f"python3 -c {shlex.quote(_SOURCE)} {words}"
        try:
            channel = self.client.get_transport().open_session()
        except (paramiko.SSHException, OSError) as error:
            raise ShipError(f"{self.name}: lost the SSH connection while shipping the code: {error}") from None
        try:
            channel.settimeout(SHIP_TIMEOUT_S)
            channel.exec_command(line)
            try:
                for chunk in chunks:
                    channel.sendall(chunk)
                channel.shutdown_write()
            except OSError:
                pass  # it stopped reading (a full disk?): its status and stderr say why
            out = channel.makefile("rb").read().decode(errors="replace")
            err = channel.makefile_stderr("rb").read().decode(errors="replace")
            return channel.recv_exit_status(), out, err
        except (paramiko.SSHException, OSError) as error:
            raise ShipError(f"{self.name}: lost the SSH connection while shipping the code: {error}") from None
        finally:
            channel.close()

    def _failure(self, code: int, err: str, snapshot: Snapshot) -> ShipError:
        lines = [line for line in err.strip().splitlines() if line.strip()]
        last = lines[-1] if lines else "no message"
        if code == receiver.DISK_FULL_STATUS:
            free = f"{int(last) // 1024} KiB free" if last.isdigit() else "no space left"
            return ShipError(f"{self.name}: disk full while shipping the code ({free} in ~/{REMOTE_CACHE}; free space there)")
        if code == receiver.CHANGED_STATUS:
            return _changed(snapshot, last.split()[-1])
        if code == 127:
            return ShipError(f"{self.name}: no python3 on its PATH to receive the code")
        return ShipError(f"{self.name}: cannot keep the code in ~/{REMOTE_CACHE}: {last}")


def _stream(snapshot: Snapshot, manifest: bytes, blobs: list[ShippedFile], progress: _Progress) -> Iterator[bytes]:
    yield b"%d\n" % len(manifest) + manifest
    for shipped in blobs:
        yield f"{shipped.blob} {shipped.size}\n".encode()
        left = shipped.size
        try:
            with open(snapshot.source(shipped), "rb") as source:
                while left:
                    chunk = source.read(min(left, SEND_CHUNK_BYTES))
                    if not chunk:
                        break
                    left -= len(chunk)
                    progress.add(len(chunk))
                    yield chunk
        except OSError as error:
            raise SourceError(f"--ship: cannot read {shipped.path}: {error.strerror}") from None
        if left:
            raise _changed(snapshot, shipped.blob)


_SOURCE = Path(receiver.__file__).read_text()
