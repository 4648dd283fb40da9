"""Connecting to a node over SSH the way OpenSSH would.

`~/.ssh/config` is honoured (Host aliases, HostName, User, Port, IdentityFile, ProxyJump,
UserKnownHostsFile); keys come from the cluster file's `private_key`, the config, ssh-agent and
the default key files. Host keys are checked against known_hosts: an unknown key is refused unless
the user asked to accept new hosts (like StrictHostKeyChecking=accept-new), and a changed key is
always refused. Every failure is one line naming the host and the fix.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import paramiko

from patas.broker.ssh.options import NodeError, SSHOptions
from patas.common.config import DEFAULT_SSH_PORT, Node

CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SSHTarget:
    """Where and as whom to connect, after ~/.ssh/config is applied."""

    alias: str
    hostname: str
    port: int
    user: str
    key_files: tuple[str, ...]
    proxy_jump: str | None
    known_hosts: tuple[Path, ...]

    def describe_keys(self) -> str:
        return ", ".join(self.key_files) if self.key_files else "ssh-agent and default keys"


def resolve(node: Node, options: SSHOptions) -> SSHTarget:
    """The node's connection settings: the cluster file wins over ~/.ssh/config."""
    entry = _config(options.config_path).lookup(node.hostname)
    # As in OpenSSH, UserKnownHostsFile replaces the default file; new keys go to the first one.
    configured = [Path(p).expanduser() for p in entry.get("userknownhostsfile", "").split()]
    known = configured or [options.known_hosts_path]
    # Like OpenSSH, skip IdentityFile entries that do not exist; a cluster file's key must exist.
    configured_keys = [k for k in entry.get("identityfile", []) if os.path.exists(os.path.expanduser(k))]
    keys = [node.private_key] if node.private_key else configured_keys
    return SSHTarget(
        alias=node.hostname,
        hostname=entry.get("hostname", node.hostname),
        port=node.port or int(entry.get("port", DEFAULT_SSH_PORT)),
        user=node.user or entry.get("user") or _local_user(),
        key_files=tuple(os.path.expanduser(k) for k in keys),
        proxy_jump=entry.get("proxyjump"),
        known_hosts=tuple(dict.fromkeys(known)),
    )


# AES-GCM first (then paramiko's own order): an AEAD cipher spares paramiko a separate HMAC of
# every packet, its largest cost in bulk sends (the shipped code, --ship), and sshd's too.
AEAD_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def _transport(sock: object, **options: object) -> paramiko.Transport:
    transport = paramiko.Transport(sock, **options)  # type: ignore[arg-type]
    security = transport.get_security_options()
    known = tuple(security.ciphers)
    security.ciphers = tuple(c for c in AEAD_CIPHERS if c in known) + tuple(c for c in known if c not in AEAD_CIPHERS)
    return transport


def connect(target: SSHTarget, options: SSHOptions) -> tuple[paramiko.SSHClient, list[paramiko.SSHClient]]:
    """An authenticated client, and the clients of any jump hosts it goes through (keep them open)."""
    for key in target.key_files:
        if not os.path.isfile(key):
            raise NodeError(f"private key {key} not found (fix private_key or IdentityFile)")
        if not os.access(key, os.R_OK):
            raise NodeError(f"private key {key} is not readable (check its permissions)")
    jumps: list[paramiko.SSHClient] = []
    sock = None
    if target.proxy_jump and target.proxy_jump.lower() != "none":
        hop = target.proxy_jump.split(",")[-1]
        jump_target = resolve(_jump_node(hop), options)
        jump, jump_hops = connect(jump_target, options)
        jumps = jump_hops + [jump]
        try:
            sock = jump.get_transport().open_channel("direct-tcpip", (target.hostname, target.port), ("127.0.0.1", 0))
        except (paramiko.SSHException, OSError) as error:
            raise NodeError(f"jump host {hop} cannot reach {target.hostname}:{target.port}: {error}") from None
    client = paramiko.SSHClient()
    for path in target.known_hosts:
        if path.exists():
            client.load_host_keys(str(path))
    client.set_missing_host_key_policy(_AcceptNew(target.known_hosts[0]) if options.accept_new_hosts else paramiko.RejectPolicy())
    try:
        client.connect(
            target.hostname,
            target.port,
            username=target.user,
            key_filename=list(target.key_files) or None,
            timeout=CONNECT_TIMEOUT_S,
            banner_timeout=CONNECT_TIMEOUT_S,
            auth_timeout=CONNECT_TIMEOUT_S,
            sock=sock,
            transport_factory=_transport,
        )
    except paramiko.BadHostKeyException:
        raise NodeError(
            f"the host key of {target.hostname}:{target.port} has CHANGED (a reinstalled node, or someone in the"
            f" middle); if you trust it, remove its line from {target.known_hosts[0]}"
        ) from None
    except paramiko.AuthenticationException:
        raise NodeError(f"authentication failed (user {target.user}, key {target.describe_keys()})") from None
    except paramiko.SSHException as error:
        if "not found in known_hosts" in str(error):
            raise NodeError(
                f"unknown host key for {target.hostname}:{target.port} (verify it, then add it with"
                f" `ssh-keyscan -p {target.port} {target.hostname} >> {target.known_hosts[0]}`, or use --accept-new-hosts)"
            ) from None
        raise NodeError(f"SSH to {target.hostname}:{target.port} failed: {error}") from None
    except (socket.timeout, TimeoutError):
        raise NodeError(f"cannot connect to {target.hostname}:{target.port}: timed out after {CONNECT_TIMEOUT_S:.0f} s") from None
    except paramiko.ssh_exception.NoValidConnectionsError as error:
        first = next(iter(error.errors.values()))
        reason = (first.strerror or str(first)).lower()
        raise NodeError(f"cannot connect to {target.hostname}:{target.port}: {reason}") from None
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise NodeError(f"cannot connect to {target.hostname}:{target.port}: {reason}") from None
    return client, jumps


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """Trust a host seen for the first time and remember it; a changed key is still refused."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        self.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.known_hosts, "a", encoding="ascii") as stream:
            stream.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, key.get_name(), key)


def _config(path: Path) -> paramiko.SSHConfig:
    if not path.exists():
        return paramiko.SSHConfig()
    try:
        return paramiko.SSHConfig.from_path(str(path))
    except (OSError, paramiko.ConfigParseError) as error:
        raise NodeError(f"cannot read {path}: {error}") from None


def _jump_node(spec: str) -> Node:
    user, _, host = spec.rpartition("@")
    port = None
    if host.count(":") == 1:
        host, port_text = host.split(":")
        port = int(port_text)
    return Node("jump", host, user or None, port)


def _local_user() -> str:
    import getpass

    return getpass.getuser()
