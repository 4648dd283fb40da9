"""Slurm's client commands: submit (sbatch), cancel (scancel), and watch the queue (squeue).

One thread per run polls `squeue` for the jobs it has submitted, at most every
SQUEUE_INTERVAL_S (Slurm sites ask users not to hammer the controller), so the run loop reads
a job's state without waiting on a command. A job that has left the queue's listing has ended.
"""

from __future__ import annotations

import logging
import re
import subprocess
import threading
import time
from dataclasses import dataclass

from patas.common.errors import PatasError

log = logging.getLogger(__name__)

SQUEUE_INTERVAL_S = 0.5
COMMAND_TIMEOUT_S = 30.0
# States after which a job's processes are gone or going (squeue --states=all lists them).
ENDED_STATES = frozenset({
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "COMPLETING", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
    "PREEMPTED", "REVOKED", "SPECIAL_EXIT", "STOPPED", "TIMEOUT",
})  # fmt: skip
# Of those, the states in which processes may still be being killed.
ENDING_STATES = frozenset({"COMPLETING"})
RUNNING = "RUNNING"


class SlurmError(PatasError):
    """A Slurm command refused or failed; the message is Slurm's own."""


@dataclass(frozen=True)
class JobState:
    state: str  # squeue's %T: PENDING, RUNNING, CANCELLED, TIMEOUT, ... or GONE (no longer listed)
    reason: str = ""  # squeue's %r: why it waits, or why it ended

    @property
    def ended(self) -> bool:
        return self.state in ENDED_STATES or self.state == GONE.state

    @property
    def settled(self) -> bool:
        """Ended and its processes gone."""
        return self.ended and self.state not in ENDING_STATES

    def __str__(self) -> str:
        return f"{self.state} ({self.reason})" if self.reason and self.reason != "None" else self.state


GONE = JobState("GONE", "no longer in the queue")
SUBMITTED = JobState("PENDING", "submitted")


_PREFIX = re.compile(r"^(?:(?:sbatch|squeue|scancel|scontrol): )?(?:error: |fatal: )?")


def run_command(argv: list[str], stdin: str | None = None) -> str:
    """Run a Slurm client command; its standard output, or SlurmError with its message."""
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except FileNotFoundError:
        raise SlurmError(f"{argv[0]} not found: --slurm needs Slurm's client commands on PATH") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{argv[0]} did not answer within {COMMAND_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        raise SlurmError(f"{argv[0]}: " + ("; ".join(_without_prefix(line) for line in lines) or f"exit status {done.returncode}"))
    return done.stdout


def _without_prefix(line: str) -> str:
    """A Slurm client's line without `sbatch: error: ` and the like (the message names the command)."""
    return _PREFIX.sub("", line, count=1)


class JobQueue:
    """The states of this run's jobs, refreshed by a thread that polls squeue."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, JobState] = {}
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="squeue", daemon=True)
        self._thread.start()

    def submit(self, argv: list[str], script: str) -> str:
        """Submit a batch job (its script on sbatch's standard input); its job id."""
        job_id = run_command(argv, stdin=script).strip().split(";")[0]
        with self._lock:
            self._states[job_id] = SUBMITTED
        self._wake.set()
        return job_id

    def watch(self, job_id: str) -> None:
        """Follow a job submitted elsewhere (by an earlier `pool up`)."""
        with self._lock:
            if job_id not in self._states:
                self._states[job_id] = SUBMITTED
                self._wake.set()

    def state(self, job_id: str) -> JobState:
        with self._lock:
            return self._states[job_id]

    def cancel(self, job_ids: list[str]) -> None:
        live = [job for job in job_ids if not self.state(job).ended]
        if live:
            try:
                run_command(["scancel", *live])
            except SlurmError as error:
                log.warning("%s", error)
            self._wake.set()

    def wait_settled(self, job_ids: list[str], timeout_s: float) -> bool:
        """Wait until every job has ended and its processes are gone; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while not all(self.state(job).settled for job in job_ids):
            if time.monotonic() > deadline:
                return False
            self._wake.set()  # ask squeue now (still at most once per interval)
            self._closed.wait(SQUEUE_INTERVAL_S / 2)
        return True

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(SQUEUE_INTERVAL_S)
            self._wake.clear()
            with self._lock:
                watched = [job for job, state in self._states.items() if not state.settled]
            if watched:
                self._refresh(watched)
            self._closed.wait(SQUEUE_INTERVAL_S)  # at most one squeue per interval, however woken

    def _refresh(self, job_ids: list[str]) -> None:
        try:
            out = run_command(["squeue", "-h", "--states=all", f"--jobs={','.join(job_ids)}", "-o", "%i|%T|%r"])
        except SlurmError as error:
            if "Invalid job id" not in str(error):
                log.warning("%s", error)
                return
            out = ""  # every job asked for has left the controller's memory
        seen = {}
        for line in out.splitlines():
            fields = line.strip().split("|")
            if len(fields) == 3:
                seen[fields[0]] = JobState(fields[1], fields[2])
        with self._lock:
            for job in job_ids:
                self._states[job] = seen.get(job, GONE)
