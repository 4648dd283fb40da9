"""Agents as Slurm jobs, behind the same NodeSession/AgentHandle interface as local and SSH agents.

Each agent is a placement of its own ("slurm0", "slurm1", ...), with its own identity and CURVE
key. `--slurm-nodes N` is one job of N nodes: its N agents' configurations are collected as the
coordinator starts them, then submitted together, and `srun --input=all` gives every task all N
lines, from which each takes its own by SLURM_PROCID (`python -m patas.agent --slurm`).
`--slurm-jobs N` is N one-node jobs. The lines travel in the batch script on sbatch's standard
input: never on a command line, never in a file anyone else can read (Slurm keeps job scripts
readable by the job's owner and root only).

A job that ends (cancelled, preempted, out of time) makes its agents' handles report an exit as
soon as squeue says so, so the coordinator marks them lost at once and starts new ones: each
replacement is a job of one node, which starts as soon as any node is free. The run's end
cancels every job it submitted and waits (bounded) until their processes are gone.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import shutil
import socket
import tempfile
import threading
from pathlib import Path

from patas.broker.local.session import STOP_TIMEOUT_S
from patas.broker.slurm.options import SlurmOptions
from patas.broker.slurm.queue import RUNNING, JobQueue, SlurmError, run_command
from patas.common.agent_config import AgentConfig
from patas.common.config import Cluster, Node

log = logging.getLogger(__name__)

CLUSTER_NAME = "slurm"
JOB_NAME = "patas-agents"
HEREDOC_END = "PATAS_AGENT_CONFIGURATIONS"
# How long the run's end waits for cancelled jobs' processes to go (Slurm's KillWait is 30 s by
# default; past this, they are Slurm's to kill, and the run does not wait for them).
SETTLE_TIMEOUT_S = 10.0


def batch_script(python: str, lines: list[bytes]) -> str:
    """A batch script running one agent per task of the job, their configurations in a here-document."""
    configurations = "".join(line.decode() for line in lines)
    return (
        "#!/bin/sh\n"
        "# patas agents, one per node: each reads every line and keeps its own (SLURM_PROCID).\n"
        f"exec srun --input=all --kill-on-bad-exit=0 {shlex.quote(python)} -m patas.agent --slurm <<'{HEREDOC_END}'\n"
        f"{configurations}{HEREDOC_END}\n"
    )


# What sbatch says when it has no configuration or no controller to ask: then no option of the
# job is at fault.
_NO_SLURM = (
    "Could not establish a configuration source",
    "Unable to process configuration file",
    "Unable to contact slurm controller",
)


class SlurmLauncher:
    """This run's Slurm jobs: submission, the squeue watcher, the folder of the jobs' logs."""

    def __init__(self, options: SlurmOptions, listen_host: str) -> None:
        self.options = options
        self.listen_host = listen_host
        self.queue = JobQueue()
        # The jobs' stdout and stderr (the agents' own messages): private to this user.
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "patas"
        cache.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.log_folder = Path(tempfile.mkdtemp(prefix="slurm-", dir=cache))
        self.jobs: list[SlurmJob] = []
        self._lock = threading.Lock()
        self._closed = False

    def check(self) -> None:
        """Ask Slurm, without submitting, whether it would take the largest job (sbatch
        --test-only): a bad partition or a job over a limit is refused before anything runs."""
        argv = self.options.sbatch_argv(max(self.options.job_sizes), JOB_NAME, os.devnull)
        try:
            run_command([argv[0], "--test-only", *argv[1:]], stdin=batch_script(self.options.python, []))
        except SlurmError as error:
            if any(words in str(error) for words in _NO_SLURM):
                raise SlurmError(
                    f"sbatch cannot reach Slurm: {error} (is Slurm set up here? `scontrol ping` says;"
                    " SLURM_CONF names its configuration)"
                ) from None
            raise SlurmError(f"Slurm refused the job: {error} (check --partition, --time and --sbatch-arg)") from None

    def new_job(self, node_names: list[str]) -> "SlurmJob":
        job = SlurmJob(self, node_names)
        with self._lock:
            self.jobs.append(job)
        return job

    def submit(self, lines: list[bytes]) -> str:
        argv = self.options.sbatch_argv(len(lines), JOB_NAME, str(self.log_folder / "%j.out"))
        return self.queue.submit(argv, batch_script(self.options.python, lines))

    def close(self) -> None:
        """Cancel what is left of this run's jobs and stop watching; once, however often called."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            ids = [job.job_id for job in self.jobs if job.job_id is not None]
        try:
            self.queue.cancel(ids)
            if not self.queue.wait_settled(ids, SETTLE_TIMEOUT_S):
                log.warning("Slurm jobs %s still ending after %.0f s", ",".join(ids), SETTLE_TIMEOUT_S)
        finally:
            self.queue.close()
            shutil.rmtree(self.log_folder, ignore_errors=True)


class SlurmJob:
    """One batch job and the agents it runs (one per node, in SLURM_PROCID order)."""

    def __init__(self, launcher: SlurmLauncher, node_names: list[str]) -> None:
        self.launcher = launcher
        self.node_names = node_names
        self._lines: dict[str, bytes] = {}
        self.job_id: str | None = None
        self.submit_error: str | None = None

    @property
    def collecting(self) -> bool:
        return self.job_id is None and self.submit_error is None

    def add(self, node_name: str, config: AgentConfig) -> "SlurmAgent":
        """Take the configuration of the agent for `node_name`; the last of them submits the job."""
        self._lines[node_name] = config.to_line()
        agent = SlurmAgent(self)
        if len(self._lines) == len(self.node_names):
            try:
                self.job_id = self.launcher.submit([self._lines[name] for name in self.node_names])
            except SlurmError as error:
                self.submit_error = str(error)
                raise
            finally:
                self._lines.clear()  # the secrets are Slurm's to keep now
        return agent

    def state(self) -> str:
        if self.job_id is None:
            return "not submitted"
        return str(self.launcher.queue.state(self.job_id))

    def ended(self) -> bool:
        return self.submit_error is not None or (self.job_id is not None and self.launcher.queue.state(self.job_id).ended)

    def release(self, timeout_s: float) -> None:
        if self.job_id is not None:
            self.launcher.queue.cancel([self.job_id])
            self.launcher.queue.wait_settled([self.job_id], timeout_s)

    def last_message(self) -> str:
        """The last line the job wrote (its agents' errors), if this machine can read its log."""
        if self.job_id is None:
            return ""
        try:
            lines = (self.launcher.log_folder / f"{self.job_id}.out").read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""


class SlurmAgent:
    """An agent running (or waiting to run) as a task of a Slurm job."""

    def __init__(self, job: SlurmJob) -> None:
        self.job = job

    def exit_code(self) -> int | None:
        return 1 if self.job.ended() else None

    def failure(self) -> str:
        if self.job.submit_error is not None:
            return self.job.submit_error
        message = self.job.last_message()
        return f"Slurm job {self.job.job_id} ended: {self.job.state()}" + (f": {message}" if message else "")

    def queue_state(self) -> str | None:
        if self.job.collecting:
            return "Slurm job to be submitted with the job's other agents"
        if self.job.job_id is None or self.job.ended():
            return None
        state = self.job.launcher.queue.state(self.job.job_id)
        return None if state.state == RUNNING else f"Slurm job {self.job.job_id} {state}"

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        self.job.release(timeout_s)


class SlurmSession:
    """Where one agent of the run's Slurm jobs is started: its first job, then replacements."""

    def __init__(self, node: Node, launcher: SlurmLauncher, job: SlurmJob) -> None:
        self.node = node
        self.launcher = launcher
        self.job = job
        self.slots = node.workers or 1  # a guess for numbering workers; the agent counts its grant
        self.listen_host = launcher.listen_host
        self._first_started = False

    def agent_endpoint(self, broker_port: int) -> str:
        return f"tcp://{self.listen_host}:{broker_port}"

    def start_agent(self, config: AgentConfig) -> SlurmAgent:
        # Slots 0: the agent runs one task per CPU (or per gpus_per_task GPUs) Slurm granted it.
        config = dataclasses.replace(config, slots=0, gpus=None, gpus_per_task=self.launcher.options.gpus_per_task)
        job = self.job
        if self._first_started:
            job = self.launcher.new_job([self.node.name])  # a replacement: a job of one node
        self._first_started = True
        return job.add(self.node.name, config)

    def close(self) -> None:
        self.launcher.close()


def slurm_sessions(options: SlurmOptions, bind_host: str | None) -> tuple[Cluster, list[SlurmSession]]:
    """A node per agent the jobs will run, and their sessions; refuses at once what sbatch would."""
    launcher = SlurmLauncher(options, bind_host or default_listen_host())
    try:
        launcher.check()
    except BaseException:
        launcher.close()
        raise
    cluster = slurm_cluster(options)
    sessions: list[SlurmSession] = []
    for names in _job_node_names(options):
        job = launcher.new_job(names)
        sessions.extend(SlurmSession(node, launcher, job) for node in cluster.nodes if node.name in names)
    return cluster, sessions


def slurm_cluster(options: SlurmOptions) -> Cluster:
    """A node per agent the jobs will run: slurm0, slurm1, ... (for plans and dry runs too)."""
    nodes = [
        Node(name, CLUSTER_NAME, workers=options.cpus_per_node, gpus_per_task=options.gpus_per_task)
        for names in _job_node_names(options)
        for name in names
    ]
    return Cluster(CLUSTER_NAME, tuple(nodes))


def _job_node_names(options: SlurmOptions) -> list[list[str]]:
    names, first = [], 0
    for size in options.job_sizes:
        names.append([f"slurm{first + i}" for i in range(size)])
        first += size
    return names


def default_listen_host() -> str:
    """The address compute nodes reach this machine at: that of its host name."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
