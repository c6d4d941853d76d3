"""SQL of the journal's events: the filters, keyset pages and live batches (ingest is in
journal/ingest_store.py).

Functions take an asyncpg connection inside the caller's transaction and never commit.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from vmjournal.journal import field_store, trigram_store

# Per-VM ingest lock: batches of one VM commit in the order their seq values were drawn, so a
# live follower that has seen seq N has seen everything of that VM up to N (journal/live.py).
LOCK_VM_INGEST = "SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text, 0))"

# Highest seq drawn so far, across VMs (not transactional: it only grows).
SELECT_LAST_SEQ = "SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('journal_event', 'seq')), 0)"

# What journal/layout.py needs to put an entry back together, and the filter columns. The context
# is looked up per returned row (after LIMIT), by its primary key.
EVENT_COLUMNS = (
    "seq, ts, seqnum, xor, monotonic_us, boot_id, unit, priority, identifier, pid, hostname, message, "
    "rest::text AS rest, (SELECT c.fields::text FROM journal_context c "
    "WHERE c.vm_id = journal_event.vm_id AND c.id = journal_event.context_id) AS context"
)

# New events of one VM for live followers: the notification's earliest timestamp bounds the
# primary key (vm_id, ts, ...) scan; seq orders them as they were committed. ``matched`` lists the
# followers' filters each row matches (an array, so a thousand distinct filters stay one column).
SELECT_LIVE_BATCH = (
    f"SELECT {EVENT_COLUMNS}, {{matched}} AS matched FROM journal_event "
    "WHERE vm_id = $1 AND {bounds} ORDER BY seq LIMIT {limit}"
)

# A pattern without these is a plain substring.
REGEX_SYNTAX = frozenset("\\.^$*+?()[]{}|")
# A grep is compiled before it is used, so a bad pattern is a 400, never a failed fan-out query.
CHECK_GREP = "SELECT '' ~ $1::text"
CHECK_GREP_ICASE = "SELECT '' ~* $1::text"

PURGE_VM = (
    "DELETE FROM journal_event WHERE vm_id = $1",
    "DELETE FROM journal_boot WHERE vm_id = $1",
    "DELETE FROM journal_unit WHERE vm_id = $1",
    "DELETE FROM journal_volume WHERE vm_id = $1",
    "DELETE FROM journal_context WHERE vm_id = $1",
    "DELETE FROM journal_trigrams WHERE vm_id = $1",
)

SELECT_BOOTS = """
SELECT boot_id, first_at, last_at, entries FROM journal_boot WHERE vm_id = $1 ORDER BY first_at, boot_id
"""

SELECT_UNITS = """
SELECT unit, entries, first_at, last_at FROM journal_unit WHERE vm_id = $1 ORDER BY unit
"""

SELECT_UNIT_NAMES_LIKE = """
SELECT unit FROM journal_unit WHERE vm_id = $1 AND unit LIKE $2 ORDER BY unit
"""


@dataclass
class EventFilter:
    """journalctl-like selection; every field narrows the result."""

    units: list[str] | None = None
    # A unit glob as a LIKE pattern. Pages read it resolved into ``units`` (from journal_unit, so
    # the unit indexes serve it); live follow matches the pattern on every batch, so a unit that
    # first appears after the follower connected streams too.
    unit_pattern: str | None = None
    priority_min: int = 0
    priority_max: int = 7
    since: datetime | None = None
    until: datetime | None = None
    boot_id: UUID | None = None
    boot_range: tuple[datetime, datetime] | None = None
    grep: str | None = None
    grep_case_sensitive: bool = True
    identifiers: list[str] = field(default_factory=list)
    # FIELD -> accepted values (journalctl's FIELD=VALUE: values of a field ORed, fields ANDed).
    matches: dict[str, list[bytes]] = field(default_factory=dict)

    def live_key(self) -> Hashable:
        """What live matching depends on: followers with equal keys share one match column."""
        return (
            None if self.unit_pattern is not None or self.units is None else tuple(self.units),
            self.unit_pattern,
            self.priority_min,
            self.priority_max,
            self.since,
            self.until,
            self.boot_id,
            self.grep,
            self.grep_case_sensitive,
            tuple(self.identifiers),
            tuple((k, tuple(v)) for k, v in sorted(self.matches.items())),
        )


@dataclass(frozen=True)
class Position:
    """Where a page ends: the keyset (timestamp, insertion sequence)."""

    ts: datetime
    seq: int


class _Query:
    def __init__(self, vm_id: UUID) -> None:
        self.args: list[Any] = [vm_id]

    def arg(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"


def _priority(value: int) -> int:
    if not 0 <= value <= 7:
        raise ValueError(f"priority {value!r} is not 0-7")
    return int(value)


def _named(column: str, vm: str, names: str, *, many: bool = False) -> list[str]:
    """A page's test of a unit or identifier column: the name itself, and the hash its index is
    keyed by (a collision only costs a heap read: the name decides)."""
    if many:
        # A sub-select: the array is computed once per VM, not once per row a filter tests.
        keys = f"(SELECT journal_keys({vm}, {names}))::bigint[]"
        return [f"{column} = ANY({names}::text[])", f"journal_key(vm_id, {column}) = ANY({keys})"]
    return [f"{column} = {names}", f"journal_key(vm_id, {column}) = journal_key({vm}, {names})"]


def _filter_conditions(q: _Query, f: EventFilter, *, live: bool, vm: str | None = None) -> list[str]:
    """The filter's SQL conditions except units, shared by pages and live follow. With ``vm`` (what
    one VM's ``vm_id`` is compared with), also the hash conditions of the name indexes."""
    where = []
    if f.priority_max < 7 or f.priority_min > 0:
        # Literals, not parameters: a generic plan can then prove a partial index's priority predicate.
        where.append(f"priority BETWEEN {_priority(f.priority_min)} AND {_priority(f.priority_max)}")
    if f.since is not None:
        where.append(f"ts >= {q.arg(f.since)}")
    if f.until is not None:
        where.append(f"ts <= {q.arg(f.until)}")
    if f.boot_id is not None:
        where.append(f"boot_id = {q.arg(f.boot_id)}")
        # The boot summary bounds the time range, so the (vm_id, ts) indexes do the work. Not for
        # live follow: the range was read at connect time and a running boot grows past it.
        if f.boot_range is not None and not live:
            where.append(f"ts BETWEEN {q.arg(f.boot_range[0])} AND {q.arg(f.boot_range[1])}")
    if f.grep is not None:
        sql, value = grep_condition("message", f.grep, f.grep_case_sensitive)
        where.append(sql.format(q.arg(value)))
    if f.identifiers:
        # Plain equality keeps the identifier's index scan in time order; = ANY(array) may not.
        many = len(f.identifiers) > 1
        names = q.arg(f.identifiers if many else f.identifiers[0])
        if vm is None:
            where.append(f"identifier = ANY({names}::text[])" if many else f"identifier = {names}")
        else:
            where += _named("identifier", vm, names, many=many)
    where += [field_store.match_condition(q.arg, name, values) for name, values in f.matches.items()]
    return where


def _live_match(q: _Query, f: EventFilter) -> str:
    """One SQL boolean: does a row match the follower's filter (the page conditions, units included)."""
    where = _filter_conditions(q, f, live=True)
    if f.unit_pattern is not None:
        like = q.arg(f.unit_pattern)
        where.append(f"(unit LIKE {like} OR about_unit LIKE {like})")
    elif f.units is not None:
        many = q.arg(f.units)
        where.append(f"(unit = ANY({many}::text[]) OR about_unit = ANY({many}::text[]))")
    return " AND ".join(where) or "true"


def live_conditions(vm_id: UUID, filters: Sequence[EventFilter]) -> tuple[list[str], list[Any]]:
    """Per filter, one SQL boolean over journal_event deciding as live follow does (the page conditions,
    unit globs matched on every row), with its arguments: ``$1`` is ``vm_id``, the rest follow in order."""
    q = _Query(vm_id)
    return [_live_match(q, f) for f in filters], q.args


def _select(where: list[str], order: str, limit_arg: str) -> str:
    return (
        f"SELECT {EVENT_COLUMNS} FROM journal_event WHERE {' AND '.join(where)} "
        f"ORDER BY ts {order}, seq {order} LIMIT {limit_arg}"
    )


# Priorities up to this one (warning) have their own index (journal_event's severe entries).
SEVERE_MAX = 4

# Up to this many units (a glob) get their own index-ordered scans, merged; beyond, one scan of the
# VM's (vm_id, ts) index filtered by unit, which finds a page quickly when so many units match.
MERGED_UNITS_MAX = 16


def page_query(
    vm_id: UUID,
    f: EventFilter,
    *,
    limit: int,
    after: Position | None = None,
    descending: bool = False,
    vm_column: str = "$1",
    within: Sequence[trigram_store.Range] | None = None,
) -> tuple[str, list[Any]]:
    """The SQL and arguments of one page of events in journal order (or reversed), after ``after``.
    ``vm_column`` is what ``vm_id`` is compared with: ``$1`` (the argument ``vm_id``), or a column of
    an outer query, for a page per VM in a LATERAL join (``$1`` is then left to the outer query).
    ``within``: only these disjoint time ranges are read, each by its own index-ordered page."""
    q = _Query(vm_id)
    order = "DESC" if descending else "ASC"
    where = [f"vm_id = {vm_column}", *_filter_conditions(q, f, live=False, vm=vm_column)]
    if after is not None:
        cmp = "<" if descending else ">"
        where.append(f"(ts, seq) {cmp} ({q.arg(after.ts)}, {q.arg(after.seq)})")
    limit_arg = q.arg(limit)
    if within is not None:
        firsts, lasts = q.arg([r[0] for r in within]), q.arg([r[1] for r in within])
        page = _page(q, f, [*where, "ts BETWEEN r.first_at AND r.last_at"], order, limit_arg, vm_column)
        return (
            f"SELECT e.* FROM unnest({firsts}::timestamptz[], {lasts}::timestamptz[]) r(first_at, last_at) "
            f"CROSS JOIN LATERAL ({page}) e ORDER BY e.ts {order}, e.seq {order} LIMIT {limit_arg}"
        ), q.args
    return _page(q, f, where, order, limit_arg, vm_column), q.args


def _page(q: _Query, f: EventFilter, where: list[str], order: str, limit_arg: str, vm: str) -> str:
    if f.units is None and f.priority_max <= SEVERE_MAX:
        # Warnings and worse are a few percent of a journal: one index-ordered scan per priority of
        # the small index of severe entries, merged, instead of walking everything else.
        by_priority = [[f"priority = {p}"] for p in range(_priority(f.priority_min), _priority(f.priority_max) + 1)]
        return _union(where, by_priority, order, limit_arg)
    if not f.units:
        # No unit filter, or a glob that matches no unit yet.
        return _select(where if f.units is None else [*where, "false"], order, limit_arg)
    # Index-ordered scans merged: each unit's own output, and what PID 1 and others logged about
    # it. An OR would read every matching row and sort them.
    branches: list[list[str]] = []
    if len(f.units) <= MERGED_UNITS_MAX:
        names = [q.arg(unit) for unit in f.units]
        # Plain equality keeps each scan in index order; = ANY(array) may not.
        if len(names) == 1:
            not_own = f"unit IS DISTINCT FROM {names[0]}"
        else:
            not_own = f"(unit IS NULL OR unit <> ALL({q.arg(f.units)}::text[]))"
        branches += [_named("unit", vm, name) for name in names]
        branches += [[f"about_unit = {name}", not_own] for name in names]
    else:
        many = q.arg(f.units)
        branches.append(_named("unit", vm, many, many=True))
        branches.append([f"about_unit = ANY({many}::text[])", f"(unit IS NULL OR unit <> ALL({many}::text[]))"])
    return _union(where, branches, order, limit_arg)


def _union(where: list[str], branches: list[list[str]], order: str, limit_arg: str) -> str:
    """Each branch's page, index-ordered, merged into one page."""
    union = " UNION ALL ".join(f"({_select([*where, *extra], order, limit_arg)})" for extra in branches)
    return f"SELECT * FROM ({union}) e ORDER BY ts {order}, seq {order} LIMIT {limit_arg}"


def grep_condition(column: str, pattern: str, case_sensitive: bool) -> tuple[str, str]:
    """A grep's test of a text column: SQL with ``{}`` where its argument goes, and the argument.

    A plain substring is found by strpos, five times faster than the regex engine, which widens
    each message to wide characters first (15 against 76 ms over 100 k messages). Without case, the
    regex matches an ASCII pattern's letters in their two ASCII cases only: what lowering under the
    C collation (ASCII letters only, byte by byte) leaves to strpos."""
    if not REGEX_SYNTAX.intersection(pattern):
        if case_sensitive:
            return f"strpos({column}, {{}}) > 0", pattern
        if pattern.isascii():
            return f'strpos(lower({column} COLLATE "C"), {{}}) > 0', pattern.lower()
    return f"{column} {'~' if case_sensitive else '~*'} {{}}", pattern


async def check_grep(conn: asyncpg.Connection, pattern: str, case_sensitive: bool) -> None:
    """Raises asyncpg.InvalidRegularExpressionError if PostgreSQL cannot compile the pattern."""
    await conn.fetchval(CHECK_GREP if case_sensitive else CHECK_GREP_ICASE, pattern)


async def lock_vm_ingest(conn: asyncpg.Connection, vm_id: UUID) -> None:
    """Wait for the VM's batch in flight, if any; held until the caller's transaction ends."""
    await conn.execute(LOCK_VM_INGEST, vm_id)


async def last_seq(conn: asyncpg.Connection) -> int:
    value: int = await conn.fetchval(SELECT_LAST_SEQ)
    return value


async def live_batch(
    conn: asyncpg.Connection,
    vm_id: UUID,
    filters: Sequence[EventFilter],
    *,
    after_seq: int,
    ts_from: datetime,
    limit: int,
) -> list[asyncpg.Record]:
    """Events of the VM with seq above ``after_seq`` and timestamp from ``ts_from``, in seq order,
    each with ``matched``: the indexes of ``filters`` it matches, decided by the same SQL as pages."""
    q = _Query(vm_id)
    bounds = f"ts >= {q.arg(ts_from)} AND seq > {q.arg(after_seq)}"
    limit_arg = q.arg(limit)
    flags = ", ".join(f"CASE WHEN {_live_match(q, f)} THEN {i} END" for i, f in enumerate(filters))
    sql = SELECT_LIVE_BATCH.format(matched=f"array_remove(ARRAY[{flags}]::int[], NULL)", bounds=bounds, limit=limit_arg)
    return list(await conn.fetch(sql, *q.args))


async def list_boots(conn: asyncpg.Connection, vm_id: UUID) -> list[asyncpg.Record]:
    return list(await conn.fetch(SELECT_BOOTS, vm_id))


async def list_units(conn: asyncpg.Connection, vm_id: UUID) -> list[asyncpg.Record]:
    return list(await conn.fetch(SELECT_UNITS, vm_id))


async def units_like(conn: asyncpg.Connection, vm_id: UUID, pattern: str) -> list[str]:
    return [r["unit"] for r in await conn.fetch(SELECT_UNIT_NAMES_LIKE, vm_id, pattern)]


async def purge(conn: asyncpg.Connection, vm_id: UUID) -> None:
    for statement in PURGE_VM:
        await conn.execute(statement, vm_id)
