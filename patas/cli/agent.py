"""`patas agent`: run a pool agent on this node."""

from __future__ import annotations

import sys
from dataclasses import replace

import click


@click.command(epilog="\b\nExample:\n  patas pool issue --name lab gpu7 --host 10.0.0.1 --slots 8 -o agent.json\n  patas agent --config agent.json")
@click.option("--config", "path", required=True, type=click.Path(dir_okay=False), help="The agent's configuration, from `patas pool issue` (must be private: chmod 600).")
def agent(path: str) -> None:
    """Serve a pool from this node until the pool says stop; reconnects when the pool restarts."""
    from patas.agent.__main__ import load_config_file
    from patas.agent.agent import run

    config = load_config_file(path)
    if not config.persistent:
        config = replace(config, persistent=True)
    sys.exit(run(config, lifeline=None))
