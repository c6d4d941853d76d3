"""Building a JSON batch's rows beside the event loop.

Most of an ingest's CPU is per-entry Python: parsing the JSON, splitting each entry into its row
and context (journal/entries.py), the messages' trigrams (journal/trigrams.py). In the event
loop's thread it caps a process at one core, while PostgreSQL leaves the other idle. So worker
processes build the rows, and the loop only receives them, packed for the ingest statement
(journal/packing.py). The work is the same
either way, and so is every answer; ``VMJOURNAL_INGEST_PROCESSES=0`` keeps it in the loop.

This module imports nothing of the web service, so a worker starts light.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson

from vmjournal.journal import entries, inflate, packing


class BadJson(ValueError):
    """The body is not JSON; the message is the parser's."""


class TooManyEntries(ValueError):
    """More entries than a batch may hold; the argument is how many."""


@dataclass(frozen=True)
class Limits:
    body_bytes: int  # inflated
    entries: int


def build(body: bytes, encoding: str | None, vm_id: UUID, limits: Limits) -> packing.Packed:
    """A JSON batch as sent (compressed with ``encoding``, or not). Raises ``inflate.BadBody``,
    ``inflate.TooLarge``, ``BadJson``, ``TooManyEntries`` or ``entries.BadEntry``."""
    if encoding is not None:
        body = inflate.inflated(body, encoding, limits.body_bytes)
    try:
        payload: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadJson(str(exc)) from None
    batch = payload if isinstance(payload, list) else [payload]
    if len(batch) > limits.entries:
        raise TooManyEntries(len(batch))
    return packing.pack(vm_id, entries.to_rows(batch))


def default_processes() -> int:
    """One worker per core, at most four; none on one core. The loop and PostgreSQL wait on each
    other and on the workers, so a core per worker still leaves them theirs: on two cores, four
    VMs at once went 1.35x -> 1.42x the peer with two workers instead of one."""
    cores = os.cpu_count() or 1
    return 0 if cores < 2 else min(4, cores)


# How often a worker checks that the service is still there.
PARENT_POLL_S = 1.0


def _watch_parent(parent: int) -> None:
    """Worker initializer: exit when the service is gone. Each worker holds the task queue's write
    end too, so a service killed outright (``kill -9``, the OOM killer) left its workers waiting on
    that queue for good."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(0)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


class RowBuilder:
    """Builds rows in ``processes`` worker processes (started at the first batch), or in the
    caller's thread when there are none."""

    def __init__(self, processes: int) -> None:
        self._processes = processes
        self._pool: ProcessPoolExecutor | None = None

    async def build(self, body: bytes, encoding: str | None, vm_id: UUID, limits: Limits) -> packing.Packed:
        if self._processes <= 0:
            return build(body, encoding, vm_id, limits)
        if self._pool is None:
            # spawn: a fork would copy the service's threads and connections into the worker.
            self._pool = ProcessPoolExecutor(
                self._processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_watch_parent,
                initargs=(os.getpid(),),
            )
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, build, body, encoding, vm_id, limits)
        except BrokenProcessPool:
            # A worker died (killed, out of memory): the next batch gets a new pool, this one is built here.
            self.close()
            return build(body, encoding, vm_id, limits)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
