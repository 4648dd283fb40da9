"""The run loop's answers on its control channel (`channel`): its status, nodes added and removed.

Everything here runs in the loop's thread, and only on turns when there is something to do
(`busy`): a request waiting, nodes being added, or a node draining. A run nobody asks pays one
attribute test per turn.

- Status: the running attempts with their values, node, time since they were given out, and the
  last line of output so far (from the tails the output store keeps in memory, so it includes
  what is not yet flushed to the attempt's file; a local agent's task writes the file itself,
  and its tail is read from there); per node its agents, slots, busy slots and
  state; tasks done per second since the run started, and the time left at that rate.
- Adding nodes: their SSH sessions are opened in a thread of their own, which also ships them
  the run's code if it ships any (connecting and shipping take seconds); the loop then places
  them after every node of the run (new node and worker numbers, so the journal's numbering
  stays unique), starts their agents, and answers once each agent said hello or was given up.
- Removing a node: without draining, its agent is told to stop and its attempts go back to the
  queue, as new attempts that cost the tasks no try; with draining, it takes no new task and
  its agent is stopped once the tasks it holds have ended.
"""

from __future__ import annotations

import collections
import enum
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import zmq

from patas.broker.launch.session import NodeSession, open_sessions
from patas.broker.run.newcomers import Newcomer, ship_to
from patas.broker.run.channel import ControlServer, PendingRequest
from patas.broker.run.placement import Placement
from patas.common.config import DEFAULT_CLUSTER_NAME, Node
from patas.common.errors import did_you_mean
from patas.common.lab import STDERR, STDOUT
from patas.common.protocol import Shutdown
from patas.common.wording import plural

if TYPE_CHECKING:
    # The messages and the status types are imported when someone asks, not by every run.
    from patas.analysis.status import ExperimentStatus, NodeStatus, RunningTask
    from patas.broker.run.control_messages import AddNodesRequest, ControlMessage, RemoveNodeRequest, StatusRequest
    from patas.broker.run.coordinator import AgentLink, Coordinator
    from patas.broker.ship.code import ShippedCode


class NodeState(enum.Enum):
    STARTING = "starting"  # its agent has not said hello yet
    READY = "ready"
    DRAINING = "draining"  # takes no new task; stops once its tasks end
    LOST = "lost"  # its agents are gone (died, fell silent, or could not start)


@dataclass(frozen=True)
class ControlSettings:
    """What the run needs to know to answer: given by `patas.broker.run.exploration`."""

    to_run: tuple[int, ...] = ()  # tasks this run plans, per experiment (empty: each plan's to_run)
    open_remote: Callable[[Node], NodeSession] | None = None  # opens an SSH session (None: local nodes only)
    pool: str | None = None  # the run borrows a pool's agents: its nodes are the pool's to change


@dataclass(eq=False)  # one of a kind: compared by identity
class Arrival:
    """Nodes being added for one request: answered once each agent is ready or gone."""

    pending: PendingRequest
    links: list[AgentLink] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class RunControl:
    def __init__(self, coordinator: Coordinator, settings: ControlSettings) -> None:
        self.run = coordinator
        self.settings = settings
        self.done = [0] * len(coordinator.plans)  # tasks done by this run, per experiment
        self.server = ControlServer([plan.lab.path for plan in coordinator.plans])
        self._started = time.monotonic()
        # Sessions a thread opened, for the loop to use: (request, cluster, nodes, sessions, failures).
        self._opened: collections.deque[tuple[PendingRequest, str, list[Node], list[Newcomer | None], list[str]]]
        self._opened = collections.deque()
        self._arrivals: list[Arrival] = []
        self._draining: dict[str, AgentLink] = {}
        self._removed: set[str] = set()  # agent ids
        self._handlers: dict[type[ControlMessage], Callable[[PendingRequest, Any], None]] = {}  # from the first request on

    @property
    def busy(self) -> bool:
        return bool(self.server.inbox or self._opened or self._arrivals or self._draining)

    def serve(self) -> None:
        """Answer what waits, use opened sessions, stop drained agents (on a busy turn)."""
        inbox = self.server.inbox
        if inbox and not self._handlers:
            from patas.broker.run.control_messages import AddNodesRequest, RemoveNodeRequest, StatusRequest

            self._handlers = {StatusRequest: self._status, AddNodesRequest: self._add, RemoveNodeRequest: self._remove}
        while inbox:
            pending = inbox.popleft()
            handler = self._handlers.get(type(pending.message))
            if handler is None:
                pending.refuse(f"a run does not take {type(pending.message).__name__} requests")
            else:
                handler(pending, pending.message)
        while self._opened:
            self._place_opened(*self._opened.popleft())
        if self._arrivals:
            self._answer_arrivals()
        if self._draining:
            self._stop_drained()

    def close(self) -> None:
        for arrival in self._arrivals:
            arrival.pending.refuse("the run ended before the new nodes were ready")
        self._arrivals.clear()
        self.server.close()

    # --- status -----------------------------------------------------------------------------

    def _status(self, pending: PendingRequest, request: StatusRequest) -> None:
        from patas.broker.run.control_messages import StatusReply, status_to_wire

        ids = [i for i, plan in enumerate(self.run.plans) if plan.lab.name == request.experiment]
        if not ids:
            names = ", ".join(plan.lab.name for plan in self.run.plans)
            pending.refuse(f"experiment '{request.experiment}' is not in this run (it runs {names})")
            return
        pending.answer(StatusReply(status_to_wire(self.experiment_status(ids[0]))))

    def experiment_status(self, experiment_id: int) -> ExperimentStatus:
        from patas.analysis.status import ExperimentStatus, FailureGroup  # when asked (see the top)

        plan = self.run.plans[experiment_id]
        name = plan.experiment.name
        now = time.monotonic()
        running = tuple(self._running_tasks(experiment_id, now))
        kinds = self.run.result.failures.kinds.values()
        given_up = sum(len(kind.given_up.get(name, ())) for kind in kinds)
        groups = [(kind.kind, kind.attempted.get(name, [])) for kind in kinds]
        failures = tuple(sorted((FailureGroup(k, len(ids), tuple(sorted(set(ids)))) for k, ids in groups if ids), key=lambda g: -g.count))
        done_here = self.done[experiment_id]
        to_run = self.settings.to_run[experiment_id] if self.settings.to_run else plan.to_run
        pending = max(0, to_run - done_here - given_up - len(running))
        rate = done_here / (now - self._started) if done_here else None
        return ExperimentStatus(
            name=name, total=plan.total, done=(0 if plan.redo else plan.done) + done_here, running=len(running),
            pending=pending, failed=sum(f.count for f in failures), given_up=given_up, rate_per_s=rate,
            eta_s=(pending + len(running)) / rate if rate else None, live=True, running_tasks=running,
            nodes=tuple(self._nodes()), failures=failures,
        )  # fmt: skip

    def _running_tasks(self, experiment_id: int, now: float) -> list[RunningTask]:
        """The attempts running on agents (not those queued there, waiting for a free slot)."""
        from patas.analysis.status import RunningTask  # when asked (see the top)

        tasks = []
        for agent_id, link in self.run.agents.items():
            for lease in self.run.scheduler.leases_of(agent_id):
                planned = lease.planned
                if planned.experiment_id == experiment_id and lease.started_at:
                    values = dict(planned.task.values)
                    elapsed = now - lease.started_at
                    tasks.append(RunningTask(planned.task_id, lease.attempt, values, link.placement.node.name, elapsed, self._last_line(lease.id)))
        return sorted(tasks, key=lambda t: t.task_id)

    def _last_line(self, lease_id: int) -> str:
        store = self.run.store
        for stream in (STDOUT, STDERR):
            lines = store.tail(lease_id, stream).decode(errors="replace").strip().splitlines()
            if lines:
                return lines[-1].strip()
        return ""

    def _nodes(self) -> list[NodeStatus]:
        by_node: dict[str, list[AgentLink]] = {}
        for agent_id, link in self.run.agents.items():
            if agent_id not in self._removed:
                by_node.setdefault(link.placement.node.name, []).append(link)
        return [self._node(name, links) for name, links in by_node.items()]

    def _node(self, name: str, links: list[AgentLink]) -> NodeStatus:
        from patas.analysis.status import NodeStatus  # when asked (see the top)

        live = [link for link in links if not link.gone]
        scheduler = self.run.scheduler
        busy = sum(sum(1 for lease in scheduler.leases_of(link.placement.agent_id) if lease.started_at) for link in live)
        if any(link.placement.agent_id in self._draining for link in live):
            state = NodeState.DRAINING
        elif any(link.ready for link in live):
            state = NodeState.READY
        else:
            state = NodeState.STARTING if live else NodeState.LOST
        return NodeStatus(name, len(live), sum(link.placement.slots for link in live), busy, state.value)

    # --- adding nodes -----------------------------------------------------------------------

    def _add(self, pending: PendingRequest, request: AddNodesRequest) -> None:
        from patas.broker.run.control_messages import AddNodesReply

        if self.settings.pool is not None:
            pending.refuse(f"this run uses the agents of pool '{self.settings.pool}': add the node to the pool instead (patas pool up)")
            return
        nodes, failed = self._named_nodes(request.nodes)
        if self.settings.open_remote is None and any(not node.is_local for node in nodes):
            failed += [f"{node.name}: this run cannot open SSH connections; only local nodes can be added" for node in nodes if not node.is_local]
            nodes = [node for node in nodes if node.is_local]
        if not nodes:
            pending.answer(AddNodesReply([], failed))
            return
        cluster = request.cluster or DEFAULT_CLUSTER_NAME
        arguments = (pending, cluster, nodes, failed, dict(self.run.code))
        threading.Thread(target=self._open, args=arguments, name="patas-add-nodes", daemon=True).start()

    def _named_nodes(self, wire: list[list[Any]]) -> tuple[list[Node], list[str]]:
        """The requested nodes, those without a name named `node<N>` after the run's; a name the
        run already has is refused."""
        taken = {link.placement.node.name for link in self.run.agents.values()}
        taken.update(p.node.name for p in self.run.placements)
        nodes, failed = [], []
        for name, hostname, user, port, private_key, workers, tags in wire:
            if name in taken:
                failed.append(f"{name}: the run has a node of that name already (name it otherwise in the cluster file)")
                continue
            if not name:
                name = next(f"node{n}" for n in range(len(taken) + 1) if f"node{n}" not in taken)
            taken.add(name)
            nodes.append(Node(name, hostname, user, port, private_key, workers, tuple(tags)))
        return nodes, failed

    def _open(self, pending: PendingRequest, cluster: str, nodes: list[Node], failed: list[str], code: dict[int, ShippedCode]) -> None:
        """In a thread: connect to the nodes and ship them the run's code, then hand the sessions to the loop."""
        opener = self.settings.open_remote or _refuse_remote
        sessions, failures = open_sessions(nodes, opener)
        failed = failed + [str(failure) for failure in failures]
        newcomers: list[Newcomer | None] = []
        for session in sessions:
            newcomer = ship_to(code, session) if session is not None else None
            if newcomer is not None and newcomer.error:
                failed.append(newcomer.error)
                newcomer.session.close()
                newcomer = None
            newcomers.append(newcomer)
        self._opened.append((pending, cluster, nodes, newcomers, failed))

    def _place_opened(self, pending: PendingRequest, cluster: str, nodes: list[Node],
                      newcomers: list[Newcomer | None], failed: list[str]) -> None:  # fmt: skip
        arrival = Arrival(pending, failed=list(failed))
        opened = [(node, newcomer) for node, newcomer in zip(nodes, newcomers) if newcomer is not None]
        for placement, (_, newcomer) in zip(self._placements(cluster, [(n, c.session) for n, c in opened]), opened):
            link = self.run.add_node(placement, newcomer.session, newcomer.copies)
            if link is None:
                arrival.failed.append(self.run.result.agent_failures[-1])
            else:
                arrival.links.append(link)
        self._arrivals.append(arrival)

    def _placements(self, cluster: str, opened: list[tuple[Node, NodeSession]]) -> list[Placement]:
        """The new nodes as a cluster of their own, numbered after every node and worker of the run."""
        placements = self.run.placements
        cluster_in_lab = max((p.cluster_in_lab for p in placements), default=-1) + 1
        node_in_lab = max((p.node_in_lab for p in placements), default=-1) + 1
        worker_in_lab = max((p.first_worker_in_lab + p.slots for p in placements), default=0)
        result, worker_in_cluster = [], 0
        for node_in_cluster, (node, session) in enumerate(opened):
            agent_id = f"{node_in_lab}-{node.name}"
            result.append(Placement(agent_id, node, session.slots, cluster, cluster_in_lab, node_in_lab, node_in_cluster, worker_in_lab, worker_in_cluster))
            node_in_lab += 1
            worker_in_lab += session.slots
            worker_in_cluster += session.slots
        return result

    def _answer_arrivals(self) -> None:
        from patas.broker.run.control_messages import AddNodesReply

        waiting = []
        for arrival in self._arrivals:
            if any(not link.ready and not link.gone for link in arrival.links):
                waiting.append(arrival)
                continue
            added = [f"{link.placement.node.name}: ready with {plural(link.placement.slots, 'worker')}" for link in arrival.links if not link.gone]
            failed = arrival.failed + [self._why_gone(link) for link in arrival.links if link.gone]
            arrival.pending.answer(AddNodesReply(added, failed))
        self._arrivals = waiting

    def _why_gone(self, link: AgentLink) -> str:
        name = link.placement.node.name
        return next((line for line in reversed(self.run.result.agent_failures) if line.startswith(f"{name}: ")), f"{name}: lost")

    # --- removing nodes ---------------------------------------------------------------------

    def _remove(self, pending: PendingRequest, request: RemoveNodeRequest) -> None:
        from patas.broker.run.control_messages import RemoveNodeReply

        name = request.node
        live = [link for link in self.run.agents.values() if not link.gone and link.placement.agent_id not in self._draining]
        links = [link for link in live if link.placement.node.name == name]
        if not links:
            names = sorted({link.placement.node.name for link in live})
            pending.refuse(f"no node '{name}' runs tasks in this run{did_you_mean(name, names)} (its nodes: {', '.join(names) or 'none'})")
            return
        if len(links) == len(live):
            pending.refuse(f"{name} is the run's last node: add another first (patas nodes add), or stop the run")
            return
        scheduler = self.run.scheduler
        held = sum(scheduler.held(link.placement.agent_id) for link in links)
        if request.drain:
            for link in links:
                scheduler.drain_agent(link.placement.agent_id)
                self._draining[link.placement.agent_id] = link
            self.run.observer.agent_event(name, "draining: takes no new task")
            pending.answer(RemoveNodeReply(f"{name}: draining: it takes no new task, and its agent stops once {_tasks(held, 'it holds')} ended"))
            return
        for link in links:
            self._retire(link)
        self.run.observer.agent_event(name, "removed")
        pending.answer(RemoveNodeReply(f"{name}: removed; {_tasks(held, 'it held')} gone back to the queue, for other nodes"))

    def _stop_drained(self) -> None:
        for agent_id, link in list(self._draining.items()):
            if link.gone:
                del self._draining[agent_id]
            elif not self.run.scheduler.held(agent_id):
                del self._draining[agent_id]
                self._retire(link)
                self.run.observer.agent_event(link.placement.node.name, "drained and removed")

    def _retire(self, link: AgentLink) -> None:
        """Stop a node's agent for good; what it still held goes back to the queue."""
        agent_id = link.placement.agent_id
        try:
            self.run.socket.send(agent_id, Shutdown("removed from the run"))
        except zmq.ZMQError:
            pass  # already gone
        link.gone = True
        self._removed.add(agent_id)
        self.run.curve.allow.revoke(agent_id)
        for lease in self.run.scheduler.remove_agent(agent_id, lost=False):
            self.run.store.abandon(lease.id)
        # Waiting for its process (or SSH channel) to end takes up to seconds: not in the loop.
        threading.Thread(target=link.handle.stop, name="patas-stop-agent", daemon=True).start()


def _tasks(count: int, what: str) -> str:
    """`1 task it holds has`, `2 tasks it holds have`: the start of a sentence about tasks."""
    return f"the {count} task {what} has" if count == 1 else f"the {count} tasks {what} have"


def _refuse_remote(node: Node) -> NodeSession:
    from patas.common.errors import ConfigError

    raise ConfigError(f"{node.address}: this run cannot open SSH connections")
