"""A pool's state on the coordinator: where its daemon listens, its keys, its agents.

    ~/.local/share/patas/pools/<name>/      (0700; $PATAS_POOLS overrides the parent folder)
        pool.json          bind hosts and port, so agents find the daemon again after a restart
        server.key         the daemon's CURVE key pair (0600)
        agents.json        the public key and node of every agent allowed in (0600)
        nodes.json         how to reach each agent's node over SSH (host, user, port, key), so
                           that a run on the pool can ship code to it (--ship)
        control.sock       the daemon's local control socket (only the owner can reach it)
        daemon.pid, daemon.log
        agents/<id>.json   configurations of agents started on this machine (0600)
        slurm.json         the Slurm job of each agent `pool up --slurm` submitted, by agent id
        slurm/<job>.out    those jobs' output (the agents' own messages)
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import zmq

from patas.common.agent_config import CurveKeys
from patas.common.config import Node
from patas.common.errors import ConfigError
from patas.common.lab import write_atomically

_NAME = re.compile(r"[A-Za-z0-9_.-]+\Z")


@dataclass
class AllowedAgent:
    public_key: str
    node_name: str


@dataclass
class PoolSettings:
    bind_hosts: list[str] = field(default_factory=list)
    port: int = 0


class PoolState:
    def __init__(self, name: str) -> None:
        if not _NAME.match(name):
            raise ConfigError(f"pool name '{name}' must be letters, digits, _, - or .")
        self.name = name
        self.path = pools_root() / name

    @property
    def control_address(self) -> str:
        return f"ipc://{self.path / 'control.sock'}"

    @property
    def pid_path(self) -> Path:
        return self.path / "daemon.pid"

    @property
    def log_path(self) -> Path:
        return self.path / "daemon.log"

    def exists(self) -> bool:
        return (self.path / "server.key").exists()

    def create(self) -> None:
        """Make the folder and the daemon's key pair, once."""
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)
        if not self.exists():
            public, secret = zmq.curve_keypair()
            _write_private(self.path / "server.key", {"public": public.decode(), "secret": secret.decode()})
            self.save_settings(PoolSettings())
            self.save_agents({})

    def server_keys(self) -> tuple[str, str]:
        data = _read(self.path / "server.key", self.name)
        return data["public"], data["secret"]

    def settings(self) -> PoolSettings:
        return PoolSettings(**_read(self.path / "pool.json", self.name))

    def save_settings(self, settings: PoolSettings) -> None:
        write_atomically(self.path / "pool.json", json.dumps(asdict(settings)).encode())

    def agents(self) -> dict[str, AllowedAgent]:
        return {agent: AllowedAgent(**row) for agent, row in _read(self.path / "agents.json", self.name).items()}

    def save_agents(self, agents: dict[str, AllowedAgent]) -> None:
        _write_private(self.path / "agents.json", {agent: asdict(row) for agent, row in agents.items()})

    def issue(self, agent_id: str, node_name: str) -> CurveKeys:
        """A new key pair for an agent, allowed from now on (replacing any earlier one)."""
        public, secret = zmq.curve_keypair()
        agents = self.agents()
        agents[agent_id] = AllowedAgent(public.decode(), node_name)
        self.save_agents(agents)
        return CurveKeys(self.server_keys()[0], public.decode(), secret.decode())

    @property
    def slurm_jobs_path(self) -> Path:
        return self.path / "slurm.json"

    def slurm_jobs(self) -> dict[str, str]:
        """Agent id → the Slurm job it runs in, for the agents `pool up --slurm` submitted."""
        try:
            return json.loads(self.slurm_jobs_path.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def record_slurm_job(self, job_id: str, agent_ids: list[str]) -> None:
        jobs = self.slurm_jobs()
        jobs.update({agent_id: job_id for agent_id in agent_ids})
        write_atomically(self.slurm_jobs_path, json.dumps(jobs).encode())
    def save_node(self, agent_id: str, node: Node) -> None:
        nodes = self.nodes()
        nodes[agent_id] = node
        _write_private(self.path / "nodes.json", {a: {**asdict(n), "tags": list(n.tags)} for a, n in nodes.items()})

    def nodes(self) -> dict[str, Node]:
        """The nodes of the pool's agents, by agent id (empty for a pool started before patas kept them)."""
        path = self.path / "nodes.json"
        if not path.exists():
            return {}
        return {agent: Node(**{**row, "tags": tuple(row["tags"])}) for agent, row in _read(path, self.name).items()}

    def revoke(self, agent_id: str) -> bool:
        agents = self.agents()
        if agents.pop(agent_id, None) is None:
            return False
        self.save_agents(agents)
        return True


def pools_root() -> Path:
    return Path(os.environ.get("PATAS_POOLS") or Path.home() / ".local/share/patas/pools")


def write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read, atomically (it holds a secret)."""
    temporary = path.with_name(f".{path.name}.tmp")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(temporary, path)


def _write_private(path: Path, data: dict) -> None:
    write_private(path, json.dumps(data, indent=1).encode())


def _read(path: Path, name: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no pool named '{name}' (start it with `patas pool up --name {name} ...`)") from None
    except ValueError as error:
        raise ConfigError(f"{path}: unreadable ({error}); remove the pool folder and start it again") from None
