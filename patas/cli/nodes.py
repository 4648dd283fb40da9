"""The options that say which nodes to use, shared by `explore` and `pool up`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

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
