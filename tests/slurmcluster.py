"""A real Slurm on one machine, for integration tests: munged, slurmctld and three slurmd.

`start_slurm()` writes a private configuration in a folder of its own under /tmp (0755: munged
runs as user munge and must reach it, so not pytest's 0700 tmp_path) (ports 16817-16823, the
state, spool, logs and munge socket all inside it), starts munged (as user munge, with a key of
its own), slurmctld and one slurmd per node (c1, c2, c3: 2 CPUs each, all on 127.0.0.1), and
waits until `sinfo` shows every node idle. Client commands (`sbatch`, `squeue`, `scancel`,
`srun`) find it through `SLURM_CONF` (`cluster.env`). It installs nothing: Debian's
`slurm-wlm` and `munge` must be there (`scripts/install --test` installs them as root);
otherwise, or without root, it raises SlurmUnavailable(reason).

`close()` stops each daemon by the PID it recorded (never by name), waits for it to go, and
removes the folder.
Facts this relies on were measured here: ../shared/design/slurm-testbed.md.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

NODES = ("c1", "c2", "c3")
CPUS_PER_NODE = 2
GPUS_PER_NODE = 2  # fake: device files only (see _gres_conf)
NVIDIA_MAJOR = 195
CONTROLLER_PORT = 16817
SLURMD_PORT = 16818
FIRST_NODE_PORT = 16821  # node i listens on FIRST_NODE_PORT + i
PARTITION = "debug"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
POLL_S = 0.05
MUNGE_KEY_BYTES = 1024
DAEMONS = ("munged", "slurmctld", "slurmd")


class SlurmUnavailable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class SlurmCluster:
    folder: Path
    env: dict[str, str]  # os.environ plus SLURM_CONF
    pids: dict[str, int] = field(default_factory=dict)  # daemon name → PID

    @property
    def conf(self) -> Path:
        return self.folder / "slurm.conf"

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A Slurm client command against this cluster."""
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, check=check, timeout=30)

    def jobs(self) -> list[tuple[str, str, str]]:
        """(job id, state, node list) of every job the controller still lists as not ended."""
        out = self.run("squeue", "-h", "-o", "%i|%T|%N").stdout
        return [tuple(line.split("|")) for line in out.splitlines() if line.strip()]  # type: ignore[misc]

    def wait_for(self, predicate, timeout_s: float = START_TIMEOUT_S, what: str = "a condition"):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(POLL_S * 4)
        raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")

    def idle_nodes(self) -> set[str]:
        done = self.run("sinfo", "-h", "-N", "-t", "idle", "-o", "%N", check=False)
        return set(done.stdout.split()) if done.returncode == 0 else set()

    def close(self) -> None:
        """Cancel what jobs are left (so no job process outlives its slurmd), then stop every
        daemon this cluster started, by its recorded PID, munged last."""
        if "slurmctld" in self.pids:
            self._cancel_all()
        for name in sorted(self.pids, key=lambda n: n.startswith("munged") * 2 + n.startswith("slurmctld")):
            _stop(self.pids[name])
        self.pids.clear()
        shutil.rmtree(self.folder, ignore_errors=True)


    def _cancel_all(self) -> None:
        try:
            left = [job for job, _, _ in self.jobs()]
            if left:
                self.run("scancel", *left, check=False)
                self.wait_for(lambda: not self.jobs(), timeout_s=STOP_TIMEOUT_S, what="the last jobs to end")
        except (AssertionError, subprocess.SubprocessError):
            pass  # the daemons go anyway; slurmd's stop ends what it still runs


def start_slurm() -> SlurmCluster:
    _check_can_run()
    folder = Path(tempfile.mkdtemp(prefix="patas-slurm-"))
    folder.chmod(0o755)  # munged runs as user munge and must reach its socket folder
    for sub in ("state", "spool", "run", "log"):
        (folder / sub).mkdir(exist_ok=True)
    cluster = SlurmCluster(folder, {**os.environ, "SLURM_CONF": str(folder / "slurm.conf")})
    munge_socket = _write_munge(folder)
    cluster.conf.write_text(_slurm_conf(folder, munge_socket))
    try:
        (folder / "gres.conf").write_text(_gres_conf(folder))
        cluster.pids["munged"] = _start_munged(folder, munge_socket)
        cluster.pids["slurmctld"] = _start_daemon(
            ["slurmctld", "-f", str(cluster.conf), "-c", "-i"], folder / "run" / "slurmctld.pid", cluster.env
        )
        for node in NODES:
            cluster.pids[f"slurmd-{node}"] = _start_daemon(
                ["slurmd", "-f", str(cluster.conf), "-N", node], folder / "run" / f"slurmd-{node}.pid", cluster.env
            )
        cluster.wait_for(lambda: cluster.idle_nodes() >= set(NODES), what=f"nodes {', '.join(NODES)} idle")
    except BaseException:
        cluster.close()
        raise
    return cluster


def _check_can_run() -> None:
    if os.geteuid() != 0:
        raise SlurmUnavailable("a real Slurm needs root here (slurmd runs jobs as their users)")
    for daemon in DAEMONS:
        if shutil.which(daemon) is None and not Path("/usr/sbin", daemon).exists():
            raise SlurmUnavailable(f"{daemon} is not installed (apt-get install slurm-wlm munge)")
    try:
        pwd.getpwnam("munge")
    except KeyError:
        raise SlurmUnavailable("no user munge (apt-get install munge)") from None


def _write_munge(folder: Path) -> Path:
    munge = folder / "munge"
    munge.mkdir(exist_ok=True)
    munge.chmod(0o755)  # 0700 gives "Socket is inaccessible" to clients
    user = pwd.getpwnam("munge")
    os.chown(munge, user.pw_uid, user.pw_gid)
    key = munge / "munge.key"
    key.write_bytes(secrets.token_bytes(MUNGE_KEY_BYTES))
    key.chmod(0o400)
    os.chown(key, user.pw_uid, user.pw_gid)
    return munge / "munge.socket"


def _start_munged(folder: Path, socket: Path) -> int:
    munge = socket.parent
    pid_file = munge / "munged.pid"
    done = subprocess.run(
        ["runuser", "-u", "munge", "--", _path("munged"), f"--socket={socket}", f"--key-file={munge / 'munge.key'}",
         f"--pid-file={pid_file}", f"--log-file={munge / 'munged.log'}", f"--seed-file={munge / 'munged.seed'}"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if done.returncode != 0:
        raise SlurmUnavailable(f"munged did not start: {done.stderr.strip() or done.returncode}")
    _wait_path(socket, "munged's socket")
    return _read_pid(pid_file)


def _start_daemon(argv: list[str], pid_file: Path, env: dict[str, str]) -> int:
    """Start a daemon that forks into the background, and return the PID it records."""
    done = subprocess.run([_path(argv[0]), *argv[1:]], env=env, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise SlurmUnavailable(f"{argv[0]} did not start: {done.stderr.strip() or done.returncode}")
    _wait_path(pid_file, f"{argv[0]}'s pid file")
    return _read_pid(pid_file)


def _read_pid(pid_file: Path) -> int:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        text = pid_file.read_text().strip()
        if text.isdigit():
            return int(text)
        time.sleep(POLL_S)
    raise SlurmUnavailable(f"{pid_file} holds no PID")


def _wait_path(path: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not path.exists():
        if time.monotonic() > deadline:
            raise SlurmUnavailable(f"{what} ({path}) did not appear within {START_TIMEOUT_S:.0f} s")
        time.sleep(POLL_S)


def _alive(pid: int) -> bool:
    """Running and not a zombie (PID 1 here reaps late, so kill -0 is not enough)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


def _path(command: str) -> str:
    return shutil.which(command) or str(Path("/usr/sbin", command))


def _gres_conf(folder: Path) -> str:
    """Each node's GPUs: character devices of NVIDIA's major number made in the folder. Slurm
    grants them and sets SLURM_JOB_GPUS and CUDA_VISIBLE_DEVICES as on a GPU node; nothing here
    opens them (no device cgroup: TaskPlugin=task/none)."""
    devices = folder / "dev"
    devices.mkdir(exist_ok=True)
    lines = []
    for i, node in enumerate(NODES):
        for gpu in range(GPUS_PER_NODE):
            path = devices / f"{node}-nvidia{gpu}"
            try:
                os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(NVIDIA_MAJOR, i * GPUS_PER_NODE + gpu))
            except OSError as error:
                raise SlurmUnavailable(f"cannot make the fake GPU device {path}: {error.strerror}") from None
        lines.append(f"NodeName={node} Name=gpu File={devices}/{node}-nvidia[0-{GPUS_PER_NODE - 1}]")
    return "\n".join(lines) + "\n"


def _slurm_conf(folder: Path, munge_socket: Path) -> str:
    nodes = "\n".join(
        f"NodeName={node} NodeHostname=localhost NodeAddr=127.0.0.1 Port={FIRST_NODE_PORT + i} CPUs={CPUS_PER_NODE}"
        f" Gres=gpu:{GPUS_PER_NODE} State=UNKNOWN"
        for i, node in enumerate(NODES)
    )
    return f"""\
ClusterName=patastest
GresTypes=gpu
SlurmctldHost=localhost
SlurmctldPort={CONTROLLER_PORT}
SlurmdPort={SLURMD_PORT}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool/%n
SlurmctldPidFile={folder}/run/slurmctld.pid
SlurmdPidFile={folder}/run/slurmd-%n.pid
SlurmctldLogFile={folder}/log/slurmctld.log
SlurmdLogFile={folder}/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
SlurmdTimeout=30
InactiveLimit=0
KillWait=2
MinJobAge=600
MaxArraySize=4001
{nodes}
PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
