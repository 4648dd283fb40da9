"""A simulated cluster on one machine: real sshd nodes in namespaces, for integration tests.

`build_cluster(4)` gives four nodes, each with
- its own Linux user (`patas<token>n<i>`, made with `useradd -p '*'`, shell /bin/bash);
- its own network namespace, joined by a veth to a bridge in the root namespace: the bridge is
  `coordinator_address` (10.200.X.1, a free /24 of 10.200.0.0/16 per cluster) and node i is at
  10.200.X.(11+i), with loopback up;
- its own mount and UTS namespaces (hostname `node<i>`), in which /run, /home (so the user's
  home), /tmp, /var/tmp and /dev/shm are private tmpfs: what the node writes, the coordinator
  cannot see; and the coordinator's patas checkout is hidden (an empty directory), so code
  reaches a node only if it is shipped there;
- its own sshd (port 22 of its address, own host key, key login only, `internal-sftp`), run in
  the foreground so its PID is held.
The coordinator side gets a key, a known_hosts and an ssh_config (`ssh -F ssh_config node0`).

Knobs, per node (`node_options={"node2": NodeOptions(python=NodePython.OLD)}`), else for all:
- `NodeOptions.python`: SYSTEM (/usr/bin/python3 on PATH), MISSING (no python3 on the node, not
  even by absolute path), OLD (python3 is the system interpreter claiming to be 3.8.18).
  `build_cluster(n, with_python=False)` makes MISSING the default.
- `NodeOptions.sshd_config`: extra sshd_config lines; they come first, so they win.
- `NodeOptions.sftp`: False gives an sshd without the SFTP subsystem.

Needs root, sshd, iproute2 and util-linux; raises ClusterUnavailable(reason) otherwise. Teardown
(`close()`) goes by recorded names and PIDs (see `tests/sshcluster_ledger.py`) and leaves nothing.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import enum
import ipaddress
import logging
import os
import pwd
import secrets
import shutil
import string
import subprocess
import tempfile
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from tests import sshcluster_ledger as ledgers
from tests.sshcluster_ledger import NETNS_DIR, NETNS_DIR_MARK, TOOL_PATH, ClusterError, Ledger

__all__ = [
    "ClusterError", "ClusterUnavailable", "NodeOptions", "NodePython", "SimNode", "SimulatedCluster", "build_cluster",
]

log = logging.getLogger(__name__)

SUBNETS = ipaddress.ip_network("10.200.0.0/16")  # each cluster takes a free /24 of it
FIRST_NODE_HOST = 11  # node i is host 11 + i of its cluster's /24; the coordinator is host 1
MAX_NODES = 200
SSH_PORT = 22
NODE_SHELL = "/bin/bash"
# The PATH sshd gives a non-root user (Debian's build of OpenSSH): no pyenv, no venv.
NODE_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/games"
READY_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.005
TOKEN_LENGTH = 5
NODE_SCRIPT = Path(__file__).with_name("sshcluster_node.sh")
CHECKOUT = Path(__file__).resolve().parents[1]  # hidden from the nodes
OLD_PYTHON = Path(__file__).with_name("sshcluster_old_python.py")
# Tool -> Debian package that provides it.
REQUIRED_TOOLS = {
    "sshd": "openssh-server", "ssh-keygen": "openssh-client", "ip": "iproute2", "nsenter": "util-linux",
    "unshare": "util-linux", "setpriv": "util-linux", "mountpoint": "util-linux", "useradd": "passwd",
    "userdel": "passwd",
}


class ClusterUnavailable(Exception):
    """This machine cannot host a simulated cluster; `reason` says why (for pytest.skip)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NodePython(enum.Enum):
    SYSTEM = "system"  # /usr/bin/python3, found as `python3`
    MISSING = "missing"  # no python3 at all
    OLD = "old"  # python3 reports 3.8.18


@dataclass(frozen=True)
class NodeOptions:
    python: NodePython = NodePython.SYSTEM
    sshd_config: tuple[str, ...] = ()
    sftp: bool = True  # False: no `Subsystem sftp` line, as on hardened login nodes


@dataclass(frozen=True)
class SimNode:
    name: str  # "node0"
    user: str  # the node's Linux user, unique to this build
    host: str  # the sshd's address, reachable from the coordinator
    port: int  # the sshd's port
    hostname: str  # the node's own hostname
    netns: str  # network namespace name (`ip -n NETNS ...`)
    host_veth: str  # root-namespace end of the node's link (cut_link sets it down)
    uid: int
    home: str  # private to the node
    python: NodePython


class SimulatedCluster:
    """Nodes to reach over SSH, and ways to look inside them, break them and tear them down."""

    def __init__(self, ledger: Ledger, nodes: list[SimNode], network: ipaddress.IPv4Network, workdir: Path) -> None:
        self.nodes = nodes
        self.network = network
        self.coordinator_address = str(network[1])
        self.workdir = workdir
        self.key_path = workdir / "id_ed25519"
        self.known_hosts_path = workdir / "known_hosts"
        self.ssh_config_path = workdir / "ssh_config"
        self._ledger = ledger
        self._sshd: dict[str, subprocess.Popen[bytes]] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"<SimulatedCluster {self.network} {[node.name for node in self.nodes]}>"

    def __enter__(self) -> SimulatedCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def node(self, name: str) -> SimNode:
        return next(node for node in self.nodes if node.name == name)

    def sshd_pid(self, node: SimNode) -> int:
        return self._sshd[node.name].pid

    def sshd_log(self, node: SimNode) -> str:
        """What the node's sshd has logged (`-e`): connections, authentications, errors."""
        return (self.workdir / node.name / "sshd.log").read_text(errors="replace")

    def run_on(
        self, node: SimNode, command: str, timeout: float = COMMAND_TIMEOUT_S, *, as_root: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command inside the node, as its user (in its home, with the environment
        sshd would give) or as root, and wait for it. Not over SSH: it works with the link cut.
        On timeout only the shell is killed; kill_node_processes ends what it started."""
        enter = [_tool("nsenter"), f"--target={self.sshd_pid(node)}", "--mount", "--uts", "--net"]
        if as_root:
            argv = [*enter, "--wdns=/", "--", "/bin/sh", "-c", command]
            env = {"PATH": TOOL_PATH, "HOME": "/root"}
        else:
            account = pwd.getpwnam(node.user)
            become = [_tool("setpriv"), f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--init-groups"]
            argv = [*enter, f"--wdns={node.home}", "--", *become, "--", NODE_SHELL, "-c", command]
            env = {"PATH": NODE_PATH, "HOME": node.home, "USER": node.user, "LOGNAME": node.user}
            env["SHELL"] = NODE_SHELL
        return subprocess.run(
            argv, env={**env, "LANG": "C.UTF-8"}, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=timeout,
        )

    def processes_of(self, node: SimNode) -> list[int]:
        """PIDs of the live (not zombie) processes of the node's user. An open SSH connection
        counts: its `sshd: USER@notty` process is the user's, and it exits a moment after the
        connection closes (so wait for this to empty rather than expect it at once)."""
        return ledgers.live_pids(uids=[node.uid])

    def cut_link(self, node: SimNode) -> None:
        """Partition the node: packets both ways are lost silently until restore_link."""
        ledgers.run(["ip", "link", "set", "dev", node.host_veth, "down"])

    def restore_link(self, node: SimNode) -> None:
        ledgers.run(["ip", "link", "set", "dev", node.host_veth, "up"])

    def kill_node_processes(self, node: SimNode) -> None:
        """SIGKILL every process of the node's user, until none is left."""
        ledgers.kill_until_gone(lambda: self.processes_of(node))

    def reset(self) -> None:
        """Make every node as it was built: links up, no process of its user, empty home
        (but for ~/.ssh/authorized_keys), empty /tmp, /var/tmp and /dev/shm."""
        ledgers.run(["ip", "-batch", "-"], stdin="".join(f"link set dev {n.host_veth} up\n" for n in self.nodes))
        ledgers.kill_until_gone(lambda: ledgers.live_pids(uids=[node.uid for node in self.nodes]))
        for node in self.nodes:
            wiped = self.run_on(node, _WIPE_SCRIPT.format(home=node.home, user=node.user), as_root=True)
            if wiped.returncode != 0:
                raise ClusterError(f"{node.name}: could not wipe the node: {wiped.stderr.strip()}")

    def close(self) -> None:
        """Tear down everything the build made (idempotent)."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        started = time.monotonic()
        ledgers.release(self._ledger, list(self._sshd.values()))
        log.info("simulated cluster %s torn down in %.3f s", self.network, time.monotonic() - started)


_WIPE_SCRIPT = """set -e
find {home} /tmp /var/tmp /dev/shm -mindepth 1 -maxdepth 1 -exec rm -rf -- {{}} +
install -d -m 0700 -o {user} -g {user} {home}/.ssh
install -m 0600 -o {user} -g {user} /run/patas-node/authorized_keys {home}/.ssh/authorized_keys
"""


def build_cluster(
    n: int,
    *,
    with_python: bool = True,
    node_options: dict[str, NodeOptions] | None = None,
    workdir: Path | None = None,
) -> SimulatedCluster:
    """Start `n` simulated nodes (node0 ... node<n-1>); close() the result to tear them down.

    `node_options` maps node names to NodeOptions; the others get NodeOptions(python=SYSTEM), or
    MISSING when `with_python` is False. Root-side files (keys, configs, sshd logs) go to
    `workdir` (kept), else to a private temporary directory (deleted by close()).
    """
    started = time.monotonic()
    options = _options_per_node(n, with_python, node_options or {})
    _check_machine(options)
    workdir_owned = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="patas-sshcluster-")) if workdir is None else workdir.resolve()
    ledger = _new_ledger(n, str(workdir) if workdir_owned else None)
    cluster: SimulatedCluster | None = None
    # useradd, the slowest step, runs one at a time (it locks /etc/passwd) beside the rest.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as useradd:
        try:
            uids = [useradd.submit(_add_user, user) for user in ledger.users]
            keygens = _start_keygens(workdir, n)
            network = _create_network(ledger)
            _wait_all(keygens)
            cluster = SimulatedCluster(ledger, [], network, workdir)
            _start_nodes(cluster, options, uids)
        except BaseException:
            useradd.shutdown(wait=True, cancel_futures=True)
            ledgers.release(ledger, list(cluster._sshd.values()) if cluster else [])
            raise
    atexit.register(cluster.close)
    log.info("simulated cluster %s: %d nodes up in %.3f s", network, n, time.monotonic() - started)
    return cluster


def _options_per_node(n: int, with_python: bool, node_options: dict[str, NodeOptions]) -> list[NodeOptions]:
    if not 1 <= n <= MAX_NODES:
        raise ValueError(f"a simulated cluster has 1 to {MAX_NODES} nodes, not {n}")
    names = [f"node{i}" for i in range(n)]
    unknown = sorted(set(node_options) - set(names))
    if unknown:
        raise ValueError(f"node_options names no such node: {', '.join(unknown)} (nodes are node0 ... node{n - 1})")
    default = NodeOptions(python=NodePython.SYSTEM if with_python else NodePython.MISSING)
    return [node_options.get(name, default) for name in names]


def _check_machine(options: list[NodeOptions]) -> None:
    if os.geteuid() != 0:
        raise ClusterUnavailable("a simulated cluster needs root (users, network namespaces, mounts)")
    missing = [f"{tool} ({package})" for tool, package in REQUIRED_TOOLS.items() if not _tool(tool)]
    if missing:
        raise ClusterUnavailable(f"missing tools: {', '.join(missing)}; install the Debian packages named")
    python = Path("/usr/bin/python3")
    needed = any(option.python is not NodePython.MISSING for option in options)
    if needed and not (python.exists() and python.stat().st_mode & 0o001):
        raise ClusterUnavailable(f"{python} is missing or not executable by other users; nodes need it")
    probe = subprocess.run(
        ["unshare", "--mount", "--uts", "--net", "true"], capture_output=True, text=True, env={"PATH": TOOL_PATH}
    )
    if probe.returncode != 0:
        raise ClusterUnavailable(f"cannot create namespaces here: {probe.stderr.strip()}")


def _tool(name: str) -> str:
    """The absolute path of a tool, found where root's tools are ("" if missing)."""
    return shutil.which(name, path=TOOL_PATH) or ""


def _new_ledger(n: int, workdir: str | None) -> Ledger:
    """Names for everything the build will make, saved before anything is made (reaping the
    ledgers of ended sessions first)."""
    alphabet = string.ascii_lowercase + string.digits
    while True:
        token = "".join(secrets.choice(alphabet) for _ in range(TOKEN_LENGTH))
        ledger = Ledger(
            token=token, owner_pid=os.getpid(), owner_start=ledgers.start_time(os.getpid()), bridge=f"pb{token}",
            netns=[f"patas-{token}-node{i}" for i in range(n)], veths=[f"pv{token}n{i}" for i in range(n)],
            users=[f"patas{token}n{i}" for i in range(n)], workdir=workdir,
        )
        taken = [Path("/sys/class/net", name).exists() for name in [ledger.bridge, *ledger.veths]]
        taken += [(NETNS_DIR / name).exists() for name in ledger.netns]
        taken += [ledgers.user_exists(user) for user in ledger.users]
        if not any(taken):
            with ledgers.state_lock():
                reaped = ledgers.reap_stale()
                ledger.save()
            if reaped:
                log.warning("tore down simulated clusters left by ended sessions: %s", ", ".join(reaped))
            return ledger


def _create_network(ledger: Ledger) -> ipaddress.IPv4Network:
    """Bridge, namespaces and veths, under the machine-wide lock (which also picks the subnet)."""
    with ledgers.state_lock():
        network = _free_subnet()
        if not NETNS_DIR.exists():
            NETNS_DIR_MARK.touch()
        commands = [
            f"link add name {ledger.bridge} type bridge forward_delay 0",
            f"addr add {network[1]}/{network.prefixlen} dev {ledger.bridge}",
            f"link set dev {ledger.bridge} up",
        ]
        for netns, veth in zip(ledger.netns, ledger.veths):
            commands += [
                f"netns add {netns}",
                f"link add name {veth} type veth peer name eth0 netns {netns}",
                f"link set dev {veth} master {ledger.bridge} up",
            ]
        ledgers.run(["ip", "-batch", "-"], stdin="\n".join(commands) + "\n")
    return network


def _free_subnet() -> ipaddress.IPv4Network:
    """The first /24 of SUBNETS that no address or route of this machine touches."""
    used = []
    for line in ledgers.run(["ip", "-4", "-o", "route", "show", "table", "all"]).splitlines():
        words = line.split()  # "[TYPE] DESTINATION ...", TYPE as in local, broadcast, unreachable
        destination = words[0] if words[0][0].isdigit() or words[0] == "default" else words[1]
        if destination != "default":
            network = ipaddress.ip_network(destination, strict=False)
            if network.prefixlen >= SUBNETS.prefixlen:
                used.append(network)
    for candidate in SUBNETS.subnets(new_prefix=24):
        if not any(candidate.overlaps(network) for network in used):
            return candidate
    raise ClusterError(f"no free /24 left in {SUBNETS}")


def _start_keygens(workdir: Path, n: int) -> list[subprocess.Popen[bytes]]:
    keys = [workdir / "id_ed25519"]
    for i in range(n):
        (workdir / f"node{i}").mkdir(mode=0o700)
        keys.append(workdir / f"node{i}" / "ssh_host_ed25519_key")
    return [
        subprocess.Popen(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "patas-sshcluster", "-f", str(key)],
            env={"PATH": TOOL_PATH}, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        for key in keys
    ]


def _wait_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        _, stderr = process.communicate(timeout=COMMAND_TIMEOUT_S)
        if process.returncode != 0:
            raise ClusterError(f"{' '.join(map(str, process.args))}: {stderr.decode(errors='replace').strip()}")


def _start_nodes(cluster: SimulatedCluster, options: list[NodeOptions], uids: list[Future[int]]) -> None:
    """Start each node's sshd as soon as its user exists, then wait for them all to listen."""
    ledger, network = cluster._ledger, cluster.network
    for i, (option, uid) in enumerate(zip(options, uids)):
        user = ledger.users[i]
        node = SimNode(
            name=f"node{i}", user=user, host=str(network[FIRST_NODE_HOST + i]), port=SSH_PORT, hostname=f"node{i}",
            netns=ledger.netns[i], host_veth=ledger.veths[i], uid=uid.result(), home=f"/home/{user}",
            python=option.python,
        )
        cluster.nodes.append(node)
        _write_node_files(cluster, node, option)
        cluster._sshd[node.name] = _start_sshd(cluster, node)
    cluster.known_hosts_path.write_text("".join(_known_hosts_line(cluster, node) for node in cluster.nodes))
    cluster.ssh_config_path.write_text("\n".join(_ssh_config_entry(cluster, node) for node in cluster.nodes))
    _wait_until_listening(cluster)


def _add_user(user: str) -> int:
    ledgers.run([
        "useradd", "--no-create-home", "--home-dir", f"/home/{user}", "--shell", NODE_SHELL, "--password", "*",
        "--comment", "patas simulated node", "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0", user,
    ])
    return pwd.getpwnam(user).pw_uid


def _write_node_files(cluster: SimulatedCluster, node: SimNode, option: NodeOptions) -> None:
    node_dir = cluster.workdir / node.name
    hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    hosts += "".join(f"{cluster.network[FIRST_NODE_HOST + i]}\tnode{i}\n" for i in range(len(cluster._ledger.users)))
    (node_dir / "hosts").write_text(hosts)
    (node_dir / "sshd_config").write_text(_sshd_config(node, option))
    shutil.copyfile(cluster.workdir / "id_ed25519.pub", node_dir / "authorized_keys")
    if option.python is NodePython.OLD:
        shutil.copyfile(OLD_PYTHON, node_dir / "python3")


def _known_hosts_line(cluster: SimulatedCluster, node: SimNode) -> str:
    host_key = (cluster.workdir / node.name / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    name = node.host if node.port == 22 else f"[{node.host}]:{node.port}"
    return f"{name} {' '.join(host_key)}\n"


def _sshd_config(node: SimNode, option: NodeOptions) -> str:
    state = "/run/patas-node"  # the node's private /run; see sshcluster_node.sh
    lines = [
        *option.sshd_config,
        f"ListenAddress {node.host}", f"Port {node.port}", f"HostKey {state}/ssh_host_ed25519_key",
        "PidFile /run/sshd.pid", "AuthorizedKeysFile .ssh/authorized_keys", f"AllowUsers {node.user}",
        "UsePAM no", "StrictModes no", "PermitRootLogin no", "PubkeyAuthentication yes",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "AllowTcpForwarding yes",
        "X11Forwarding no", "PrintMotd no", "UseDNS no",
        *(["Subsystem sftp internal-sftp"] if option.sftp else []),
        # Tests may open many connections at once; sshd's default (10:30:100) drops some at random.
        "MaxStartups 100", "LogLevel VERBOSE",
    ]
    return "".join(f"{line}\n" for line in lines)


def _ssh_config_entry(cluster: SimulatedCluster, node: SimNode) -> str:
    return (
        f"Host {node.name}\n    HostName {node.host}\n    Port {node.port}\n    User {node.user}\n"
        f"    IdentityFile {cluster.key_path}\n    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {cluster.known_hosts_path}\n    GlobalKnownHostsFile /dev/null\n"
        "    StrictHostKeyChecking yes\n    BatchMode yes\n    ConnectTimeout 5\n"
        # sshd's preferred post-quantum key exchange costs ~0.1 s per connection on a slow core.
        "    KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org\n"
    )


def _start_sshd(cluster: SimulatedCluster, node: SimNode) -> subprocess.Popen[bytes]:
    """nsenter, unshare and the node script each exec the next: the PID is the sshd's."""
    node_dir = cluster.workdir / node.name
    with open(node_dir / "sshd.log", "ab") as sshd_log:
        return subprocess.Popen(
            [
                "nsenter", f"--net={NETNS_DIR / node.netns}", "--",
                "unshare", "--mount", "--uts", "--propagation", "private", "--",
                "/bin/sh", str(NODE_SCRIPT), str(node_dir), node.user, node.hostname,
                f"{node.host}/{cluster.network.prefixlen}", node.python.value, str(CHECKOUT),
            ],
            env={"PATH": TOOL_PATH, "LANG": "C.UTF-8"}, stdin=subprocess.DEVNULL, stdout=sshd_log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )


def _wait_until_listening(cluster: SimulatedCluster) -> None:
    """Wait for every sshd to log that it listens, or fail with the log of one that exited."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    waiting = list(cluster.nodes)
    while waiting:
        for node in list(waiting):
            if "Server listening on" in cluster.sshd_log(node):
                waiting.remove(node)
            elif cluster._sshd[node.name].poll() is not None:
                raise ClusterError(f"{node.name}: sshd exited before listening:\n{cluster.sshd_log(node)}")
        if waiting and time.monotonic() > deadline:
            names = ", ".join(node.name for node in waiting)
            raise ClusterError(f"sshd not listening after {READY_TIMEOUT_S} s on {names}")
        if waiting:
            time.sleep(POLL_INTERVAL_S)
