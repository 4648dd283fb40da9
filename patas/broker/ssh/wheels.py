"""pyzmq for a node whose Python is not ours: the wheel built for its platform, fetched with pip.

pyzmq has compiled parts, so the copy installed here only works on a node with the same Python
ABI, OS and machine. For another Linux node (say Python 3.10 where we run 3.11), patas asks pip
for the pyzmq wheel of the same version built for that node's Python, machine and glibc, unpacks
it once into ~/.cache/patas/wheels/, and ships that. msgpack needs nothing of the kind: where its
compiled part does not fit, it falls back to its pure-Python implementation.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PIP_TIMEOUT_S = 120.0
_ABI = re.compile(r"cpython-(\d)(\d+)")
_GLIBC = re.compile(r"glibc (\d+)\.(\d+)")
# The oldest manylinux a wheel may claim; pip is given every tag from it up to the node's glibc.
OLDEST_GLIBC_MINOR = 17


class WheelError(Exception):
    """No pyzmq build can be had for that node; the message says why."""


def wheel_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "patas" / "wheels"


def pyzmq_for(abi: str, system: str, machine: str, libc: str) -> Path:
    """A folder holding `zmq/` (and its bundled libraries) built for that node's platform."""
    import zmq

    version = zmq.pyzmq_version()
    python, glibc = _python_of(abi), _glibc_of(system, libc)
    folder = wheel_cache() / f"pyzmq-{version}-cp{python.replace('.', '')}-{machine}-glibc{glibc[0]}.{glibc[1]}"
    if (folder / ".complete").exists():
        return folder
    with tempfile.TemporaryDirectory(prefix="patas-wheel-") as download:
        command = [
            sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--no-deps",
            "--dest", download, "--python-version", python, "--implementation", "cp",
            "--abi", f"cp{python.replace('.', '')}", *_platform_flags(machine, glibc), f"pyzmq=={version}",
        ]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise WheelError(f"pip took over {PIP_TIMEOUT_S:.0f} s to fetch pyzmq {version} for it") from None
        wheels = list(Path(download).glob("pyzmq-*.whl"))
        if done.returncode != 0 or not wheels:
            last = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise WheelError(f"pip could not fetch pyzmq {version} for Python {python} on {machine} ({last})")
        _unpack(wheels[0], folder)
    return folder


def _python_of(abi: str) -> str:
    match = _ABI.match(abi)
    if match is None:
        raise WheelError(f"its Python ({abi or 'unknown ABI'}) is not CPython")
    return f"{match.group(1)}.{match.group(2)}"


def _glibc_of(system: str, libc: str) -> tuple[int, int]:
    match = _GLIBC.match(libc)
    if system != "Linux" or match is None:
        raise WheelError(f"its system ({system}, {libc or 'unknown libc'}) is not Linux with glibc")
    return int(match.group(1)), int(match.group(2))


def _platform_flags(machine: str, glibc: tuple[int, int]) -> list[str]:
    flags = []
    for minor in range(glibc[1], OLDEST_GLIBC_MINOR - 1, -1):
        flags += ["--platform", f"manylinux_{glibc[0]}_{minor}_{machine}"]
    return flags + ["--platform", f"manylinux2014_{machine}"]


def _unpack(wheel: Path, folder: Path) -> None:
    """Unpack the wheel's packages into `folder` in one rename (a half-unpacked one is never used)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(temporary)
    (temporary / ".complete").touch()
    try:
        temporary.rename(folder)
    except OSError:
        shutil.rmtree(temporary)  # another run unpacked it meanwhile
