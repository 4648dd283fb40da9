"""The pages' live updates, as server-sent events: the lab's status, and a task's output.

Status: `lab_status` is read every `STATUS_INTERVAL_S` and sent when it changed. Output: the task
is followed by `follow_output`, the function `patas logs -f` uses, in a thread of its own (it
blocks while it waits for output); what it copies reaches the page through a bounded queue, so a
task that prints faster than the browser reads slows the follower, not the memory. When the page
goes away the follower is stopped (`stop`), within `task_output.POLL_INTERVAL_S`.
"""

from __future__ import annotations

import asyncio
import codecs
import concurrent.futures
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from patas.analysis.status import lab_status, status_to_json
from patas.analysis.task_output import AttemptEnded, follow_output
from patas.common.errors import PatasError

STATUS_INTERVAL_S = 1.0
# A comment line sent when nothing else was, so proxies and browsers keep the stream open.
KEEPALIVE_S = 15.0
# Chunks of output (each at most task_output.COPY_CHUNK_BYTES) waiting for the browser.
QUEUED_CHUNKS = 16
# How often a follower blocked on a full queue checks whether the page went away.
STOP_CHECK_S = 0.5


def event(name: str, data: Any) -> str:
    """One server-sent event; the data as one line of JSON."""
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


async def status_events(lab_root: Path, experiment: str | None) -> AsyncIterator[str]:
    """The lab's status (or one experiment's) now, then each time it changes."""
    last = None
    quiet_s = 0.0
    while True:
        now = await asyncio.to_thread(_status, lab_root, experiment)
        if now != last:
            yield event("status", now)
            last, quiet_s = now, 0.0
        elif quiet_s >= KEEPALIVE_S:
            yield ": keepalive\n\n"
            quiet_s = 0.0
        await asyncio.sleep(STATUS_INTERVAL_S)
        quiet_s += STATUS_INTERVAL_S


def _status(lab_root: Path, experiment: str | None) -> dict[str, Any]:
    try:
        return status_to_json(lab_status(lab_root, experiment))
    except PatasError as error:
        return {"error": str(error)}


class StoppedReading(Exception):
    """The page stopped reading: ends the follower from inside its write."""


class QueuedOutput:
    """A binary stream for `follow_output` whose text goes, decoded, onto the page's queue."""

    def __init__(self, queue: asyncio.Queue[tuple[str, Any]], loop: asyncio.AbstractEventLoop, stop: threading.Event) -> None:
        self._queue, self._loop, self._stop = queue, loop, stop
        # Output chunks may end inside a UTF-8 character: decode across them.
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def write(self, data: bytes) -> int:
        text = self._decoder.decode(bytes(data))
        if text:
            self.put("output", text)
        return len(data)

    def flush(self) -> None:
        """Nothing held back: each write is queued at once."""

    def put(self, name: str, data: Any) -> None:
        future = asyncio.run_coroutine_threadsafe(self._queue.put((name, data)), self._loop)
        while True:
            try:
                future.result(timeout=STOP_CHECK_S)
                return
            except concurrent.futures.TimeoutError:
                if self._stop.is_set():
                    future.cancel()
                    raise StoppedReading from None


async def output_events(lab_root: Path, experiment: str, task_id: int, stream: str) -> AsyncIterator[str]:
    """`reset`, then the task's output as `output` events (text) while it is followed, an
    `attempt` event when an attempt ends and another follows, and `end` with why it ended."""
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(QUEUED_CHUNKS)
    stop = threading.Event()
    out = QueuedOutput(queue, asyncio.get_running_loop(), stop)

    def follow() -> None:
        try:
            followed = follow_output(lab_root, experiment, task_id, stream, out, lambda e: _attempt_ended(out, e), stop=stop)
            out.put("end", {"ending": followed.ending.value, "message": followed.describe()})
        except StoppedReading:
            return
        except PatasError as error:
            try:
                out.put("end", {"ending": "error", "message": str(error)})
            except StoppedReading:
                return

    # Not the event loop's thread pool: a follower may run as long as the task, and enough of
    # them would leave no thread for the status reads.
    threading.Thread(target=follow, name=f"follow {experiment}/{task_id}", daemon=True).start()
    try:
        yield event("reset", None)
        while True:
            try:
                name, data = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except asyncio.TimeoutError:
                yield ": keepalive\n\n"
                continue
            yield event(name, data)
            if name == "end":
                return
    finally:
        stop.set()


def _attempt_ended(out: QueuedOutput, ended: AttemptEnded) -> None:
    out.put("attempt", ended.describe())
