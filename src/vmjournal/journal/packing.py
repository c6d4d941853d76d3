"""A batch in the form the ingest statement takes (journal/ingest_store.py).

Packed in a row worker (journal/row_workers.py), so that the event loop only passes it on: its
rows as one JSON array, which PostgreSQL unpacks itself, instead of a thousand row tuples that the
loop would unpickle and encode again for COPY (a fifth of the loop's CPU during ingest, measured).
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import orjson

from vmjournal.journal import trigrams
from vmjournal.journal.entries import Batch


@dataclass(frozen=True, slots=True)
class Packed:
    size: int
    # The rows, each an array in entries.ROW_COLUMNS order.
    rows_json: str
    # The contexts the rows reference, once each: ids, texts, latest day numbers (journal/layout.py).
    context_ids: list[int]
    context_texts: list[str]
    context_days: list[int]
    days: list[int]
    grams: trigrams.Chunks


def pack(vm_id: UUID, batch: Batch) -> Packed:
    ids = list(batch.contexts)
    return Packed(
        size=len(batch),
        # Rows hold no NUL (entries.py replaces it in text columns), which jsonb would refuse.
        rows_json=orjson.dumps(batch.rows).decode(),
        context_ids=ids,
        context_texts=[batch.contexts[i][0] for i in ids],
        context_days=[batch.contexts[i][1] for i in ids],
        days=sorted(batch.days()),
        grams=trigrams.of_batch(vm_id, batch),
    )
