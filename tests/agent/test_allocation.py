"""What a node gives the agent's workers: slots and GPUs, from its configuration or Slurm's grant."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patas.agent.allocation import check_gpus, granted, pick_own, slot_gpus
from patas.common.agent_config import AgentConfig
from patas.common.errors import ProtocolError


def _config(**fields: object) -> AgentConfig:
    return AgentConfig("tcp://127.0.0.1:1", "a", **{"slots": 0, **fields})  # type: ignore[arg-type]


@given(st.integers(1, 8), st.integers(1, 4))
def test_workers_never_share_a_gpu(slots: int, per_task: int) -> None:
    config = _config(slots=slots, gpus=tuple(str(g) for g in range(slots * per_task)), gpus_per_task=per_task)
    check_gpus(config)
    seen = [slot_gpus(config, slot)["CUDA_VISIBLE_DEVICES"].split(",") for slot in range(slots)]
    flat = [gpu for gpus in seen for gpu in gpus]
    assert all(len(gpus) == per_task for gpus in seen)
    assert len(flat) == len(set(flat)) == slots * per_task
    assert all(slot_gpus(config, s)["PATAS_GPUS"] == slot_gpus(config, s)["CUDA_VISIBLE_DEVICES"] for s in range(slots))


def test_more_workers_than_gpus_is_refused() -> None:
    with pytest.raises(ProtocolError, match="^3 workers with 2 GPUs each need 6 GPUs, but this node has 4"):
        check_gpus(_config(slots=3, gpus=("0", "1", "2", "3"), gpus_per_task=2))
    with pytest.raises(ProtocolError, match=r"^2 workers with 1 GPU each need 2 GPUs, but this node has 1 \(0\)$"):
        check_gpus(_config(slots=2, gpus=("0",), gpus_per_task=1))


def test_no_gpus_no_pinning() -> None:
    assert slot_gpus(_config(slots=2), 1) == {}


def test_slurm_cpus_give_the_slots() -> None:
    assert granted(_config(), {"SLURM_CPUS_ON_NODE": "6"}).slots == 6
    assert granted(_config(slots=3), {"SLURM_CPUS_ON_NODE": "6"}).slots == 3


def test_slurm_gpus_give_the_gpus_and_the_slots() -> None:
    environ = {"SLURM_CPUS_ON_NODE": "16", "SLURM_JOB_GPUS": "4,5,6,7", "CUDA_VISIBLE_DEVICES": "0,1,2,3"}
    config = granted(_config(gpus_per_task=2), environ)
    assert config.gpus == ("0", "1", "2", "3") and config.slots == 2  # as CUDA numbers them


def test_an_inherited_cuda_visible_devices_is_not_a_grant() -> None:
    config = granted(_config(), {"SLURM_CPUS_ON_NODE": "2", "CUDA_VISIBLE_DEVICES": "0"})
    assert config.gpus is None and config.slots == 2


def test_each_task_of_a_job_takes_its_own_line() -> None:
    lines = [b"first", b"second", b"third"]
    assert [pick_own(lines, {"SLURM_PROCID": str(i)}) for i in range(3)] == lines
    with pytest.raises(ProtocolError, match="SLURM_PROCID"):
        pick_own(lines, {})
    with pytest.raises(ProtocolError, match="3 agent configurations for task 3"):
        pick_own(lines, {"SLURM_PROCID": "3"})
