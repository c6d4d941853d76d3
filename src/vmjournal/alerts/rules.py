"""A rule as evaluation uses it: its journal filter built once by the journal's own builder."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from vmjournal.alerts.schemas import parse_match
from vmjournal.journal import service as journal_service
from vmjournal.journal import store as journal_store

# Unit globs are resolved per VM for pages; live matching (which rules use) reads the pattern on
# every row, so any VM id serves to build the filter.
_ANY_VM = UUID(int=0)


@dataclass(frozen=True)
class Rule:
    id: UUID
    name: str
    vm_glob: str
    unit: str | None
    priority: str | None
    grep: str | None
    match: tuple[tuple[str, str], ...]
    threshold: int
    window_seconds: int
    start_seq: int
    created_at: datetime
    filter: journal_store.EventFilter

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.window_seconds)

    def applies_to(self, vm_name: str) -> bool:
        return fnmatch.fnmatchcase(vm_name, self.vm_glob)


async def build_filter(
    conn: asyncpg.Connection, *, unit: str | None, priority: str | None, grep: str | None, match: Sequence[str]
) -> journal_store.EventFilter:
    """The journal's filter for these values; a bad unit, priority, grep or match raises as it does on a page."""
    return await journal_service.build_filter(
        conn, _ANY_VM, unit=unit, priority=priority, since=None, until=None, boot=None, grep=grep, match=match
    )


async def from_record(conn: asyncpg.Connection, r: Any) -> Rule:
    f = await build_filter(conn, unit=r["unit"], priority=r["priority"], grep=r["grep"], match=list(r["match"]))
    return Rule(
        id=r["id"],
        name=r["name"],
        vm_glob=r["vm_glob"],
        unit=r["unit"],
        priority=r["priority"],
        grep=r["grep"],
        match=tuple(parse_match(list(r["match"]))),
        threshold=r["threshold"],
        window_seconds=r["window_seconds"],
        start_seq=r["start_seq"],
        created_at=r["created_at"],
        filter=f,
    )
