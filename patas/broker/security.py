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
from zmq.auth.thread import ThreadAuthenticator

from patas.common.agent_config import CurveKeys

log = logging.getLogger(__name__)

# Refused connections are logged as a warning at most this often (the rest at debug level), so
# that strangers knocking with keys of their own cannot flood the run's terminal or the pool's log.
REFUSAL_WARNING_INTERVAL_S = 60.0


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


class CurveServer:
    """The broker's key pair (new, or a pool's persisted one) and the authenticator thread that
    enforces the allow-list."""

    def __init__(self, context: zmq.Context, keypair: tuple[str, str] | None = None) -> None:
        public, secret = keypair or (k.decode() for k in zmq.curve_keypair())
        self.public = public
        self._secret = secret.encode()
        self.allow = AllowList()
        self._auth = ThreadAuthenticator(context)
        self._auth.start()
        self._auth.configure_curve_callback("*", credentials_provider=self.allow)

    def secure(self, socket: zmq.Socket) -> None:
        """Make `socket` (before it binds) a CURVE server."""
        socket.curve_server = True
        socket.curve_secretkey = self._secret
        socket.curve_publickey = self.public.encode()

    def stop(self) -> None:
        self._auth.stop()
