"""Which rules an entry matches, planned so that evaluation reads each entry cheaply.

Evaluation asks, of every new entry, which of up to hundreds of rule filters it matches. Most
entries match none, and most of the cost is in regexes (``grep``) and JSON field matches, so:
equal filters are decided once; each filter is split into its cheap column conditions (the
guard: unit, priority, boot, identifiers) and its costly rest (grep, field matches); and filters
with an equal guard share it, so an entry that fails a guard costs no regex or JSON at all.

Both halves are EventFilters built by the journal's own builder (journal/store.py
``live_conditions``), ANDed: a rule matches exactly what a page with its filters shows.

Even a guarded regex costs a pass over the message per filter, and most messages match no grep. So
the greps of a page are also joined into one alternation per case mode, read once per entry: a
necessary condition of each of them, so a grep is tried only on entries the alternation matched.
"""

from __future__ import annotations

import dataclasses
import re
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


# A back-reference's number would change in an alternation; a director (***) or embedded options
# are allowed only at a pattern's start. Such greps are tried on every entry their guard admits.
_BACK_REFERENCE = re.compile(r"\\[1-9]")


def joinable(grep: str) -> bool:
    """Can the grep be one branch of an alternation and match exactly where it matches alone?"""
    return not grep.startswith(("***", "(?")) and _BACK_REFERENCE.search(grep) is None


def alternation(greps: Sequence[str]) -> str:
    """One pattern matching where any of the greps matches (each one joinable)."""
    return "|".join(f"(?:{g})" for g in sorted(set(greps)))


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
