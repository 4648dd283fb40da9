"""How to reach nodes over SSH, as plain settings (no paramiko here: local runs never load it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from patas.common.errors import PatasError


class NodeError(PatasError):
    """A node cannot be used; the message says why and how to fix it (without the node's name)."""


@dataclass(frozen=True)
class SSHOptions:
    config_path: Path = field(default_factory=lambda: Path("~/.ssh/config").expanduser())
    known_hosts_path: Path = field(default_factory=lambda: Path("~/.ssh/known_hosts").expanduser())
    accept_new_hosts: bool = False
    tunnel: bool = False  # agents reach the broker through their SSH connection
    advertise_host: str | None = None  # agents connect to this host instead of the one SSH used
    bind_host: str | None = None
