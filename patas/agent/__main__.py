"""`python -m patas.agent`: start an agent; its configuration arrives on standard input.

patas starts agents itself (locally, or over SSH); the configuration line carries the agent's
CURVE secret key, so it is never on a command line. The agent exits when its standard input
closes, that is when the coordinator (or the SSH connection to it) goes away.
"""

from __future__ import annotations

import logging
import os
import sys

from patas.agent.agent import run
from patas.common.agent_config import AgentConfig
from patas.common.errors import PatasError


def main() -> int:
    try:
        config = AgentConfig.read(sys.stdin.buffer)
    except PatasError as error:
        sys.stderr.write(f"patas agent: {error}\n")
        return 2
    logging.basicConfig(
        level=logging.DEBUG if config.debug else logging.WARNING,
        format=f"%(levelname)s agent {config.agent_id}: %(message)s",
        stream=sys.stderr,
    )
    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)
    return run(config, lifeline=stdin)


if __name__ == "__main__":
    sys.exit(main())
