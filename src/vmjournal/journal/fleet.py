"""Fleet queries: which VMs a query names (names and globs), each VM's filter, and merged pages.

The filter is built once, by the same code as a single VM's (so every filter of
``/vm/{name}/boot`` applies), and then specialised per VM where its meaning is per VM: a unit
glob matches each VM's own units, and ``boot`` is resolved in each VM's own boot list (``0`` is
each VM's current boot, ``-1`` each one's previous, an id the VM that had that boot); a VM without
such a boot contributes nothing.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from vmjournal.db import raw_connection
from vmjournal.errors import BadRequest, NotFound
from vmjournal.journal import filters, fleet_store, service, store
from vmjournal.journal.events import event_from_record, parse_position, position_token
from vmjournal.journal.fleet_store import Target
from vmjournal.vms import service as vms_service

# A VM name (letters, digits, hyphens) or a glob of one.
_VM_PATTERN = re.compile(r"[A-Za-z0-9*?\[\]!-]{1,128}")


@dataclass
class Fleet:
    """The VMs a query selected (id -> name), and each one's filter."""

    names: dict[UUID, str]
    targets: list[Target]
    patterns: tuple[str, ...] | None = None
    boot: str | None = None
    # The filter before per-VM specialisation: what a VM that joins a live follow gets.
    base: store.EventFilter | None = None

    def name_of(self, index: int) -> str:
        return self.names[self.targets[index].vm_id]


def is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def matches(patterns: Sequence[str] | None, name: str) -> bool:
    return patterns is None or any(fnmatch.fnmatchcase(name, p) for p in patterns)


async def select_vms(session: AsyncSession, patterns: Sequence[str] | None) -> dict[UUID, str]:
    """Live VMs named by ``patterns`` (names or globs), in name order; every VM when None.
    A plain name that no VM has is a 404; a glob may match nothing."""
    for pattern in patterns or ():
        if not _VM_PATTERN.fullmatch(pattern):
            raise BadRequest(f"invalid vm {pattern!r}: use a VM name or a glob such as web-*", code="invalid_vm")
    vms = sorted(await vms_service.list_vms(session), key=lambda vm: vm.name)
    if patterns:
        known = {vm.name for vm in vms}
        for pattern in patterns:
            if not is_glob(pattern) and pattern not in known:
                raise NotFound(f"no VM named {pattern!r}", code="vm_not_found")
    return {vm.id: vm.name for vm in vms if matches(patterns or None, vm.name)}


async def specialise(
    session: AsyncSession, names: dict[UUID, str], base: store.EventFilter, boot: str | None
) -> list[Target]:
    """Each selected VM's filter: ``base`` with its unit glob and boot resolved for that VM."""
    vm_ids = list(names)
    conn = await raw_connection(session)
    units = await fleet_store.units_like_of(conn, vm_ids, base.unit_pattern) if base.unit_pattern else None
    spec = filters.parse_boot(boot) if boot is not None and boot != "all" else None
    boots = await fleet_store.boots_of(conn, vm_ids) if spec is not None else None
    targets = []
    for vm_id in vm_ids:
        f = replace(base)
        if units is not None:
            f.units = units[vm_id]
        if boots is not None and spec is not None:
            try:
                record = service.choose_boot(boots[vm_id], spec)
            except NotFound:
                continue
            f.boot_id, f.boot_range = record["boot_id"], (record["first_at"], record["last_at"])
        targets.append(Target(vm_id, f))
    return targets


def parse_after(after: str | None) -> store.Position | None:
    if not after:
        return None
    parsed = parse_position(after)
    if parsed is None:
        raise BadRequest("invalid cursor: pass the value of a previous page's next link", code="bad_cursor")
    return store.Position(*parsed)


def fleet_event(fleet: Fleet, record: Any) -> dict[str, Any]:
    """An event as the VM routes give it, with the VM's name first."""
    return {"vm": fleet.name_of(record["vm_index"]), **event_from_record(record)}


async def query_page(
    session: AsyncSession, fleet: Fleet, *, limit: int, after: str | None, descending: bool
) -> service.Page:
    position = parse_after(after)
    conn = await raw_connection(session)
    records = await fleet_store.query_fleet(conn, fleet.targets, limit=limit, after=position, descending=descending)
    events = [fleet_event(fleet, r) for r in records]
    nxt = position_token(records[-1]["ts"], records[-1]["seq"]) if len(records) == limit else None
    return service.Page(events=events, next=nxt)
