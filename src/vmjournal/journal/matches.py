"""journalctl's ``FIELD=VALUE`` matches: parsing, and the stored forms a value can take.

An entry matches when any of its values of FIELD equals VALUE byte for byte. Entries are stored as
``journalctl -o json`` wrote them (serialized by orjson, so the text of a value is canonical): a
printable value is a JSON string, any other a list of byte numbers, and a repeated field a list of
those. A value is therefore found by comparing JSON texts, never by decoding (``->>`` fails on a
stored ``\\u0000``).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import orjson

from vmjournal.input_errors import InvalidInput

_FIELD = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
# systemd's unichar_is_control(): such a value is stored as bytes, not as a string.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_HEX_ID = re.compile(r"[0-9a-f]{32}")
_CANONICAL_INT = re.compile(r"0|[1-9][0-9]{0,9}")
_INT_MAX = 2**31 - 1

# Fields journald writes once per entry from what it knows itself (a client cannot send them), so
# the entry's column holds the only value.
TRUSTED_COLUMNS = {"_SYSTEMD_UNIT": "unit", "_BOOT_ID": "boot_id", "_HOSTNAME": "hostname", "_PID": "pid"}
# Fields a client writes: usually once, but it may repeat them.
CLIENT_COLUMNS = {"PRIORITY": "priority", "SYSLOG_IDENTIFIER": "identifier"}


def valid_field(name: str) -> bool:
    return _FIELD.fullmatch(name) is not None


def parse(spec: str, parameter: str = "match") -> tuple[str, bytes]:
    """``FIELD=VALUE`` -> (FIELD, VALUE as bytes). Non-UTF-8 bytes arrive as surrogate escapes."""
    name, sep, value = spec.partition("=")
    if not sep or not _FIELD.fullmatch(name):
        shown = spec if len(spec) <= 80 else spec[:80] + "..."
        raise InvalidInput(
            f"invalid {parameter} {shown!r}: use FIELD=VALUE, FIELD being upper-case letters, digits and _ "
            "(not starting with a digit), e.g. _SYSTEMD_UNIT=nginx.service",
            code="bad_match",
        )
    return name, value.encode("utf-8", "surrogateescape")


def _text(value: bytes) -> str | None:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def forms(value: bytes) -> list[str]:
    """The JSON texts a stored value equal to ``value`` can have: a string (if it is text) or bytes."""
    out = [orjson.dumps(list(value)).decode()]
    text = _text(value)
    if text is not None:
        out.append(orjson.dumps(text).decode())
    return out


def column_value(field: str, value: bytes) -> str | int | uuid.UUID | None:
    """The value the field's column holds for an entry whose value is ``value``, when a column
    comparison selects exactly those entries (None: compare the stored JSON instead)."""
    column = TRUSTED_COLUMNS.get(field) or CLIENT_COLUMNS.get(field)
    text = _text(value)
    if column is None or text is None or "\ufffd" in text:
        return None
    if column in ("pid", "priority"):
        if not _CANONICAL_INT.fullmatch(text) or int(text) > (7 if column == "priority" else _INT_MAX):
            return None
        return int(text)
    if column == "boot_id":
        return uuid.UUID(text) if _HEX_ID.fullmatch(text) else None
    if column == "unit":
        return text if text and "\x00" not in text and len(text) <= 256 else None
    return text if text and not _CONTROL.search(text) else None


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class FieldMatch:
    """One field's accepted values (ORed), in the shapes the SQL compares."""

    field: str
    column: str | None
    column_values: list[str | int | uuid.UUID]
    # JSON texts of the values the column cannot decide, and of all values for the recheck.
    other_forms: list[str]
    all_forms: list[str]


def field_match(field: str, values: list[bytes]) -> FieldMatch:
    column = TRUSTED_COLUMNS.get(field) or CLIENT_COLUMNS.get(field)
    by_column: list[str | int | uuid.UUID] = []
    other: list[str] = []
    every: list[str] = []
    for value in dict.fromkeys(values):
        every += forms(value)
        in_column = column_value(field, value)
        if in_column is None:
            other += forms(value)
        else:
            by_column.append(in_column)
    return FieldMatch(field, column if by_column else None, by_column, other, every)
