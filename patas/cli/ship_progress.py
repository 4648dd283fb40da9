"""What `patas explore --ship` shows while the code goes to the nodes: bytes sent, then a line
per node saying what it got (e.g. `node1: code 3f2a9c1d0b7e: sent 1 of 5000 files (2.1 KiB)`), or
why it is left out of the run."""

from __future__ import annotations

import sys

import click

from patas.broker.ship.snapshot import Snapshot
from patas.broker.ship.transfer import Delivery, Undelivered
from patas.common.byte_sizes import size_text

# Progress is shown only for transfers at least this large: a small one is over before it matters.
SHOWN_FROM_BYTES = 8 * 1024 * 1024


class ShipReporter:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.live = sys.stderr.isatty()
        self._shown = False

    def shipping(self, sent_bytes: int, total_bytes: int) -> None:
        if self.quiet or total_bytes < SHOWN_FROM_BYTES:
            return
        line = f"shipping the code: {size_text(sent_bytes)} of {size_text(total_bytes)}"
        if self.live:
            click.echo("\r" + line, err=True, nl=sent_bytes >= total_bytes)
        elif sent_bytes >= total_bytes or not self._shown:
            click.echo(line, err=True)
        self._shown = True

    def shipped(self, delivery: Delivery, snapshot: Snapshot) -> None:
        if not self.quiet:
            click.echo(f"{delivery.node_name}: {delivery.describe(snapshot)}", err=True)

    def undelivered(self, failure: Undelivered) -> None:
        if not self.quiet:
            click.echo(f"{failure.node_name}: cannot take the code: {failure.reason} (left out of this run)", err=True)
