"""Nodes that join a running sweep: a run that ships its code (--ship) sends it to each first.

Shipping takes as long as the transfer does, so it happens in a thread per node, and the run
loop adds the node at a later turn, once its copy is complete. A node the code cannot be shipped
to is never given a task: its tasks would run in a folder that is not there, or in other code.

    newcomers = Newcomers(code)
    newcomers.send(session)              # a pool's agent that just joined
    for newcomer in newcomers.arrived():  # at a later turn of the loop
        ...add it with newcomer.copies, or report newcomer.error
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from patas.broker.launch.session import NodeSession
from patas.common.errors import PatasError

if TYPE_CHECKING:
    from patas.broker.ship.code import ShippedCode


@dataclass(frozen=True)
class Newcomer:
    session: NodeSession
    copies: dict[int, str] = field(default_factory=dict)  # its copy of the shipped code, by experiment id
    error: str = ""  # why the code could not be shipped there; "" once it was


def ship_to(code: dict[int, ShippedCode], session: NodeSession) -> Newcomer:
    """Ship the run's code to a node that joins it (blocking: call it off the loop's thread)."""
    if not code:
        return Newcomer(session)
    from patas.broker.ship.code import copies_on  # a run that ships nothing never loads shipping

    try:
        return Newcomer(session, copies_on(code, session))
    except PatasError as error:
        name = session.node.name
        reason = str(error) if str(error).startswith(f"{name}: ") else f"{name}: {error}"
        return Newcomer(session, error=reason)


class Newcomers:
    """Ships the run's code to nodes that join it, each in a thread of its own."""

    def __init__(self, code: dict[int, ShippedCode]) -> None:
        self._code = dict(code)  # the snapshots to ship never change during the run
        self._arrived: queue.SimpleQueue[Newcomer] = queue.SimpleQueue()
        self.underway: set[str] = set()  # names of the nodes being shipped to

    def send(self, session: NodeSession) -> None:
        if not self._code:
            self._arrived.put(Newcomer(session))
            return
        self.underway.add(session.node.name)
        ship = threading.Thread(target=lambda: self._arrived.put(ship_to(self._code, session)), name="patas-ship-newcomer", daemon=True)
        ship.start()

    def arrived(self) -> list[Newcomer]:
        """The nodes whose copy is complete (or whose shipping failed) since the last call."""
        arrivals = []
        while not self._arrived.empty():
            arrival = self._arrived.get_nowait()
            self.underway.discard(arrival.session.node.name)
            arrivals.append(arrival)
        return arrivals
