"""A remote node reached over SSH: probe it, ship the agent to it, start the agent.

Everything runs through one SSH connection per node, one command per channel (`exec`), with
exit statuses read from SSH, never scraped from a terminal:

1. probe: `python3 -c ...` reports the Python version, platform, core count, home folder, whether
   pyzmq and msgpack are importable, and which agent payloads are cached;
2. install (first time only): the payload goes over SFTP and is unpacked into
   `~/.cache/patas/agent-<digest>/`, atomically;
3. start: `python3 -m patas.agent` from the cache, its configuration (with its secret key) written
   to the channel's stdin, which then stays open as the agent's lifeline.
"""

from __future__ import annotations

import collections
import io
import json
import shlex
import threading
import time
from dataclasses import dataclass

import paramiko

from patas.broker.agent_payload import MissingDependencies, Payload, Platform, payload_for
from patas.broker.launcher import LOOPBACK, STOP_TIMEOUT_S
from patas.broker.ssh_connect import connect, resolve
from patas.broker.ssh_options import NodeError, SSHOptions
from patas.broker.ssh_tunnel import ReverseTunnel
from patas.common.agent_config import AgentConfig
from patas.common.config import Node

MIN_PYTHON = (3, 9)
COMMAND_TIMEOUT_S = 60.0
CACHE_DIR = ".cache/patas"
STDERR_LINES_KEPT = 20

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

# Unpacks the uploaded payload into its final folder in one rename, so a half-unpacked folder is
# never used; a concurrent install of the same payload is harmless.
_INSTALL = r"""
import os, shutil, sys, tarfile
cache, name, upload = sys.argv[1:4]
final = os.path.join(cache, name)
temporary = final + ".tmp%d" % os.getpid()
with tarfile.open(upload) as tar:
    tar.extractall(temporary)
open(os.path.join(temporary, ".complete"), "w").close()
try:
    os.rename(temporary, final)
except OSError:
    shutil.rmtree(temporary)
os.remove(upload)
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
        self.slots = node.workers or facts.cpus
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
        upload = f"{cache}/.upload-{payload.digest}-{time.time_ns()}.tar.gz"
        code, _, err = self._run(f"mkdir -p {shlex.quote(cache)}")
        if code != 0:
            raise NodeError(f"cannot create {cache}: {_last_line(err)}")
        try:
            with self.client.open_sftp() as sftp:
                sftp.putfo(io.BytesIO(payload.archive), upload)
        except (OSError, paramiko.SSHException) as error:
            raise NodeError(f"cannot upload the agent to {cache}: {error}") from None
        arguments = " ".join(shlex.quote(a) for a in (cache, payload.directory_name, upload))
        code, _, err = self._run(f"python3 -c {shlex.quote(_INSTALL)} {arguments}")
        if code != 0:
            raise NodeError(f"cannot unpack the agent in {cache}: {_last_line(err)}")
        return payload

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
        try:
            with self.client.open_sftp() as sftp:
                with sftp.open(path, "w") as stream:
                    stream.chmod(0o600)  # before the secret is written
                    stream.write(config.to_line())
        except (OSError, paramiko.SSHException) as error:
            raise NodeError(f"cannot write {path}: {error}") from None
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


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"
