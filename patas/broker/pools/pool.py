"""Long-lived agent pools: start agents once, run sweep after sweep on them.

    pool_up("lab", clusters)         start the pool's daemon (once) and an agent on every node
    pool_status("lab")               the agents, their slots, running tasks and last contact
    pool_drain("lab") / pool_down("lab") / pool_revoke("lab", "node2")

A run borrows the pool's agents through `PoolSession`s (see `patas.broker.pools.daemon` for how the
daemon lends one agent to several runs at once).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass


import zmq

from patas.broker.launch.session import NodeFailure, NodeSession, open_sessions
from patas.broker.local.session import LOOPBACK, LocalSession
from patas.broker.pools.messages import (
    PoolAgentStatus,
    PoolAllow,
    PoolAttach,
    PoolDrain,
    PoolReply,
    PoolRevoke,
    PoolStatus,
    PoolStatusRequest,
    PoolStop,
)
from patas.broker.pools.state import PoolSettings, PoolState, write_private
from patas.broker.slurm.options import SlurmOptions
from patas.broker.ssh.options import NodeError, SSHOptions
from patas.broker.ssh.session import SSHSession
from patas.common import protocol
from patas.common.bounds import bound_socket
from patas.common.agent_config import AgentConfig
from patas.common.config import Cluster, Node
from patas.common.errors import ConfigError, PatasError
from patas.common.protocol import Message

CONTROL_TIMEOUT_S = 10.0
DAEMON_START_TIMEOUT_S = 10.0
AGENTS_READY_TIMEOUT_S = 30.0
# After the daemon (re)starts, how long its known agents get to reconnect before new ones start.
RECONNECT_GRACE_S = 3.0
WAIT_STEP_S = 0.05
POOL_WATCH_INTERVAL_S = 0.5
# A borrowed agent in one of these states is lost to the run (its tasks run elsewhere).
LOST_STATES = frozenset({"lost", "stopped"})


class PoolError(PatasError):
    """A pool cannot be reached or cannot do what was asked."""


class PoolClient:
    """Requests to a running pool daemon over its local control socket."""

    def __init__(self, state: PoolState) -> None:
        self.state = state

    def request(self, message: Message, timeout_s: float = CONTROL_TIMEOUT_S) -> Message:
        context = zmq.Context.instance()
        with context.socket(zmq.DEALER) as control:
            control.setsockopt(zmq.LINGER, 0)
            bound_socket(control)
            control.connect(self.state.control_address)
            control.send_multipart(protocol.encode(message))
            if not control.poll(int(timeout_s * 1000)):
                raise PoolError(f"pool '{self.state.name}' does not answer (is it up? `patas pool up --name {self.state.name} ...`)")
            reply = protocol.decode(control.recv_multipart())
        if isinstance(reply, PoolReply) and reply.error:
            raise PoolError(f"pool '{self.state.name}': {reply.error}")
        return reply

    def status(self, timeout_s: float = CONTROL_TIMEOUT_S) -> list[PoolAgentStatus]:
        reply = self.request(PoolStatusRequest(), timeout_s)
        assert isinstance(reply, PoolStatus)
        return [PoolAgentStatus(*row) for row in reply.agents]

    def is_up(self) -> bool:
        if not self.state.pid_path.exists():
            return False
        try:
            self.status(timeout_s=1.0)
            return True
        except PoolError:
            return False


@dataclass
class PoolUpResult:
    agents: list[PoolAgentStatus]
    failures: list[NodeFailure]


def pool_up(
    name: str, clusters: list[Cluster], ssh: SSHOptions = SSHOptions(), bind_host: str | None = None, bind_port: int = 0
) -> PoolUpResult:
    """Start the pool's daemon if it is not running, and an agent on every node not yet in it.
    The daemon listens where the nodes reach this machine, or on `bind_host` (`--bind`)."""
    state = PoolState(name)
    state.create()
    nodes = [node for cluster in clusters for node in cluster.nodes]
    _check_unique_names(nodes)
    opened, failures = open_sessions(nodes, lambda node: SSHSession(node, ssh))
    sessions = [s for s in opened if s is not None]
    try:
        hosts = [bind_host] if bind_host else sorted({s.listen_host for s in sessions})
        client = _ensure_daemon(state, hosts, bind_port)
        port = state.settings().port
        known = _wait_ready(client, set(state.agents()), RECONNECT_GRACE_S)
        running = {a.agent_id for a in known if a.state == "ready"}
        for session in sessions:
            if session.node.name in running:
                continue  # its agent is up already (perhaps reconnected to a restarted daemon)
            try:
                _start_pool_agent(state, client, session, port)
            except PatasError as error:
                failures.append(NodeFailure(session.node, str(error)))
    finally:
        for session in sessions:
            session.close()
    started = {s.node.name for s in sessions} - {f.node.name for f in failures}
    return PoolUpResult(_wait_ready(client, started), failures)


def pool_up_slurm(name: str, slurm: SlurmOptions, bind_host: str | None, bind_port: int = 0) -> PoolUpResult:
    """Start the pool's daemon if need be and submit Slurm jobs whose agents join it: each agent
    of a job has its own identity and key (the batch script carries one line per task, and each
    task takes its own by SLURM_PROCID). Waits for them a while; jobs still pending join later."""
    from patas.broker.slurm.queue import run_command
    from patas.broker.slurm.session import JOB_NAME, batch_script, default_listen_host

    state = PoolState(name)
    state.create()
    host = bind_host or default_listen_host()
    client = _ensure_daemon(state, [host], bind_port)
    port = state.settings().port
    taken = set(state.agents())
    started: set[str] = set()
    logs = state.path / "slurm"
    logs.mkdir(mode=0o700, exist_ok=True)
    for size in slurm.job_sizes:
        agent_ids = _free_names("slurm", taken, size)
        taken.update(agent_ids)
        lines = []
        for agent_id in agent_ids:
            keys = state.issue(agent_id, agent_id)
            client.request(PoolAllow(agent_id, keys.public, agent_id))
            config = AgentConfig(f"tcp://{host}:{port}", agent_id, 0, keys, persistent=True, gpus_per_task=slurm.gpus_per_task)
            lines.append(config.to_line())
        argv = slurm.sbatch_argv(size, f"{JOB_NAME}-{name}", str(logs / "%j.out"))
        job_id = run_command(argv, stdin=batch_script(slurm.python, lines)).strip().split(";")[0]
        state.record_slurm_job(job_id, agent_ids)
        started.update(agent_ids)
    return PoolUpResult(_wait_ready(client, started), [])


def _free_names(prefix: str, taken: set[str], count: int) -> list[str]:
    names: list[str] = []
    index = 0
    while len(names) < count:
        if f"{prefix}{index}" not in taken:
            names.append(f"{prefix}{index}")
        index += 1
    return names


def pool_status(name: str) -> list[PoolAgentStatus]:
    return PoolClient(_existing(name)).status()


def pool_drain(name: str, agent_ids: list[str]) -> None:
    PoolClient(_existing(name)).request(PoolDrain(agent_ids))


def pool_down(name: str) -> None:
    """Send every agent away and stop the daemon; the pool's keys stay for the next `up`."""
    state = _existing(name)
    client = PoolClient(state)
    client.request(PoolStop())
    deadline = time.monotonic() + DAEMON_START_TIMEOUT_S
    while state.pid_path.exists() and time.monotonic() < deadline:
        time.sleep(WAIT_STEP_S)


def pool_revoke(name: str, agent_id: str) -> None:
    """Refuse an agent from now on, whatever it does with its old key."""
    state = _existing(name)
    if not state.revoke(agent_id):
        raise ConfigError(f"pool '{name}' has no agent '{agent_id}' (see `patas pool status {name}`)")
    client = PoolClient(state)
    if client.is_up():
        client.request(PoolRevoke(agent_id))


def listens_on(name: str, host: str) -> list[str] | None:
    """The addresses pool `name` listens on when `host` is not one of them, else None."""
    hosts = _existing(name).settings().bind_hosts
    return None if host in hosts or "0.0.0.0" in hosts or "*" in hosts else hosts


def pool_issue(name: str, agent_id: str, broker_host: str, slots: int) -> AgentConfig:
    """Credentials for an agent you start yourself (systemd, a batch job): `patas agent --config`."""
    state = _existing(name)
    keys = state.issue(agent_id, agent_id)
    client = PoolClient(state)
    if client.is_up():
        client.request(PoolAllow(agent_id, keys.public, agent_id))
    return AgentConfig(f"tcp://{broker_host}:{state.settings().port}", agent_id, slots, keys, persistent=True)


# --- runs borrow agents ----------------------------------------------------------------------


class PoolWatch:
    """The pool's agents as a run sees them: a thread asks the daemon for their states (at most
    every POOL_WATCH_INTERVAL_S), so that the run loop learns at once, without waiting on a
    request, that a borrowed agent was lost (its Slurm job ended, it was drained), and which
    ready agents it can borrow (newcomers, or agents back after a restart)."""

    def __init__(self, client: PoolClient) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._states: dict[str, PoolAgentStatus] | None = None  # None until the first answer
        self._daemon_gone = False
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="pool-watch", daemon=True)
        self._thread.start()

    def state(self, agent_id: str) -> str:
        with self._lock:
            if self._states is None:
                return "ready"  # as it was when borrowed
            row = self._states.get(agent_id)
        return row.state if row is not None else "stopped"  # revoked: no longer in the pool

    def ready_agents(self, busy_nodes: set[str]) -> list[PoolAgentStatus]:
        """The ready agents on nodes other than `busy_nodes` (those the run has a live agent on)."""
        with self._lock:
            rows = (self._states or {}).values()
            return [row for row in rows if row.state == "ready" and row.node_name not in busy_nodes]

    def expects_agents(self) -> bool:
        """True while some agent of the pool is ready, connecting or lost (it may come back);
        stopped, draining or revoked ones will not, nor will any once the daemon is gone."""
        with self._lock:
            if self._daemon_gone:
                return False
            rows = (self._states or {}).values()
            return self._states is None or any(row.state in ("ready", "connecting", "lost") for row in rows)

    def close(self) -> None:
        self._closed.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._closed.wait(POOL_WATCH_INTERVAL_S):
            try:
                rows = self.client.status(timeout_s=POOL_WATCH_INTERVAL_S * 4)
            except PoolError:  # busy (a slow answer), restarting, or gone
                with self._lock:
                    self._daemon_gone = not _daemon_alive(self.client.state)
                continue  # the daemon is busy or restarting; the run's own timeouts decide
            with self._lock:
                self._daemon_gone = False
                self._states = {row.agent_id: row for row in rows}


class PoolAgentHandle:
    """A borrowed agent: the daemon ends the loan when the run's broker says goodbye. It is lost
    to the run as soon as the pool says so (and is borrowed again once it is back)."""

    def __init__(self, watch: PoolWatch, agent_id: str) -> None:
        self.watch = watch
        self.agent_id = agent_id

    def exit_code(self) -> int | None:
        return 1 if self.watch.state(self.agent_id) in LOST_STATES else None

    def failure(self) -> str:
        return f"pool agent {self.agent_id} is {self.watch.state(self.agent_id)}"

    def stop(self, timeout_s: float = 0.0) -> None:
        pass


class PoolSession:
    """A pool agent as one node of a run.

    The pool's SSH connections are not the run's (the agents outlive them), so shipping code to
    a pool's node (--ship) opens one over SSH for the run, to the address `pool up` used; a node
    on this machine uses the local cache, as in any run."""

    listen_host = LOOPBACK  # the daemon's proxies run on this machine

    def __init__(self, borrowing: "PoolBorrowing", agent: PoolAgentStatus) -> None:
        self.borrowing = borrowing
        self.agent = agent
        self.node = Node(agent.node_name, agent.hostname, workers=agent.slots)
        self.slots = agent.slots
        self._lent = False
        self._shipping: SSHSession | None = None

    def ship_target(self):  # type: ignore[no-untyped-def]
        """Where the shipped code goes for this agent (patas.broker.ship.transfer)."""
        from patas.broker.ship.transfer import LocalTarget, SSHTarget

        address = self.borrowing.address_of(self.agent.agent_id)
        if address is None:
            raise NodeError(f"pool agent {self.agent.agent_id}: its node's address is unknown (`patas pool down` and up again to ship code to it)")
        if address.is_local:
            return LocalTarget("this machine")
        if self._shipping is None:
            self._shipping = SSHSession(address, self.borrowing.ssh)
        return SSHTarget(self.node.name, self._shipping.client, self._shipping.home)

    def agent_endpoint(self, broker_port: int) -> str:
        return f"tcp://{LOOPBACK}:{broker_port}"

    def start_agent(self, config: AgentConfig) -> PoolAgentHandle:
        if self._lent:  # the coordinator restarts a lost agent; a pool's come back by joining
            raise NodeError(f"pool agent {self.agent.agent_id} is lost; the run borrows it again once the pool has it ready")
        self._lent = True
        try:
            self.borrowing.client.request(PoolAttach(self.agent.agent_id, config.to_line()))
        except PoolError as error:
            raise NodeError(str(error)) from None
        return PoolAgentHandle(self.borrowing.watch, self.agent.agent_id)

    def close(self) -> None:
        if self._shipping is not None:
            self._shipping.close()


class PoolBorrowing:
    """What a run borrows from a pool: its ready agents at the start, then, as the run goes on
    (the coordinator's `AgentSource`), the agents that join the pool or come back to it."""

    def __init__(self, name: str, ssh: SSHOptions = SSHOptions()) -> None:
        state = _existing(name)
        self.cluster_name = name
        self.client = PoolClient(state)
        self.ssh = ssh
        self._state = state
        self._addresses = state.nodes()  # where `pool up` reached each agent's node (for --ship)
        ready = [a for a in self.client.status() if a.state == "ready"]
        if not ready:
            raise PoolError(f"pool '{name}' has no ready agent (see `patas pool status {name}`)")
        self.watch = PoolWatch(self.client)
        self.sessions = [PoolSession(self, agent) for agent in ready]

    @property
    def cluster(self) -> Cluster:
        return Cluster(self.cluster_name, tuple(s.node for s in self.sessions))

    def address_of(self, agent_id: str) -> Node | None:
        """Where `pool up` reached the agent's node; read again for an agent that joined the pool
        after the run started (from any thread: the map is replaced, never changed)."""
        if agent_id not in self._addresses:
            self._addresses = self._state.nodes()
        return self._addresses.get(agent_id)

    def joining(self, present: set[str]) -> list[NodeSession]:
        """The pool's ready agents on nodes other than `present`, borrowed now."""
        return [PoolSession(self, agent) for agent in self.watch.ready_agents(present)]

    def expects_agents(self) -> bool:
        return self.watch.expects_agents()

    def close(self) -> None:
        self.watch.close()


# --- helpers ---------------------------------------------------------------------------------


def _existing(name: str) -> PoolState:
    state = PoolState(name)
    if not state.exists():
        raise ConfigError(f"no pool named '{name}' (start one with `patas pool up --name {name} --node ...`)")
    return state


def _daemon_alive(state: PoolState) -> bool:
    """Whether the pool's daemon process still exists (it may be too busy to answer)."""
    try:
        os.kill(int(state.pid_path.read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def _check_unique_names(nodes: list[Node]) -> None:
    names = [n.name for n in nodes]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"two nodes are named '{name}'; a pool names its agents after their nodes")


def _ensure_daemon(state: PoolState, hosts: list[str], port: int = 0) -> PoolClient:
    client = PoolClient(state)
    settings = state.settings()
    if client.is_up():
        missing = set(hosts) - set(settings.bind_hosts)
        if missing:
            raise PoolError(
                f"pool '{state.name}' listens on {', '.join(settings.bind_hosts)}, not on {', '.join(sorted(missing))}"
                f" (run `patas pool down {state.name}` first to add these nodes)"
            )
        if port and port != settings.port:
            raise PoolError(f"pool '{state.name}' listens on port {settings.port}, not {port} (run `patas pool down {state.name}` first)")
        return client
    bind_hosts = sorted(set(hosts) | set(settings.bind_hosts) | {LOOPBACK})
    state.save_settings(PoolSettings(bind_hosts, port or settings.port or _free_port()))
    with open(state.log_path, "ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "patas.broker.pools.daemon", state.name],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            env={**os.environ, "PATAS_POOLS": str(state.path.parent)},
        )  # fmt: skip
    deadline = time.monotonic() + DAEMON_START_TIMEOUT_S
    while not client.is_up():
        if time.monotonic() > deadline:
            raise PoolError(f"pool '{state.name}' did not start; see {state.log_path}")
        time.sleep(WAIT_STEP_S)
    return client


def _start_pool_agent(state: PoolState, client: PoolClient, session: NodeSession, port: int) -> None:
    agent_id = session.node.name
    keys = state.issue(agent_id, session.node.name)
    state.save_node(agent_id, session.node)
    client.request(PoolAllow(agent_id, keys.public, session.node.name))
    endpoint = session.agent_endpoint(port)
    config = AgentConfig(endpoint, agent_id, session.slots, keys, persistent=True)
    if isinstance(session, LocalSession):
        _start_local_pool_agent(state, config)
    elif isinstance(session, SSHSession):
        session.start_detached_agent(config, f"pools/{state.name}")
    else:
        raise PoolError(f"cannot start a pool agent on {session.node.name}")


def _start_local_pool_agent(state: PoolState, config: AgentConfig) -> None:
    path = state.path / "agents" / f"{config.agent_id}.json"
    write_private(path, config.to_line())
    with open(path.with_suffix(".log"), "ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "patas.agent", "--config", str(path)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip


def _wait_ready(client: PoolClient, agent_ids: set[str], timeout_s: float = AGENTS_READY_TIMEOUT_S) -> list[PoolAgentStatus]:
    """The pool's agents once all of `agent_ids` are ready, or when `timeout_s` has passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        agents = client.status()
        ready = {a.agent_id for a in agents if a.state == "ready"}
        if agent_ids <= ready or time.monotonic() > deadline:
            return agents
        time.sleep(WAIT_STEP_S * 4)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]

