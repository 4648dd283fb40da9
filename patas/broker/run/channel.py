"""The private control channel of a run in progress: a Unix socket in each experiment folder.

    pataslab/<experiment>/.control/         mode 0700, made by the run holding the folder's lock
    pataslab/<experiment>/.control/sock     mode 0600, the run's listening socket

`patas status` and `patas nodes` ask the run through it. Each request and reply is one message:
a 4-byte big-endian length, then msgpack `[KIND, [fields...]]` of one of the typed messages of
`control_messages`, which a run imports only when its first request comes. Only the user who
runs the sweep gets an answer: the folder's mode keeps other users from connecting, and the run
checks each peer's uid (SO_PEERCRED) as well, so a folder made world-writable by mistake lets no
one else in; the client checks the run's uid in turn, so it never takes another user's socket
for the run's.

A socket's address holds at most 107 bytes. When the folder's path is longer, both sides name
the socket through a descriptor of the folder, `/proc/self/fd/<n>/sock`, which the kernel
resolves to the same file whatever the length of the path.

The server does its socket work in threads of its own and hands each request to the run loop
through a queue the loop looks at once per turn; answering is the loop's job (see `control`),
since only the loop may touch the run's state. A slow or silent client stalls nobody but itself.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import socket
import stat
import struct
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from patas.common.errors import LabError, ProtocolError

if TYPE_CHECKING:
    from patas.broker.run.control_messages import AddNodesReply, ControlMessage

log = logging.getLogger(__name__)

CONTROL_DIR = ".control"
SOCKET_NAME = "sock"
# sun_path is 108 bytes, its last one the terminating NUL.
MAX_SOCKET_PATH_BYTES = 107
# The largest message either side accepts (a status of thousands of running tasks fits).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# How long a client may take to send its request, and the run to read a reply, before giving up.
IO_TIMEOUT_S = 5.0
# How long a client waits for the run's answer to a status request or a node removal.
ANSWER_TIMEOUT_S = 10.0
# Adding nodes waits for their SSH connections and their agents to say hello.
ADD_TIMEOUT_S = 180.0
_LENGTH = struct.Struct(">I")
_PEERCRED = struct.Struct("3i")  # pid, uid, gid


class ControlError(LabError):
    """The run's control channel cannot be reached, refused the request, or answered nonsense."""


def _send(connection: socket.socket, message: ControlMessage) -> None:
    from patas.broker.run.control_messages import encode

    body = encode(message)
    connection.sendall(_LENGTH.pack(len(body)) + body)


def _receive(connection: socket.socket) -> ControlMessage | None:
    """The next message, or None if the peer closed the connection first."""
    head = _read_exactly(connection, _LENGTH.size)
    if head is None:
        return None
    (length,) = _LENGTH.unpack(head)
    if length > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"control message of {length} bytes (at most {MAX_MESSAGE_BYTES})")
    body = _read_exactly(connection, length) if length else b""
    if body is None:
        raise ProtocolError("control message cut short")
    from patas.broker.run.control_messages import decode

    return decode(body)


def _read_exactly(connection: socket.socket, size: int) -> bytes | None:
    """`size` bytes, or None if the peer closed the connection before sending any."""
    data = bytearray()
    while len(data) < size:
        chunk = connection.recv(min(size - len(data), 1 << 20))
        if not chunk:
            if data:
                raise ProtocolError("control message cut short")
            return None
        data += chunk
    return bytes(data)


def peer_uid(connection: socket.socket) -> int:
    _, uid, _ = _PEERCRED.unpack(connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    return uid


# --- where the socket is --------------------------------------------------------------------


def control_dir(experiment_folder: Path) -> Path:
    return Path(experiment_folder) / CONTROL_DIR


@contextmanager
def socket_address(experiment_folder: Path) -> Iterator[str]:
    """The address of the folder's socket, short enough for sun_path (see the module docstring)."""
    folder = control_dir(experiment_folder)
    path = str(folder / SOCKET_NAME)
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH_BYTES:
        yield path
        return
    fd = os.open(folder, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{SOCKET_NAME}"
    finally:
        os.close(fd)


# --- the run's side -------------------------------------------------------------------------


@dataclass(eq=False)  # one of a kind: compared by identity
class PendingRequest:
    """A request waiting for the run loop's answer; `answer` wakes the connection's thread."""

    message: ControlMessage
    reply: ControlMessage | None = None
    _answered: threading.Event = field(default_factory=threading.Event)

    def answer(self, reply: ControlMessage) -> None:
        self.reply = reply
        self._answered.set()

    def refuse(self, reason: str) -> None:
        from patas.broker.run.control_messages import Refusal

        self.answer(Refusal(reason))

    def wait(self, timeout_s: float) -> ControlMessage:
        if not self._answered.wait(timeout_s):
            from patas.broker.run.control_messages import Refusal

            return Refusal(f"the run did not answer within {timeout_s:.0f} s")
        assert self.reply is not None
        return self.reply


class ControlServer:
    """Listens on each experiment folder's socket; requests land in `inbox` for the run loop."""

    def __init__(self, experiment_folders: list[Path]) -> None:
        self.inbox: collections.deque[PendingRequest] = collections.deque()
        self._listeners: list[tuple[Path, socket.socket]] = []
        self._closing = threading.Event()
        self._uid = os.getuid()
        for folder in experiment_folders:
            listener = self._listen(Path(folder))
            if listener is not None:
                self._listeners.append((Path(folder), listener))
                threading.Thread(target=self._accept, args=(listener,), name="patas-control", daemon=True).start()

    def _listen(self, folder: Path) -> socket.socket | None:
        """A socket listening in the folder's private control folder; None (and a warning) if the
        folder cannot be made private: the run goes on without a channel rather than an open one."""
        try:
            _make_private_dir(control_dir(folder))
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            with socket_address(folder) as address:
                try:
                    os.unlink(address)  # a run killed earlier left it; we hold the lock now
                except FileNotFoundError:
                    pass
                listener.bind(address)
                os.chmod(address, 0o600)
            listener.listen()
            return listener
        except (OSError, ControlError) as error:
            log.warning("%s: no control channel for this run (patas status will read the journal): %s", folder, error)
            return None

    def _accept(self, listener: socket.socket) -> None:
        while not self._closing.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(connection,), name="patas-control-peer", daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        from patas.broker.run.control_messages import AddNodesRequest, Refusal

        with connection:
            try:
                connection.settimeout(IO_TIMEOUT_S)
                uid = peer_uid(connection)
                if uid != self._uid:
                    _send(connection, Refusal(f"the run belongs to uid {self._uid}; uid {uid} may not ask it"))
                    return
                message = _receive(connection)
                if message is None:
                    return
                pending = PendingRequest(message)
                self.inbox.append(pending)
                timeout = ADD_TIMEOUT_S if isinstance(message, AddNodesRequest) else ANSWER_TIMEOUT_S
                _send(connection, pending.wait(timeout))
            except (OSError, ProtocolError) as error:
                log.debug("control connection: %s", error)

    def close(self) -> None:
        """Stop listening, remove the sockets and their folders; answer what is still waiting."""
        self._closing.set()
        for folder, listener in self._listeners:
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
            try:
                os.unlink(control_dir(folder) / SOCKET_NAME)
                os.rmdir(control_dir(folder))
            except OSError:
                pass
        while self.inbox:
            self.inbox.popleft().refuse("the run is over")


def _make_private_dir(folder: Path) -> None:
    """The folder, made if needed, a real folder owned by us with mode 0700."""
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise ControlError(f"{folder} is not a folder of uid {os.getuid()}; remove it")
    os.chmod(folder, 0o700)


# --- the client's side ----------------------------------------------------------------------


def request(experiment_folder: Path, message: ControlMessage, timeout_s: float = ANSWER_TIMEOUT_S) -> ControlMessage:
    """Send one request to the run holding the folder and return its reply.

    Raises ControlError when there is no channel (`errno` ENOENT or ECONNREFUSED: no run is
    listening), when this user may not use it, or when the run refuses the request."""
    where = control_dir(experiment_folder) / SOCKET_NAME
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout_s)
        try:
            with socket_address(experiment_folder) as address:
                connection.connect(address)
        except PermissionError:
            raise ControlError(
                f"{where}: permission denied: the run in {experiment_folder} belongs to another user, and only that user may ask it"
            ) from None
        except OSError as error:
            raise ChannelAbsent(f"{where}: {error.strerror or error}", error.errno) from None
        try:
            try:
                _send(connection, message)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the run refused us at once and hung up: its refusal is there to read
            reply = _receive(connection)
        except TimeoutError:
            raise ControlError(f"{where}: the run did not answer within {timeout_s:.0f} s") from None
        except (OSError, ProtocolError) as error:
            raise ControlError(f"{where}: {error}") from None
        from patas.broker.run.control_messages import Refusal

        if isinstance(reply, Refusal):
            raise ControlError(f"{experiment_folder}: {reply.reason}")
        uid = peer_uid(connection)  # an answer is believed only from a socket of our own
        if uid != os.getuid():
            raise ControlError(f"{where}: the socket belongs to uid {uid}, not to you (uid {os.getuid()}): it is not your run's")
    if reply is None:
        raise ControlError(f"{where}: the run closed the connection without answering (it may have just ended)")
    return reply


class ChannelAbsent(ControlError):
    """No run listens on the folder's socket (none there, or a dead one's)."""

    def __init__(self, message: str, error_number: int | None) -> None:
        super().__init__(message)
        self.errno = error_number

    @property
    def no_listener(self) -> bool:
        return self.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR)


# --- what the CLI asks ----------------------------------------------------------------------


def ask_run(experiment_folder: Path, message: ControlMessage, timeout_s: float = ANSWER_TIMEOUT_S) -> ControlMessage:
    """`request`, for commands that need a run in progress: ControlError if none holds the folder."""
    from patas.common.lab_lock import holder

    if holder(experiment_folder) is None:
        raise ControlError(f"{experiment_folder}: no run in progress (patas nodes changes the nodes of a running patas explore)")
    try:
        return request(experiment_folder, message, timeout_s)
    except ChannelAbsent as error:
        if not error.no_listener:
            raise
        raise ControlError(f"{experiment_folder}: the run there has not started its tasks yet (or is ending); try again in a moment") from None


def add_nodes(experiment_folder: Path, nodes: list[Any], cluster: str, named: bool) -> AddNodesReply:
    """Ask the run in the folder to start agents on these nodes (`patas.common.config.Node`s).
    Unless `named` (a cluster file's nodes keep their names), the run names them after its own."""
    from patas.broker.run.control_messages import AddNodesReply, AddNodesRequest

    wire = [[node.name if named else "", node.hostname, node.user, node.port, node.private_key, node.workers, list(node.tags)] for node in nodes]
    reply = ask_run(experiment_folder, AddNodesRequest(wire, cluster), ADD_TIMEOUT_S)
    if not isinstance(reply, AddNodesReply):
        raise ControlError(f"{experiment_folder}: the run answered with {type(reply).__name__}")
    return reply


def remove_node(experiment_folder: Path, node: str, drain: bool) -> str:
    """Ask the run in the folder to let a node go; what it did, in one line."""
    from patas.broker.run.control_messages import RemoveNodeReply, RemoveNodeRequest

    reply = ask_run(experiment_folder, RemoveNodeRequest(node, drain))
    if not isinstance(reply, RemoveNodeReply):
        raise ControlError(f"{experiment_folder}: the run answered with {type(reply).__name__}")
    return reply.message
