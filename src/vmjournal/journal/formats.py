"""Events as the API returns them, and journalctl's text output modes."""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from vmjournal.journal.entries import iso, timestamp_from_us

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
OUTPUT_MODES = ("json", "short", "short-iso", "short-precise", "cat", "export")


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
    event: dict[str, Any] = orjson.loads(record["fields"])
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


def _ts(event: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).astimezone(UTC)


def _prefix(event: Mapping[str, Any]) -> str:
    ident = event.get("identifier") or event.get("_COMM") or "unknown"
    host = event.get("hostname") or "-"
    pid = event.get("pid")
    return f"{host} {ident}[{pid}]:" if pid is not None else f"{host} {ident}:"


def render(event: Mapping[str, Any], mode: str) -> str:
    """One event in a journalctl output mode (times in UTC). ``export`` returns text for text fields only;
    use ``export_bytes`` for the exact binary export."""
    message = event.get("message") or ""
    if mode == "json":
        return orjson.dumps(event).decode()
    if mode == "cat":
        return message
    if mode == "export":
        return export_bytes(event).decode("utf-8", "replace")
    ts = _ts(event)
    if mode == "short-iso":
        stamp = ts.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    elif mode == "short-precise":
        stamp = ts.strftime("%b %d %H:%M:%S.%f")
    else:
        stamp = ts.strftime("%b %d %H:%M:%S")
    return f"{stamp} {_prefix(event)} {message}"


def export_bytes(event: Mapping[str, Any]) -> bytes:
    """The entry's original fields in the Journal Export Format (one entry, blank line after)."""
    out = bytearray()
    for key, value in event.items():
        if not (key.isupper() or key.startswith("_")) or key != key.upper():
            continue
        for item in value if isinstance(value, list) and value and not isinstance(value[0], int) else [value]:
            if item is None:
                continue
            data = bytes(item) if isinstance(item, list) else str(item).encode()
            if b"\n" in data:
                out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
            else:
                out += key.encode() + b"=" + data + b"\n"
    out += b"\n"
    return bytes(out)
