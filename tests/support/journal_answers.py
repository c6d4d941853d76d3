"""What the journal answers for a set of VMs (pages, summaries, live batches, volume), for migration
tests that compare one database with another, or with itself before and after a round trip."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from vmjournal.journal import field_store, layout, pages, store, volume_store

FILTERS = [
    store.EventFilter(),
    store.EventFilter(units=["a.service"]),
    store.EventFilter(units=["b.service"], priority_max=3),
    store.EventFilter(identifiers=["systemd"]),
    store.EventFilter(grep="entry 1[0-9]+7"),
    # Read through the batches' trigrams, which the upgrade records for the entries it moves.
    store.EventFilter(grep="items/997 HTTP", units=["b.service"]),
    store.EventFilter(grep="xylophone"),
]


async def answers(conn: asyncpg.Connection, vm_ids: list[uuid.UUID]) -> list[Any]:
    out: list[Any] = []
    for vm_id in vm_ids:
        for f in FILTERS:
            for descending in (False, True):
                page = await pages.query_events(conn, vm_id, f, limit=100, descending=descending)
                out.append([tuple(r) for r in page])
                if page:
                    after = store.Position(page[-1]["ts"], page[-1]["seq"])
                    out.append(
                        [
                            tuple(r)
                            for r in await pages.query_events(
                                conn, vm_id, f, limit=100, after=after, descending=descending
                            )
                        ]
                    )
        out.append([tuple(r) for r in await store.list_boots(conn, vm_id)])
        out.append([tuple(r) for r in await store.list_units(conn, vm_id)])
        out.append(await field_store.field_values(conn, vm_id, "_SYSTEMD_UNIT"))
        out.append(
            [
                tuple(r)
                for r in await store.live_batch(
                    conn, vm_id, FILTERS, after_seq=0, ts_from=datetime.fromtimestamp(0).astimezone(), limit=500
                )
            ]
        )
    first, last = await volume_store.volume_range(conn, vm_ids)
    assert first is not None and last is not None
    out.append(
        [
            tuple(r)
            for r in await volume_store.summary_counts(
                conn, vm_ids, step=timedelta(minutes=5), start=first, end=last, priorities=(0, 7)
            )
        ]
    )
    out.append(
        sorted(
            tuple(r)
            for r in await volume_store.count_events(
                conn, vm_ids, store.EventFilter(units=["a.service"]), step=timedelta(minutes=5)
            )
        )
    )
    return out


async def every_entry(conn: asyncpg.Connection, vm_id: uuid.UUID) -> list[dict[str, Any]]:
    page = await pages.query_events(conn, vm_id, store.EventFilter(), limit=100_000)
    return [layout.assemble(r) for r in page]
