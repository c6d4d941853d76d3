"""Events as the API returns them (built from stored records), and journalctl's output modes.

``short``, ``short-iso``, ``cat``, ``json`` and ``export`` look like what ``journalctl -o``
prints for the same entries, so scripts and eyes trained on journalctl keep working. The CLI
renders in the local time zone, as journalctl does; the service in UTC.
"""

from __future__ import annotations

import base64
import re
import struct
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import orjson

from vmjournal.journal.entries import iso, timestamp_from_us

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
OUTPUT_MODES = ("short", "short-iso", "json", "cat", "export")

# The media types of the journal's wire formats, in one place for ingest, pages and streams.
JSON = "application/json"
NDJSON = "application/x-ndjson"
EXPORT = "application/vnd.fdo.journal"
SSE = "text/event-stream"
TEXT = "text/plain; charset=utf-8"


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


def journal_fields(event: Mapping[str, Any]) -> dict[str, Any]:
    """The entry's original journal fields (upper-case names), as ``journalctl -o json`` shows them."""
    raw = event.get("fields")
    if isinstance(raw, dict):
        return raw
    return {k: v for k, v in event.items() if k[:1].isupper() or k[:1] == "_"}


# journalctl's colours: errors and worse red, warnings yellow, notices bold, debug grey.
_RESET = "\x1b[0m"
_PRIORITY_STYLE = {
    0: "\x1b[1;31m",
    1: "\x1b[1;31m",
    2: "\x1b[1;31m",
    3: "\x1b[1;31m",
    4: "\x1b[1;33m",
    5: "\x1b[1m",
    7: "\x1b[2m",
}
_PRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _first(value: Any) -> Any:
    if isinstance(value, list) and value and not isinstance(value[0], int):
        return value[0]
    return value


def _field_text(value: Any) -> str | None:
    """A journal field's first value as text (byte arrays decoded, invalid UTF-8 replaced)."""
    value = _first(value)
    if value is None:
        return None
    if isinstance(value, list):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _label(value: Any) -> str | None:
    """A host or identifier as journalctl's short output shows it: only if printable (a byte array never is)."""
    value = _first(value)
    return value if isinstance(value, str) and not _PRINTABLE.search(value) else None


def _timestamp(event: Mapping[str, Any], fields: Mapping[str, Any], tz: tzinfo | None) -> datetime | None:
    realtime = _field_text(fields.get("__REALTIME_TIMESTAMP"))
    if realtime and realtime.isdigit():
        return datetime.fromtimestamp(int(realtime) / 1_000_000, tz=UTC).astimezone(tz)
    stamp = event.get("timestamp")
    if isinstance(stamp, str):
        try:
            return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(tz)
        except ValueError:
            return None
    return None


def _priority(event: Mapping[str, Any], fields: Mapping[str, Any]) -> int | None:
    value = event.get("priority")
    if isinstance(value, int):
        return value
    text = _field_text(fields.get("PRIORITY"))
    return int(text) if text and text.isdigit() else None


def _message(event: Mapping[str, Any], fields: Mapping[str, Any]) -> str:
    message = event.get("message")
    if isinstance(message, str):
        return message
    return _field_text(fields.get("MESSAGE")) or ""


def _prefix(event: Mapping[str, Any], fields: Mapping[str, Any], iso: bool, tz: tzinfo | None) -> str:
    ts = _timestamp(event, fields, tz)
    if ts is None:
        stamp = "-"
    elif iso:
        stamp = ts.strftime("%Y-%m-%dT%H:%M:%S%z")
    else:
        stamp = ts.strftime("%b %d %H:%M:%S")
    host = event.get("hostname") or _label(fields.get("_HOSTNAME"))
    ident = (
        event.get("identifier")
        or _label(fields.get("SYSLOG_IDENTIFIER"))
        or _label(fields.get("_COMM"))
        or "unknown"
    )
    pid = event.get("pid") or _field_text(fields.get("SYSLOG_PID")) or _field_text(fields.get("_PID"))
    parts = [stamp]
    if host:
        parts.append(str(host))
    parts.append(f"{ident}[{pid}]:" if pid else f"{ident}:")
    return " ".join(parts)


def _is_blob(fields: Mapping[str, Any]) -> int | None:
    """The byte length of a MESSAGE journalctl would not print as text (sent as a byte array)."""
    value = fields.get("MESSAGE")
    if isinstance(value, list) and value and isinstance(value[0], int):
        return len(value)
    return None


def render_text(event: Mapping[str, Any], mode: str, *, color: bool = False, tz: tzinfo | None = None) -> bytes:
    """One event in ``short``, ``short-iso`` or ``cat`` form, with its trailing newline; times in
    ``tz`` (None: the local time zone)."""
    fields = journal_fields(event)
    blob = _is_blob(fields)
    if mode == "cat":
        if blob is not None:
            # journalctl -o cat writes the raw bytes.
            return bytes(fields["MESSAGE"]) + b"\n"
        return (_message(event, fields) + "\n").encode("utf-8", "replace")
    if blob is not None:
        message = f"[{blob}B blob data]"
    else:
        # journalctl shows a tab as 8 spaces and escapes other control characters.
        message = _PRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", _message(event, fields).replace("\t", " " * 8))
    prefix = _prefix(event, fields, iso=mode == "short-iso", tz=tz)
    line = f"{prefix} {message}"
    if "\n" in line:
        # journalctl aligns continuation lines under the first line's message.
        first, *rest = line.split("\n")
        line = "\n".join([first, *(" " * (len(prefix) + 1) + r for r in rest)])
    if color:
        style = _PRIORITY_STYLE.get(_priority(event, fields) or 6)
        if style:
            line = f"{style}{line}{_RESET}"
    return (line + "\n").encode("utf-8", "replace")


def render_json(event: Mapping[str, Any]) -> bytes:
    """The entry's journal fields as one JSON line, like ``journalctl -o json``."""
    return orjson.dumps(journal_fields(event)) + b"\n"


def _export_field(name: str, value: Any) -> bytes:
    if isinstance(value, list) and value and isinstance(value[0], int):
        data = bytes(value)
    else:
        data = str(value).encode("utf-8")
    if b"\n" in data or any(b < 32 and b != 9 for b in data) or not _utf8(data):
        # Journal Export Format: binary-safe fields are NAME, newline, 64-bit LE size, data.
        return name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return name.encode() + b"=" + data + b"\n"


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def render_export(event: Mapping[str, Any]) -> bytes:
    """One entry in the Journal Export Format (``journalctl -o export``), blank-line terminated."""
    out = bytearray()
    fields = journal_fields(event)
    # journalctl puts the entry's address fields first.
    first = [k for k in ("__CURSOR", "__REALTIME_TIMESTAMP", "__MONOTONIC_TIMESTAMP", "_BOOT_ID") if k in fields]
    for name in [*first, *(k for k in fields if k not in first)]:
        value = fields[name]
        if isinstance(value, list) and value and not isinstance(value[0], int):
            # A field that occurs several times in the entry.
            for item in value:
                out += _export_field(name, item)
        elif value is not None:
            out += _export_field(name, value)
    out += b"\n"
    return bytes(out)
