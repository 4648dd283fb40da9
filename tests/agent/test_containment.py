"""Tasks never outlive their end: what a command starts dies with it, even when it left the
command's process group (setsid) or double-forked into a daemon, and is killed with its own
task only. A Finished message is sent after the supervisor has killed and reaped everything, so
these tests look at /proc right when it arrives."""

from __future__ import annotations

import os
import time

import pytest

from patas.common.protocol import Assign, Cancel, Finished
from tests.agent.test_agent import broker_and_agent  # noqa: F401  (the fixture)
from tests.running import processes_with

# A marker in a sleep's argument names this test's processes: `sleep 3005.<pid>` sleeps 3005 s.
PID = os.getpid()

ESCAPES = {
    "setsid": "setsid sleep {marker} &",
    "a double fork": "( ( sleep {marker} & ) & )",
    "a daemon (fork, setsid, fork)": (
        "python3 -c 'import os, subprocess\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        '        subprocess.Popen(["sleep", "{marker}"], start_new_session=True)\n'
        "    os._exit(0)\n"
        "os.wait()'"
    ),
}


def finished(broker, timeout_s: float = 20.0) -> Finished:  # type: ignore[no-untyped-def]
    (message,) = [m for m in broker.receive_until(Finished, timeout_s) if isinstance(m, Finished)]
    return message


def wait_until_running(marker: str, count: int = 1, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(processes_with(marker)) < count:
        assert time.monotonic() < deadline, f"{marker} never started"
        time.sleep(0.02)


@pytest.mark.parametrize("escape", sorted(ESCAPES))
def test_what_a_task_left_running_dies_when_it_ends(broker_and_agent, escape):  # noqa: F811
    broker, _ = broker_and_agent
    marker = f"3005.{PID}{len(escape)}"
    broker.send(Assign(1, [ESCAPES[escape].format(marker=marker) + f"\nsleep 0.2; echo {marker}"], os.getcwd(), {}, None))
    end = finished(broker)
    assert end.exit_code == 0 and end.stdout == f"{marker}\n".encode(), end.stderr
    assert processes_with(marker) == []


def test_a_grandchild_holding_the_output_pipe_does_not_keep_the_task_running(broker_and_agent):  # noqa: F811
    broker, _ = broker_and_agent
    marker = f"3006.{PID}"
    started = time.monotonic()
    broker.send(Assign(1, [f"setsid sleep {marker} & echo out; echo err >&2"], os.getcwd(), {}, None))
    end = finished(broker)
    assert time.monotonic() - started < 5
    assert (end.exit_code, end.stdout, end.stderr) == (0, b"out\n", b"err\n")
    assert processes_with(marker) == []


def test_a_timed_out_task_takes_what_it_started_with_it(broker_and_agent):  # noqa: F811
    broker, _ = broker_and_agent
    marker = f"3007.{PID}"
    broker.send(Assign(1, [f"setsid sleep {marker} & exec sleep 60"], os.getcwd(), {}, 0.5))
    end = finished(broker)
    assert end.timed_out and end.exit_code == -15  # the main process took SIGTERM
    assert processes_with(marker) == []


def test_a_timed_out_task_that_ignores_sigterm_is_killed_with_all_it_started(broker_and_agent):  # noqa: F811
    broker, _ = broker_and_agent
    marker = f"3008.{PID}"
    command = f"trap '' TERM; setsid bash -c 'trap \"\" TERM; sleep {marker}' & sleep 60 & wait"
    broker.send(Assign(1, [command], os.getcwd(), {}, 0.5))
    end = finished(broker, timeout_s=30)
    assert end.timed_out and end.exit_code == -9
    assert processes_with(marker) == []


def test_cancel_kills_what_left_the_group(broker_and_agent):  # noqa: F811
    broker, _ = broker_and_agent
    marker = f"3009.{PID}"
    broker.send(Assign(1, [f"( ( setsid sleep {marker} & ) & ); sleep {marker}"], os.getcwd(), {}, None))
    wait_until_running(marker, 2)
    broker.send(Cancel(1))
    deadline = time.monotonic() + 10
    while processes_with(marker):
        assert time.monotonic() < deadline, "the cancelled task's processes are still running"
        time.sleep(0.02)


def test_a_task_kills_only_what_it_started_not_what_a_task_beside_it_did(broker_and_agent):  # noqa: F811
    broker, agent = broker_and_agent
    agent.free_slots.append(1)  # a second slot, so both tasks run at once
    short, long = f"3010.{PID}", f"3011.{PID}"
    broker.send(Assign(2, [f"setsid sleep {long} & sleep 60"], os.getcwd(), {}, None))
    wait_until_running(long, 2)
    broker.send(Assign(1, [f"setsid sleep {short} & sleep 0.3"], os.getcwd(), {}, None))
    end = finished(broker)
    assert end.lease == 1 and processes_with(short) == []
    assert len(processes_with(long)) == 2  # the other task and its escaped child run on
    broker.send(Cancel(2))
    deadline = time.monotonic() + 10
    while processes_with(long):
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_a_task_after_one_that_escaped_runs_normally(broker_and_agent):  # noqa: F811
    """The slot's supervisor serves task after task; an order for an ended task never reaches
    the next one."""
    broker, _ = broker_and_agent
    marker = f"3012.{PID}"
    for lease in range(1, 6):
        broker.send(Assign(lease, [f"setsid sleep {marker} & echo {lease}"], os.getcwd(), {}, 0.2))
        end = finished(broker)
        assert (end.lease, end.exit_code, end.stdout) == (lease, 0, f"{lease}\n".encode())
        broker.send(Cancel(lease))  # too late: the task is over
    broker.send(Assign(9, ["sleep 0.3; echo nine"], os.getcwd(), {}, None))
    end = finished(broker)
    assert (end.lease, end.exit_code, end.stdout) == (9, 0, b"nine\n")
    assert processes_with(marker) == []
