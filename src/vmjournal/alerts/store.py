"""SQL of alerts: rules, per-VM evaluation cursors, per-rule-per-VM states, the notification outbox
(which entries match which rules is alerts/match_store.py).

Functions take an asyncpg connection inside the caller's transaction and never commit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vmjournal.db import raw_connection
from vmjournal.journal import store as journal_store

RULE_COLUMNS = (
    "id, name, vm_glob, unit, priority, grep, match, threshold, window_seconds, webhook_url, start_seq, created_at"
)

INSERT_RULE = f"""
INSERT INTO alert_rule (id, name, vm_glob, unit, priority, grep, match, threshold, window_seconds, webhook_url,
                        secret, start_seq)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (name) DO NOTHING
RETURNING {RULE_COLUMNS}
"""

SELECT_RULES = f"SELECT {RULE_COLUMNS} FROM alert_rule ORDER BY name"
SELECT_RULE = f"SELECT {RULE_COLUMNS} FROM alert_rule WHERE name = $1"
DELETE_RULE = "DELETE FROM alert_rule WHERE name = $1 RETURNING id"

SELECT_FIRING_VMS = """
SELECT s.rule_id, v.name FROM alert_state s JOIN vm v ON v.id = s.vm_id WHERE s.status = 'firing' ORDER BY v.name
"""

SELECT_RULE_STATES = """
SELECT v.name AS vm, s.status, s.matches, s.firings, s.fired_at, s.first_at, s.last_at, s.last_seen_at
FROM alert_state s JOIN vm v ON v.id = s.vm_id WHERE s.rule_id = $1 ORDER BY v.name
"""

COUNT_NOTIFICATIONS = """
SELECT status, delivery, count(*) AS n FROM alert_notification WHERE rule_id = $1 GROUP BY status, delivery
"""

SELECT_NOTIFICATIONS = """
SELECT n.id, v.name AS vm, n.status, n.count, n.first_at, n.last_at, n.created_at, n.delivery, n.attempts,
       n.delivered_at, n.last_error, n.body
FROM alert_notification n JOIN vm v ON v.id = n.vm_id
WHERE n.rule_id = $1 AND ($2::text IS NULL OR n.status = $2)
ORDER BY n.created_at DESC, n.id LIMIT $3
"""

# VMs whose entries were stored while no evaluator listened (after a restart or a lost LISTEN):
# no cursor yet, or a cursor that counted fewer entries than the VM holds.
SELECT_VMS_BEHIND = """
SELECT v.id FROM vm v LEFT JOIN alert_cursor c ON c.vm_id = v.id
WHERE v.event_count > 0 AND (c.vm_id IS NULL OR c.event_count <> v.event_count)
"""

# A VM's cursor starts where the oldest rule starts: nothing before can fire any rule.
ENSURE_CURSOR = """
INSERT INTO alert_cursor (vm_id, seq, event_count) VALUES ($1, $2, 0) ON CONFLICT (vm_id) DO NOTHING
"""

# One process evaluates a VM at a time; another that finds it locked comes back later. ``now``:
# the transaction's time, which quiet windows are measured against, whichever process looks.
LOCK_CURSOR = """
SELECT c.seq, c.event_count AS counted, v.name, v.event_count, now() AS now
FROM alert_cursor c JOIN vm v ON v.id = c.vm_id
WHERE c.vm_id = $1 FOR UPDATE OF c SKIP LOCKED
"""

# The cursor moves only if no rule was made since the rules ($4) were read: the caller's pass
# may not have read its entries for it.
ADVANCE_CURSOR = """
UPDATE alert_cursor SET seq = greatest(seq, $2), event_count = $3, updated_at = now()
WHERE vm_id = $1 AND NOT EXISTS (SELECT FROM alert_rule WHERE id <> ALL($4::uuid[]))
"""

# Entries by position: the primary key (vm_id, ts, ...) finds them.
SELECT_AT = f"""
SELECT {journal_store.EVENT_COLUMNS} FROM journal_event
WHERE vm_id = $1 AND ts = ANY($2::timestamptz[]) AND seq = ANY($3::bigint[]) ORDER BY ts, seq
"""

STATE_COLUMNS = (
    "rule_id, vm_id, status, recent_ts, recent_seq, first_at, last_at, episode_count, fired_at, last_seen_at, "
    "matches, firings"
)

SELECT_STATES_FOR_UPDATE = f"""
SELECT {STATE_COLUMNS} FROM alert_state WHERE vm_id = $1 AND rule_id = ANY($2::uuid[]) FOR UPDATE
"""

UPSERT_STATE = f"""
INSERT INTO alert_state ({STATE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (rule_id, vm_id) DO UPDATE SET
    status = excluded.status, recent_ts = excluded.recent_ts, recent_seq = excluded.recent_seq,
    first_at = excluded.first_at, last_at = excluded.last_at, episode_count = excluded.episode_count,
    fired_at = excluded.fired_at, last_seen_at = excluded.last_seen_at, matches = excluded.matches,
    firings = excluded.firings, updated_at = now()
"""

# Firings quiet for their rule's window. SKIP LOCKED: a state being evaluated right now is not
# quiet, and another process may be resolving it.
SELECT_QUIET = f"""
SELECT {", ".join("s." + c for c in STATE_COLUMNS.split(", "))}, v.name AS vm_name
FROM alert_state s JOIN alert_rule r ON r.id = s.rule_id JOIN vm v ON v.id = s.vm_id
WHERE s.status = 'firing' AND s.last_seen_at < now() - make_interval(secs => r.window_seconds)
ORDER BY s.last_seen_at LIMIT $1
FOR UPDATE OF s SKIP LOCKED
"""

INSERT_NOTIFICATION = """
INSERT INTO alert_notification (id, rule_id, vm_id, status, count, first_at, last_at, body)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""

# Due notifications, claimed for as long as one attempt may take: a process killed mid-POST
# leaves a claim that runs out, and the notification is posted again (same Idempotency-Key).
CLAIM_DUE = """
UPDATE alert_notification n SET locked_until = now() + make_interval(secs => $1), attempts = n.attempts + 1
FROM alert_rule r
WHERE n.id IN (
    SELECT id FROM alert_notification
    WHERE delivery = 'pending' AND next_attempt_at <= now() AND (locked_until IS NULL OR locked_until < now())
    ORDER BY next_attempt_at LIMIT $2
    FOR UPDATE SKIP LOCKED
) AND r.id = n.rule_id
RETURNING n.id, n.body, n.attempts, r.name AS rule, r.webhook_url, r.secret
"""

MARK_DELIVERED = """
UPDATE alert_notification SET delivery = 'delivered', delivered_at = now(), locked_until = NULL, last_error = NULL
WHERE id = ANY($1::uuid[])
"""

MARK_ATTEMPT_FAILED = """
UPDATE alert_notification
SET delivery = CASE WHEN $4 THEN 'failed' ELSE 'pending' END, last_error = $3, locked_until = NULL,
    next_attempt_at = now() + make_interval(secs => $2)
WHERE id = $1
"""

# Delivered ones are history, not backlog: left out so a scrape stays cheap as history grows.
COUNT_UNDELIVERED = "SELECT delivery, count(*) FROM alert_notification WHERE delivery <> 'delivered' GROUP BY delivery"

SELECT_NEXT_DUE = """
SELECT min(greatest(next_attempt_at, coalesce(locked_until, next_attempt_at))) - now()
FROM alert_notification WHERE delivery = 'pending'
"""


@asynccontextmanager
async def connection(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection, held for several transactions of the caller's (``conn.transaction()``).

    A checkout pings the connection (three round trips): evaluation takes one per pass, not one
    per VM it reads."""
    async with sessions() as session:
        yield await raw_connection(session)


async def insert_rule(conn: asyncpg.Connection, values: Sequence[Any]) -> asyncpg.Record | None:
    """None if a rule of that name exists."""
    row: asyncpg.Record | None = await conn.fetchrow(INSERT_RULE, *values)
    return row


async def list_rules(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(await conn.fetch(SELECT_RULES))


async def get_rule(conn: asyncpg.Connection, name: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(SELECT_RULE, name)
    return row


async def delete_rule(conn: asyncpg.Connection, name: str) -> bool:
    return await conn.fetchval(DELETE_RULE, name) is not None


async def firing_vms(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(await conn.fetch(SELECT_FIRING_VMS))


async def rule_states(conn: asyncpg.Connection, rule_id: UUID) -> list[asyncpg.Record]:
    return list(await conn.fetch(SELECT_RULE_STATES, rule_id))


async def notification_counts(conn: asyncpg.Connection, rule_id: UUID) -> list[asyncpg.Record]:
    return list(await conn.fetch(COUNT_NOTIFICATIONS, rule_id))


async def notifications(
    conn: asyncpg.Connection, rule_id: UUID, *, status: str | None, limit: int
) -> list[asyncpg.Record]:
    return list(await conn.fetch(SELECT_NOTIFICATIONS, rule_id, status, limit))


async def vms_behind(conn: asyncpg.Connection) -> list[UUID]:
    return [r["id"] for r in await conn.fetch(SELECT_VMS_BEHIND)]


async def lock_cursor(conn: asyncpg.Connection, vm_id: UUID, start_seq: int) -> asyncpg.Record | None:
    """The VM's cursor, its name and entry count, locked, and the transaction's time; None while
    another process evaluates it. A VM's first evaluation makes its cursor."""
    row: asyncpg.Record | None = await conn.fetchrow(LOCK_CURSOR, vm_id)
    if row is None:
        await conn.execute(ENSURE_CURSOR, vm_id, start_seq)
        row = await conn.fetchrow(LOCK_CURSOR, vm_id)
    return row


async def advance_cursor(
    conn: asyncpg.Connection, vm_id: UUID, seq: int, event_count: int, known_rules: Sequence[UUID]
) -> bool:
    """Move the cursor on; False (and nothing moved) if a rule other than ``known_rules`` exists."""
    status: str = await conn.execute(ADVANCE_CURSOR, vm_id, seq, event_count, list(known_rules))
    return status == "UPDATE 1"


async def entries_at(
    conn: asyncpg.Connection, vm_id: UUID, positions: Sequence[tuple[datetime, int]]
) -> list[asyncpg.Record]:
    if not positions:
        return []
    wanted = set(positions)
    rows = await conn.fetch(SELECT_AT, vm_id, [p[0] for p in positions], [p[1] for p in positions])
    return [r for r in rows if (r["ts"], r["seq"]) in wanted]


async def states_for_update(conn: asyncpg.Connection, vm_id: UUID, rule_ids: Sequence[UUID]) -> list[asyncpg.Record]:
    return list(await conn.fetch(SELECT_STATES_FOR_UPDATE, vm_id, list(rule_ids)))


async def save_state(conn: asyncpg.Connection, values: Sequence[Any]) -> None:
    await conn.execute(UPSERT_STATE, *values)


async def save_states(conn: asyncpg.Connection, rows: Sequence[Sequence[Any]]) -> None:
    """Several states in one round trip (a batch often moves many rules on one VM)."""
    if rows:
        await conn.executemany(UPSERT_STATE, rows)


async def quiet_firings(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    return list(await conn.fetch(SELECT_QUIET, limit))


async def insert_notification(conn: asyncpg.Connection, values: Sequence[Any]) -> None:
    await conn.execute(INSERT_NOTIFICATION, *values)


async def insert_notifications(conn: asyncpg.Connection, rows: Sequence[Sequence[Any]]) -> None:
    if rows:
        await conn.executemany(INSERT_NOTIFICATION, rows)


async def claim_due(conn: asyncpg.Connection, lease_seconds: float, limit: int) -> list[asyncpg.Record]:
    return list(await conn.fetch(CLAIM_DUE, lease_seconds, limit))


async def mark_delivered(conn: asyncpg.Connection, notification_ids: Sequence[UUID]) -> None:
    if notification_ids:
        await conn.execute(MARK_DELIVERED, list(notification_ids))


async def mark_attempts_failed(conn: asyncpg.Connection, rows: Sequence[tuple[UUID, float, str, bool]]) -> None:
    """Each row: (notification id, seconds until the next attempt, error, give up)."""
    if rows:
        await conn.executemany(MARK_ATTEMPT_FAILED, rows)


async def seconds_to_next_due(conn: asyncpg.Connection) -> float | None:
    """How long until a pending notification is due (negative: overdue); None if none is pending."""
    delta = await conn.fetchval(SELECT_NEXT_DUE)
    return None if delta is None else float(delta.total_seconds())


async def count_undelivered(conn: asyncpg.Connection) -> list[tuple[str, int]]:
    return [(r[0], r[1]) for r in await conn.fetch(COUNT_UNDELIVERED)]
