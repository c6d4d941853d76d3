"""Alert rules: create (checked as a page's filters are), list, show with state, delete, history."""

from __future__ import annotations

import secrets
from collections import Counter
from typing import Any
from uuid import uuid4

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from vmjournal.alerts import rules, store
from vmjournal.alerts.schemas import (
    AlertCreate,
    AlertCreated,
    AlertDetail,
    AlertEventPublic,
    AlertPublic,
    AlertVMState,
)
from vmjournal.db import raw_connection
from vmjournal.errors import Conflict, NotFound
from vmjournal.journal import store as journal_store

HISTORY_MAX = 1000


def _public(record: Any, firing: list[str]) -> dict[str, Any]:
    return {
        "name": record["name"],
        "vm": record["vm_glob"],
        "unit": record["unit"],
        "priority": record["priority"],
        "grep": record["grep"],
        "match": list(record["match"]),
        "threshold": record["threshold"],
        "window_seconds": record["window_seconds"],
        "webhook_url": record["webhook_url"],
        "created_at": record["created_at"],
        "status": "firing" if firing else "ok",
        "firing_vms": firing,
    }


async def create_rule(session: AsyncSession, rule: AlertCreate) -> AlertCreated:
    """Store a rule; it reads entries stored from now on. The secret is in this answer only.

    Raises InvalidInput (400) for a unit, priority or grep a page would refuse, Conflict if the name is taken."""
    conn = await raw_connection(session)
    await rules.build_filter(conn, unit=rule.unit, priority=rule.priority, grep=rule.grep, match=rule.match)
    secret = secrets.token_urlsafe(32)
    start_seq = await journal_store.last_seq(conn)
    record = await store.insert_rule(
        conn,
        (
            uuid4(),
            rule.name,
            rule.vm,
            rule.unit,
            rule.priority,
            rule.grep,
            rule.match,
            rule.threshold,
            rule.window_seconds,
            rule.webhook_url,
            secret,
            start_seq,
        ),
    )
    if record is None:
        raise Conflict(f"an alert named {rule.name!r} exists; delete it first", code="alert_exists")
    return AlertCreated(**_public(record, []), secret=secret)


async def _firing_by_rule(session: AsyncSession) -> dict[Any, list[str]]:
    firing: dict[Any, list[str]] = {}
    for row in await store.firing_vms(await raw_connection(session)):
        firing.setdefault(row["rule_id"], []).append(row["name"])
    return firing


async def list_rules(session: AsyncSession) -> list[AlertPublic]:
    firing = await _firing_by_rule(session)
    records = await store.list_rules(await raw_connection(session))
    return [AlertPublic(**_public(r, firing.get(r["id"], []))) for r in records]


async def _get(session: AsyncSession, name: str) -> Any:
    record = await store.get_rule(await raw_connection(session), name)
    if record is None:
        raise NotFound(f"no alert named {name!r}", code="alert_not_found")
    return record


def _event(row: Any) -> AlertEventPublic:
    return AlertEventPublic(
        id=row["id"],
        vm=row["vm"],
        status=row["status"],
        count=row["count"],
        first_at=row["first_at"],
        last_at=row["last_at"],
        created_at=row["created_at"],
        delivery=row["delivery"],
        attempts=row["attempts"],
        delivered_at=row["delivered_at"],
        last_error=row["last_error"],
        payload=orjson.loads(row["body"]),
    )


async def get_rule(session: AsyncSession, name: str) -> AlertDetail:
    """The rule, its state on every VM it has matched, its last firing and notification counts."""
    record = await _get(session, name)
    conn = await raw_connection(session)
    states = [AlertVMState(**dict(r)) for r in await store.rule_states(conn, record["id"])]
    counts: Counter[str] = Counter()
    for row in await store.notification_counts(conn, record["id"]):
        counts["firings" if row["status"] == "firing" else "resolutions"] += row["n"]
        counts[row["delivery"]] += row["n"]
    last = await store.notifications(conn, record["id"], status="firing", limit=1)
    firing = [s.vm for s in states if s.status == "firing"]
    return AlertDetail(
        **_public(record, firing),
        vms=states,
        last_firing=_event(last[0]) if last else None,
        counts={k: counts[k] for k in ("firings", "resolutions", "delivered", "pending", "failed")},
    )


async def delete_rule(session: AsyncSession, name: str) -> None:
    """The rule goes with its states and history; notifications not yet delivered are dropped."""
    if not await store.delete_rule(await raw_connection(session), name):
        raise NotFound(f"no alert named {name!r}", code="alert_not_found")


async def history(session: AsyncSession, name: str, *, limit: int) -> list[AlertEventPublic]:
    record = await _get(session, name)
    rows = await store.notifications(await raw_connection(session), record["id"], status=None, limit=limit)
    return [_event(r) for r in rows]
