"""journalctl's output modes, for events as the API returns them (see events.py).

Every mode of ``OUTPUT_MODES`` prints what ``journalctl -o MODE`` (systemd 252) prints for the same
entries, so scripts and eyes trained on journalctl keep working; ``TextRenderer`` adds the
``-- Boot ID --`` line where the boot changes. Only the order of fields in ``json*`` and ``verbose``
can differ: journalctl's follows its hash table and file layout, ours the stored entry. The CLI
renders in the local time zone, as journalctl does; the service in UTC.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import orjson

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

OUTPUT_MODES = (
    "short",
    "short-iso",
    "short-precise",
    "short-monotonic",
    "short-unix",
    "short-full",
    "with-unit",
    "json",
    "json-pretty",
    "json-seq",
    "cat",
    "export",
    "verbose",
)
SHORT_MODES = ("short", "short-iso", "short-precise", "short-monotonic", "short-unix", "short-full", "with-unit")
# journalctl prints the boot line in these modes only (not cat, json or export).
BOOT_LINE_MODES = (*SHORT_MODES, "verbose")
# Beyond this (year 9999), journalctl ignores a _SOURCE_REALTIME_TIMESTAMP.
_REALTIME_MAX = 253_402_214_400_000_000

# The media types of the journal's wire formats, in one place for ingest, pages and streams.
JSON = "application/json"
NDJSON = "application/x-ndjson"
EXPORT = "application/vnd.fdo.journal"
JSON_SEQ = "application/json-seq"
SSE = "text/event-stream"
TEXT = "text/plain; charset=utf-8"


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
# systemd's unichar_is_control(): a value with one is shown as blob data.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_HIGHLIGHT = "\x1b[0;1;39m"


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


def _us(fields: Mapping[str, Any], name: str) -> int | None:
    text = _field_text(fields.get(name))
    return int(text) if text and text.isascii() and text.isdigit() and len(text) < 20 else None


def _timestamp(event: Mapping[str, Any], fields: Mapping[str, Any], tz: tzinfo | None) -> datetime | None:
    """When the entry says it was logged: journalctl shows _SOURCE_REALTIME_TIMESTAMP if valid."""
    source = _us(fields, "_SOURCE_REALTIME_TIMESTAMP")
    realtime = source if source and source < _REALTIME_MAX else _us(fields, "__REALTIME_TIMESTAMP")
    if realtime is not None:
        return (_EPOCH + realtime * _US).astimezone(tz)
    stamp = event.get("timestamp")
    if isinstance(stamp, str):
        try:
            return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(tz)
        except ValueError:
            return None
    return None


def _stamp(ts: datetime | None, fields: Mapping[str, Any], mode: str) -> str:
    """The timestamp column of a short mode."""
    if mode == "short-monotonic":
        mono = _us(fields, "_SOURCE_MONOTONIC_TIMESTAMP")
        mono = mono if mono is not None else _us(fields, "__MONOTONIC_TIMESTAMP")
        return "-" if mono is None else f"[{mono // 1_000_000:5d}.{mono % 1_000_000:06d}]"
    if ts is None:
        return "-"
    if mode == "short-iso":
        return ts.strftime("%Y-%m-%dT%H:%M:%S%z")
    if mode == "short-precise":
        return ts.strftime("%b %d %H:%M:%S") + f".{ts.microsecond:06d}"
    if mode == "short-unix":
        return f"{(ts - _EPOCH) // timedelta(seconds=1):10d}.{ts.microsecond:06d}"
    if mode in ("short-full", "with-unit"):
        return full_time(ts)
    return ts.strftime("%b %d %H:%M:%S")


def full_time(ts: datetime, precise: bool = False) -> str:
    """systemd's format_timestamp(): ``Mon 2025-11-24 16:00:00 UTC`` (with microseconds if precise)."""
    zone = ts.strftime("%Z")
    return (
        ts.strftime("%a %Y-%m-%d %H:%M:%S")
        + (f".{ts.microsecond:06d}" if precise else "")
        + (f" {zone}" if zone else "")
    )


def format_bytes(size: int) -> str:
    """systemd's format_bytes(): ``10B``, ``1.4K``, ``2.0M``."""
    units = ("K", "M", "G", "T", "P", "E")
    for i in range(len(units) - 1, -1, -1):
        factor = 1024 ** (i + 1)
        if size >= factor:
            tenth = (size * 10 // factor) % 10 if i == 0 else (size // (factor // 1024) * 10 // 1024) % 10
            return f"{size // factor}.{tenth}{units[i]}"
    return f"{size}B"


def _priority(event: Mapping[str, Any], fields: Mapping[str, Any]) -> int | None:
    value = event.get("priority")
    if isinstance(value, int):
        return value
    text = _field_text(fields.get("PRIORITY"))
    return int(text) if text and text.isascii() and text.isdigit() and len(text) < 20 else None


def _message(event: Mapping[str, Any], fields: Mapping[str, Any]) -> str:
    message = event.get("message")
    if isinstance(message, str):
        return message
    return _field_text(fields.get("MESSAGE")) or ""


def _prefix(event: Mapping[str, Any], fields: Mapping[str, Any], mode: str, tz: tzinfo | None) -> tuple[str, int]:
    """The line's start up to the colon, and the indent of continuation lines (journalctl's count)."""
    stamp = _stamp(_timestamp(event, fields, tz), fields, mode)
    host = event.get("hostname") or _label(fields.get("_HOSTNAME"))
    unit, user_unit = _label(fields.get("_SYSTEMD_UNIT")), _label(fields.get("_SYSTEMD_USER_UNIT"))
    skew = 0
    if mode == "with-unit" and (unit or user_unit):
        ident = "/".join(u for u in (unit, user_unit) if u)
        if unit and user_unit:
            # journalctl counts the unit's length twice here.
            skew = len(unit) - len(user_unit)
    else:
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
    prefix = " ".join(parts)
    return prefix, len(prefix) + 1 + skew


def _is_blob(fields: Mapping[str, Any]) -> int | None:
    """The byte length of a MESSAGE journalctl would not print as text (sent as a byte array)."""
    value = fields.get("MESSAGE")
    if isinstance(value, list) and value and isinstance(value[0], int):
        return len(value)
    return None


def render_text(event: Mapping[str, Any], mode: str, *, color: bool = False, tz: tzinfo | None = None) -> bytes:
    """One event in ``cat`` or a short mode (``SHORT_MODES``), with its trailing newline; times in
    ``tz`` (None: the local time zone)."""
    fields = journal_fields(event)
    blob = _is_blob(fields)
    if mode == "cat":
        if blob is not None:
            # journalctl -o cat writes the raw bytes.
            return bytes(fields["MESSAGE"]) + b"\n"
        return (_message(event, fields) + "\n").encode("utf-8", "replace")
    if blob is not None:
        message = f"[{format_bytes(blob)} blob data]"
    else:
        # journalctl shows a tab as 8 spaces and escapes other control characters.
        message = _PRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", _message(event, fields).replace("\t", " " * 8))
    prefix, indent = _prefix(event, fields, mode, tz)
    line = f"{prefix} {message}"
    if "\n" in line:
        # journalctl aligns continuation lines under the first line's message.
        first, *rest = line.split("\n")
        line = "\n".join([first, *(" " * indent + r for r in rest)])
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


def _verbose_value(name: str, value: Any) -> str:
    if isinstance(value, list):
        raw = bytes(value)
        text = _text_or_none(raw)
    else:
        text = str(value)
        raw = text.encode("utf-8", "surrogateescape")
    if text is None or _CONTROL.search(text):
        return f"    {name}=[{format_bytes(len(raw))} blob data]\n"
    lines = text.split("\n")
    if len(lines) > 1 and not lines[-1]:
        # journalctl prints no empty line for a trailing newline.
        lines.pop()
    indent = " " * (4 + len(name) + 1)
    return f"    {name}=" + "".join((indent if i else "") + line + "\n" for i, line in enumerate(lines))


def _text_or_none(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def render_verbose(event: Mapping[str, Any], tz: tzinfo | None = None) -> bytes:
    """``journalctl -o verbose``: the time and cursor, then every field of the entry, one per line."""
    fields = journal_fields(event)
    ts = _timestamp(event, fields, tz)
    out = [f"{full_time(ts, precise=True) if ts else '(no timestamp)'} [{_field_text(fields.get('__CURSOR'))}]\n"]
    for name, value in fields.items():
        if name.startswith("__") or value is None:
            # Address fields are shown in the header; a null is a value journalctl -o json left out.
            continue
        for item in value if isinstance(value, list) and value and not isinstance(value[0], int) else [value]:
            out.append(_verbose_value(name, item))
    return "".join(out).encode("utf-8", "surrogateescape")


def _pretty(value: Any, depth: int) -> str:
    if isinstance(value, list) and value:
        items = ",\n".join("\t" * (depth + 1) + _pretty(v, depth + 1) for v in value)
        return "[\n" + items + "\n" + "\t" * depth + "]"
    return orjson.dumps(value).decode()


def render_json_pretty(event: Mapping[str, Any]) -> bytes:
    """``journalctl -o json-pretty``: systemd's JSON layout, tab-indented, ``"NAME" : value``."""
    fields = journal_fields(event)
    body = ",\n".join(f"\t{orjson.dumps(k).decode()} : {_pretty(v, 1)}" for k, v in fields.items())
    return ("{\n" + body + "\n}\n").encode()


def render_json_seq(event: Mapping[str, Any]) -> bytes:
    """``journalctl -o json-seq`` (RFC 7464): a record separator, the JSON, a newline."""
    return b"\x1e" + orjson.dumps(journal_fields(event)) + b"\n"


def boot_line(boot_id: str, color: bool = False) -> bytes:
    line = f"-- Boot {boot_id} --"
    return (f"{_HIGHLIGHT}{line}{_RESET}" if color else line).encode() + b"\n"


def render_event(event: Mapping[str, Any], mode: str, *, color: bool = False, tz: tzinfo | None = None) -> bytes:
    """One event in any of ``OUTPUT_MODES``."""
    if mode == "json":
        return render_json(event)
    if mode == "json-pretty":
        return render_json_pretty(event)
    if mode == "json-seq":
        return render_json_seq(event)
    if mode == "export":
        return render_export(event)
    if mode == "verbose":
        return render_verbose(event, tz)
    return render_text(event, mode, color=color, tz=tz)


class TextRenderer:
    """One output stream: events in a mode, and journalctl's ``-- Boot ID --`` line before an entry
    whose boot differs from the previous entry's (never before the first)."""

    def __init__(self, mode: str, *, color: bool = False, tz: tzinfo | None = None) -> None:
        self.mode, self.color, self.tz = mode, color, tz
        self.boot: str | None = None

    def __call__(self, event: Mapping[str, Any]) -> bytes:
        marker = b""
        # Merged journals of several VMs (they carry ``vm``) get no boot lines, as with journalctl -m.
        if self.mode in BOOT_LINE_MODES and "vm" not in event:
            boot = event.get("boot_id") or _field_text(journal_fields(event).get("_BOOT_ID"))
            if boot:
                if self.boot is not None and boot != self.boot:
                    marker = boot_line(boot, self.color)
                self.boot = boot
        return marker + render_event(event, self.mode, color=self.color, tz=self.tz)
