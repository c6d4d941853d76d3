"""Log volume: how many events a filter selects per time bucket and priority (``/histogram``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from vmjournal.db import raw_connection
from vmjournal.errors import BadRequest
from vmjournal.journal import filters, store, volume_store
from vmjournal.journal.entries import iso
from vmjournal.journal.fleet_store import Target

TARGET_BUCKETS = 100
MAX_BUCKETS = 10_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MINUTE = timedelta(minutes=1)
# Round steps a person reads on a chart's axis, in seconds.
_NICE_STEPS = (
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10800,
    21600,
    43200,
    86400,
    172800,
    604800,
)


def parse_step(spec: str) -> int:
    """``60``, ``30s``, ``1m``, ``1h``, ``1d``: whole seconds, at least one."""
    span = filters._span_us(spec.strip().lower().replace(" ", ""))
    if span is None or span < 1_000_000 or span % 1_000_000:
        raise BadRequest(f"invalid step {spec!r}: use whole seconds (60) or 30s, 1m, 1h, 1d", code="invalid_step")
    return span // 1_000_000


def default_step(span: timedelta) -> int:
    """The smallest round step that gives at most about TARGET_BUCKETS buckets."""
    wanted = span.total_seconds() / TARGET_BUCKETS
    for step in _NICE_STEPS:
        if step >= wanted:
            return step
    return int(-(-wanted // 86400)) * 86400


def _floor(ts: datetime, step: timedelta) -> datetime:
    return _EPOCH + ((ts - _EPOCH) // step) * step


def _ceil(ts: datetime, step: timedelta) -> datetime:
    down = _floor(ts, step)
    return down if down == ts else down + step


def summary_answers(f: store.EventFilter) -> bool:
    """Whether the minute summary can answer ``f``: only priority and time narrow it. Any other
    field set (including fields added to EventFilter later) makes the histogram count events."""
    return replace(f, priority_min=0, priority_max=7, since=None, until=None) == store.EventFilter()


async def histogram(session: AsyncSession, targets: Sequence[Target], *, step: str | None) -> dict[str, Any]:
    """``{"step_seconds", "buckets": [{"start", "total", "by_priority"}]}`` over the filter's range
    (its since/until, else the first to the last stored minute), every bucket listed."""
    conn = await raw_connection(session)
    targets = [t for t in targets if t.filter.units != []]
    vm_ids = [t.vm_id for t in targets]
    first, last = await volume_store.volume_range(conn, vm_ids) if vm_ids else (None, None)
    f0 = targets[0].filter if targets else store.EventFilter()
    lo = f0.since or first
    # until is inclusive; the range's end is exclusive.
    hi = f0.until + timedelta(microseconds=1) if f0.until is not None else last
    if f0.until is None and f0.since is not None:
        # "-1h" means the last hour up to now, even if the newest events are older.
        hi = max(hi or f0.since, datetime.now(UTC))
    step_seconds = parse_step(step) if step else default_step(hi - lo if lo and hi and hi > lo else _MINUTE)
    body: dict[str, Any] = {"step_seconds": step_seconds, "buckets": []}
    if lo is None or hi is None or hi <= lo:
        return body
    width = timedelta(seconds=step_seconds)
    start, end = _floor(lo, width), _ceil(hi, width)
    if (end - start) / width > MAX_BUCKETS:
        raise BadRequest(
            f"step {step_seconds}s gives more than {MAX_BUCKETS} buckets over this range; "
            "use a larger step or a shorter range",
            code="too_many_buckets",
        )
    counts: dict[datetime, dict[int, int]] = {}
    for row in await _counts(conn, targets, width, lo, hi):
        per = counts.setdefault(row["bucket"], {})
        per[row["priority"]] = per.get(row["priority"], 0) + row["n"]
    buckets = []
    at = start
    while at < end:
        per = counts.get(at, {})
        buckets.append(
            {"start": iso(at), "total": sum(per.values()), "by_priority": {str(p): n for p, n in sorted(per.items())}}
        )
        at += width
    body["buckets"] = buckets
    return body


async def _counts(conn: Any, targets: Sequence[Target], width: timedelta, lo: datetime, hi: datetime) -> list[Any]:
    filters_ = [t.filter for t in targets]
    shared = all(f == filters_[0] for f in filters_)
    if shared and summary_answers(filters_[0]) and width % _MINUTE == timedelta(0):
        f = filters_[0]
        vm_ids = [t.vm_id for t in targets]
        # Whole minutes from the summary, the partial minutes at either edge from the events.
        inner_lo, inner_hi = _ceil(lo, _MINUTE), _floor(hi, _MINUTE)
        if inner_lo < inner_hi:
            rows = await volume_store.summary_counts(
                conn, vm_ids, step=width, start=inner_lo, end=inner_hi, priorities=(f.priority_min, f.priority_max)
            )
            rows += await volume_store.count_events(conn, vm_ids, f, step=width, end=inner_lo)
            rows += await volume_store.count_events(conn, vm_ids, f, step=width, start=inner_hi)
            return rows
    if shared:
        return await volume_store.count_events(conn, [t.vm_id for t in targets], filters_[0], step=width)
    rows = []
    for target in targets:
        rows += await volume_store.count_events(conn, [target.vm_id], target.filter, step=width)
    return rows
