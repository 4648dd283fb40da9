"""`python -m patas.agent --broker tcp://HOST:PORT --id NAME --slots N`: start an agent."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from patas.agent.agent import AgentSettings, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m patas.agent", description=__doc__)
    parser.add_argument("--broker", required=True, help="the broker's address, e.g. tcp://127.0.0.1:5555")
    parser.add_argument("--id", required=True, help="this agent's name, unique among the run's agents")
    parser.add_argument("--slots", type=int, default=os.cpu_count() or 1, help="tasks to run at once")
    parser.add_argument("--debug", action="store_true", help="log to stderr at debug level")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format=f"%(levelname)s agent {args.id}: %(message)s",
        stream=sys.stderr,
    )
    return run(AgentSettings(args.broker, args.id, args.slots))


if __name__ == "__main__":
    sys.exit(main())
