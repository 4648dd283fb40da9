"""What is shipped to a node so it can run an agent: patas's agent code, plus pyzmq and msgpack
when the node's Python lacks them.

The payload is a gzipped tar named by a digest of its contents, unpacked on the node into
`~/.cache/patas/agent-<digest>/`: a node that has the same payload from an earlier run reuses it
and nothing is sent. pyzmq has compiled parts: a node with our Python ABI, OS and machine gets
the copy installed here, another Linux node the wheel built for it (patas.broker.ssh.wheels).
"""

from __future__ import annotations

import hashlib
import io
import sysconfig
import tarfile
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from platform import libc_ver, machine, system

import patas
from patas.broker.ssh.wheels import WheelError, pyzmq_for

# The modules an agent imports, relative to the patas package (keep in step with patas/agent).
AGENT_MODULES = (
    "__init__.py",
    "agent/__init__.py",
    "agent/__main__.py",
    "agent/agent.py",
    "agent/allocation.py",
    "agent/command_line.py",
    "agent/supervisor.py",
    "agent/task_files.py",
    "agent/task_process.py",
    "common/__init__.py",
    "common/agent_config.py",
    "common/bounds.py",
    "common/byte_sizes.py",
    "common/collected_files.py",
    "common/errors.py",
    "common/protocol.py",
    "common/wording.py",
)


@dataclass(frozen=True)
class Platform:
    abi: str  # e.g. cpython-311-x86_64-linux-gnu
    system: str
    machine: str
    libc: str = ""  # e.g. "glibc 2.36"


class Payload:
    """The files to ship, named by a digest of their contents; the archive is built only for a
    node that does not have this payload cached yet (most runs need only the name)."""

    def __init__(self, files: list[tuple[str, Path]]) -> None:
        self.files = files
        digest = hashlib.sha256()
        for name, path in files:
            digest.update(name.encode() + b"\0" + path.read_bytes())
        self.digest = digest.hexdigest()[:16]
        self._archive: bytes | None = None
        self._lock = threading.Lock()

    @property
    def directory_name(self) -> str:
        return f"agent-{self.digest}"

    @property
    def archive(self) -> bytes:
        with self._lock:  # nodes are bootstrapped in parallel threads: build it once
            if self._archive is None:
                self._archive = _archive(self.files)
            return self._archive


LOCAL_PLATFORM = Platform(sysconfig.get_config_var("SOABI") or "", system(), machine(), " ".join(libc_ver()))


class MissingDependencies(Exception):
    """The node needs pyzmq and msgpack that patas cannot ship to it."""


_PAYLOADS_LOCK = threading.Lock()


def payload_for(node_platform: Platform, node_has_dependencies: bool) -> Payload:
    """The payload a node with this platform needs (made once per process, even from threads)."""
    with _PAYLOADS_LOCK:
        return _payload_for(node_platform, node_has_dependencies)


@lru_cache(maxsize=None)
def _payload_for(node_platform: Platform, node_has_dependencies: bool) -> Payload:
    files = _agent_files()
    if not node_has_dependencies:
        files += _dependency_files(_zmq_home(node_platform))
    return Payload(files)


def _zmq_home(node_platform: Platform) -> Path:
    """The folder holding a `zmq` package (and its libraries) that runs on that node."""
    if node_platform == LOCAL_PLATFORM:
        import zmq

        return Path(zmq.__file__).parent.parent
    try:
        return pyzmq_for(node_platform.abi, node_platform.system, node_platform.machine, node_platform.libc)
    except WheelError as error:
        raise MissingDependencies(
            f"its Python lacks pyzmq and msgpack, and {error}; install them on the node:"
            " python3 -m pip install --user pyzmq msgpack"
        ) from None


def _agent_files() -> list[tuple[str, Path]]:
    root = Path(patas.__file__).parent
    return [(f"patas/{name}", root / name) for name in AGENT_MODULES]


def _dependency_files(zmq_home: Path) -> list[tuple[str, Path]]:
    # Our msgpack goes everywhere: where its compiled part does not fit, it runs in pure Python.
    import msgpack

    files = []
    for package_dir in _package_dirs(zmq_home / "zmq") + [Path(msgpack.__file__).parent]:
        base = package_dir.parent
        for path in sorted(package_dir.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and not path.name.endswith((".pyi", ".pxd", ".pyx")):
                files.append((str(path.relative_to(base)), path))
    return files


def _package_dirs(zmq_dir: Path) -> list[Path]:
    # pyzmq wheels keep their bundled libzmq in a sibling folder (pyzmq.libs) that zmq loads by path.
    siblings = [zmq_dir.parent / "pyzmq.libs"]
    return [zmq_dir] + [s for s in siblings if s.is_dir()]


def _archive(files: list[tuple[str, Path]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        for name, path in files:
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if path.suffix in (".so", "") or ".so." in path.name else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
