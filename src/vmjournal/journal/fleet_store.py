"""SQL of the fleet: one page of events merged across VMs, and per-VM summaries in one round trip.

A fleet page is one statement over every VM (after a probe, below), its size set by the filters,
not by the VMs: the VMs that share a filter are a table (``unnest`` of their ids) and each one's
page is journal/store.py's page query in a LATERAL join (the same filter SQL, so every filter of
``/vm/{name}/boot`` works here too). Each VM's page walks its index in (ts, seq) order and stops
at its limit; one top-N sort merges them. ``seq`` is global, so the keyset position (ts, seq) is
one total order over every VM. (A boot resolved per VM makes each VM's filter its own: one branch
per VM, as before.)

Each VM's page may hold the whole page, so unbounded the merge would read VMs x limit rows. A
probe first takes each VM's first few rows (``limit / VMs``): the limit-th of those is at or after
the page's last row, so its time bounds every VM's scan (``until``, or ``since`` newest first) and
the page reads about ``limit`` rows in all. The probe takes more rows per VM while it finds too
few and some VM may have more."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from vmjournal.journal import pages, store, trigram_store, trigrams

# Placeholders of a statement built for one VM, renumbered to sit in the fleet statement.
_PLACEHOLDER = re.compile(r"\$(\d+)\b")

# The VMs of one filter, with their positions in the query's targets; ``t.vm_id`` is what each
# VM's page compares vm_id with.
VMS_OF_FILTER = "unnest({ids}::uuid[], {indexes}::int[]) AS t(vm_id, vm_index)"
VM_COLUMN = "t.vm_id"
PAGES_OF_FILTER = "(SELECT t.vm_index, p.* FROM {vms} CROSS JOIN LATERAL ({page}) p)"
# A VM with a filter of its own (its own boot) is its own branch: merged in index order (Merge
# Append), such branches read about one page in all.
PAGE_OF_VM = "(SELECT {index} AS vm_index, p.* FROM ({page}) p)"
MERGE_PAGES = "SELECT * FROM ({pages}) f ORDER BY ts {order}, seq {order} LIMIT {limit}"
NO_VMS = "SELECT NULL::int AS vm_index WHERE false"

# The probe over each VM's first rows: the time of the limit-th, and whether some VM may have
# more (it filled its share).
PROBE = """
WITH c AS MATERIALIZED (SELECT vm_index, ts, seq FROM ({pages}) f)
SELECT (SELECT ts FROM c ORDER BY ts {order}, seq {order} OFFSET {nth} LIMIT 1) AS bound,
       EXISTS (SELECT FROM c GROUP BY vm_index HAVING count(*) >= {share}) AS more
"""

# What a VM that cannot match reads: no unit is a unit of none (journal/store.py's page query).
_NOTHING = store.EventFilter(units=[])

# The probe's share per VM grows by this factor each time it finds too few rows.
PROBE_GROWTH = 4

SELECT_BOOTS_OF = """
SELECT vm_id, boot_id, first_at, last_at, entries FROM journal_boot
WHERE vm_id = ANY($1::uuid[]) ORDER BY vm_id, first_at, boot_id
"""

SELECT_UNIT_NAMES_LIKE_OF = """
SELECT vm_id, unit FROM journal_unit WHERE vm_id = ANY($1::uuid[]) AND unit LIKE $2 ORDER BY vm_id, unit
"""

# Every selected VM's ingest lock, always in the same order, so two fleet snapshots never deadlock
# (an ingest takes one lock only).
LOCK_VMS_INGEST = """
SELECT count(pg_advisory_xact_lock(hashtextextended(v::text, 0)))
FROM (SELECT DISTINCT unnest($1::uuid[]) AS v ORDER BY 1) s
"""


@dataclass(frozen=True)
class Target:
    """One VM of a fleet query, with its own filter (a unit glob or a boot offset resolve per VM)."""

    vm_id: UUID
    filter: store.EventFilter


def _shift(sql: str, offset: int) -> str:
    return _PLACEHOLDER.sub(lambda m: f"${int(m.group(1)) + offset}", sql)


@dataclass(frozen=True)
class _Group:
    """The targets that share one filter (by position in the query's targets)."""

    filter: store.EventFilter
    indexes: list[int]
    vm_ids: list[UUID]


def _groups(targets: Sequence[Target]) -> list[_Group]:
    # The dataclass repr names every field, so equal reprs mean equal filters.
    by_filter: dict[str, _Group] = {}
    for index, target in enumerate(targets):
        group = by_filter.setdefault(repr(target.filter), _Group(target.filter, [], []))
        group.indexes.append(index)
        group.vm_ids.append(target.vm_id)
    return list(by_filter.values())


def _pages(
    groups: Sequence[_Group], *, limit: int, after: store.Position | None, descending: bool
) -> tuple[str, list[Any]]:
    """Every VM's page (``limit`` rows at most), with ``vm_index``, as one UNION ALL of LATERAL joins
    (a VM alone with its filter: its own page)."""
    args: list[Any] = []
    branches = []
    for group in groups:
        if len(group.vm_ids) == 1:
            page, page_args = store.page_query(
                group.vm_ids[0], group.filter, limit=limit, after=after, descending=descending
            )
            branches.append(PAGE_OF_VM.format(index=group.indexes[0], page=_shift(page, len(args))))
            args += page_args
            continue
        page, page_args = store.page_query(
            group.vm_ids[0], group.filter, limit=limit, after=after, descending=descending, vm_column=VM_COLUMN
        )
        # The page leaves $1 (its vm_id) unused: it becomes the group's ids, for the unnest.
        page_args[0] = group.vm_ids
        offset = len(args)
        args += [*page_args, group.indexes]
        vms = VMS_OF_FILTER.format(ids=f"${offset + 1}", indexes=f"${len(args)}")
        branches.append(PAGES_OF_FILTER.format(vms=vms, page=_shift(page, offset)))
    return " UNION ALL ".join(branches), args


def _merged(
    groups: Sequence[_Group], *, limit: int, after: store.Position | None, descending: bool
) -> tuple[str, list[Any]]:
    pages, args = _pages(groups, limit=limit, after=after, descending=descending)
    args.append(limit)
    order = "DESC" if descending else "ASC"
    return MERGE_PAGES.format(pages=pages, order=order, limit=f"${len(args)}"), args


def _probe(
    groups: Sequence[_Group], *, share: int, limit: int, after: store.Position | None, descending: bool
) -> tuple[str, list[Any]]:
    pages, args = _pages(groups, limit=share, after=after, descending=descending)
    order = "DESC" if descending else "ASC"
    return PROBE.format(pages=pages, order=order, nth=limit - 1, share=share), args


def _bounded(f: store.EventFilter, bound: datetime, descending: bool) -> store.EventFilter:
    # Inclusive, so rows at the bound's time with any seq stay in.
    if descending:
        return replace(f, since=bound if f.since is None else max(f.since, bound))
    return replace(f, until=bound if f.until is None else min(f.until, bound))


def fleet_page_query(
    targets: Sequence[Target],
    *,
    limit: int,
    after: store.Position | None = None,
    descending: bool = False,
    bound: datetime | None = None,
) -> tuple[str, list[Any]]:
    """One page over several VMs: each row has ``vm_index``, the position of its VM in ``targets``.
    ``bound`` (from ``probe_query``) limits each VM's scan to the page's time range."""
    if not targets:
        return NO_VMS, []
    groups = _groups(targets)
    if bound is not None:
        groups = [replace(g, filter=_bounded(g.filter, bound, descending)) for g in groups]
    return _merged(groups, limit=limit, after=after, descending=descending)


def probe_query(
    targets: Sequence[Target], *, share: int, limit: int, after: store.Position | None = None, descending: bool = False
) -> tuple[str, list[Any]]:
    """Over each VM's first ``share`` rows: ``bound``, the time of the ``limit``-th (NULL if fewer),
    and ``more``, whether some VM had ``share`` rows (and so may have more)."""
    return _probe(_groups(targets), share=share, limit=limit, after=after, descending=descending)


def _probes(targets: Sequence[Target]) -> bool:
    # Only LATERAL joins read a whole limit per VM. VMs that each have a filter of their own merge
    # in index order already, and a probe would plan every branch twice.
    return any(len(group.vm_ids) > 1 for group in _groups(targets))


def _first_share(limit: int, vms: int) -> int:
    # Enough rows per VM for ``limit`` in all when every VM has its share.
    return -(-limit // max(vms, 1))


async def page_bound(
    conn: asyncpg.Connection,
    targets: Sequence[Target],
    *,
    limit: int,
    after: store.Position | None = None,
    descending: bool = False,
) -> datetime | None:
    """A time at or after the page's last row (before it, newest first), or None: no bound helps."""
    if not _probes(targets):
        return None
    share = _first_share(limit, len(targets))
    while share < limit:
        sql, args = probe_query(targets, share=share, limit=limit, after=after, descending=descending)
        row = (await pages.fetch_ordered(conn, sql, args))[0]
        if row["bound"] is not None:
            bound: datetime = row["bound"]
            return bound
        if not row["more"]:
            # Every VM has fewer rows than its share: the page is those few, found without a bound.
            return None
        share *= PROBE_GROWTH
    # A share of ``limit`` per VM is the page itself.
    return None


async def query_fleet(
    conn: asyncpg.Connection,
    targets: Sequence[Target],
    *,
    limit: int,
    after: store.Position | None = None,
    descending: bool = False,
) -> list[asyncpg.Record]:
    if not targets:
        return []
    targets = await _matchable(conn, targets)
    bound = await page_bound(conn, targets, limit=limit, after=after, descending=descending)
    sql, args = fleet_page_query(targets, limit=limit, after=after, descending=descending, bound=bound)
    return await pages.fetch_ordered(conn, sql, args)


async def _matchable(conn: asyncpg.Connection, targets: Sequence[Target]) -> list[Target]:
    """The targets, with those whose VM has no batch holding their grep's letter trigrams made to
    read nothing (journal/trigrams.py): a fleet grep for a rare word reads the VMs that have it."""
    holding: dict[str, set[UUID]] = {}
    for pattern in {t.filter.grep for t in targets if t.filter.grep is not None}:
        keys = {}
        for t in targets:
            if t.filter.grep == pattern and (found := trigrams.of_pattern(t.vm_id, pattern)) is not None:
                keys[t.vm_id] = found
        if keys:
            holding[pattern] = await trigram_store.vms_with(conn, keys)
    return [
        replace(t, filter=_NOTHING) if t.filter.grep in holding and t.vm_id not in holding[t.filter.grep] else t
        for t in targets
    ]


async def explain_fleet(
    conn: asyncpg.Connection, targets: Sequence[Target], *, limit: int, analyze: bool = False
) -> list[Any]:
    """The plans of a fleet page's statements (JSON form): the first probe if it takes one, then the
    page. For tests and benches."""
    import orjson

    options = "ANALYZE, BUFFERS, FORMAT JSON" if analyze else "FORMAT JSON"
    statements = [fleet_page_query(targets, limit=limit, bound=await page_bound(conn, targets, limit=limit))]
    if _probes(targets):
        statements.insert(0, probe_query(targets, share=_first_share(limit, len(targets)), limit=limit))
    plans = []
    for sql, args in statements:
        rows = await pages.fetch_ordered(conn, f"EXPLAIN ({options}) {sql}", args)
        plan = rows[0][0]
        plans.append(orjson.loads(plan) if isinstance(plan, str) else plan)
    return plans


async def boots_of(conn: asyncpg.Connection, vm_ids: Sequence[UUID]) -> dict[UUID, list[asyncpg.Record]]:
    """Each VM's boots, oldest first."""
    out: dict[UUID, list[asyncpg.Record]] = {vm_id: [] for vm_id in vm_ids}
    for row in await conn.fetch(SELECT_BOOTS_OF, list(vm_ids)):
        out[row["vm_id"]].append(row)
    return out


async def units_like_of(conn: asyncpg.Connection, vm_ids: Sequence[UUID], pattern: str) -> dict[UUID, list[str]]:
    out: dict[UUID, list[str]] = {vm_id: [] for vm_id in vm_ids}
    for row in await conn.fetch(SELECT_UNIT_NAMES_LIKE_OF, list(vm_ids), pattern):
        out[row["vm_id"]].append(row["unit"])
    return out


async def lock_vms_ingest(conn: asyncpg.Connection, vm_ids: Sequence[UUID]) -> None:
    """Wait for the VMs' batches in flight; held until the caller's transaction ends."""
    await conn.fetchval(LOCK_VMS_INGEST, list(vm_ids))
