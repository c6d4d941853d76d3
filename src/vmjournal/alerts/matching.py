"""Which rules an entry matches, planned so that evaluation reads each entry cheaply.

Evaluation asks, of every new entry, which of up to hundreds of rule filters it matches. Most
entries match none, and most of the cost is in regexes (``grep``) and JSON field matches, so:
equal filters are decided once; each filter is split into its cheap column conditions (the
guard: unit, priority, boot, identifiers) and its costly rest (grep, field matches); and filters
with an equal guard share it, so an entry that fails a guard costs no regex or JSON at all.

Both halves are EventFilters built by the journal's own builder (journal/store.py
``live_conditions``), ANDed: a rule matches exactly what a page with its filters shows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

from vmjournal.journal.store import EventFilter


@dataclass
class Costly:
    """The costly half of one distinct filter, and the indexes of the filters it stands for."""

    rest: EventFilter
    members: list[int] = field(default_factory=list)


@dataclass
class Group:
    """Distinct filters sharing one guard: their rests are read only where the guard holds."""

    guard: EventFilter
    costly: list[Costly] = field(default_factory=list)


def split(f: EventFilter) -> tuple[EventFilter, EventFilter]:
    """(guard, rest): the filter's column conditions and its grep and field matches; ANDed, the filter."""
    guard = dataclasses.replace(f, grep=None, grep_case_sensitive=True, matches={})
    rest = EventFilter(grep=f.grep, grep_case_sensitive=f.grep_case_sensitive, matches=f.matches)
    return guard, rest


def plan(filters: Sequence[EventFilter]) -> list[Group]:
    """The filters grouped by guard, equal filters once, in first-seen order."""
    groups: dict[Hashable, Group] = {}
    distinct: dict[Hashable, Costly] = {}
    for i, f in enumerate(filters):
        key = f.live_key()
        found = distinct.get(key)
        if found is None:
            guard, rest = split(f)
            group = groups.setdefault(guard.live_key(), Group(guard))
            found = distinct[key] = Costly(rest)
            group.costly.append(found)
        found.members.append(i)
    return list(groups.values())
