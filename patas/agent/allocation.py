"""What a node gives the agent's workers: slots, and GPUs shared out so that no two workers share one.

A worker slot k of an agent holding GPUs g0..gN (by `gpus:` on a cluster node, or what Slurm
granted the job) gets `gpus_per_task` of them, `g[k*K] .. g[k*K+K-1]`, as CUDA_VISIBLE_DEVICES
(which CUDA, PyTorch and TensorFlow honour) and as PATAS_GPUS (comma-separated, for anything else).

Inside a Slurm job (`python -m patas.agent --slurm`) the configuration may leave slots at 0:
the agent then runs one task per CPU Slurm granted on its node (SLURM_CPUS_ON_NODE), or one per
`gpus_per_task` of its granted GPUs when it has any.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from patas.common.agent_config import AgentConfig
from patas.common.errors import ProtocolError
from patas.common.wording import plural

# Slurm's record of the GPUs a step or job holds, most specific first. They say whether GPUs were
# granted; CUDA_VISIBLE_DEVICES, which Slurm sets beside them, numbers them as CUDA sees them
# (inside a device cgroup, from 0), so that is what the workers share out. CUDA_VISIBLE_DEVICES
# alone may just be inherited from the shell that submitted the job: it is not a grant.
SLURM_GPU_VARIABLES = ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS")
CUDA_DEVICES = "CUDA_VISIBLE_DEVICES"
SLURM_CPU_VARIABLE = "SLURM_CPUS_ON_NODE"


def granted(config: AgentConfig, environ: Mapping[str, str]) -> AgentConfig:
    """The configuration with the slots and GPUs the Slurm allocation in `environ` granted."""
    gpus = config.gpus
    if gpus is None:
        slurm_gpus = next((environ[v] for v in SLURM_GPU_VARIABLES if environ.get(v, "").strip()), None)
        if slurm_gpus is not None:
            gpus = _device_list(environ.get(CUDA_DEVICES) or slurm_gpus)
    slots = config.slots
    if slots <= 0:
        if gpus:
            slots = max(1, len(gpus) // config.gpus_per_task)
        else:
            cpus = environ.get(SLURM_CPU_VARIABLE, "")
            slots = int(cpus) if cpus.isdigit() and int(cpus) > 0 else os.cpu_count() or 1
    return dataclasses.replace(config, slots=slots, gpus=gpus)


def slot_gpus(config: AgentConfig, slot: int) -> dict[str, str]:
    """The environment that pins worker `slot` to its own GPUs (empty when the agent has none)."""
    if config.gpus is None:
        return {}
    per_task = config.gpus_per_task
    listed = ",".join(config.gpus[slot * per_task : (slot + 1) * per_task])
    return {"CUDA_VISIBLE_DEVICES": listed, "PATAS_GPUS": listed}


def check_gpus(config: AgentConfig) -> None:
    """Refuse workers that would have to share GPUs (or get none)."""
    if config.gpus_per_task < 1:
        raise ProtocolError(f"gpus per task {config.gpus_per_task}: must be at least 1")
    if config.gpus is not None and config.slots * config.gpus_per_task > len(config.gpus):
        raise ProtocolError(
            f"{plural(config.slots, 'worker')} with {plural(config.gpus_per_task, 'GPU')} each need"
            f" {plural(config.slots * config.gpus_per_task, 'GPU')}, but this node has {len(config.gpus)} ({','.join(config.gpus) or 'none'})"
        )


def pick_own(lines: list[bytes], environ: Mapping[str, str]) -> bytes:
    """This task's line of a Slurm job's agent configurations: one per task, by SLURM_PROCID."""
    procid = environ.get("SLURM_PROCID", "")
    if not procid.isdigit():
        raise ProtocolError("--slurm: no SLURM_PROCID (start agents of a Slurm job with srun)")
    if int(procid) >= len(lines):
        raise ProtocolError(f"--slurm: {len(lines)} agent configurations for task {procid} (one per task, in order)")
    return lines[int(procid)]


def _device_list(text: str) -> tuple[str, ...]:
    return tuple(device.strip() for device in text.split(",") if device.strip())
