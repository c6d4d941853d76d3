"""Turning ``journalctl -o json`` entries into rows, and rows back into events.

This is the ingest hot path: one pass over the entries, no per-entry allocation beyond the
row tuple and the serialized fields. Conversions that PostgreSQL does faster (microseconds to
timestamptz, hex to uuid) are left to SQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from vmjournal.input_errors import InvalidInput

# PID 1 and coredumps log about units; journalctl -u counts those entries as the unit's too.
_COREDUMP_MESSAGE_ID = "fc2e22bc6ee647b6b90729ab34a250b1"
_HEX128 = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F-]{36}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

ROW_COLUMNS = (
    "cursor",
    "ts_us",
    "monotonic_us",
    "boot_id",
    "unit",
    "about_unit",
    "priority",
    "identifier",
    "pid",
    "hostname",
    "message",
    "fields",
)

Row = tuple[str, int, int | None, str | None, str | None, str | None, int | None, str | None,
            int | None, str | None, str | None, str]


class BadEntry(InvalidInput):
    """An entry the service cannot store; the whole batch is refused."""

    def __init__(self, index: int, problem: str) -> None:
        super().__init__(f"entry {index}: {problem}; the batch was not stored", code="bad_entry")
        self.index = index
        self.problem = problem


def _text(value: Any) -> str | None:
    """A field's text: strings as they are, byte arrays decoded (invalid UTF-8 replaced), first of repeats."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and value:
        if isinstance(value[0], int):
            try:
                return bytes(value).decode("utf-8", "replace")
            except (ValueError, TypeError):
                return None
        return _text(value[0])
    return None


def _int(value: Any) -> int | None:
    text = _text(value)
    if text is not None and text.isdigit() and len(text) < 12:
        return int(text)
    return None


def about_unit(entry: Mapping[str, Any]) -> str | None:
    """The unit an entry is about, the way ``journalctl -u`` matches beyond ``_SYSTEMD_UNIT``."""
    pid = entry.get("_PID")
    if pid == "1" and "UNIT" in entry:
        return _text(entry["UNIT"])
    if entry.get("_UID") == "0":
        if "OBJECT_SYSTEMD_UNIT" in entry:
            return _text(entry["OBJECT_SYSTEMD_UNIT"])
        if "COREDUMP_UNIT" in entry and entry.get("MESSAGE_ID") == _COREDUMP_MESSAGE_ID:
            return _text(entry["COREDUMP_UNIT"])
    return None


def to_rows(entries: Iterable[Any]) -> list[Row]:
    """Validate and convert entries; raises ``BadEntry`` naming the first entry that is not storable."""
    rows: list[Row] = []
    dumps = orjson.dumps
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise BadEntry(index, "not a JSON object")
        cursor = entry.get("__CURSOR")
        if not isinstance(cursor, str) or not cursor:
            raise BadEntry(index, "missing __CURSOR")
        realtime = entry.get("__REALTIME_TIMESTAMP")
        if isinstance(realtime, str) and realtime.isdigit():
            ts_us = int(realtime)
        elif isinstance(realtime, int) and not isinstance(realtime, bool) and realtime >= 0:
            ts_us = realtime
        else:
            raise BadEntry(index, "missing or invalid __REALTIME_TIMESTAMP (microseconds since the epoch)")
        if ts_us > 253_402_300_799_000_000:  # 9999-12-31: PostgreSQL's and Python's limit
            raise BadEntry(index, "__REALTIME_TIMESTAMP is out of range")
        boot_id = entry.get("_BOOT_ID")
        if boot_id is not None and not (isinstance(boot_id, str) and _HEX128.fullmatch(boot_id)):
            raise BadEntry(index, "_BOOT_ID is not a 128-bit hex id")
        rows.append((
            cursor,
            ts_us,
            _int(entry.get("__MONOTONIC_TIMESTAMP")),
            boot_id,
            _text(entry.get("_SYSTEMD_UNIT")),
            about_unit(entry),
            _int(entry.get("PRIORITY")),
            _text(entry.get("SYSLOG_IDENTIFIER")),
            _int(entry.get("_PID")),
            _text(entry.get("_HOSTNAME")),
            _text(entry.get("MESSAGE")),
            dumps(entry).decode(),
        ))
    return rows


def timestamp_from_us(ts_us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ts_us)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
