"""What `--slurm` asks of Slurm: the shape of the jobs and the resources of each node."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field

from patas.common.errors import ConfigError

# Slurm's --time formats: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS, or a word.
_TIME = re.compile(r"^(\d+-)?\d+(:\d+){0,2}$|^(UNLIMITED|INFINITE)$", re.IGNORECASE)


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    nodes: int | None = None  # one job of this many nodes, an agent on each (--slurm-nodes)
    jobs: int | None = None  # this many single-node jobs (--slurm-jobs)
    time: str | None = None  # each job's time limit, as sbatch --time takes it
    cpus_per_node: int | None = None  # else whole nodes (--exclusive): every CPU they have
    gpus_per_node: int | None = None
    gpus_per_task: int = 1
    sbatch_args: tuple[str, ...] = ()
    python: str = field(default=sys.executable)  # the agents' interpreter on the compute nodes

    def __post_init__(self) -> None:
        if self.nodes is not None and self.jobs is not None:
            raise ConfigError("--slurm-nodes N is one job of N nodes, --slurm-jobs N is N one-node jobs: give one of them")
        for option, value in (("--slurm-nodes", self.nodes), ("--slurm-jobs", self.jobs),
                              ("--cpus-per-node", self.cpus_per_node), ("--gpus-per-node", self.gpus_per_node),
                              ("--gpus-per-task", self.gpus_per_task)):  # fmt: skip
            if value is not None and value < 1:
                raise ConfigError(f"{option} {value}: must be at least 1")
        if self.time is not None and not _TIME.match(self.time):
            raise ConfigError(f"--time {self.time}: not a Slurm time limit (minutes, HH:MM:SS or D-HH:MM:SS)")

    @property
    def job_sizes(self) -> list[int]:
        """Nodes of each job to submit: [N] for --slurm-nodes N, N ones for --slurm-jobs N."""
        if self.jobs is not None:
            return [1] * self.jobs
        return [self.nodes or 1]

    def sbatch_argv(self, nodes: int, job_name: str, output: str) -> list[str]:
        """sbatch's command line for a job of `nodes` nodes, one agent task on each; the batch
        script (with the agents' keys) goes on its standard input, never here."""
        argv = ["sbatch", "--parsable", f"--job-name={job_name}", f"--nodes={nodes}", "--ntasks-per-node=1",
                f"--output={output}"]  # fmt: skip
        if self.partition:
            argv.append(f"--partition={self.partition}")
        if self.time:
            argv.append(f"--time={self.time}")
        argv.append(f"--cpus-per-task={self.cpus_per_node}" if self.cpus_per_node else "--exclusive")
        if self.gpus_per_node:
            argv.append(f"--gpus-per-node={self.gpus_per_node}")
        return argv + list(self.sbatch_args)
