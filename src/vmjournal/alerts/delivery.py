"""Webhook delivery from the outbox: claimed with SKIP LOCKED, retried with backoff, durable.

Every process runs one. A notification is claimed for as long as one attempt may take, posted
with no database connection held, then marked delivered or given its next attempt time: the
outcomes of POSTs that ended meanwhile are written together, in one transaction. A process
killed mid-POST leaves a claim that runs out; the notification is posted again with the same body,
signature and ``Idempotency-Key``, so a receiver that saw it can tell. A webhook that keeps
failing costs its own retries and nothing else: ingest and evaluation never wait for a POST.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vmjournal import __version__, metrics
from vmjournal.alerts import payload, store
from vmjournal.background import Wakeup, cancel_all
from vmjournal.db import driver_transaction

log = logging.getLogger(__name__)

RETRY_CAP_SECONDS = 600.0
ERROR_TEXT_MAX = 300


@dataclass(frozen=True)
class _Outcome:
    """One attempt's result, waiting to be written."""

    row: Any
    error: str | None
    give_up: bool


def backoff(attempts: int, base: float) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: doubling, capped, jittered."""
    delay: float = min(RETRY_CAP_SECONDS, base * 2.0 ** max(0, attempts - 1))
    return delay * random.uniform(0.8, 1.0)


class Deliverer:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        timeout: float,
        retry_base: float,
        max_attempts: int,
        concurrency: int = 8,
        poll_seconds: float = 1.0,
    ) -> None:
        self._sessions = sessions
        self._timeout = timeout
        self._retry_base = retry_base
        self._max_attempts = max_attempts
        # POSTs run `concurrency` at once; one writer records their outcomes, those of a burst in
        # one transaction, so a burst takes one pool connection, not one each.
        self._outcomes: list[_Outcome] = []
        self._outcome_ready = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._concurrency = concurrency
        self._poll = poll_seconds
        self._wake = Wakeup()
        self._tasks: set[asyncio.Task[None]] = set()
        self._main: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        # No redirects: the webhook configured is the one that answers.
        self._http = httpx.AsyncClient(
            timeout=self._timeout, follow_redirects=False, headers={"User-Agent": f"vmjournal/{__version__}"}
        )
        self._main = asyncio.create_task(self._loop())
        self._writer = asyncio.create_task(self._write_loop())

    async def stop(self) -> None:
        await cancel_all([self._main, self._writer, *self._tasks], "alert delivery")
        # Outcomes not written are lost with no harm: their claims run out and they are posted again.
        with contextlib.suppress(Exception):
            await self._write()
        if self._http is not None:
            await self._http.aclose()

    async def _loop(self) -> None:
        while True:
            wait = self._poll
            try:
                free = self._concurrency - len(self._tasks)
                claimed = await self._claim(free) if free > 0 else []
                for row in claimed:
                    task = asyncio.create_task(self._deliver(row))
                    self._tasks.add(task)
                    task.add_done_callback(self._done)
                if claimed:
                    continue
                wait = await self._idle_wait()
            except Exception as exc:
                log.warning("claiming alert notifications failed: %s", exc)
            await self._wake.wait(wait)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()

    async def _claim(self, limit: int) -> list[Any]:
        async with driver_transaction(self._sessions) as conn:
            return await store.claim_due(conn, self._timeout + 5.0, limit)

    async def _idle_wait(self) -> float:
        async with driver_transaction(self._sessions) as conn:
            due = await store.seconds_to_next_due(conn)
        return self._poll if due is None else min(self._poll, max(0.01, due))

    async def _deliver(self, row: Any) -> None:
        assert self._http is not None
        body = row["body"].encode()
        headers = {
            "Content-Type": "application/json",
            payload.IDEMPOTENCY_HEADER: str(row["id"]),
            payload.SIGNATURE_HEADER: payload.sign(row["secret"], body),
        }
        error: str | None = None
        try:
            response = await self._http.post(row["webhook_url"], content=body, headers=headers)
            if not response.is_success:
                error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{exc.__class__.__name__}: {exc}"[:ERROR_TEXT_MAX] if str(exc) else exc.__class__.__name__
        give_up = error is not None and row["attempts"] >= self._max_attempts
        self._outcomes.append(_Outcome(row, error, give_up))
        self._outcome_ready.set()

    async def _write_loop(self) -> None:
        while True:
            await self._outcome_ready.wait()
            self._outcome_ready.clear()
            try:
                await self._write()
            except Exception as exc:
                log.warning("recording alert delivery outcomes failed: %s", exc)
                self._outcome_ready.set()
                await asyncio.sleep(1.0)

    async def _write(self) -> None:
        """Record every outcome waiting, in one transaction; kept for the next try if it fails."""
        outcomes, self._outcomes = self._outcomes, []
        if not outcomes:
            return
        failed = [
            (o.row["id"], backoff(o.row["attempts"], self._retry_base), o.error, o.give_up)
            for o in outcomes
            if o.error is not None
        ]
        try:
            async with driver_transaction(self._sessions) as conn:
                await store.mark_delivered(conn, [o.row["id"] for o in outcomes if o.error is None])
                await store.mark_attempts_failed(conn, failed)
        except BaseException:
            self._outcomes[:0] = outcomes
            raise
        for o in outcomes:
            self._report(o)

    def _report(self, o: _Outcome) -> None:
        if o.error is None:
            metrics.alert_deliveries.labels("delivered").inc()
            return
        metrics.alert_deliveries.labels("gave_up" if o.give_up else "failed").inc()
        # The rule's name only: a webhook URL may carry credentials.
        log.warning(
            "alert %s: delivery attempt %d failed (%s)%s",
            o.row["rule"],
            o.row["attempts"],
            o.error,
            "; giving up" if o.give_up else "",
        )
