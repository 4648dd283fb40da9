"""The run loop on the coordinator: start agents, hand out tasks, write what comes back.

One thread. Each turn of the loop receives every waiting message (dispatched through a table by
type), fills free slots with tasks, appends the turn's journal records in one write, grants
output credits back, and checks that every agent is still alive. Ctrl-C (or SIGTERM) stops the
run at the next turn: agents kill their tasks, unfinished attempts stay uncommitted, and the
next run picks up where this one stopped.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Protocol

import zmq

from patas.broker.run.control import ControlSettings, RunControl
from patas.broker.run.failures import AttemptFailure, FailureTally
from patas.broker.run.halt import FAIL_FAST, Halt, HaltPolicy, Urgency
from patas.broker.launch.session import AgentHandle, NodeSession
from patas.broker.run.newcomers import Newcomers
from patas.broker.run.outputs import OutputStore
from patas.broker.run.placement import Placement, place_joining
from patas.broker.run.plan import ExperimentPlan, PlannedTask
from patas.broker.run.scheduler import Counts, Lease, Scheduler, Verdict, cannot_run
from patas.broker.run.source import TaskSource
from patas.broker.security import CurveServer
from patas.broker.transport import BrokerSocket, Incoming, PeerProcess
from patas.common.agent_config import AgentConfig
from patas.common.bounds import raise_descriptor_limit
from patas.common.errors import PatasError
from patas.common.lab import BASE_FORMAT, PRUNED_FORMAT, STDERR, STDOUT, AttemptRecord, Outcome
from patas.common.protocol import (
    PROTOCOL_VERSION,
    Assign,
    Cancel,
    Credit,
    Finished,
    Heartbeat,
    Hello,
    Message,
    MessageTooLarge,
    Output,
    Refused,
    Shutdown,
    TaskFile,
    Welcome,
)
from patas.common.wording import plural

if TYPE_CHECKING:  # shipping (--ship) is imported by the runs that ship
    from patas.broker.ship.code import ShippedCode

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 1.0
# An agent silent for this long is declared lost and its tasks run elsewhere.
DEFAULT_AGENT_TIMEOUT_S = 10.0
# How long an agent may take from being started to saying hello.
AGENT_START_TIMEOUT_S = 30.0
# Output bytes an agent may have in flight before the broker has written them.
OUTPUT_WINDOW_BYTES = 8 * 1024 * 1024
POLL_INTERVAL_MS = 100
# How often the loop looks at its agents (exited? silent? due a heartbeat?): every limit it
# checks is seconds long, and a look per turn cost a system call per agent for every few tasks.
AGENT_CHECK_INTERVAL_S = 0.05
# A node whose agent process dies gets a new one, this many times at most.
MAX_AGENT_RESTARTS = 3
PROGRESS_INTERVAL_S = 0.2
# A run whose agents may join after it started (a pool's) looks for them this often, and with
# no agent left it waits this long for one to come back before it gives up.
JOIN_POLL_INTERVAL_S = 1.0
REJOIN_GRACE_S = 30.0


class NoAgentsError(PatasError):
    """Not a single agent could start, so nothing can run."""


@dataclass(frozen=True)
class RunSettings:
    agent_timeout_s: float = DEFAULT_AGENT_TIMEOUT_S
    sync: bool = True  # fdatasync committed output before marking it done
    bind_host: str | None = None  # listen here instead of where each node reaches us
    bind_port: int = 0  # 0: any free port
    halt: HaltPolicy = FAIL_FAST  # when to stop early (--halt)


class RunObserver(Protocol):
    def progress(self, counts: Counts) -> None: ...

    def attempt_failed(self, failure: AttemptFailure) -> None: ...

    def agent_event(self, node_name: str, message: str) -> None: ...


class AgentSource(Protocol):
    """Agents that may join a run after it started (a pool's: see patas.broker.pools.pool)."""

    cluster_name: str

    def joining(self, present: set[str]) -> list[NodeSession]:
        """Sessions of the agents to add now, on nodes other than `present` (those the run has
        live agents on, or took out of rotation)."""

    def expects_agents(self) -> bool:
        """True when agents may still join (as the last `joining` saw it)."""

    def close(self) -> None:
        """Stop looking for agents (the run is over)."""


@dataclass
class RunResult:
    counts: Counts
    interrupted: bool = False
    agent_failures: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    halt: Halt | None = None  # why the run stopped early, if it did
    failures: FailureTally = field(default_factory=FailureTally)

    @property
    def failed(self) -> bool:
        """Tasks were given up, or the run stopped because tasks failed (exit status 3)."""
        return self.counts.failed > 0 or (self.halt is not None and self.halt.by_failure)


@dataclass(eq=False)  # one of a kind: compared by identity
class AgentLink:
    placement: Placement
    handle: AgentHandle
    started_at: float
    last_heard: float = 0.0
    last_sent: float = 0.0
    ready: bool = False
    gone: bool = False
    silent: bool = False  # lost by silence: it may come back, or its process may end later
    queue_state: str | None = None  # what a batch system last said of its job while it waited
    credit: int = 0  # bytes written since the last Credit message
    # For patas status: the leases it runs, and those sent beyond its slots, in the order it runs them.
    running: int = 0
    queued: deque[Lease] = field(default_factory=deque)
    # An agent this coordinator started on this machine, on the local endpoint: its process (this
    # user's), which every message from it must come from (None: a CURVE agent, over TCP).
    local_peer: PeerProcess | None = None


class Coordinator:
    def __init__(
        self,
        plans: list[ExperimentPlan],
        source: TaskSource,
        counts: Counts,
        placements: list[Placement],
        sessions: dict[str, NodeSession],
        observer: RunObserver,
        settings: RunSettings = RunSettings(),
        control: ControlSettings = ControlSettings(),
        joining: AgentSource | None = None,
        code: dict[int, ShippedCode] | None = None,
    ) -> None:
        self.plans = plans
        self.control_settings = control
        self.code = code or {}  # the shipped code, by experiment id (--ship)
        self.placements = placements
        self.sessions = sessions
        self.observer = observer
        self.settings = settings
        self.source = source
        self.scheduler = Scheduler(source, counts, sum(p.slots for p in placements), settings.halt)
        self._sent_at: dict[int, float] = {}  # lease id → when it was sent, for attempts the run stops
        self._store: OutputStore | None = None  # opened once the run has started (see _open_store)
        self.agents: dict[str, AgentLink] = {}
        self.result = RunResult(counts)
        self._stop_requested = False
        self._restarts: dict[tuple[int, int], int] = {}  # by (cluster, node) index
        self._last_progress = 0.0
        self._last_check = 0.0
        self._joining = joining
        self._joined = 0  # agents added by `joining` so far
        self._newcomers = Newcomers(self.code)  # `joining`'s agents, given the shipped code first
        self._last_join_poll = time.monotonic()
        self._alone_since: float | None = None  # when the run last lost its last agent
        self._retired: set[str] = set()  # nodes taken out of rotation
        self._handlers: dict[type[Message], Callable[[AgentLink, Message], None]] = {
            Hello: self._on_hello,  # type: ignore[dict-item]
            Output: self._on_output,  # type: ignore[dict-item]
            TaskFile: self._on_task_file,  # type: ignore[dict-item]
            Finished: self._on_finished,  # type: ignore[dict-item]
            Heartbeat: lambda link, message: None,
        }

    # --- the run ----------------------------------------------------------------------------

    def run(self) -> RunResult:
        """Bind, start the agents, and once the first is ready record the definitions and run."""
        started = time.monotonic()
        self.scheduler.prime()
        if self.scheduler.finished:
            self._open_store().close_all()
            self._hand_over_commits()
            self.source.close()
            return self.result
        raise_descriptor_limit()  # so that idle outside connections cannot starve the lab's files
        context = zmq.Context()
        self.curve = CurveServer(context)
        hosts = [self.settings.bind_host] if self.settings.bind_host else sorted({s.listen_host for s in self.sessions.values()})
        try:
            local = any(_shares_lab(session) for session in self.sessions.values())
            self.socket = BrokerSocket(hosts, self.settings.bind_port, self.curve, context, local)
        except PatasError:
            self.curve.stop()
            context.term()
            raise
        self.control = RunControl(self, self.control_settings)
        previous_handlers = self._catch_stop_signals()
        try:
            self._start_agents()
            while not self.scheduler.finished:
                if self._stop_requested:
                    self._interrupt()
                    break
                if self._halted_now():
                    self._abandon_running()
                    break
                self._turn()
        finally:
            self.result.halt = self.scheduler.halt
            self._restore(previous_handlers)
            self._dismiss_agents()
            try:  # the last commits are made durable while the agents exit
                if self._store is not None:
                    self._store.close_all()
                    self._hand_over_commits()
                self.source.close()
            finally:
                self._wait_for_agents()
                self.control.close()
                self.socket.close()
                self.curve.stop()
                context.term()
            self.result.elapsed_s = time.monotonic() - started
        self.observer.progress(self.result.counts)
        return self.result

    def _open_store(self) -> OutputStore:
        """Start writing into the lab: the run is accepted, so its definitions are recorded."""
        labs = [plan.lab for plan in self.plans]
        definitions = [plan.experiment.to_record() for plan in self.plans]
        self._store = OutputStore(labs, definitions, sync=self.settings.sync, notify=self.source.wants_commits)
        self.source.start()
        return self._store

    def _hand_over_commits(self) -> None:
        """Tell the source which attempts are durable now (a search tells its sampler then)."""
        if self.source.wants_commits and self._store is not None:
            for record in self._store.committed():
                self.source.committed(record)
            self.result.counts.best = self.source.best_text

    @property
    def store(self) -> OutputStore:
        assert self._store is not None, "the run has not started"
        return self._store

    def _turn(self) -> None:
        if self.socket.socket.poll(POLL_INTERVAL_MS):
            self._receive_all()
        now = time.monotonic()
        for lease in self.scheduler.assign():
            self._send_lease(lease, now)
        if self._store is not None:
            self._store.end_turn()
            self._hand_over_commits()
        for agent_id, link in self.agents.items():
            if link.credit:
                self._send(link, Credit(link.credit))
                link.credit = 0
        self._recruit(now)
        if now - self._last_check >= AGENT_CHECK_INTERVAL_S:
            self._last_check = now
            self._check_agents(now)
        if now - self._last_progress >= PROGRESS_INTERVAL_S:
            self._last_progress = now
            self.observer.progress(self.result.counts)
        if self.control.busy:  # someone asks (patas status, patas nodes)
            self.control.serve()

    def _receive_all(self) -> None:
        now = time.monotonic()
        for incoming in self.socket.messages():
            link = self.agents.get(incoming.agent_id)
            if link is None or link.gone or not self._admits(link, incoming):
                self.socket.send(incoming.agent_id, Refused("this agent is not part of the run"))
                continue
            link.last_heard = now
            if not link.ready and not isinstance(incoming.message, Hello):
                continue  # a stale message from before a reconnect
            self._handlers[type(incoming.message)](link, incoming.message)
            if self._halted_now():
                # Stop here: what is still running is killed, so an attempt whose end arrived
                # just after the halt is abandoned like the others, not counted by chance.
                return

    def _admits(self, link: AgentLink, incoming: Incoming) -> bool:
        """A message over TCP needs the CURVE key issued for its agent; one over the local
        endpoint (no key) must come, by the kernel's word, from the agent process this
        coordinator started for that name, run by this user."""
        if incoming.public_key is not None:
            return self.curve.allow.admits(incoming.agent_id, incoming.public_key)
        return link.local_peer is not None and incoming.peer == link.local_peer

    def _halted_now(self) -> bool:
        return self.scheduler.halt is not None and self.scheduler.halt.urgency is Urgency.NOW

    # --- agents -----------------------------------------------------------------------------

    def _start_agents(self) -> None:
        for placement in self.placements:
            self._start_agent(placement)
        if not self.agents:
            raise NoAgentsError("no agent could start: " + "; ".join(self.result.agent_failures))

    def _start_agent(self, placement: Placement) -> None:
        session = self.sessions[placement.agent_id]
        # An agent started here, by this process, as this user, connects over the private local
        # endpoint without keys; any other over TCP with a CURVE key pair of its own.
        local = _shares_lab(session) and self.socket.local_endpoint is not None
        config = AgentConfig(
            self.socket.local_endpoint if local else session.agent_endpoint(self.socket.port),
            placement.agent_id,
            placement.slots,
            None if local else self.curve.allow.issue(placement.agent_id, self.curve.public),
            debug=log.isEnabledFor(logging.DEBUG),
            gpus=placement.node.gpus,
            gpus_per_task=placement.node.gpus_per_task,
        )
        now = time.monotonic()
        try:
            handle = session.start_agent(config)
        except PatasError as error:
            self.result.agent_failures.append(f"{placement.node.name}: {error}")
            self.observer.agent_event(placement.node.name, f"lost: {error}")
            return
        local_pid = getattr(handle, "pid", None) if local else None  # a LocalAgent's process
        local_peer = PeerProcess(os.getuid(), local_pid) if local_pid is not None else None
        self.agents[placement.agent_id] = AgentLink(placement, handle, now, now, local_peer=local_peer)

    def add_node(self, placement: Placement, session: NodeSession, copies: dict[int, str] | None = None) -> AgentLink | None:
        """Start an agent on a node added while the run goes on (`patas nodes add`, a pool's
        newcomer); None if it could not start. `copies`: where the node holds the shipped code, by
        experiment (`newcomers.ship_to`; a run that ships nothing has none). A node seen before (an
        agent back) adds no slots."""
        place = (placement.cluster_in_lab, placement.node_in_cluster)
        for experiment_id, root in (copies or {}).items():
            self.code[experiment_id] = self.code[experiment_id].with_copy(place, root)
        if all(p.node.name != placement.node.name for p in self.placements):
            self.scheduler.total_slots += placement.slots
        self.sessions[placement.agent_id] = session
        self.placements.append(placement)
        self._start_agent(placement)
        return self.agents.get(placement.agent_id)

    def _restart(self, link: AgentLink) -> None:
        """Start a new agent where one died (not where one fell silent: it may still be running)."""
        old = link.placement
        node = (old.cluster_in_lab, old.node_in_cluster)
        restarts = self._restarts.get(node, 0)
        if restarts >= MAX_AGENT_RESTARTS or self._stop_requested:
            return
        self._restarts[node] = restarts + 1
        placement = replace(old, agent_id=f"{old.agent_id.split('~')[0]}~{restarts + 1}")
        self.sessions[placement.agent_id] = self.sessions[old.agent_id]
        self.observer.agent_event(old.node.name, f"starting a new agent ({restarts + 1} of {MAX_AGENT_RESTARTS})")
        self._start_agent(placement)

    def _recruit(self, now: float) -> None:
        """Add the agents that joined since the last look (a pool's newcomers, or its agents back),
        once the run's shipped code, if any, is on their node."""
        if self._joining is None or self._stop_requested:
            return
        if now - self._last_join_poll >= JOIN_POLL_INTERVAL_S:
            self._last_join_poll = now
            present = {link.placement.node.name for link in self.agents.values() if not link.gone}
            for session in self._joining.joining(present | self._retired | self._newcomers.underway):
                self._newcomers.send(session)
        for arrival in self._newcomers.arrived():
            session = arrival.session
            if arrival.error:
                self.result.agent_failures.append(arrival.error)
                self.observer.agent_event(session.node.name, f"not added: {arrival.error}")
                self._retired.add(session.node.name)  # not to be borrowed again from its pool
                session.close()
                continue
            self._joined += 1
            agent_id = f"{session.node.name}~joined{self._joined}"
            placement = place_joining(self.placements, session.node, session.slots, self._joining.cluster_name, agent_id)
            self.observer.agent_event(session.node.name, "joined the run")
            self.add_node(placement, session, arrival.copies)

    def _on_hello(self, link: AgentLink, hello: Hello) -> None:
        agent_id = link.placement.agent_id
        if hello.protocol_version != PROTOCOL_VERSION:
            reason = f"protocol version {hello.protocol_version} (agent) != {PROTOCOL_VERSION} (coordinator)"
            self.socket.send(agent_id, Refused(reason))
            self._lose(link, reason)
            return
        if link.ready:  # it reconnected: what it was running is lost
            self._requeue(agent_id)
        placement = link.placement
        welcome = Welcome(
            HEARTBEAT_INTERVAL_S,
            self.settings.agent_timeout_s,
            OUTPUT_WINDOW_BYTES,
            placement.first_worker_in_lab,
            placement.first_worker_in_cluster,
        )
        self._send(link, welcome)
        if self._store is None:  # the first agent is ready: the run has started
            self._open_store()
        self.scheduler.add_agent(agent_id, hello.slots)
        link.ready = True
        self._alone_since = None
        self.observer.agent_event(link.placement.node.name, f"ready on {hello.hostname} with {plural(hello.slots, 'worker')}")

    def _check_agents(self, now: float) -> None:
        for link in list(self.agents.values()):
            if link.gone:
                if link.silent and link.handle.exit_code() is not None:
                    # A partitioned node's agent gave up and exited: the node is reachable again.
                    link.silent = False
                    self._restart(link)
                continue
            if link.handle.exit_code() is not None:
                self._lose(link, link.handle.failure())
                self._restart(link)
            elif not link.ready and self._queued(link, now):
                continue
            elif not link.ready and now - link.started_at > AGENT_START_TIMEOUT_S:
                self._lose(link, f"did not connect within {AGENT_START_TIMEOUT_S:.0f} s")
            elif link.ready and now - link.last_heard > self.settings.agent_timeout_s:
                self._lose(link, f"silent for {self.settings.agent_timeout_s:.0f} s")
                link.silent = True
            elif link.ready and now - link.last_sent >= HEARTBEAT_INTERVAL_S:
                self._send(link, Heartbeat())
        if all(link.gone for link in self.agents.values()) and not self._waiting_for_agents(now):
            raise NoAgentsError("no agent is running: " + "; ".join(self.result.agent_failures))

    def _queued(self, link: AgentLink, now: float) -> bool:
        """True while the agent's batch job waits in its queue (the start timeout counts from
        when it runs); says so whenever the queue's word for it changes."""
        queue_state = getattr(link.handle, "queue_state", None)  # launchers with a queue have one
        state = queue_state() if queue_state is not None else None
        if state != link.queue_state:
            link.queue_state = state
            if state is not None:
                self.observer.agent_event(link.placement.node.name, f"waiting: {state}")
        if state is None:
            return False
        link.started_at = now
        return True

    def _waiting_for_agents(self, now: float) -> bool:
        """With no agent left, a run whose agents may come back waits REJOIN_GRACE_S for them."""
        if self._joining is None or not self._joining.expects_agents():
            return False
        if self._alone_since is None:
            self._alone_since = now
            message = f"no agent left; waiting up to {REJOIN_GRACE_S:.0f} s for one to join"
            self.observer.agent_event(self._joining.cluster_name, message)
        return now - self._alone_since < REJOIN_GRACE_S

    def _send(self, link: AgentLink, message: Message) -> bool:
        link.last_sent = time.monotonic()
        return self.socket.send(link.placement.agent_id, message)

    def _lose(self, link: AgentLink, reason: str) -> None:
        link.gone = True
        self.curve.allow.revoke(link.placement.agent_id)
        name = link.placement.node.name
        self.result.agent_failures.append(f"{name}: {reason}")
        self.observer.agent_event(name, f"lost: {reason}")
        self._requeue(link.placement.agent_id)

    def _requeue(self, agent_id: str) -> None:
        if agent_id in self.agents:
            self.agents[agent_id].running = 0
            self.agents[agent_id].queued.clear()
        node_name = self.agents[agent_id].placement.node.name if agent_id in self.agents else agent_id
        for lease in self.scheduler.remove_agent(agent_id):
            self.store.abandon(lease.id)
        for lease in self.scheduler.take_given_up_lost():
            stderr = self.plans[lease.planned.experiment_id].lab.attempt_path(lease.planned.task_id, lease.attempt, STDERR)
            self._failed(lease, Outcome.LOST, None, "", node_name, Verdict.GIVE_UP, "", stderr.exists())
            self.source.attempt_ended(lease.planned, lease.attempt, Outcome.LOST, True)

    def _dismiss_agents(self) -> None:
        for agent_id, link in self.agents.items():
            if not link.gone:
                try:
                    self.socket.send(agent_id, Shutdown("the run is over"))
                except zmq.ZMQError:
                    pass

    def _wait_for_agents(self) -> None:
        for link in self.agents.values():
            link.handle.stop()

    # --- tasks ------------------------------------------------------------------------------

    def _send_lease(self, lease: Lease, now: float) -> None:
        planned = lease.planned
        collect = planned.experiment.collect
        limit = collect.limit_bytes if collect.globs else 0
        self.store.open(lease.id, planned.experiment_id, planned.task_id, lease.attempt, limit)
        link = self.agents[lease.agent_id]
        placement = link.placement
        if link.running < placement.slots:
            lease.started_at = now
            link.running += 1
        else:
            link.queued.append(lease)  # it starts when one of the agent's tasks ends
        environment = task_environment(planned, lease, placement)
        workdir = planned.experiment.workdir
        shipped = self.code.get(planned.experiment_id)
        if shipped is not None:  # it runs in the node's copy of the shipped code
            workdir = environment["PATAS_WORK_DIR"] = shipped.workdir_on(placement)
        # A local agent's task writes its stdout into the lab itself, unless a search reads it as it comes.
        direct = link.local_peer is not None and not self.source.watches_output
        assign = Assign(
            lease.id, list(planned.task.commands), workdir, environment, planned.experiment.timeout_s, list(collect.globs), limit,
            self.store.write_stdout_directly(lease.id) if direct else "",
        )
        try:
            sent = self._send(self.agents[lease.agent_id], assign)
        except MessageTooLarge as error:
            raise MessageTooLarge(f"experiment {planned.experiment.name}, task {planned.task_id}: {error}") from None
        if not sent:
            self._lose(self.agents[lease.agent_id], "unreachable")
        elif self.source.watches_output:
            self._sent_at[lease.id] = time.time()

    def _on_output(self, link: AgentLink, output: Output) -> None:
        link.credit += len(output.data)
        lease = self.scheduler.lease(output.lease)
        if lease is not None and lease.agent_id == link.placement.agent_id:
            self.store.write(lease.id, output.stream, output.data)
            if self.source.watches_output and output.stream == 0 and self.source.output(lease.planned, output.data):
                self._prune(link, lease)

    def _prune(self, link: AgentLink, lease: Lease) -> None:
        """Stop a task its search gave up on: the agent kills it, its output so far is committed."""
        self._send(link, Cancel(lease.id))
        now = time.time()
        ended = Finished(lease.id, 0, None, self._sent_at.pop(lease.id, now), now, False, "", b"", b"")
        record = self._record(lease, ended, Outcome.PRUNED, link.placement)
        self.store.close(lease.id, record, commit=True)
        self.scheduler.prune(lease.id)
        self._slot_freed(link, lease)
        self.source.attempt_ended(lease.planned, lease.attempt, Outcome.PRUNED, True)

    def _on_task_file(self, link: AgentLink, chunk: TaskFile) -> None:
        link.credit += len(chunk.data)
        lease = self.scheduler.lease(chunk.lease)
        if lease is not None and lease.agent_id == link.placement.agent_id:
            self.store.write_file(lease.id, chunk.path, chunk.offset, chunk.eof, chunk.data)

    def _on_finished(self, link: AgentLink, finished: Finished) -> None:
        lease = self.scheduler.lease(finished.lease)
        if lease is None or lease.agent_id != link.placement.agent_id:
            return  # fenced: this attempt was already given to another agent
        files_error = self.store.files_error(lease.id, finished.files)
        if files_error and not finished.error:
            finished = replace(finished, error=files_error)
        self.store.write(lease.id, 0, finished.stdout)
        self.store.write(lease.id, 1, finished.stderr)
        if self.source.watches_output:
            # The last chunk (a short task's whole output) and the end of its last line: a
            # search's pruner compares other trials with every step this one reported.
            self.source.output(lease.planned, finished.stdout + b"\n")
        outcome = _outcome(finished)
        record = self._record(lease, finished, outcome, link.placement)
        tail = self._tail(lease.id)
        self.store.close(lease.id, record, commit=outcome is Outcome.DONE)
        retryable = outcome is Outcome.TIMEOUT or not cannot_run(finished.exit_code, finished.error)
        verdict = self.scheduler.finish(lease.id, outcome is Outcome.DONE, retryable)
        self._slot_freed(link, lease)
        if verdict is Verdict.DONE:
            self.control.done[lease.planned.experiment_id] += 1
        self._sent_at.pop(lease.id, None)
        self.source.attempt_ended(lease.planned, lease.attempt, outcome, verdict is not Verdict.RETRY)
        if self.scheduler.is_failing(link.placement.agent_id):
            self._send(link, Shutdown("taken out of rotation"))
            self._retired.add(link.placement.node.name)  # not to be borrowed again from its pool
            self._lose(link, "taken out of rotation: its recent tasks all failed while they succeed on other nodes")
        if verdict is not Verdict.DONE:
            has_stderr = record.stderr_bytes > 0 or not record.stdout_bytes
            self._failed(lease, outcome, finished.exit_code, finished.error, link.placement.node.name, verdict, tail, has_stderr)

    def _slot_freed(self, link: AgentLink, lease: Lease) -> None:
        """One of the agent's tasks ended: the next task queued there (for `patas status`) starts."""
        if lease.started_at:
            link.running -= 1
        self._start_queued(link, time.monotonic() if link.queued else 0.0)

    def _start_queued(self, link: AgentLink, now: float) -> None:
        """A slot of the agent is free: the first task queued there (still current) starts."""
        while link.queued:
            lease = link.queued.popleft()
            if self.scheduler.lease(lease.id) is lease:
                lease.started_at = now
                link.running += 1
                return

    def _failed(
        self, lease: Lease, outcome: Outcome, exit_code: int | None, error: str, node_name: str, verdict: Verdict,
        tail: str, has_stderr: bool,
    ) -> None:  # fmt: skip
        """Tally an attempt that did not succeed and tell the observer."""
        planned = lease.planned
        lab = self.plans[planned.experiment_id].lab
        output = lab.attempt_path(planned.task_id, lease.attempt, STDERR if has_stderr else STDOUT)
        failure = AttemptFailure(
            planned.experiment.name, planned.task_id, planned.task.values, lease.attempt, lease.tries,
            planned.max_tries, outcome, exit_code, error, node_name, verdict, tail, "\n".join(planned.task.commands),
            str(output),
        )  # fmt: skip
        self.result.failures.add(failure)
        self.observer.attempt_failed(failure)

    def _tail(self, lease_id: int) -> str:
        stderr = self.store.tail(lease_id, STDERR, ended=True)
        return (stderr or self.store.tail(lease_id, STDOUT, ended=True)).decode(errors="replace")

    def _record(self, lease: Lease, finished: Finished, outcome: Outcome, placement: Placement) -> AttemptRecord:
        planned = lease.planned
        return AttemptRecord(
            task_id=planned.task_id,
            key=planned.task.key,
            attempt=lease.attempt,
            outcome=outcome,
            exit_code=finished.exit_code,
            combination_id=planned.task.combination_id,
            repeat_id=planned.task.repeat_id,
            values=dict(planned.task.values),
            experiment_id=planned.experiment_id,
            experiment_name=planned.experiment.name,
            max_tries=planned.max_tries,
            started_at=finished.started_at,
            ended_at=finished.ended_at,
            cluster_name=placement.cluster_name,
            node_name=placement.node.name,
            hostname=placement.node.hostname,
            cluster_in_lab=placement.cluster_in_lab,
            node_in_lab=placement.node_in_lab,
            node_in_cluster=placement.node_in_cluster,
            worker_in_lab=placement.first_worker_in_lab + finished.slot,
            worker_in_cluster=placement.first_worker_in_cluster + finished.slot,
            worker_in_node=finished.slot,
            work_dir=planned.experiment.workdir,
            error=finished.error,
            code=self.code[planned.experiment_id].version if planned.experiment_id in self.code else None,
            extra={} if planned.trial is None else {"trial": planned.trial},
            format=PRUNED_FORMAT if outcome is Outcome.PRUNED else BASE_FORMAT,
        )

    # --- stopping ---------------------------------------------------------------------------

    def _catch_stop_signals(self) -> dict[int, object]:
        previous: dict[int, object] = {}
        if threading.current_thread() is not threading.main_thread():
            return previous  # only the main thread may set handlers; the caller handles stopping
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, self._on_stop_signal)
        return previous

    def _on_stop_signal(self, signum: int, frame: object) -> None:
        if self._stop_requested:
            raise KeyboardInterrupt  # a second Ctrl-C: stop waiting for anything
        self._stop_requested = True

    @staticmethod
    def _restore(previous: dict[int, object]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def _interrupt(self) -> None:
        self.result.interrupted = True
        self._abandon_running()

    def _abandon_running(self) -> None:
        """Stop now: agents kill their tasks (told at release); unfinished attempts stay uncommitted."""
        for lease in self.scheduler.drain():
            self.store.abandon(lease.id)


def _shares_lab(session: NodeSession) -> bool:
    """True for a launcher that starts agents as child processes of this coordinator, on this
    machine (LocalSession): they can reach the lab and the private local endpoint. No launcher
    that merely says so: the coordinator asks its own session objects, never an agent."""
    return getattr(session, "shares_lab", False)


def _outcome(finished: Finished) -> Outcome:
    if finished.timed_out:
        return Outcome.TIMEOUT
    if finished.exit_code == 0 and not finished.error:
        return Outcome.DONE
    return Outcome.FAILED


def task_environment(planned: PlannedTask, lease: Lease, placement: Placement) -> dict[str, str]:
    """The PATAS_* variables a task sees (the original patas's, plus task and repeat ids).

    The agent adds PATAS_WORKER_IN_{NODE,CLUSTER,LAB}: only it knows which worker runs the task."""
    env = {f"PATAS_VAR_{name}": value for name, value in planned.task.values}
    env.update(
        PATAS_ATTEMPT=str(lease.attempt),
        PATAS_WORK_DIR=planned.experiment.workdir,
        PATAS_CLUSTER_NAME=placement.cluster_name,
        PATAS_NODE_NAME=placement.node.name,
        PATAS_CLUSTER_IN_LAB=str(placement.cluster_in_lab),
        PATAS_NODE_IN_LAB=str(placement.node_in_lab),
        PATAS_NODE_IN_CLUSTER=str(placement.node_in_cluster),
        PATAS_TASK_ID=str(planned.task_id),
        PATAS_REPEAT_ID=str(planned.task.repeat_id),
        PATAS_COMBINATION_ID=str(planned.task.combination_id),
        PATAS_EXPERIMENT_NAME=planned.experiment.name,
    )
    return env

