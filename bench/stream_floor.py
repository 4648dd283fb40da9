#!/usr/bin/env python3
"""The floor of streaming from a remote node: a minimal sender and receiver, nothing else.

What any design like patas's pays to bring a remote task's stdout into durable files, with
everything else removed (no supervisors, no stderr, no leases, no journal, no msgpack, no
heartbeats, no tails, no status). `bench/bench_stream_remote.py` runs it as rows beside patas
and OpenSSH, on the same simulated node, in the same rounds:

- `send` runs on the node (its source is piped to the node's python3; only the standard library
  and pyzmq): a DEALER socket (a CURVE client unless `--plain`) runs the task command SLOTS at
  a time, reads each task's stdout pipe (enlarged to 1 MiB, as patas's agent does) READ_CHUNK
  bytes at a time (patas's chunk) and sends each read as one frame, the task's number in a frame
  before it; a task's end is one more message. It stops reading while the receiver's window
  (WINDOW_BYTES, patas's) is used up, and goes on as the receiver grants credit back.
- `receive` runs on the coordinator: a ROUTER socket (a CURVE server that admits the one client
  key, through a ZAP handler, unless `--plain`) writes each task's bytes to its own file as they
  come (no copy: the frame's buffer), grants the written bytes back once per turn of its loop,
  and at a task's end hands the file to a committing thread that fdatasyncs it (not with
  `--no-sync`) and renames it into place, as patas's committer does before a task counts as
  done. It prints one JSON line: the tasks' span as the sender saw it (first start to last end,
  the span patas's rows are timed over), the last commit, and its own CPU.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import queue
import resource
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import zmq

# Defaults; bench_stream_remote.py passes patas's own (patas.agent.task_process.READ_CHUNK_BYTES
# and PIPE_BYTES, patas.broker.run.coordinator.OUTPUT_WINDOW_BYTES), so the two always match.
READ_CHUNK = 256 * 1024
PIPE_BYTES = 1024 * 1024
WINDOW_BYTES = 8 * 1024 * 1024
_F_SETPIPE_SZ = 1031
# Either side gives up after this long without a message from the other (so a run never hangs).
SILENCE_TIMEOUT_S = 60.0
DATA, END, CREDIT, BYE = b"D", b"E", b"C", b"B"
TIMES = struct.Struct("dd")  # a task's start and end (time.time(), the same clock on both sides here)
COUNT = struct.Struct("q")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def thread_cpu() -> dict[str, float]:
    """CPU seconds of each of this process's threads, by name (libzmq's I/O thread is ZMQbg/IO/0)."""
    tick, found = os.sysconf("SC_CLK_TCK"), {}
    for thread in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{thread}/stat", "rb") as stat:
                text = stat.read().decode(errors="replace")
        except FileNotFoundError:
            continue  # a thread that ended meanwhile (the committer's, just joined)
        name, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        found[name] = found.get(name, 0.0) + (int(rest[11]) + int(rest[12])) / tick
    return found


# --- the node's side ------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    chunk: int = READ_CHUNK  # bytes read from a pipe at a time, and so the largest frame
    pipe: int = PIPE_BYTES
    window: int = WINDOW_BYTES  # bytes sent and not yet written by the receiver


def send(endpoint: str, keys: tuple[str, str, str] | None, command: list[str], tasks: int, slots: int, sizes: Sizes) -> None:
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 1000)
    if keys is not None:
        sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = (key.encode() for key in keys)
    sock.connect(endpoint)
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    running: dict[int, tuple[bytes, subprocess.Popen[bytes], float]] = {}  # pipe → (task, process, start)
    window, started, ended, reading = sizes.window, 0, 0, True
    while ended < tasks:
        while len(running) < slots and started < tasks:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, bufsize=0)
            fd = process.stdout.fileno()  # type: ignore[union-attr]
            try:
                fcntl.fcntl(fd, _F_SETPIPE_SZ, sizes.pipe)
            except OSError:
                pass  # above the node's pipe-max-size: the default pipe works too
            os.set_blocking(fd, False)
            running[fd] = (COUNT.pack(started), process, time.time())
            if reading:
                poller.register(fd, zmq.POLLIN)
            started += 1
        ready = poller.poll(int(SILENCE_TIMEOUT_S * 1000))
        if not ready:
            raise SystemExit(f"neither a task nor the receiver said anything for {SILENCE_TIMEOUT_S:.0f} s")
        for item, _ in ready:
            if item is sock:
                while True:
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    if frames[0] == CREDIT:
                        window += COUNT.unpack(frames[1])[0]
                continue
            task, process, began = running[item]
            try:
                data = os.read(item, sizes.chunk)
            except BlockingIOError:
                continue
            if data:
                window -= len(data)
                sock.send_multipart([DATA, task, data], copy=False)
                continue
            poller.unregister(item)
            process.stdout.close()  # type: ignore[union-attr]
            if process.wait() != 0:
                raise SystemExit(f"task {COUNT.unpack(task)[0]}: exit status {process.returncode}")
            del running[item]
            sock.send_multipart([END, task, TIMES.pack(began, time.time())])
            ended += 1
        if (window > 0) != reading:  # pause the pipes while the window is used up: the tasks block
            reading = window > 0
            for fd in running:
                poller.register(fd, zmq.POLLIN) if reading else poller.unregister(fd)
    sock.setsockopt(zmq.RCVTIMEO, int(SILENCE_TIMEOUT_S * 1000))
    try:
        while sock.recv_multipart()[0] != BYE:  # every task is committed
            pass
    except zmq.Again:
        raise SystemExit(f"no word from the receiver for {SILENCE_TIMEOUT_S:.0f} s") from None
    sock.close()
    context.term()
    print(json.dumps({"cpu_s": cpu_seconds(), "minor_faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt}), file=sys.stderr)


# --- the coordinator's side -----------------------------------------------------------------


def commit_files(work: queue.SimpleQueue[tuple[int, str, str] | None], sync: bool, committed: list[float]) -> None:
    while (item := work.get()) is not None:
        fd, staging, final = item
        if sync:
            os.fdatasync(fd)
        os.close(fd)
        os.rename(staging, final)
        committed.append(time.time())


def receive(address: str, keys: tuple[str, str] | None, folder: str, tasks: int, sync: bool) -> None:
    """`keys`: this server's secret key and the one client public key it admits."""
    context = zmq.Context()
    authenticator = None
    sock = context.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 1000)
    if keys is not None:
        from zmq.auth.thread import ThreadAuthenticator

        authenticator = ThreadAuthenticator(context)
        authenticator.start()
        authenticator.configure_curve_callback(credentials_provider=_OneKey(keys[1].encode()))
        sock.curve_server = True
        sock.curve_secretkey = keys[0].encode()
    port = sock.bind_to_random_port(f"tcp://{address}")
    print(port, flush=True)
    work: queue.SimpleQueue[tuple[int, str, str] | None] = queue.SimpleQueue()
    committed: list[float] = []
    committer = threading.Thread(target=commit_files, args=(work, sync, committed))
    committer.start()
    files: dict[bytes, int] = {}
    spans: list[tuple[float, float]] = []
    received = frames = 0
    peer = b""
    while len(spans) < tasks:
        if not sock.poll(int(SILENCE_TIMEOUT_S * 1000)):
            raise SystemExit(f"no word from the sender for {SILENCE_TIMEOUT_S:.0f} s")
        credit = 0
        while True:
            try:
                peer, kind, task, *payload = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            name = task.bytes
            if kind.bytes == DATA:
                fd = files.get(name)
                if fd is None:
                    number = COUNT.unpack(name)[0]
                    os.mkdir(f"{folder}/{number}")
                    fd = files[name] = os.open(f"{folder}/{number}/stdout.part", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                view = payload[0].buffer
                while view:
                    view = view[os.write(fd, view) :]
                credit += len(payload[0])
                received += len(payload[0])
                frames += 1
            else:
                number = COUNT.unpack(name)[0]
                spans.append(TIMES.unpack(payload[0].bytes))
                work.put((files.pop(name), f"{folder}/{number}/stdout.part", f"{folder}/{number}/stdout"))
        if credit:
            sock.send_multipart([peer, CREDIT, COUNT.pack(credit)])
    work.put(None)
    committer.join()
    threads = thread_cpu()  # while libzmq's threads are still there (the committer's is gone: waits, mostly)
    sock.send_multipart([peer, BYE, b""])
    sock.close()
    if authenticator is not None:
        authenticator.stop()
    context.term()
    result = {
        "bytes": received, "frames": frames, "first_start": min(s for s, _ in spans), "last_end": max(e for _, e in spans),
        "last_commit": max(committed), "cpu_s": cpu_seconds(), "minor_faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt,
        "threads": threads,
    }
    print(json.dumps(result), flush=True)


class _OneKey:
    """A ZAP CURVE callback that admits exactly one client public key (Z85)."""

    def __init__(self, public: bytes) -> None:
        self.public = public

    def callback(self, domain: str, key: bytes) -> bool:
        return key == self.public


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="side", required=True)
    sender = sub.add_parser("send")
    sender.add_argument("endpoint")
    sender.add_argument("--keys", nargs=3, metavar=("SERVER_PUBLIC", "PUBLIC", "SECRET"))
    sender.add_argument("--tasks", type=int, required=True)
    sender.add_argument("--slots", type=int, default=2)
    sender.add_argument("--chunk", type=int, default=READ_CHUNK, help="bytes read from a pipe at a time")
    sender.add_argument("--pipe", type=int, default=PIPE_BYTES, help="pipe size (bytes)")
    sender.add_argument("--window", type=int, default=WINDOW_BYTES, help="bytes in flight at most")
    sender.add_argument("command", nargs="+")
    receiver = sub.add_parser("receive")
    receiver.add_argument("address")
    receiver.add_argument("folder")
    receiver.add_argument("--keys", nargs=2, metavar=("SECRET", "CLIENT_PUBLIC"))
    receiver.add_argument("--tasks", type=int, required=True)
    receiver.add_argument("--no-sync", action="store_true")
    arguments = parser.parse_args()
    if arguments.side == "send":
        send(arguments.endpoint, tuple(arguments.keys) if arguments.keys else None, arguments.command, arguments.tasks, arguments.slots,
             Sizes(arguments.chunk, arguments.pipe, arguments.window))
    else:
        keys = tuple(arguments.keys) if arguments.keys else None
        receive(arguments.address, keys, arguments.folder, arguments.tasks, not arguments.no_sync)


if __name__ == "__main__":
    main()
