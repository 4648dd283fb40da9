"""A remote node reached over SSH: probe it, ship the agent to it, start the agent.

Everything runs through one SSH connection per node, one command per channel (`exec`), with
exit statuses read from SSH, never scraped from a terminal:

1. probe: `python3 -c ...` reports the Python version, platform, core count, home folder, whether
   pyzmq and msgpack are importable, and which agent payloads are cached;
2. install (first time only): the payload is streamed into `python3 -c ...` on an exec channel
   (no SFTP: hardened login nodes often have no SFTP subsystem), which checks its size and
   digest and unpacks it into `~/.cache/patas/agent-<digest>/`, atomically; a full disk is
   reported as such, with the free space;
3. start: `python3 -m patas.agent` from the cache, its configuration (with its secret key) written
   to the channel's stdin, which then stays open as the agent's lifeline.
"""

from __future__ import annotations

import collections
import hashlib
import json
import shlex
import threading
from dataclasses import dataclass

import paramiko

from patas.broker.ssh.agent_payload import MissingDependencies, Payload, Platform, payload_for
from patas.broker.local.session import LOOPBACK, STOP_TIMEOUT_S
from patas.broker.ssh.connect import connect, resolve
from patas.broker.ssh.options import NodeError, SSHOptions
from patas.broker.ssh.tunnel import ReverseTunnel
from patas.common.agent_config import AgentConfig
from patas.common.config import Node

MIN_PYTHON = (3, 9)
COMMAND_TIMEOUT_S = 60.0
CACHE_DIR = ".cache/patas"
STDERR_LINES_KEPT = 20
# The exit status of the receiving scripts when the node's disk is full (ENOSPC's number).
DISK_FULL_STATUS = 28

# Runs on any python3, even one too old for the agent, so that it can say which version it is.
_PROBE = r"""
import json, os, platform, sys, sysconfig
cache = os.path.join(os.path.expanduser("~"), sys.argv[1])
try:
    cached = [n for n in os.listdir(cache) if os.path.exists(os.path.join(cache, n, ".complete"))]
except OSError:
    cached = []
try:
    import msgpack, zmq
    deps = zmq.pyzmq_version_info() >= (22,) and msgpack.version >= (1, 0) and zmq.has("curve")
except Exception:
    deps = False
sys.stdout.write(json.dumps({"python": list(sys.version_info[:3]), "abi": sysconfig.get_config_var("SOABI") or "",
    "system": platform.system(), "machine": platform.machine(), "libc": " ".join(platform.libc_ver()),
    "cpus": os.cpu_count() or 1,
    "home": os.path.expanduser("~"), "deps": deps, "cached": cached}) + "\n")
"""

# Receives a file on stdin into a temporary name beside `path`, checks its size and digest, and
# reports a full disk (exit DISK_FULL_STATUS, free bytes on stderr) rather than a traceback.
_RECEIVE = r"""
import errno, hashlib, os, shutil, sys
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
def receive(path, size, digest, mode):
    folder = os.path.dirname(path)
    temporary = "%s.tmp%d" % (path, os.getpid())
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        check, got = hashlib.sha256(), 0
        with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as out:
            while True:
                chunk = sys.stdin.buffer.read(1 << 16)
                if not chunk:
                    break
                check.update(chunk)
                got += len(chunk)
                out.write(chunk)
        if got != size or check.hexdigest() != digest:
            sys.stderr.write("received %d of %d bytes, or not the bytes sent\n" % (got, size))
            sys.exit(3)
        return temporary
    except OSError as error:
        cleanup(temporary)
        full(error, folder)
        raise
def cleanup(*paths):
    for path in paths:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.remove(path)
def full(error, folder):
    if error.errno in DISK_FULL:
        while not os.path.isdir(folder):
            folder = os.path.dirname(folder)
        free = os.statvfs(folder)
        sys.stderr.write("%d\n" % (free.f_bavail * free.f_frsize))
        sys.exit(DISK_FULL_STATUS)
""".replace("DISK_FULL_STATUS", str(DISK_FULL_STATUS))

# Unpacks the received payload into its final folder in one rename, so a half-unpacked folder is
# never used; a concurrent install of the same payload is harmless.
_INSTALL = _RECEIVE + r"""
import tarfile
cache, name, size, digest = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
final = os.path.join(cache, name)
upload = receive(final + ".tar.gz", size, digest, 0o600)
temporary = "%s.tmp%d" % (final, os.getpid())
try:
    with tarfile.open(upload) as tar:
        tar.extractall(temporary)
    open(os.path.join(temporary, ".complete"), "w").close()
    if not os.path.exists(final):
        os.rename(temporary, final)
except OSError as error:
    cleanup(temporary)
    full(error, cache)
    raise
finally:
    cleanup(upload, temporary)
"""

# Writes a private file (mode 0600 from the start: it may hold a secret), atomically.
_WRITE_PRIVATE = _RECEIVE + r"""
path, size, digest = sys.argv[1], int(sys.argv[2]), sys.argv[3]
os.rename(receive(path, size, digest, 0o600), path)
"""
@dataclass(frozen=True)
class NodeFacts:
    python: tuple[int, ...]
    platform: Platform
    cpus: int
    home: str
    has_dependencies: bool
    cached: tuple[str, ...]


class SSHSession:
    """An open connection to a node, ready to start its agent."""

    def __init__(self, node: Node, options: SSHOptions) -> None:
        self.node = node
        self.options = options
        target = resolve(node, options)
        self.client, self._jumps = connect(target, options)
        try:
            facts = self._probe()
            self.payload = self._install(facts)
        except BaseException:
            self.close()
            raise
        self.home = facts.home
        self.slots = node.default_workers(facts.cpus)
        # Through a jump host the node can rarely reach us directly: tunnel by default then.
        self.tunnel = options.tunnel or bool(self._jumps)
        local_address = None if self.tunnel else self.client.get_transport().sock.getsockname()[0]
        self.listen_host = options.bind_host or (LOOPBACK if self.tunnel else local_address)
        self._advertise = options.advertise_host or local_address
        self._tunnel: ReverseTunnel | None = None

    # --- bootstrap --------------------------------------------------------------------------

    def _probe(self) -> NodeFacts:
        code, out, err = self._run(f"python3 -c {shlex.quote(_PROBE)} {CACHE_DIR}")
        if code == 127:
            raise NodeError("no python3 on its PATH (install Python >= 3.9 on the node)")
        if code != 0:
            raise NodeError(f"python3 failed to run: {_last_line(err)}")
        try:
            data = json.loads(out)
        except ValueError:
            raise NodeError(f"unexpected answer from python3: {_last_line(out)}") from None
        python = tuple(data["python"])
        if python < MIN_PYTHON:
            found, needed = ".".join(map(str, python[:2])), ".".join(map(str, MIN_PYTHON))
            raise NodeError(f"python3 is {found}; the agent needs >= {needed} (install a newer Python on the node)")
        return NodeFacts(
            python, Platform(data["abi"], data["system"], data["machine"], data.get("libc", "")), int(data["cpus"]), data["home"],
            bool(data["deps"]), tuple(data["cached"]),
        )  # fmt: skip

    def _install(self, facts: NodeFacts) -> Payload:
        try:
            payload = payload_for(facts.platform, facts.has_dependencies)
        except MissingDependencies as error:
            raise NodeError(str(error)) from None
        if payload.directory_name in facts.cached:
            return payload
        cache = f"{facts.home}/{CACHE_DIR}"
        archive = payload.archive
        code, err = self._send(_INSTALL, [cache, payload.directory_name], archive)
        if code == DISK_FULL_STATUS:
            raise NodeError(_disk_full(f"~/{CACHE_DIR}", err))
        if code != 0:
            raise NodeError(f"cannot install the agent in {cache}: {_last_line(err)}")
        return payload

    def _send(self, script: str, arguments: list[str], data: bytes) -> tuple[int, str]:
        """Run a receiving `script` with `data` on its stdin (and its size and digest after
        `arguments`); return its exit status and stderr."""
        words = [*arguments, str(len(data)), hashlib.sha256(data).hexdigest()]
        command = f"python3 -c {shlex.quote(script)} {' '.join(shlex.quote(w) for w in words)}"
        try:
            stdin, stdout, stderr = self.client.exec_command(command, timeout=COMMAND_TIMEOUT_S)
            try:
                stdin.write(data)
                stdin.flush()
                stdin.channel.shutdown_write()
            except OSError:
                pass  # it stopped reading (a full disk?): its status and stderr say why
            err = stderr.read().decode(errors="replace")
            stdout.read()
            return stdout.channel.recv_exit_status(), err
        except (paramiko.SSHException, OSError) as error:
            raise NodeError(f"lost the SSH connection: {error}") from None

    def _run(self, command: str) -> tuple[int, str, str]:
        try:
            _, stdout, stderr = self.client.exec_command(command, timeout=COMMAND_TIMEOUT_S)
            out, err = stdout.read().decode(errors="replace"), stderr.read().decode(errors="replace")
            return stdout.channel.recv_exit_status(), out, err
        except (paramiko.SSHException, OSError) as error:
            raise NodeError(f"lost the SSH connection: {error}") from None

    # --- the agent --------------------------------------------------------------------------

    def agent_endpoint(self, broker_port: int) -> str:
        if self.tunnel:
            self._tunnel = ReverseTunnel(self.client.get_transport(), LOOPBACK, broker_port)
            return f"tcp://{LOOPBACK}:{self._tunnel.remote_port}"
        return f"tcp://{self._advertise}:{broker_port}"

    def start_agent(self, config: AgentConfig) -> "SSHAgent":
        directory = f"{self.home}/{CACHE_DIR}/{self.payload.directory_name}"
        command = f"cd && PYTHONPATH={shlex.quote(directory)} exec python3 -m patas.agent"
        try:
            channel = self.client.get_transport().open_session()
            channel.exec_command(command)
            channel.sendall(config.to_line())  # secrets go over the encrypted channel, never in argv
        except (paramiko.SSHException, OSError) as error:
            raise NodeError(f"cannot start the agent: {error}") from None
        return SSHAgent(channel)

    def start_detached_agent(self, config: AgentConfig, folder: str) -> None:
        """Start an agent that outlives this SSH session (a pool agent), its configuration in a
        file only the node's user can read, under ~/.cache/patas/<folder>/."""
        directory = f"{self.home}/{CACHE_DIR}/{folder}"
        path = f"{directory}/{config.agent_id}.json"
        code, _, err = self._run(f"mkdir -p -m 700 {shlex.quote(directory)}")
        if code != 0:
            raise NodeError(f"cannot create {directory}: {_last_line(err)}")
        code, err = self._send(_WRITE_PRIVATE, [path], config.to_line())
        if code == DISK_FULL_STATUS:
            raise NodeError(_disk_full(f"~/{CACHE_DIR}/{folder}", err))
        if code != 0:
            raise NodeError(f"cannot write {path}: {_last_line(err)}")
        agent_path = f"{self.home}/{CACHE_DIR}/{self.payload.directory_name}"
        log = f"{directory}/{config.agent_id}.log"
        # `setsid -f` forks into a new session and returns at once, so the channel closes; a
        # backgrounded `... &` would keep the channel's pipes open in the waiting subshell.
        command = (
            f"cd && PYTHONPATH={shlex.quote(agent_path)} exec setsid -f python3 -m patas.agent --config"
            f" {shlex.quote(path)} >>{shlex.quote(log)} 2>&1 </dev/null"
        )
        code, _, err = self._run(command)
        if code != 0:
            raise NodeError(f"cannot start the pool agent: {_last_line(err)}")

    def close(self) -> None:
        if getattr(self, "_tunnel", None) is not None:
            self._tunnel.close()
        self.client.close()
        for jump in reversed(self._jumps):
            jump.close()


class SSHAgent:
    """An agent running in an SSH channel; its stderr is drained so it never blocks on it."""

    def __init__(self, channel: paramiko.Channel) -> None:
        self.channel = channel
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES_KEPT)
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()

    def _read_stderr(self) -> None:
        stream = self.channel.makefile_stderr("rb")
        for line in stream:
            self._stderr.append(line.decode(errors="replace").rstrip())

    def exit_code(self) -> int | None:
        if self.channel.exit_status_ready():
            return self.channel.recv_exit_status()
        if self.channel.closed:
            return -1
        return None

    def failure(self) -> str:
        self._drain.join(1.0)
        last = self._stderr[-1] if self._stderr else "no message"
        return f"agent exited with status {self.exit_code()}: {last}"

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        try:
            self.channel.shutdown_write()  # end of file on the agent's stdin: it stops
        except (OSError, EOFError, paramiko.SSHException):
            pass
        self.channel.status_event.wait(timeout_s)
        self.channel.close()


def _disk_full(folder: str, err: str) -> str:
    free = _last_line(err)
    left = f"{int(free) // 1024} KiB free in {folder}" if free.isdigit() else f"no space left in {folder}"
    return f"disk full ({left}; free space there, or on the filesystem that holds it)"


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"
