"""Who may talk to the broker: CURVE encryption and an allow-list of agent keys.

The broker has a key pair for the run; every agent it starts gets a key pair of its own, handed
over on the agent's standard input (over SSH for remote nodes). A ZAP handler admits only the
public keys on the allow-list, so a process that merely reaches the port can neither take tasks
nor send results. The broker also checks that an agent's hello comes from the key issued for that
agent's name.
"""

from __future__ import annotations

import logging
import threading
import time

import zmq
from zmq.utils import z85

from patas.common.agent_config import CurveKeys

log = logging.getLogger(__name__)

# Refused connections are logged as a warning at most this often (the rest at debug level), so
# that strangers knocking with keys of their own cannot flood the run's terminal or the pool's log.
REFUSAL_WARNING_INTERVAL_S = 60.0
# Where libzmq asks a context's ZAP handler about each connection (ZeroMQ RFC 27).
ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_VERSION = b"1.0"
CURVE_KEY_BYTES = 32


class AllowList:
    """The public keys (Z85) the broker accepts, by agent id; changes take effect at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, str] = {}
        self.refused = 0  # connections refused so far
        self._last_warning: float | None = None

    def issue(self, agent_id: str, server_public: str) -> CurveKeys:
        public, secret = zmq.curve_keypair()
        self.allow(agent_id, public.decode())
        return CurveKeys(server_public, public.decode(), secret.decode())

    def allow(self, agent_id: str, public_key: str) -> None:
        with self._lock:
            self._keys[agent_id] = public_key

    def revoke(self, agent_id: str) -> None:
        with self._lock:
            self._keys.pop(agent_id, None)

    def owner(self, public_key: str) -> str | None:
        with self._lock:
            return next((agent for agent, key in self._keys.items() if key == public_key), None)

    def admits(self, agent_id: str, public_key: str | None) -> bool:
        """True when the message came with the key issued for that agent."""
        return public_key is not None and self.owner(public_key) == agent_id

    def callback(self, domain: str, key: bytes) -> bool:
        """Called by the ZAP handler for every connection attempt."""
        allowed = self.owner(key.decode()) is not None
        if not allowed:
            self._note_refusal(key.decode())
        return allowed

    def _note_refusal(self, key: str) -> None:
        self.refused += 1
        now = time.monotonic()
        if self._last_warning is None or now - self._last_warning >= REFUSAL_WARNING_INTERVAL_S:
            self._last_warning = now
            log.warning("refused a connection with an unknown key %s (%d refused so far)", key, self.refused)
        else:
            log.debug("refused a connection with an unknown key %s", key)


class ZapHandler:
    """A thread answering libzmq's ZAP requests for one context: a CURVE client is admitted when
    its key is on the allow-list (its User-Id is then that key, Z85), every other mechanism but
    NULL is refused. NULL reaches the handler only from a socket given a ZAP domain, which patas
    never sets. (pyzmq's ThreadAuthenticator does this through an asyncio loop, whose import
    costs every run ~25 ms of start-up.)"""

    def __init__(self, context: zmq.Context, allow: AllowList) -> None:
        self._allow = allow
        self._requests = context.socket(zmq.REP)
        self._requests.linger = 0
        self._requests.bind(ZAP_ENDPOINT)
        stop_endpoint = f"inproc://patas-zap-stop-{id(self)}"
        self._stop_receiver = context.socket(zmq.PAIR)
        self._stop_receiver.bind(stop_endpoint)
        self._stop_sender = context.socket(zmq.PAIR)
        self._stop_sender.linger = 0
        self._stop_sender.connect(stop_endpoint)
        self._thread = threading.Thread(target=self._serve, name="patas-zap", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop_sender.send(b"")
        self._thread.join()
        self._stop_sender.close()

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self._requests, zmq.POLLIN)
        poller.register(self._stop_receiver, zmq.POLLIN)
        try:
            while self._stop_receiver not in dict(poller.poll()):
                self._requests.send_multipart(self.reply(self._requests.recv_multipart()))
        finally:
            self._requests.close()
            self._stop_receiver.close()

    def reply(self, request: list[bytes]) -> list[bytes]:
        """The answer to one ZAP request: [version, request id, status, text, user id, metadata]."""
        request_id = request[1] if len(request) > 1 else b""
        if len(request) < 6 or request[0] != ZAP_VERSION:
            return [ZAP_VERSION, request_id, b"400", b"malformed ZAP request", b"", b""]
        domain, mechanism, credentials = request[2], request[5], request[6:]
        if mechanism == b"NULL":
            return [ZAP_VERSION, request_id, b"200", b"OK", b"anonymous", b""]
        if mechanism == b"CURVE" and len(credentials) == 1 and len(credentials[0]) == CURVE_KEY_BYTES:
            key = z85.encode(credentials[0])
            if self._allow.callback(domain.decode(errors="replace"), key):
                return [ZAP_VERSION, request_id, b"200", b"OK", key, b""]
            return [ZAP_VERSION, request_id, b"400", b"unknown key", b"", b""]
        return [ZAP_VERSION, request_id, b"400", b"mechanism not allowed", b"", b""]


class CurveServer:
    """The broker's key pair (new, or a pool's persisted one) and the ZAP handler that enforces
    the allow-list."""

    def __init__(self, context: zmq.Context, keypair: tuple[str, str] | None = None) -> None:
        public, secret = keypair or (k.decode() for k in zmq.curve_keypair())
        self.public = public
        self._secret = secret.encode()
        self.allow = AllowList()
        self._auth = ZapHandler(context, self.allow)

    def secure(self, socket: zmq.Socket) -> None:
        """Make `socket` (before it binds) a CURVE server."""
        socket.curve_server = True
        socket.curve_secretkey = self._secret
        socket.curve_publickey = self.public.encode()

    def stop(self) -> None:
        self._auth.stop()
