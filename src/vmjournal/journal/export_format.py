"""Parse the Journal Export Format into the entries ``journalctl -o json --all`` would print.

The format (systemd docs/JOURNAL_EXPORT_FORMATS.md) is what stock ``systemd-journal-upload``
posts: entries separated by an empty line, each field either ``NAME=value\\n`` (printable
UTF-8) or ``NAME\\n`` + a little-endian uint64 length + raw bytes + ``\\n``. The result has
exactly the JSON shape of ``journalctl -o json --all``: a value is a string when systemd calls it
printable (valid UTF-8 without control characters other than TAB and newline, and without
Unicode noncharacters), else a list of byte values; a repeated field becomes a list of those.

This sits on the ingest hot path: an entry made only of text fields is decoded and checked in
one pass over the whole entry, and only entries with binary fields or odd bytes take the
field-by-field path.

A body is a stream of any length, so the parser never holds more than one entry: an entry
longer than ``max_entry_bytes`` or with more fields than journald writes is passed over (its
bytes discarded as they arrive) and reported as a ``SkippedEntry`` in its place, the way
journal-remote skips an entry with too many fields. A body that breaks the framing raises.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any, NoReturn

__all__ = ["ExportFormatError", "ExportParser", "SkippedEntry", "parse_export"]

# Longest entry buffered by default; longer ones are skipped, not held in memory.
MAX_ENTRY_BYTES = 64 * 1024 * 1024
# journal-remote's limits (ENTRY_FIELDS_MAX, DATA_SIZE_MAX): a field claiming more than this is
# not a journal field but a broken body.
MAX_FIELDS = 1024
MAX_FIELD_BYTES = 768 * 1024 * 1024

# systemd's unichar_is_control() plus the noncharacters its unichar_is_valid() rejects: a value
# containing any of these is printed by journalctl as a byte array. Newline is allowed (it is the
# field separator inside an entry, and journalctl prints multi-line values as strings).
_CONTROL_BYTES = bytes([*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F])
_NOT_PRINTABLE_BMP = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ufdd0-\ufdef\ufffe\uffff]")
_NONCHAR_ASTRAL = re.compile(
    "[" + "".join(f"{chr(p * 0x10000 + 0xFFFE)}{chr(p * 0x10000 + 0xFFFF)}" for p in range(1, 17)) + "]"
)
_FIELD_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
_LEN = struct.Struct("<Q")

JsonValue = str | list[int]
Entry = dict[str, Any]


@dataclass(frozen=True)
class SkippedEntry:
    """An entry passed over instead of returned; ``index`` counts entries of the body from 0."""

    index: int
    cursor: str | None
    problem: str


@dataclass
class _Skip:
    """Where the parser is inside an entry it discards."""

    index: int
    problem: str
    cursor: str | None = None
    remaining: int = 0  # bytes of a binary value still to discard, with its newline
    in_line: bool = False  # inside a text field longer than what has arrived


class ExportFormatError(ValueError):
    """The body is not valid Journal Export Format; the message names the entry and the problem.

    ``entry`` counts from 0, as the JSON ingest path counts the entries of a batch.
    """

    def __init__(self, entry: int, offset: int, problem: str) -> None:
        super().__init__(f"entry {entry} (byte {offset} of the body): {problem}")
        self.entry = entry
        self.offset = offset
        self.problem = problem


def _printable(raw: bytes) -> str | None:
    """``raw`` decoded if systemd would call it printable (newlines allowed), else None."""
    if raw.isascii():
        # The common case, checked without decoding character by character.
        return None if len(raw.translate(None, _CONTROL_BYTES)) != len(raw) else raw.decode("ascii")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _NOT_PRINTABLE_BMP.search(text) or (max(text) > "\uffff" and _NONCHAR_ASTRAL.search(text)):
        return None
    return text


def _json_value(raw: bytes) -> JsonValue:
    text = _printable(raw)
    return list(raw) if text is None else text


class ExportParser:
    """Incremental parser: ``feed`` chunks as they arrive, then ``close`` at the end of the body.

    ``feed`` returns entries completed so far, ``close`` the rest. While a big entry is incomplete,
    small chunks are only collected until they double the buffer, so a many-megabyte field that
    arrives in small pieces is not copied over and over.
    """

    def __init__(self, max_entry_bytes: int = MAX_ENTRY_BYTES) -> None:
        self._max_entry = max_entry_bytes
        self._skip: _Skip | None = None
        self._buf = b""
        self._entries_done = 0
        self._consumed = 0  # bytes of the body before self._buf
        self._names: set[str] = set()  # field names already validated
        self._start = 0  # where the entry being parsed starts in the current buffer
        self._pending: list[bytes] = []
        self._pending_len = 0

    @property
    def entries(self) -> int:
        """How many entries have been returned so far."""
        return self._entries_done

    @property
    def consumed(self) -> int:
        """Bytes of the body parsed so far (entries returned or skipped)."""
        return self._consumed

    def feed(self, chunk: bytes) -> list[Entry | SkippedEntry]:
        return self._parse(chunk, force=False)

    def _parse(self, chunk: bytes, *, force: bool) -> list[Entry | SkippedEntry]:
        if not force and self._buf and self._pending_len + len(chunk) < len(self._buf):
            self._pending.append(chunk)
            self._pending_len += len(chunk)
            return []
        if self._pending:
            data = b"".join([self._buf, *self._pending, chunk])
            self._pending, self._pending_len = [], 0
        else:
            data = self._buf + chunk if self._buf else chunk
        out: list[Entry | SkippedEntry] = []
        pos = 0
        n = len(data)
        find = data.find
        while pos < n:
            if self._skip is not None:
                pos, done = self._discard(data, pos)
                if not done:
                    break
                out.append(self._skipped())
                continue
            if data[pos] == 0x0A:  # stray empty line between entries: harmless, skip it
                pos += 1
                continue
            self._start = pos
            end = find(b"\n\n", pos)
            entry: Entry | None = None
            if end >= 0:
                entry = self._text_entry(data[pos:end])
            if entry is not None:
                new_pos = end + 2
            else:
                parsed = self._slow_entry(data, pos)
                if parsed is None:
                    break  # incomplete: wait for more data
                found, new_pos = parsed
                if isinstance(found, _Skip):
                    self._skip, pos = found, new_pos
                    continue
                entry = found
            if new_pos - pos > self._max_entry:
                cursor = entry.get("__CURSOR")
                out.append(
                    self._count(
                        SkippedEntry(self._entries_done, cursor if isinstance(cursor, str) else None, self._too_long())
                    )
                )
            else:
                out.append(entry)
                self._entries_done += 1
            pos = new_pos
        self._buf = data[pos:]
        self._consumed += pos
        self._start = 0
        if self._skip is None and len(self._buf) > self._max_entry:
            # The entry is longer than we hold: discard it as it streams; its cursor comes first.
            self._skip = _Skip(self._entries_done, self._too_long())
            buf, self._buf = self._buf, b""
            out += self._parse(buf, force=True)
        return out

    def _too_long(self) -> str:
        return f"entry is longer than {self._max_entry} bytes"

    def _count(self, skipped: SkippedEntry) -> SkippedEntry:
        self._entries_done += 1
        return skipped

    def _skipped(self) -> SkippedEntry:
        assert self._skip is not None
        skip, self._skip = self._skip, None
        return self._count(SkippedEntry(skip.index, skip.cursor, skip.problem))

    def _discard(self, data: bytes, pos: int) -> tuple[int, bool]:
        """Walk the skipped entry's fields from ``pos`` without keeping them. Returns where to go on
        and whether the entry ended; if not, ``data[pos:]`` is an incomplete field header to keep."""
        skip = self._skip
        assert skip is not None
        n = len(data)
        while True:
            if skip.remaining:
                step = min(skip.remaining, n - pos)
                pos += step
                skip.remaining -= step
                if skip.remaining:
                    return pos, False
            nl = data.find(b"\n", pos)
            if skip.in_line:
                if nl < 0:
                    return n, False
                skip.in_line, pos = False, nl + 1
                continue
            if pos >= n:
                return pos, False
            if nl == pos:
                return pos + 1, True
            if nl < 0:
                if data.find(b"=", pos) >= 0:
                    skip.in_line = True
                    return n, False
                if n - pos > 64:
                    self._start = pos
                    self._fail("a field name is longer than 64 bytes")
                return pos, False
            line = data[pos:nl]
            if b"=" in line:
                if line.startswith(b"__CURSOR="):
                    skip.cursor = line[9:].decode("utf-8", "replace")
                pos = nl + 1
                continue
            if nl + 9 > n:
                return pos, False
            (size,) = _LEN.unpack_from(data, nl + 1)
            if size > MAX_FIELD_BYTES:
                self._start = pos
                self._fail(f"field {_show(line)} claims {size} bytes (limit {MAX_FIELD_BYTES})")
            skip.remaining = size + 1
            pos = nl + 9

    def close(self) -> list[Entry | SkippedEntry]:
        """The last entries; raises if the body ended inside an entry."""
        rest = self._parse(b"", force=True) if self._pending else []
        if self._skip is not None or self._buf.strip(b"\n"):
            self._fail("the body ends inside an entry (missing the empty line that ends it)")
        return rest

    def _fail(self, problem: str, at: int | None = None) -> NoReturn:
        """Raise for the current entry; ``at`` is a position in the buffer (default: the entry start)."""
        where = self._consumed + (self._start if at is None else at)
        raise ExportFormatError(self._entries_done, where, problem)

    def _check_names(self, entry: Entry) -> None:
        if entry.keys() <= self._names:
            return
        for name in entry.keys() - self._names:
            if not _FIELD_NAME.fullmatch(name):
                shown = name if len(name) <= 80 else name[:80] + "..."
                self._fail(f"invalid field name {shown!r} (expected A-Z, 0-9, _; at most 64)")
            self._names.add(name)

    def _text_entry(self, block: bytes) -> Entry | None:
        """Fast path: an entry of text fields only, all printable. None means: take the slow path."""
        text = _printable(block)
        if text is None:
            return None
        lines = text.split("\n")
        try:
            entry: Entry = dict(line.split("=", 1) for line in lines)
        except ValueError:
            return None  # a line without "=": a binary field starts here
        if len(entry) != len(lines):
            entry = {}
            for line in lines:
                name, _, value = line.partition("=")
                _add(entry, name, value)
        if len(lines) > MAX_FIELDS:
            return None
        self._check_names(entry)
        return entry

    def _slow_entry(self, data: bytes, start: int) -> tuple[Entry | _Skip, int] | None:
        """Field by field, for entries with binary fields; None if the entry is incomplete, a ``_Skip``
        (and where to discard from) if it is too big to keep."""
        entry: Entry = {}
        pos = start
        n = len(data)
        fields = 0
        while True:
            nl = data.find(b"\n", pos)
            if nl < 0:
                return None
            if nl == pos:
                break
            fields += 1
            if fields > MAX_FIELDS:
                return self._skip_entry(entry, f"more than {MAX_FIELDS} fields"), pos
            line = data[pos:nl]
            eq = line.find(b"=")
            if eq >= 0:
                name_b, value = line[:eq], _json_value(line[eq + 1 :])
                pos = nl + 1
            else:
                name_b = line
                if nl + 9 > n:
                    return None
                (size,) = _LEN.unpack_from(data, nl + 1)
                if size > MAX_FIELD_BYTES:
                    self._fail(f"field {_show(name_b)} claims {size} bytes (limit {MAX_FIELD_BYTES})", pos)
                vstart = nl + 9
                if size > self._max_entry:
                    skip = self._skip_entry(entry, self._too_long())
                    skip.remaining = size + 1
                    return skip, vstart
                vend = vstart + size
                if vend + 1 > n:
                    return None
                if data[vend] != 0x0A:
                    self._fail(f"binary field {_show(name_b)} of {size} bytes is not followed by a newline", pos)
                value = _json_value(data[vstart:vend])
                pos = vend + 1
            _add(entry, name_b.decode("utf-8", "replace"), value)
        self._check_names(entry)
        return entry, pos + 1

    def _skip_entry(self, entry: Entry, problem: str) -> _Skip:
        cursor = entry.get("__CURSOR")
        return _Skip(self._entries_done, problem, cursor if isinstance(cursor, str) else None)


def _add(entry: Entry, name: str, value: JsonValue) -> None:
    old = entry.get(name)
    if old is None:
        entry[name] = value
    elif isinstance(old, list) and old and not isinstance(old[0], int):
        old.append(value)
    else:
        entry[name] = [old, value]


def _show(name: bytes) -> str:
    return repr(name[:80].decode("utf-8", "replace"))


def parse_export(data: bytes, max_entry_bytes: int = MAX_ENTRY_BYTES) -> list[Entry | SkippedEntry]:
    """Parse a whole Journal Export Format body; raises ``ExportFormatError`` if malformed."""
    parser = ExportParser(max_entry_bytes)
    return parser.feed(data) + parser.close()
