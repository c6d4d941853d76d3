"""SQL of rule matching: which of a VM's new journal entries match which rules.

Functions take an asyncpg connection inside the caller's transaction and never commit. Which
entries a rule matches is decided by the journal's own conditions (journal/store.py
``live_conditions``), so a rule selects what a page with the same filters shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from vmjournal.alerts import matching
from vmjournal.journal import store as journal_store

# One page of a VM's new entries in seq order, each with the indexes of the distinct filters it
# matches (alerts/matching.py: a guard per group, then each filter's costly rest); only matching
# rows come back, plus the page's last row (where the cursor moves to). The page is cut before
# the match column is computed: no regex reads an entry the page leaves for the next one. The
# greps' alternations ({hits}) are read once per entry (OFFSET 0 keeps them one column each, not
# inlined into every filter); an entry that no filter can match ({possible} false) skips the rest.
# The page keeps the table's name: the journal's conditions refer to journal_event's columns by it.
# {severe}: only warnings and worse, through their partial index, when no filter takes any other.
SELECT_MATCHES = """
SELECT seq, ts, matched, last, scanned FROM (
    SELECT seq, ts,
           CASE WHEN {possible} THEN coalesce(array_remove({groups}, NULL), '{{}}') ELSE '{{}}' END AS matched,
           max(seq) OVER () AS last, count(*) OVER () AS scanned
    FROM (
        SELECT *{hits} FROM (
            SELECT * FROM journal_event
            WHERE vm_id = $1 AND ts >= {ts_from} AND seq > {after} AND ({upto}::bigint IS NULL OR seq <= {upto}){severe}
            ORDER BY seq LIMIT {limit}
        ) journal_event OFFSET 0
    ) journal_event
) counted WHERE cardinality(matched) > 0 OR seq = last
"""

# One group of SELECT_MATCHES: NULL where the guard fails (NULL || array is the array).
MATCH_GROUP = "CASE WHEN {guard} THEN ARRAY[{flags}]::int[] END"
MATCH_FLAG = "CASE WHEN {rest} THEN {index} END"
# Where some grep of a case mode matches, as a column of SELECT_MATCHES's page.
HIT_COLUMN = {True: "alert_grep_hit", False: "alert_grep_hit_icase"}
HIT = ", message {op} {pattern} AS {column}"


@dataclass(frozen=True)
class Page:
    """What one page of a VM's new entries held."""

    matches: list[tuple[int, datetime, list[int]]]  # (seq, ts, indexes of the filters matched)
    last: int | None  # the page's highest seq; None: no new entry
    scanned: int


async def new_matches(
    conn: asyncpg.Connection,
    vm_id: UUID,
    filters: Sequence[journal_store.EventFilter],
    *,
    ts_from: datetime,
    after_seq: int,
    limit: int,
    upto: int | None = None,
    severe_only: bool = False,
) -> Page:
    """Up to ``limit`` entries of the VM after ``after_seq`` (none before ``ts_from``, none past
    ``upto``; with ``severe_only``, none below warning): the matching ones with the indexes into
    ``filters`` they match, the page's last seq and how many it read."""
    groups = matching.plan(filters)
    pieces = [piece for g in groups for piece in (g.guard, *(c.rest for c in g.costly))]
    conditions, args = journal_store.live_conditions(vm_id, pieces)
    hits = await _alternations(conn, [c.rest for g in groups for c in g.costly])
    hit_args = {case: f"${len(args) + i + 1}" for i, case in enumerate(hits)}
    args += list(hits.values())
    members: list[list[int]] = []
    parts, possible = [], []
    at = iter(conditions)
    for g in groups:
        guard = next(at)
        flags, needs = [], set()
        for c in g.costly:
            rest = next(at)
            hit = _hit(c.rest, hits)
            flags.append(MATCH_FLAG.format(rest=rest if hit is None else f"{hit} AND {rest}", index=len(members)))
            members.append(c.members)
            needs.add(hit)
        parts.append(MATCH_GROUP.format(guard=guard, flags=", ".join(flags)))
        # An entry can match the group only where its guard holds, and (if all its greps are in
        # an alternation) where one of those alternations matched.
        if None in needs:
            possible.append(guard)
        else:
            possible.append(f"({guard}) AND ({' OR '.join(sorted(h for h in needs if h is not None))})")
    args += [ts_from, after_seq, upto, limit]
    n = len(args)
    sql = SELECT_MATCHES.format(
        possible=" OR ".join(f"({p})" for p in dict.fromkeys(possible)) or "false",
        groups=" || ".join(parts) or "NULL::int[]",
        hits="".join(
            HIT.format(op="~" if case else "~*", pattern=hit_args[case], column=HIT_COLUMN[case]) for case in hits
        ),
        ts_from=f"${n - 3}",
        after=f"${n - 2}",
        upto=f"${n - 1}",
        limit=f"${n}",
        # A literal, so that the planner proves the partial index's predicate.
        severe=f" AND priority <= {journal_store.SEVERE_MAX}" if severe_only else "",
    )
    rows = await conn.fetch(sql, *args)
    found = [(r["seq"], r["ts"], sorted(i for d in r["matched"] for i in members[d])) for r in rows if r["matched"]]
    return Page(found, rows[0]["last"] if rows else None, rows[0]["scanned"] if rows else 0)


def _hit(rest: journal_store.EventFilter, hits: dict[bool, str]) -> str | None:
    """The column that must hold for the rest's grep to match; None: the grep is tried on its own."""
    if rest.grep is None or rest.grep_case_sensitive not in hits or not matching.joinable(rest.grep):
        return None
    return HIT_COLUMN[rest.grep_case_sensitive]


# Alternations PostgreSQL compiled (True) or refused, e.g. as too complex (False): asked once each.
_compiled: dict[tuple[str, bool], bool] = {}


async def _alternations(conn: asyncpg.Connection, rests: Sequence[journal_store.EventFilter]) -> dict[bool, str]:
    """Per case mode (True: case-sensitive), the alternation of the rests' joinable greps, if it compiles."""
    greps: dict[bool, list[str]] = {}
    for rest in rests:
        if rest.grep is not None and matching.joinable(rest.grep):
            greps.setdefault(rest.grep_case_sensitive, []).append(rest.grep)
    found = {}
    for case, patterns in sorted(greps.items()):
        pattern = matching.alternation(patterns)
        key = (pattern, case)
        if key not in _compiled:
            if len(_compiled) > 1000:
                _compiled.clear()
            try:
                async with conn.transaction():  # a savepoint: a refusal leaves the caller's transaction usable
                    await conn.fetchval(journal_store.CHECK_GREP if case else journal_store.CHECK_GREP_ICASE, pattern)
                _compiled[key] = True
            except asyncpg.PostgresError:
                _compiled[key] = False
        if _compiled[key]:
            found[case] = pattern
    return found
