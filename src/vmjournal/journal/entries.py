"""Turning ``journalctl -o json`` entries into rows, and rows back into events.

This is the ingest hot path: one pass over the entries, no per-entry allocation beyond the
row tuple and the serialized fields. Conversions that PostgreSQL does faster (microseconds to
timestamptz, hex to uuid) are left to SQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from vmjournal.input_errors import InvalidInput
from vmjournal.journal import layout

# PID 1 and coredumps log about units; journalctl -u counts those entries as the unit's too.
_COREDUMP_MESSAGE_ID = "fc2e22bc6ee647b6b90729ab34a250b1"
_HEX128 = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F-]{36}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# systemd's unichar_is_control(): what makes journalctl call a value unprintable.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_UNIT_NAME_MAX = 256
_CURSOR_MAX = 1024  # well inside PostgreSQL's btree key limit, far above journald's ~130 characters
_INT_MAX = 2**31 - 1
_BIGINT_MAX = 2**63 - 1
DAY_US = 86_400 * 1_000_000

ROW_COLUMNS = (
    "seqnum",
    "xor",
    "ts_us",
    "monotonic_us",
    "context_id",
    "boot_id",
    "unit",
    "about_unit",
    "priority",
    "identifier",
    "pid",
    "hostname",
    "message",
    "rest",
)

Row = tuple[
    int,
    int,
    int,
    int | None,
    int,
    str | None,
    str | None,
    str | None,
    int | None,
    str | None,
    int | None,
    str | None,
    str | None,
    str | None,
]
# Positions in a Row (literals, so each row[...] keeps its type).
TS_US: Final = 2
CONTEXT_ID: Final = 4
MESSAGE: Final = 12
assert ROW_COLUMNS[TS_US] == "ts_us" and ROW_COLUMNS[CONTEXT_ID] == "context_id" and ROW_COLUMNS[MESSAGE] == "message"


class EntryProblem(ValueError):
    """Why one entry cannot be stored."""


class BadEntry(InvalidInput):
    """An entry the service cannot store; the whole batch is refused."""

    def __init__(self, index: int, problem: str) -> None:
        super().__init__(f"entry {index}: {problem}; the batch was not stored", code="bad_entry")
        self.index = index
        self.problem = problem

    def __reduce__(self) -> tuple[type[BadEntry], tuple[int, str]]:
        # Raised in a worker process (journal/row_workers.py), it is pickled back to the service.
        return (BadEntry, (self.index, self.problem))


def _first(value: Any) -> Any:
    """A repeated field's first value (a list of values, not a byte array)."""
    if isinstance(value, list) and value and not isinstance(value[0], int):
        return value[0]
    return value


def _bytes(value: Any) -> bytes | None:
    if isinstance(value, list) and value and isinstance(value[0], int):
        try:
            return bytes(value)
        except (ValueError, TypeError):
            return None
    return None


# Each helper below starts with the common case, one plain string, before anything slower: they
# run for every field column of every entry.


def _text(value: Any) -> str | None:
    """A field's text for searching: byte arrays decoded, invalid UTF-8 and NUL (which PostgreSQL text
    cannot hold) replaced by U+FFFD, so ``grep`` matches where journalctl's matching on raw bytes does."""
    if type(value) is not str:
        value = _first(value)
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    raw = _bytes(value)
    if raw is None:
        return None
    text = raw.decode("utf-8", "replace")
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _unit(value: Any) -> str | None:
    """A unit column: no ``-u`` can name a unit with a NUL or longer than systemd's UNIT_NAME_MAX, so such
    values select nothing, as in journalctl (the raw value stays in the fields)."""
    if type(value) is str:
        return None if "\x00" in value or len(value) > _UNIT_NAME_MAX else value
    value = _first(value)
    if isinstance(value, str):
        text: str | None = value
    else:
        raw = _bytes(value)
        text = None if raw is None or 0 in raw else raw.decode("utf-8", "replace")
    if text is None or "\x00" in text or len(text) > _UNIT_NAME_MAX:
        return None
    return text


def _label(value: Any) -> str | None:
    """Identifier and hostname: journalctl's short output shows them only when printable, else
    falls back (``unknown``, no host); a byte array is never printable (journalctl made it one)."""
    if type(value) is not str:
        value = _first(value)
    # isprintable() is a fast superset test: what it accepts has no control character.
    if isinstance(value, str) and (value.isprintable() or not _CONTROL.search(value)):
        return value
    return None


def _int(value: Any, maximum: int) -> int | None:
    if type(value) is not str:
        value = _first(value)
    # ASCII digits only (int() fails on "²", which isdigit() accepts), up to 19 of them: a server up
    # for more than 28 hours has a 12-digit __MONOTONIC_TIMESTAMP.
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 20:
        number = int(value)
        return number if number <= maximum else None
    return None


def about_unit(entry: Mapping[str, Any]) -> str | None:
    """The unit an entry is about, the way ``journalctl -u`` matches beyond ``_SYSTEMD_UNIT``."""
    pid = entry.get("_PID")
    if pid == "1" and "UNIT" in entry:
        return _unit(entry["UNIT"])
    if entry.get("_UID") == "0":
        if "OBJECT_SYSTEMD_UNIT" in entry:
            return _unit(entry["OBJECT_SYSTEMD_UNIT"])
        if "COREDUMP_UNIT" in entry and entry.get("MESSAGE_ID") == _COREDUMP_MESSAGE_ID:
            return _unit(entry["COREDUMP_UNIT"])
    return None


def to_row(entry: Any) -> tuple[Row, str]:
    """One entry as a row and its context; raises ``EntryProblem`` if it cannot be stored."""
    if not isinstance(entry, dict):
        raise EntryProblem("not a JSON object")
    cursor = entry.get("__CURSOR")
    if not isinstance(cursor, str) or not cursor:
        raise EntryProblem("missing __CURSOR")
    if "\x00" in cursor or len(cursor) > _CURSOR_MAX:
        # journald's cursors are short printable text; the cursor is also the entry's key.
        raise EntryProblem(f"__CURSOR is not a journal cursor (NUL, or longer than {_CURSOR_MAX})")
    realtime = entry.get("__REALTIME_TIMESTAMP")
    if isinstance(realtime, str) and realtime.isascii() and realtime.isdigit() and len(realtime) < 20:
        ts_us = int(realtime)
    elif isinstance(realtime, int) and not isinstance(realtime, bool) and realtime >= 0:
        ts_us = realtime
    else:
        raise EntryProblem("missing or invalid __REALTIME_TIMESTAMP (microseconds since the epoch)")
    if ts_us > 253_402_300_799_000_000:  # 9999-12-31: PostgreSQL's and Python's limit
        raise EntryProblem("__REALTIME_TIMESTAMP is out of range")
    monotonic_us = _int(entry.get("__MONOTONIC_TIMESTAMP"), _BIGINT_MAX)
    priority = _int(entry.get("PRIORITY"), 7)
    message = _text(entry.get("MESSAGE"))
    try:
        seqnum, xor, context_id, context, rest = layout.split(entry, ts_us, monotonic_us, message, priority)
    except layout.BadName as exc:
        raise EntryProblem(str(exc)) from None
    boot_id, unit, identifier, pid, hostname = _process_columns.get(context_id) or _of_process(entry, context_id)
    row = (
        seqnum,
        xor,
        ts_us,
        monotonic_us,
        context_id,
        boot_id,
        unit,
        about_unit(entry),
        priority,
        identifier,
        pid,
        hostname,
        message,
        rest,
    )
    return row, context


# The columns that hold a process's fields, by the id of the entry's context, whose text holds
# those fields' values: a batch has a few hundred processes for its thousand entries.
_PROCESS_FIELDS = ("_BOOT_ID", "_SYSTEMD_UNIT", "SYSLOG_IDENTIFIER", "_PID", "_HOSTNAME")
assert all(layout.in_context(name) for name in _PROCESS_FIELDS)
_PROCESS_COLUMNS_MAX = 20_000
_process_columns: dict[int, tuple[str | None, str | None, str | None, int | None, str | None]] = {}


def _of_process(
    entry: Mapping[str, Any], context_id: int
) -> tuple[str | None, str | None, str | None, int | None, str | None]:
    boot_id = entry.get("_BOOT_ID")
    if boot_id is not None and not (isinstance(boot_id, str) and _HEX128.fullmatch(boot_id)):
        raise EntryProblem("_BOOT_ID is not a 128-bit hex id")
    found = (
        boot_id,
        _unit(entry.get("_SYSTEMD_UNIT")),
        _label(entry.get("SYSLOG_IDENTIFIER")),
        _int(entry.get("_PID"), _INT_MAX),
        _label(entry.get("_HOSTNAME")),
    )
    if len(_process_columns) >= _PROCESS_COLUMNS_MAX:
        _process_columns.clear()
    _process_columns[context_id] = found
    return found


class Batch:
    """Rows ready for COPY, with the contexts they reference, each once (journal/layout.py)."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        # context id -> (its text, the latest day of an entry using it)
        self.contexts: dict[int, tuple[str, int]] = {}
        # Kept as rows are added (in a row worker), not computed again in the event loop.
        self._days: set[int] = set()

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, entry: Any) -> None:
        """Raises ``EntryProblem`` if the entry cannot be stored."""
        self._append(*to_row(entry))

    def _append(self, row: Row, context: str) -> None:
        self.rows.append(row)
        day = row[TS_US] // DAY_US
        self._days.add(day)
        known = self.contexts.get(row[CONTEXT_ID])
        if known is None or known[1] < day:
            self.contexts[row[CONTEXT_ID]] = (context, day)

    def days(self) -> set[int]:
        return set(self._days)

    def only(self, index: int) -> Batch:
        """A batch of the one row at ``index``."""
        one = Batch()
        row = self.rows[index]
        one._append(row, self.contexts[row[CONTEXT_ID]][0])
        return one


def to_rows(entries: Iterable[Any]) -> Batch:
    """Validate and convert entries; raises ``BadEntry`` naming the first entry that is not storable."""
    batch = Batch()
    for index, entry in enumerate(entries):
        try:
            batch.add(entry)
        except EntryProblem as exc:
            raise BadEntry(index, str(exc)) from None
    return batch


def timestamp_from_us(ts_us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ts_us)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
