"""The nodes of a run: the options that say which to use, shared by `explore` and `pool up`, and
`patas nodes add/remove`, which change the nodes of a run in progress."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import click

from patas.cli.groups import SuggestingGroup
from patas.cli.lab_options import experiment_in_lab
from patas.cli.options import VariadicOption
from patas.common.config import DEFAULT_CLUSTER_NAME, Cluster, Node, load_cluster, parse_node_spec
from patas.common.errors import ConfigError


def node_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--cluster, --node, --filter-nodes, --ssh-config, --accept-new-hosts."""
    decorators = [
        click.option("--cluster", "cluster_files", multiple=True, type=click.Path(dir_okay=False), metavar="FILE",
                     help="Cluster YAML file (repeatable)."),
        click.option("--node", "node_specs", cls=VariadicOption, metavar="HOST [WORKERS [TAGS...]]",
                     help="A node, [user@]host[:port]; WORKERS defaults to its core count.  [default: localhost]"),
        click.option("--filter-nodes", "node_tags", cls=VariadicOption, metavar="TAG...",
                     help="Use only nodes having all these tags."),
        click.option("--ssh-config", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                     help="OpenSSH client configuration to use, like ssh -F.  [default: ~/.ssh/config]"),
        click.option("--accept-new-hosts", is_flag=True,
                     help="Trust nodes whose SSH host key is not yet in known_hosts, and remember it."),
    ]  # fmt: skip
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def clusters_from(options: dict[str, Any]) -> list[Cluster]:
    """The clusters of --cluster files and --node flags (localhost if none), filtered by tags."""
    clusters = [load_cluster(path) for path in options["cluster_files"]]
    if options["node_specs"]:
        nodes = tuple(parse_node_spec(words, i) for i, words in enumerate(options["node_specs"]))
        clusters.append(Cluster(DEFAULT_CLUSTER_NAME, nodes))
    if not clusters:
        clusters = [Cluster(DEFAULT_CLUSTER_NAME, (Node("node0", "localhost"),))]
    tags = {tag for words in options["node_tags"] for tag in words}
    if tags:
        clusters = [Cluster(c.name, tuple(n for n in c.nodes if tags <= set(n.tags))) for c in clusters]
        clusters = [c for c in clusters if c.nodes]
        if not clusters:
            raise ConfigError(f"--filter-nodes {' '.join(sorted(tags))}: no node has all these tags")
    return clusters


def ssh_options_from(options: dict[str, Any], **more: Any):  # type: ignore[no-untyped-def]
    from patas.broker.ssh.options import SSHOptions

    return SSHOptions(
        config_path=Path(str(options["ssh_config"] or "~/.ssh/config")).expanduser(),
        accept_new_hosts=bool(options["accept_new_hosts"]),
        **more,
    )


# --- patas nodes ------------------------------------------------------------------------------

@click.group(cls=SuggestingGroup, epilog="""
\b
Example:
  patas explore --cmd './train.py {lr}' --vg lr 0.0001 1 10 --node localhost 4 -y &
  patas nodes add grid --node ana@tower 8
  patas nodes remove grid node0 --drain
""")  # fmt: skip
def nodes() -> None:
    """Add nodes to a running sweep, or take them away."""


@nodes.command(epilog="\b\nExample:\n  patas nodes add grid --node ana@tower 8\n  patas nodes add grid --cluster more.yaml")
@experiment_in_lab()
@click.option("--cluster", "cluster_files", multiple=True, type=click.Path(dir_okay=False), metavar="FILE",
              help="Cluster YAML file of the nodes to add (repeatable).")
@click.option("--node", "node_specs", cls=VariadicOption, metavar="HOST [WORKERS [TAGS...]]",
              help="A node to add, [user@]host[:port]; WORKERS defaults to its core count.")  # fmt: skip
def add(experiment: str, lab_root: str, cluster_files: tuple[str, ...], node_specs: tuple[tuple[str, ...], ...]) -> None:
    """Start agents on more nodes for the run in progress in EXPERIMENT; they take tasks at once.

    SSH connections use the options of the run (its --ssh-config, --accept-new-hosts). Nodes
    given with --node are named after the run's (node1, node2...); a cluster file's keep their
    names, which must be new to the run. Exit status 1 when a node could not be added (each
    says why)."""
    from patas.broker.run.channel import add_nodes

    if not cluster_files and not node_specs:
        raise click.UsageError("give the nodes to add: --node HOST [WORKERS] or --cluster FILE")
    folder = _experiment_folder(lab_root, experiment)
    failed = False
    for cluster, named in _clusters(cluster_files, node_specs):
        reply = add_nodes(folder, list(cluster.nodes), cluster.name, named)
        for line in reply.added:
            click.echo(f"Added {line}")
        for line in reply.failed:
            click.echo(f"Not added: {line}", err=True)
        failed = failed or bool(reply.failed)
    if failed:
        sys.exit(1)


@nodes.command(epilog="\b\nExample:\n  patas nodes remove grid node1 --drain")
@experiment_in_lab()
@click.argument("node")
@click.option("--drain", is_flag=True, help="Let its running tasks finish; it takes no new one.")
def remove(experiment: str, node: str, lab_root: str, drain: bool) -> None:
    """Take NODE (a node name, as `patas status` shows it) out of the run in progress.

    Without --drain its running tasks are killed and run again on other nodes, as new attempts
    that cost them no try; with --drain they finish first, then its agent stops."""
    from patas.broker.run.channel import remove_node

    click.echo(remove_node(_experiment_folder(lab_root, experiment), node, drain))


def _experiment_folder(lab_root: str, experiment: str) -> Path:
    from patas.analysis.status import experiment_names

    root = Path(lab_root)
    experiment_names(root, experiment)  # the lab and the experiment exist, or a did-you-mean
    return root / experiment


def _clusters(cluster_files: tuple[str, ...], node_specs: tuple[tuple[str, ...], ...]) -> list[tuple[Cluster, bool]]:
    """The clusters to add, each with whether its nodes have names of their own (a file's do)."""
    clusters = [(load_cluster(path), True) for path in cluster_files]
    if node_specs:
        nodes = tuple(parse_node_spec(words, i) for i, words in enumerate(node_specs))
        clusters.append((Cluster(DEFAULT_CLUSTER_NAME, nodes), False))
    return clusters
