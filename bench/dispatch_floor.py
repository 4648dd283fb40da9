#!/usr/bin/env python3
"""The floor of dispatching short tasks from Python on this machine (issue 15 (a)): a prototype
with everything but the essentials removed, timed against `xargs -P2` and patas in one run.

    python3 bench/dispatch_floor.py --rounds 3

The prototype keeps what any coordinator-and-agent design pays per task and nothing else: a
coordinator process sends each task (msgpack over a ZeroMQ ipc socket, no CURVE) to one agent
process with 2 slots; the agent starts `bash -c 'echo N'` with `os.posix_spawn`, its stdout a
new file in the task's own folder, and waits on the process's pidfd; it reports the exit status;
the coordinator renames the file into place, appends a journal line, and sends the next task.
No retries, timeouts, leases, credits, supervisors, stderr, status or tails: what is left is the
cost of the two Python processes' messages, the spawn and the files. The `--sync` rows add an
fdatasync of each output and of the journal, once per batch of finished tasks, as patas's commits
do. The "flat" rows put every task's file in the lab's one folder, as xargs's `out/N` does, instead
of a folder per task as patas's layout has: the difference is what the layout costs here.
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time

TASKS = 2000
SLOTS = 2

AGENT = r"""
import os, select, sys, msgpack, zmq
endpoint, slots = sys.argv[1], int(sys.argv[2])
socket = zmq.Context().socket(zmq.DEALER)
socket.connect(endpoint)
socket.send(msgpack.packb(["hello", slots]))
env = dict(os.environ)
running = {}  # pidfd -> (lease, pid)
poller = select.poll()
zfd = socket.getsockopt(zmq.FD)
poller.register(zfd, select.POLLIN)
while True:
    while socket.getsockopt(zmq.EVENTS) & zmq.POLLIN:
        message = msgpack.unpackb(socket.recv())
        if message[0] == "stop":
            sys.exit(0)
        _, lease, argv, path = message
        try:
            out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileNotFoundError:
            os.mkdir(os.path.dirname(path))
            out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        pid = os.posix_spawn(argv[0], argv, env, file_actions=[(os.POSIX_SPAWN_DUP2, out, 1)])
        os.close(out)
        pidfd = os.pidfd_open(pid)
        running[pidfd] = (lease, pid)
        poller.register(pidfd, select.POLLIN)
    for fd, _ in poller.poll(1000):
        if fd in running:
            lease, pid = running.pop(fd)
            poller.unregister(fd)
            os.close(fd)
            _, status = os.waitpid(pid, 0)
            socket.send(msgpack.packb(["done", lease, os.waitstatus_to_exitcode(status)]))
"""


def run_prototype(scratch: str, tasks: int, sync: bool, flat: bool = False) -> float:
    import msgpack
    import zmq

    lab = os.path.join(scratch, "lab")
    os.mkdir(lab)
    started = time.monotonic()
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    endpoint = f"ipc://{scratch}/sock"
    router.bind(endpoint)
    agent = subprocess.Popen([sys.executable, "-S", "-c", AGENT, endpoint, str(SLOTS)], env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    journal = os.open(os.path.join(lab, "journal.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    identity, hello = router.recv_multipart()
    slots = msgpack.unpackb(hello)[1]
    next_task, done = 0, 0
    bash = shutil.which("bash") or "/bin/bash"

    def attempt(task: int) -> str:
        return f"{lab}/{task}.attempt-1.stdout" if flat else f"{lab}/{task}/attempt-1.stdout"

    def send(task: int) -> None:
        path = attempt(task)
        router.send_multipart([identity, msgpack.packb(["task", task, [bash, "-c", f"echo {task}"], path])])

    for _ in range(min(slots, tasks)):
        send(next_task)
        next_task += 1
    while done < tasks:
        finished = [msgpack.unpackb(router.recv_multipart()[1])]
        while router.poll(0):
            finished.append(msgpack.unpackb(router.recv_multipart()[1]))
        lines = []
        for _, task, code in finished:
            path = attempt(task)
            if sync:
                fd = os.open(path, os.O_RDONLY)
                os.fdatasync(fd)
                os.close(fd)
            os.rename(path, f"{lab}/{task}.stdout" if flat else f"{lab}/{task}/stdout")
            lines.append(f'{{"task_id": {task}, "outcome": "done", "exit_code": {code}}}\n')
            done += 1
            if next_task < tasks:
                send(next_task)
                next_task += 1
        os.write(journal, "".join(lines).encode())
        if sync:
            os.fdatasync(journal)
    router.send_multipart([identity, msgpack.packb(["stop"])])
    agent.wait()
    os.close(journal)
    router.close(0)
    context.term()
    return time.monotonic() - started


def run_command(argv: list[str], scratch: str) -> float:
    started = time.monotonic()
    subprocess.run(argv, cwd=scratch, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=TASKS)
    arguments = parser.parse_args()
    tasks = arguments.tasks
    xargs = ["sh", "-c", f"mkdir -p out && seq 0 {tasks - 1} | xargs -P{SLOTS} -I{{}} sh -c 'echo {{}} > out/{{}}'"]
    patas = [sys.executable, "-m", "patas", "explore", "--cmd", "echo {i}", "--va", "i", "0", str(tasks), "1",
             "-o", "lab", "--node", "localhost", str(SLOTS), "-y", "-q"]  # fmt: skip
    rows: dict[str, list[float]] = {}
    contenders = {
        "xargs -P2 sh": lambda d: run_command(xargs, d),
        "prototype, no sync": lambda d: run_prototype(d, tasks, sync=False),
        "prototype, fdatasync": lambda d: run_prototype(d, tasks, sync=True),
        "prototype, flat, no sync": lambda d: run_prototype(d, tasks, sync=False, flat=True),
        "prototype, flat, fdatasync": lambda d: run_prototype(d, tasks, sync=True, flat=True),
        "patas (durable)": lambda d: run_command(patas, d),
        "patas --no-sync": lambda d: run_command([*patas, "--no-sync"], d),
    }
    loads = [os.getloadavg()[0]]
    for number in range(arguments.rounds):
        names = list(contenders) if number % 2 == 0 else list(reversed(contenders))
        for name in names:
            scratch = tempfile.mkdtemp(prefix="patas-floor-")
            try:
                rows.setdefault(name, []).append(contenders[name](scratch))
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            print(f"round {number + 1}: {name}: {rows[name][-1]:.2f} s", file=sys.stderr)
    loads.append(os.getloadavg()[0])
    xargs_best = min(rows["xargs -P2 sh"])
    print(f"{tasks} × `echo`, {SLOTS} slots, {arguments.rounds} interleaved rounds; load {loads[0]:.2f} before, {loads[-1]:.2f} after")
    print("| row | best s | median s | tasks/s best | vs xargs |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, times in rows.items():
        ordered = sorted(times)
        print(f"| {name} | {ordered[0]:.2f} | {ordered[len(ordered) // 2]:.2f} | {tasks / ordered[0]:.0f} | {xargs_best / ordered[0]:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
