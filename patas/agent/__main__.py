"""Start an agent.

    python -m patas.agent                  configuration on standard input (patas starts agents
                                           this way); the agent exits when its stdin closes
    python -m patas.agent --config FILE    configuration in a private file (pool agents, systemd,
                                           batch jobs); the agent runs until told to stop
    python -m patas.agent --slurm          inside a Slurm job step: one configuration line per task
                                           on standard input (srun --input=all), this task's by
                                           SLURM_PROCID; slots and GPUs from what Slurm granted

The configuration carries the agent's CURVE secret key, so it is never on a command line. A
configuration file must be readable by its owner only.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from typing import NoReturn

from patas.agent.agent import run
from patas.agent.allocation import check_gpus, granted, pick_own
from patas.agent.supervisor import Supervisor
from patas.common.agent_config import AgentConfig
from patas.common.errors import PatasError, ProtocolError


def load_config_file(path: str) -> AgentConfig:
    """The configuration in `path`, refusing a file that others can read (it holds a secret)."""
    try:
        mode = os.stat(path).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ProtocolError(f"{path}: readable by others; it holds a secret key (chmod 600 {path})")
        with open(path, "rb") as stream:
            line = stream.read()
    except OSError as error:
        raise ProtocolError(f"{path}: {error.strerror}") from None
    try:
        return AgentConfig.from_line(line)
    except ProtocolError as error:
        raise ProtocolError(f"{path}: {error} (write one with `patas pool issue`)") from None


def main(argv: list[str]) -> int:
    # The first slot's supervisor is forked now, while the agent has no thread and waits for its
    # configuration (an agent patas starts ahead waits for the coordinator to plan): the fork
    # (milliseconds on a VM) is then not on the way to the first task. Its end of the channel
    # closes with this process whatever happens next, and it exits then.
    first_supervisor = Supervisor()
    lifeline = None
    try:
        if argv[:1] == ["--config"] and len(argv) == 2:
            config = load_config_file(argv[1])
        elif argv == ["--slurm"]:
            # Read to the end: the lines are every task's, and no lifeline follows (the job's end,
            # or the broker's silence, ends this agent).
            config = granted(AgentConfig.from_line(pick_own(sys.stdin.buffer.read().splitlines(), os.environ)), os.environ)
        elif not argv:
            config = AgentConfig.read(sys.stdin.buffer)
            lifeline = sys.stdin.fileno()
            os.set_blocking(lifeline, False)
        else:
            sys.stderr.write("usage: python -m patas.agent [--config FILE | --slurm]\n")
            return 2
        check_gpus(config)
    except PatasError as error:
        sys.stderr.write(f"patas agent: {error}\n")
        return 2
    logging.basicConfig(
        level=logging.DEBUG if config.debug else logging.WARNING,
        format=f"%(asctime)s %(levelname)s agent {config.agent_id}: %(message)s",
        stream=sys.stderr,
    )
    return run(config, lifeline=lifeline, first_supervisor=first_supervisor)


def exit_now(code: int) -> NoReturn:
    """End the agent's process once `main` has returned, as multiprocessing's children end.

    The coordinator waits for this process to end. By then the agent has stopped its tasks and
    closed their files, its task folders and its socket; what is left is the interpreter's
    teardown, which frees every module and object one by one (~7 ms on the path of every run).
    The log and the standard streams are flushed first."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main(sys.argv[1:]))
