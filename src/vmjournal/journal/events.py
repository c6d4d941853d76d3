"""Events as the API returns them: the stored entry with its derived fields, and the opaque
keyset position that pages, SSE ids and cursors carry."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from vmjournal.journal import layout
from vmjournal.journal.entries import iso, timestamp_from_us

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def position_token(ts: datetime, seq: int) -> str:
    """An opaque keyset position: where a page ended, or an SSE event id."""
    raw = f"{(ts - _EPOCH) // _US}:{seq}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_position(token: str) -> tuple[datetime, int] | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        ts_us, seq = raw.split(":")
        return timestamp_from_us(int(ts_us)), int(seq)
    except (ValueError, UnicodeDecodeError, OverflowError):
        return None


def event_from_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """The original entry with the derived fields next to it."""
    event = layout.assemble(record)
    boot_id = record["boot_id"]
    event.update(
        cursor=event.get("__CURSOR"),
        timestamp=iso(record["ts"]),
        boot_id=boot_id.hex if boot_id is not None else None,
        unit=record["unit"],
        priority=record["priority"],
        identifier=record["identifier"],
        pid=record["pid"],
        hostname=record["hostname"],
        message=record["message"],
        position=position_token(record["ts"], record["seq"]),
    )
    return event
