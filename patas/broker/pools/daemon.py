"""The pool daemon: keeps a pool's agents connected between runs and lends them to runs.

Agents connect to the daemon (CURVE, keys persisted in the pool's folder) and stay. A run
(`patas explore --pool NAME`) asks, over the local control socket, to borrow agents: for each,
the daemon opens a *proxy* toward the run's own broker that says hello as that agent and relays
its messages both ways, renumbering leases so that several runs can share an agent at once. The
run's coordinator is the same as for any run; the agent is the same as for any agent; the agent's
queue interleaves the runs' tasks.

    python -m patas.broker.pools.daemon NAME      (started, detached, by `patas pool up`)
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field, replace

import zmq

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
from patas.broker.pools.state import PoolState
from patas.broker.security import CurveServer
from patas.broker.slurm.queue import SQUEUE_INTERVAL_S, JobQueue
from patas.broker.transport import BrokerSocket
from patas.common import protocol
from patas.common.bounds import bound_socket, raise_descriptor_limit
from patas.common.agent_config import AgentConfig
from patas.common.errors import PatasError, ProtocolError
from patas.common.protocol import (
    PROTOCOL_VERSION,
    Assign,
    Cancel,
    Credit,
    Finished,
    Heartbeat,
    Hello,
    Message,
    Output,
    Refused,
    Reintroduce,
    Shutdown,
    TaskFile,
    Welcome,
)

log = logging.getLogger("patas.pool")

HEARTBEAT_INTERVAL_S = 1.0
AGENT_TIMEOUT_S = 10.0  # an agent silent this long is lost
RUN_TIMEOUT_S = 10.0  # a run's broker silent this long is gone: its tasks are cancelled
OUTPUT_WINDOW_BYTES = 8 * 1024 * 1024
POLL_INTERVAL_MS = 200
LINGER_MS = 500


@dataclass
class PoolAgent:
    agent_id: str
    node_name: str
    hostname: str = ""
    slots: int = 0
    ready: bool = False
    draining: bool = False
    lost: bool = False
    stopped: bool = False  # told to exit (drained, revoked, or the pool went down)
    last_heard: float = 0.0
    last_sent: float = 0.0
    proxies: list["Proxy"] = field(default_factory=list)

    @property
    def state(self) -> str:
        if self.stopped:
            return "stopped"
        if self.lost:
            return "lost"
        if not self.ready:
            return "connecting"
        return "draining" if self.draining else "ready"


class Proxy:
    """One pool agent lent to one run: a DEALER that is that agent toward the run's broker."""

    def __init__(self, context: zmq.Context, agent: PoolAgent, config: AgentConfig) -> None:
        self.agent = agent
        self.config = config
        self.socket = context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.IDENTITY, config.agent_id.encode())
        self.socket.setsockopt(zmq.LINGER, LINGER_MS)
        bound_socket(self.socket)
        if config.keys is not None:
            self.socket.curve_serverkey = config.keys.server_public.encode()
            self.socket.curve_publickey = config.keys.public.encode()
            self.socket.curve_secretkey = config.keys.secret.encode()
        self.socket.connect(config.broker_address)
        self.leases: dict[int, int] = {}  # the run's lease → the daemon's lease
        self.last_heard = self.last_sent = time.monotonic()

    def send(self, message: Message) -> None:
        self.socket.send_multipart(protocol.encode(message, relayed=True), zmq.NOBLOCK)
        self.last_sent = time.monotonic()


class PoolDaemon:
    def __init__(self, state: PoolState) -> None:
        self.state = state
        self.context = zmq.Context()
        settings = state.settings()
        self.curve = CurveServer(self.context, state.server_keys())
        self.agents: dict[str, PoolAgent] = {}
        for agent_id, allowed in state.agents().items():
            self.curve.allow.allow(agent_id, allowed.public_key)
            self.agents[agent_id] = PoolAgent(agent_id, allowed.node_name)
        self.socket = BrokerSocket(settings.bind_hosts, settings.port, self.curve, self.context)
        self.control = self.context.socket(zmq.ROUTER)
        self.control.setsockopt(zmq.LINGER, LINGER_MS)
        bound_socket(self.control)
        self.control.bind(state.control_address)
        self.poller = zmq.Poller()
        self.poller.register(self.socket.socket, zmq.POLLIN)
        self.poller.register(self.control, zmq.POLLIN)
        self.slurm: JobQueue | None = None  # watches the Slurm jobs of agents `pool up --slurm` submitted
        self.slurm_checked = 0.0
        self.leases: dict[int, tuple[Proxy, int]] = {}  # the daemon's lease → (proxy, the run's lease)
        self.next_lease = 1
        self.stopping = False
        self._agent_handlers = {
            Hello: self._on_hello, Output: self._on_output, TaskFile: self._on_output, Finished: self._on_finished,
            Heartbeat: lambda a, m: None,
        }  # fmt: skip
        self._run_handlers = {
            Welcome: lambda p, m: None, Heartbeat: lambda p, m: None, Assign: self._on_assign, Cancel: self._on_cancel,
            Credit: self._on_credit, Shutdown: lambda p, m: self._close(p), Refused: lambda p, m: self._close(p),
        }  # fmt: skip
        self._control_handlers = {
            PoolStatusRequest: self._status, PoolAttach: self._attach, PoolDrain: self._drain,
            PoolRevoke: self._revoke, PoolAllow: self._allow, PoolStop: self._stop,
        }  # fmt: skip

    # --- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        log.info("pool %s listening on port %d", self.state.name, self.socket.port)
        while not self.stopping:
            events = dict(self.poller.poll(POLL_INTERVAL_MS))
            if events.pop(self.socket.socket, 0):
                self._receive_from_agents()
            if events.pop(self.control, 0):
                self._receive_control()
            for proxy in [p for a in self.agents.values() for p in a.proxies if p.socket in events]:
                self._receive_from_run(proxy)
            self._check(time.monotonic())
        self.close()

    def close(self) -> None:
        for agent in self.agents.values():
            for proxy in list(agent.proxies):
                self._close(proxy)
        if self.slurm is not None:
            self.slurm.close()
        self.socket.close()
        self.control.close()
        self.curve.stop()
        self.context.term()

    def _check_slurm_jobs(self, now: float) -> None:
        """Lose an agent as soon as squeue says its Slurm job has ended (cancelled, preempted, out
        of time), not after AGENT_TIMEOUT_S of silence: runs then stop counting on it at once."""
        if now - self.slurm_checked < SQUEUE_INTERVAL_S:
            return
        self.slurm_checked = now
        jobs = self.state.slurm_jobs()
        if not jobs:
            return
        if self.slurm is None:
            self.slurm = JobQueue()
        for agent_id, job_id in jobs.items():
            self.slurm.watch(job_id)
            agent = self.agents.get(agent_id)
            if agent is None or agent.lost or agent.stopped:
                continue
            job = self.slurm.state(job_id)
            if job.ended:
                log.warning("agent %s: its Slurm job %s ended (%s): lost", agent_id, job_id, job)
                self._lose(agent)

    def _check(self, now: float) -> None:
        self._check_slurm_jobs(now)
        for agent in self.agents.values():
            if agent.ready and not agent.lost and now - agent.last_heard > AGENT_TIMEOUT_S:
                log.warning("agent %s silent for %.0f s: lost", agent.agent_id, AGENT_TIMEOUT_S)
                self._lose(agent)
            elif agent.ready and now - agent.last_sent >= HEARTBEAT_INTERVAL_S:
                self._to_agent(agent, Heartbeat())
            if agent.ready and agent.draining and not any(p.leases for p in agent.proxies):
                # Drained: what it ran is done. Its loans end by silence, so each run declares
                # it lost and runs the tasks it had still queued for it elsewhere.
                self._to_agent(agent, Shutdown("the pool is draining"))
                for proxy in list(agent.proxies):
                    self._close(proxy, cancel=False)
                agent.ready, agent.stopped = False, True
            for proxy in list(agent.proxies):
                if now - proxy.last_heard > RUN_TIMEOUT_S:
                    log.info("run of %s silent: its tasks on %s are cancelled", proxy.config.agent_id, agent.agent_id)
                    self._close(proxy)
                elif now - proxy.last_sent >= HEARTBEAT_INTERVAL_S:
                    proxy.send(Heartbeat())

    # --- agents -----------------------------------------------------------------------------

    def _receive_from_agents(self) -> None:
        now = time.monotonic()
        for incoming in self.socket.messages():
            agent = self.agents.get(incoming.agent_id)
            if agent is None or not self.curve.allow.admits(incoming.agent_id, incoming.public_key):
                self.socket.send(incoming.agent_id, Refused("this agent is not in the pool"))
                continue
            agent.last_heard = now
            if not agent.ready and not isinstance(incoming.message, Hello):
                self.socket.send(agent.agent_id, Reintroduce())  # we restarted, or it was lost
                continue
            self._agent_handlers[type(incoming.message)](agent, incoming.message)

    def _on_hello(self, agent: PoolAgent, hello: Hello) -> None:
        if agent.stopped:
            self.socket.send(agent.agent_id, Shutdown("the pool stopped this agent"))
            return
        if hello.protocol_version != PROTOCOL_VERSION:
            self.socket.send(agent.agent_id, Refused(f"protocol version {hello.protocol_version} (agent) != {PROTOCOL_VERSION} (pool)"))
            return
        if agent.ready:
            self._lose(agent)  # it restarted: what it ran is gone
        agent.hostname, agent.slots, agent.ready, agent.lost = hello.hostname, hello.slots, True, False
        self._to_agent(agent, Welcome(HEARTBEAT_INTERVAL_S, AGENT_TIMEOUT_S, OUTPUT_WINDOW_BYTES, 0, 0))
        log.info("agent %s ready on %s with %d slots", agent.agent_id, hello.hostname, hello.slots)

    def _on_output(self, agent: PoolAgent, output: Output | TaskFile) -> None:
        owner = self.leases.get(output.lease)
        if owner is None:
            self._to_agent(agent, Credit(len(output.data)))  # its run is gone; free the window
            return
        if not self._holds(agent, output.lease, owner[0]):
            return
        proxy, run_lease = owner
        proxy.send(replace(output, lease=run_lease))

    def _on_finished(self, agent: PoolAgent, finished: Finished) -> None:
        owner = self.leases.get(finished.lease)
        if owner is None or not self._holds(agent, finished.lease, owner[0]):
            return
        proxy, run_lease = self.leases.pop(finished.lease)
        proxy.leases.pop(run_lease, None)
        fields = {**finished.__dict__, "lease": run_lease}
        proxy.send(Finished(**fields))

    @staticmethod
    def _holds(agent: PoolAgent, lease: int, proxy: Proxy) -> bool:
        """True when `lease` was given to `agent`: what another agent says of it is dropped, as
        a run drops what an agent says of a lease it does not hold."""
        if proxy.agent is agent:
            return True
        log.debug("dropped a message from %s about lease %d of %s", agent.agent_id, lease, proxy.agent.agent_id)
        return False

    def _to_agent(self, agent: PoolAgent, message: Message, relayed: bool = False) -> None:
        agent.last_sent = time.monotonic()
        if not self.socket.send(agent.agent_id, message, relayed):
            log.warning("agent %s unreachable", agent.agent_id)

    def _lose(self, agent: PoolAgent) -> None:
        agent.ready, agent.lost = False, True
        for proxy in list(agent.proxies):
            self._close(proxy, cancel=False)

    # --- runs -------------------------------------------------------------------------------

    def _receive_from_run(self, proxy: Proxy) -> None:
        while True:
            try:
                frames = proxy.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            proxy.last_heard = time.monotonic()
            try:
                message = protocol.decode(frames)
            except ProtocolError as error:
                log.warning("ignored a malformed message from a run: %s", error)
                continue
            handler = self._run_handlers.get(type(message))
            if handler is not None:
                handler(proxy, message)
            if proxy not in proxy.agent.proxies:
                return  # closed by that message

    def _on_assign(self, proxy: Proxy, assign: Assign) -> None:
        if proxy.agent.draining:
            return  # takes no new task; the run gets this one back when the loan ends
        lease = self.next_lease
        self.next_lease += 1
        self.leases[lease] = (proxy, assign.lease)
        proxy.leases[assign.lease] = lease
        self._to_agent(proxy.agent, replace(assign, lease=lease), relayed=True)

    def _on_cancel(self, proxy: Proxy, cancel: Cancel) -> None:
        lease = proxy.leases.pop(cancel.lease, None)
        if lease is not None:
            self.leases.pop(lease, None)
            self._to_agent(proxy.agent, Cancel(lease))

    def _on_credit(self, proxy: Proxy, credit: Credit) -> None:
        self._to_agent(proxy.agent, credit)

    def _close(self, proxy: Proxy, cancel: bool = True) -> None:
        """End a loan: the run's tasks still on the agent are cancelled."""
        for lease in proxy.leases.values():
            self.leases.pop(lease, None)
            if cancel and proxy.agent.ready:
                self._to_agent(proxy.agent, Cancel(lease))
        proxy.leases.clear()
        proxy.agent.proxies.remove(proxy)
        self.poller.unregister(proxy.socket)
        proxy.socket.close(0)

    # --- control ----------------------------------------------------------------------------

    def _receive_control(self) -> None:
        while True:
            try:
                sender, *frames = self.control.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                request = protocol.decode(frames)
                handler = self._control_handlers[type(request)]  # type: ignore[index]
                reply = handler(request)
            except (ProtocolError, KeyError) as error:
                reply = PoolReply(f"bad request: {error}")
            except PatasError as error:
                reply = PoolReply(str(error))
            self.control.send_multipart([sender, *protocol.encode(reply)])

    def _status(self, request: PoolStatusRequest) -> PoolStatus:
        now = time.monotonic()
        rows = [
            PoolAgentStatus(
                a.agent_id, a.node_name, a.hostname, a.slots, a.state,
                sum(len(p.leases) for p in a.proxies), (now - a.last_heard) if a.last_heard else None, len(a.proxies),
            )
            for a in self.agents.values()
        ]  # fmt: skip
        return PoolStatus([list(row.__dict__.values()) for row in rows])

    def _attach(self, request: PoolAttach) -> PoolReply:
        agent = self.agents.get(request.agent_id)
        if agent is None or agent.state != "ready":
            return PoolReply(f"agent {request.agent_id} is {agent.state if agent else 'unknown'}")
        proxy = Proxy(self.context, agent, AgentConfig.from_line(request.config))
        agent.proxies.append(proxy)
        self.poller.register(proxy.socket, zmq.POLLIN)
        proxy.send(Hello(PROTOCOL_VERSION, proxy.config.agent_id, agent.hostname, agent.slots, os.getpid()))
        return PoolReply("")

    def _drain(self, request: PoolDrain) -> PoolReply:
        for agent in self.agents.values():
            if not request.agent_ids or agent.agent_id in request.agent_ids:
                agent.draining = True
        return PoolReply("")

    def _revoke(self, request: PoolRevoke) -> PoolReply:
        agent = self.agents.pop(request.agent_id, None)
        self.curve.allow.revoke(request.agent_id)
        if agent is not None and agent.ready:
            self._to_agent(agent, Shutdown("its key was revoked"))
            self._lose(agent)
            agent.stopped = True
        log.info("agent %s revoked", request.agent_id)
        return PoolReply("")

    def _allow(self, request: PoolAllow) -> PoolReply:
        """A new key for an agent: whatever ran under the old one is forgotten."""
        old = self.agents.get(request.agent_id)
        if old is not None:
            self._lose(old)
        self.curve.allow.allow(request.agent_id, request.public_key)
        self.agents[request.agent_id] = PoolAgent(request.agent_id, request.node_name)
        return PoolReply("")

    def _stop(self, request: PoolStop) -> PoolReply:
        for agent in self.agents.values():
            if agent.ready:
                self._to_agent(agent, Shutdown("the pool is going down"))
        self.stopping = True
        return PoolReply("")


def main(name: str) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    raise_descriptor_limit()
    state = PoolState(name)
    daemon = PoolDaemon(state)
    signal.signal(signal.SIGTERM, lambda *_: setattr(daemon, "stopping", True))
    state.pid_path.write_text(f"{os.getpid()}\n")
    try:
        daemon.run()
    finally:
        state.pid_path.unlink(missing_ok=True)
        (state.path / "control.sock").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
