"""Alert evaluation: a durable, checkpointed reader of every VM's new journal entries.

Ingest commits a batch and NOTIFYs (journal/ingest_store.py); the live hub hears it and tells us which
VM has news and the batch's earliest timestamp. For each such VM, one transaction locks the VM's
``alert_cursor`` row (``SKIP LOCKED``: several service processes share the work, one per VM at a
time), reads the entries after the cursor with one column of matching rule indexes (the journal's
own conditions), moves each rule's ``alert_state`` on (alerts/window.py), writes the firings into
the outbox (``alert_notification``) and advances the cursor: all or nothing. So a firing is
written exactly once, and a process killed mid-way leaves the cursor where its last commit left it.

Nothing here runs inside ingest: a slow evaluator or a failing webhook never slows a batch.
After a restart, or a lost LISTEN connection, VMs whose entry count differs from what their
cursor counted are read again from the cursor, without a time bound. A periodic tick resolves
firings that have been quiet for their rule's window.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID, uuid4

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vmjournal import metrics, outage
from vmjournal.alerts import match_store, payload, store, window
from vmjournal.alerts.rules import Rule, from_record
from vmjournal.background import cancel_all
from vmjournal.db import driver_transaction
from vmjournal.journal import store as journal_store
from vmjournal.journal import trigram_store, trigrams

log = logging.getLogger(__name__)

PAGE_ROWS = 5000
# A pass that read this many entries means batches are streaming in: the next pass waits until
# BUSY_PASS_SECONDS after this one began, so that it reads several batches per VM in one
# transaction instead of one each. A quiet journal's entries are read as soon as they come.
BUSY_ROWS = 500
BUSY_PASS_SECONDS = 0.2
RESOLVE_BATCH = 100
# Past this many batches holding a page's entries, the page's greps are read on every entry.
RECENT_BATCHES = 64
_NO_LOWER_BOUND = datetime(1, 1, 1, tzinfo=UTC)


class Outcome(enum.Enum):
    done = "done"
    more = "more"  # a full page: read on
    busy = "busy"  # another process is evaluating this VM: come back


class _RulesChanged(Exception):
    """A rule was made while a VM's page was read: the page is read again with it."""


class Evaluator:
    """Per process: evaluates VMs it hears of, and resolves quiet firings, in the background."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        base_url: str,
        tick_seconds: float,
        on_notification: Callable[[], None],
    ) -> None:
        self._sessions = sessions
        self._base_url = base_url
        self._tick_seconds = tick_seconds
        self._on_notification = on_notification
        self._pending: dict[UUID, datetime] = {}
        self._catch_up = True
        self._wake = asyncio.Event()
        self._rules: dict[UUID, Rule] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.scanned = 0  # entries read, for the pause between busy passes

    def notify(self, vm_id: UUID | None, first: datetime | None) -> None:
        """The live hub's subscriber: a VM has new entries from ``first`` on; (None, None): some were missed."""
        if vm_id is None:
            self._catch_up = True
        else:
            self._pend(vm_id, first or _NO_LOWER_BOUND)
        self._wake.set()

    def start(self) -> None:
        self._wake.set()
        self._tasks = [asyncio.create_task(self._evaluate_loop()), asyncio.create_task(self._resolve_loop())]

    async def stop(self) -> None:
        await cancel_all(self._tasks, "alert evaluation")

    async def _evaluate_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            began, scanned = loop.time(), self.scanned
            try:
                await self.run_pending()
            except Exception as exc:
                _report("alert evaluation", exc)
                self._wake.set()
                await asyncio.sleep(1.0)
            if self.scanned - scanned >= BUSY_ROWS:
                await asyncio.sleep(began + BUSY_PASS_SECONDS - loop.time())

    async def run_pending(self) -> None:
        """Evaluate every VM heard of (and, after a restart or a lost LISTEN, every VM behind)."""
        if not self._pending and not self._catch_up:
            return
        async with store.connection(self._sessions) as conn:
            if self._catch_up:
                behind = await store.vms_behind(conn)
                self._catch_up = False
                for vm_id in behind:
                    self._pending[vm_id] = _NO_LOWER_BOUND
            if not self._pending:
                return
            rules = await self.load_rules(conn)
            pending, self._pending = self._pending, {}
            retry = False
            try:
                while pending:
                    vm_id, first = next(iter(pending.items()))
                    outcome = await self.evaluate(conn, vm_id, first, rules)
                    del pending[vm_id]
                    if outcome is not Outcome.done:
                        self._pend(vm_id, first)
                        retry = True
            finally:
                # After an error, the VM it came from and those not reached yet wait for the next pass.
                for vm_id, first in pending.items():
                    self._pend(vm_id, first)
        if retry:
            # Another process holds a VM (it will read what we heard of too, but may die doing it).
            await asyncio.sleep(0.05)
            self._wake.set()

    def _pend(self, vm_id: UUID, first: datetime) -> None:
        """The VM is to be read from ``first`` on (or from earlier, if it already was)."""
        self._pending[vm_id] = min(self._pending.get(vm_id, first), first)

    async def load_rules(self, conn: asyncpg.Connection) -> list[Rule]:
        """Every rule, each one's filter built once per process (rules never change, only go)."""
        rules = {}
        for record in await store.list_rules(conn):
            rule = self._rules.get(record["id"])
            rules[record["id"]] = rule if rule is not None else await from_record(conn, record)
        self._rules = rules
        return list(rules.values())

    async def evaluate(self, conn: asyncpg.Connection, vm_id: UUID, first: datetime, rules: list[Rule]) -> Outcome:
        """One page of the VM's entries after its cursor (none before ``first``), in one transaction on ``conn``."""
        if not rules:
            return Outcome.done
        fired: list[str] = []
        try:
            async with conn.transaction():
                outcome = await self._evaluate(conn, vm_id, first, rules, fired)
        except _RulesChanged:
            return Outcome.more  # rolled back: read again with the new rule
        if fired:
            metrics.alert_notifications.labels("firing").inc(len(fired))
            self._on_notification()
        return outcome

    async def _evaluate(
        self, conn: asyncpg.Connection, vm_id: UUID, first: datetime, rules: list[Rule], fired: list[str]
    ) -> Outcome:
        cursor = await store.lock_cursor(conn, vm_id, min(r.start_seq for r in rules))
        if cursor is None:
            return Outcome.busy
        applicable = [r for r in rules if r.applies_to(cursor["name"])]
        # A rule made after the rules were read starts after every seq drawn by then; the cursor
        # moves only if no such rule exists when it moves (else all is rolled back and read again),
        # and a rule made after that starts after every seq this page holds. So the cursor moves
        # only past entries read for every rule that starts before them.
        known = [r.id for r in rules]
        if not applicable:
            # Entries no rule reads.
            last = await journal_store.last_seq(conn)
            if not await store.advance_cursor(conn, vm_id, last, cursor["event_count"], known):
                raise _RulesChanged
            return Outcome.done
        reading, upto = await possible(conn, vm_id, first, applicable)
        # Where the page's end is known, and every rule left needs a warning or worse (or none is
        # left), only such entries are read: the others cannot match, and the cursor moves past
        # them to the end all the same.
        severe_only = upto is not None and all(r.filter.priority_max <= journal_store.SEVERE_MAX for r in reading)
        page = await match_store.new_matches(
            conn,
            vm_id,
            [r.filter for r in reading],
            ts_from=first,
            after_seq=cursor["seq"],
            limit=PAGE_ROWS,
            upto=upto,
            severe_only=severe_only,
        )
        full = page.scanned >= PAGE_ROWS
        found: list[str] = []
        if page.matches:
            found = await self._observe(conn, vm_id, cursor["name"], cursor["now"], reading, page.matches)
        # A full page leaves the count as it was: a restart must not take the VM for caught up.
        counted = cursor["counted"] if full else cursor["event_count"]
        last = cursor["seq"] if page.last is None else page.last
        if severe_only and not full:
            assert upto is not None
            last = max(last, upto)
        if not await store.advance_cursor(conn, vm_id, last, counted, known):
            raise _RulesChanged  # what was observed is rolled back with the transaction
        # For the pause between busy passes: how far the page reached (a seq span counts other
        # VMs' entries too, an overestimate that only makes the pause come sooner).
        self.scanned += last - cursor["seq"] if severe_only else page.scanned
        fired += found
        return Outcome.more if full else Outcome.done

    async def _observe(
        self,
        conn: asyncpg.Connection,
        vm_id: UUID,
        vm_name: str,
        now: datetime,
        rules: list[Rule],
        page: list[tuple[int, datetime, list[int]]],
    ) -> list[str]:
        new: dict[int, list[window.Match]] = {}
        for seq, ts, matched in page:
            for i in matched:
                if seq > rules[i].start_seq:
                    new.setdefault(i, []).append((ts, seq))
        if not new:
            return []
        states = {
            r["rule_id"]: window.State.from_record(r)
            for r in await store.states_for_update(conn, vm_id, [rules[i].id for i in new])
        }
        firings: list[tuple[Rule, window.Firing]] = []
        saved = []
        for i, matches in new.items():
            rule = rules[i]
            state = states.get(rule.id) or window.State(rule_id=rule.id, vm_id=vm_id)
            firing = window.observe(state, matches, threshold=rule.threshold, window=rule.window, now=now)
            if firing is not None:
                firings.append((rule, firing))
            saved.append(state.values())
        # Each firing's sample: the first matches of its window, read by position for all firings at once.
        stored = {
            (r["ts"], r["seq"]): r
            for r in await store.entries_at(
                conn, vm_id, [m for _, firing in firings for m in firing.matches[: window.SAMPLE]]
            )
        }
        notifications = []
        for rule, firing in firings:
            count = len(firing.matches)
            body = payload.body(
                rule,
                status="firing",
                vm=vm_name,
                count=count,
                first_at=firing.first_at,
                last_at=firing.last_at,
                sample=[stored[m] for m in firing.matches[: window.SAMPLE] if m in stored],
                base_url=self._base_url,
            )
            notifications.append(
                (uuid4(), rule.id, vm_id, "firing", count, firing.first_at, firing.last_at, body.decode())
            )
        await store.insert_notifications(conn, notifications)
        await store.save_states(conn, saved)
        return [rule.name for rule, _ in firings]

    async def _resolve_loop(self) -> None:
        while True:
            await asyncio.sleep(self._tick_seconds)
            try:
                while await self.resolve_quiet() == RESOLVE_BATCH:
                    pass
            except Exception as exc:
                _report("alert resolution", exc)

    async def resolve_quiet(self) -> int:
        """Resolve firings with no match for their rule's window; how many were resolved."""
        resolved: list[str] = []
        async with driver_transaction(self._sessions) as conn:
            rules = {r.id: r for r in await self.load_rules(conn)}
            for record in await store.quiet_firings(conn, RESOLVE_BATCH):
                state = window.State.from_record(record)
                rule = rules.get(state.rule_id)
                if rule is None:
                    continue  # deleted since we read the rules; its states went with it
                sample = await store.entries_at(conn, state.vm_id, state.recent[-window.SAMPLE :])
                body = payload.body(
                    rule,
                    status="resolved",
                    vm=record["vm_name"],
                    count=state.episode_count,
                    first_at=state.first_at,
                    last_at=state.last_at,
                    sample=sample,
                    base_url=self._base_url,
                )
                await store.insert_notification(
                    conn,
                    (
                        uuid4(),
                        rule.id,
                        state.vm_id,
                        "resolved",
                        state.episode_count,
                        state.first_at,
                        state.last_at,
                        body.decode(),
                    ),
                )
                window.resolve(state)
                await store.save_state(conn, state.values())
                resolved.append(rule.name)
        if resolved:
            metrics.alert_notifications.labels("resolved").inc(len(resolved))
            self._on_notification()
        return len(resolved)


async def possible(
    conn: asyncpg.Connection, vm_id: UUID, first: datetime, rules: list[Rule]
) -> tuple[list[Rule], int | None]:
    """The rules that can match an entry of the page, and the seq the page must stop at (None: no bound).

    Most entries match no grep, and a grep is the costly part of a rule. A grep that needs letter
    trigrams (journal/trigrams.py) which none of the batches holding the page's entries has cannot
    match any of them: its rule is left out of this page. Those batches are read in one snapshot,
    and the page stops at the last entry that snapshot saw; later entries come with their own news.
    """
    keys = {r.grep: trigrams.of_pattern(vm_id, r.grep) for r in rules if r.grep is not None}
    if first == _NO_LOWER_BOUND or not any(keys.values()):
        return rules, None
    recent = await trigram_store.recent(conn, vm_id, first, RECENT_BATCHES)
    if recent is None:
        return rules, None
    possible = [
        r for r in rules if r.grep is None or (needed := keys[r.grep]) is None or recent.keys.issuperset(needed)
    ]
    return possible, recent.upto


def _report(what: str, exc: Exception) -> None:
    if outage.is_unavailable(exc):
        outage.unavailable(exc)  # one line per outage, not a traceback per pass
    elif outage.is_saturated(exc):
        log.debug("%s: no database connection came free; trying again", what)
    else:
        log.exception("%s failed", what)
