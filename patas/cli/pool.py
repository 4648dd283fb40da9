"""`patas pool`: long-lived agents that serve run after run."""

from __future__ import annotations

import sys

import click

from patas.cli.groups import SuggestingGroup
from patas.cli.nodes import clusters_from, node_options, ssh_options_from
from patas.cli.slurm import slurm_options, slurm_options_from, with_gpus_per_task
from patas.common.wording import plural

NAME = click.option("--name", default="default", show_default=True, help="The pool's name.")


@click.group(cls=SuggestingGroup, epilog="""
\b
Example:
  patas pool up --name lab --cluster cluster.yaml
  patas explore --pool lab --cmd './main.py {n}' --va n 1 51 2
  patas pool status --name lab
  patas pool down --name lab
""")
def pool() -> None:
    """Start agents once and run sweep after sweep on them (`explore --pool NAME`)."""


@pool.command(epilog="\b\nExamples:\n  patas pool up --name lab --cluster cluster.yaml\n"
                     "  patas pool up --name lab --slurm --slurm-nodes 4 --time 8:00:00 --bind 10.0.0.1")
@NAME
@node_options
@click.option("--bind", "bind_address", default=None, metavar="HOST[:PORT]",
              help="Where the pool listens (an address its agents reach).  [default: where each node reached over SSH sees this "
                   "machine; for --slurm, the address of this machine's host name]")
@click.option("--gpus-per-task", type=int, default=None, metavar="K", help="Give each worker K GPUs of its own.")
@slurm_options
def up(name: str, **options: object) -> None:
    """Start the pool (once) and an agent on each node, or in Slurm jobs (--slurm); agents
    outlive the SSH session."""
    from patas.broker.pools.pool import pool_up, pool_up_slurm
    from patas.cli.explore import _host_port

    bind_host, bind_port = _host_port(options["bind_address"], "--bind")  # type: ignore[arg-type]
    slurm = slurm_options_from(options)
    if slurm is not None:
        result = pool_up_slurm(name, slurm, bind_host, bind_port)
    else:
        clusters = with_gpus_per_task(clusters_from(options), options["gpus_per_task"])  # type: ignore[arg-type]
        result = pool_up(name, clusters, ssh_options_from(options, bind_host=bind_host), bind_host, bind_port)
    ready = [a for a in result.agents if a.state == "ready"]
    total = len(ready) + len(result.failures)
    click.echo(f"Pool {name}: {len(ready)}/{total} agents ready, {plural(sum(a.slots for a in ready), 'worker')}", err=True)
    for failure in result.failures:
        click.echo(f"  {failure}", err=True)
    if not ready:
        sys.exit(1)


@pool.command(epilog="\b\nExample:\n  patas pool status --name lab")
@NAME
def status(name: str) -> None:
    """Show the pool's agents: slots, running tasks, the runs each serves now, last contact."""
    from patas.broker.pools.pool import pool_status

    rows = pool_status(name)
    click.echo(f"{'agent':<16} {'host':<16} {'state':<10} {'slots':>5} {'running':>7} {'runs':>4}  last contact")
    for row in rows:
        contact = "never" if row.last_contact_s is None else f"{row.last_contact_s:.1f} s ago"
        click.echo(f"{row.agent_id:<16} {row.hostname or '-':<16} {row.state:<10} {row.slots:>5} {row.running:>7} {row.runs:>4}  {contact}")


@pool.command(epilog="\b\nExample:\n  patas pool drain --name lab node2")
@NAME
@click.argument("agents", nargs=-1)
def drain(name: str, agents: tuple[str, ...]) -> None:
    """Let agents (all by default) finish their runs, take no new ones, and exit."""
    from patas.broker.pools.pool import pool_drain

    pool_drain(name, list(agents))
    click.echo(f"Pool {name}: draining {', '.join(agents) or 'every agent'}", err=True)


@pool.command(epilog="\b\nExample:\n  patas pool down --name lab")
@NAME
def down(name: str) -> None:
    """Stop every agent and the pool's daemon (its keys stay for the next `up`)."""
    from patas.broker.pools.pool import pool_down

    pool_down(name)
    click.echo(f"Pool {name}: down", err=True)


@pool.command(epilog="\b\nExample:\n  patas pool revoke --name lab node2")
@NAME
@click.argument("agent")
def revoke(name: str, agent: str) -> None:
    """Refuse AGENT from now on: its key no longer opens the pool."""
    from patas.broker.pools.pool import pool_revoke

    pool_revoke(name, agent)
    click.echo(f"Pool {name}: {agent} revoked", err=True)


@pool.command(epilog="\b\nExample:\n  patas pool issue --name lab gpu7 --host 10.0.0.1 --slots 8 -o gpu7.json")
@NAME
@click.argument("agent")
@click.option("--host", required=True, help="The address of this machine as the agent's node reaches it.")
@click.option("--slots", type=int, default=1, show_default=True, help="Tasks the agent runs at once.")
@click.option("-o", "--output", "path", required=True, type=click.Path(dir_okay=False), help="Where to write the configuration (0600).")
def issue(name: str, agent: str, host: str, slots: int, path: str) -> None:
    """Write credentials for an agent you start yourself: `patas agent --config FILE`
    (from systemd or a batch job; see docs/pools.md)."""
    from pathlib import Path

    from patas.broker.pools.pool import listens_on, pool_issue
    from patas.broker.pools.state import write_private

    config = pool_issue(name, agent, host, slots)
    hosts = listens_on(name, host)
    if hosts is not None:
        click.echo(f"Warning: pool {name} listens on {', '.join(hosts)}, not on {host}: an agent given {host} cannot connect"
                   f" (start the pool with `patas pool up --name {name} --bind {host}`, or give --host one of those)", err=True)
    write_private(Path(path), config.to_line())
    click.echo(f"Wrote {path}: copy it to the node (keep it private) and run `patas agent --config {path}`", err=True)
