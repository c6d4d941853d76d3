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
"""

from __future__ import annotations

import re
import struct
from typing import Any, NoReturn

__all__ = ["ExportFormatError", "ExportParser", "parse_export"]

# Longest entry or field we buffer; journald's own limit is far larger, but an entry this big
# is a broken or hostile client and the body is held in memory while it streams.
MAX_ENTRY_BYTES = 64 * 1024 * 1024
MAX_FIELDS = 1024

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

    def __init__(self) -> None:
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

    def feed(self, chunk: bytes) -> list[Entry]:
        return self._parse(chunk, force=False)

    def _parse(self, chunk: bytes, *, force: bool) -> list[Entry]:
        if not force and self._buf and self._pending_len + len(chunk) < len(self._buf):
            self._pending.append(chunk)
            self._pending_len += len(chunk)
            return []
        if self._pending:
            data = b"".join([self._buf, *self._pending, chunk])
            self._pending, self._pending_len = [], 0
        else:
            data = self._buf + chunk if self._buf else chunk
        out: list[Entry] = []
        pos = 0
        n = len(data)
        find = data.find
        while pos < n:
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
                entry, new_pos = parsed
            out.append(entry)
            self._entries_done += 1
            pos = new_pos
        self._buf = data[pos:]
        self._consumed += pos
        self._start = 0
        if len(self._buf) > MAX_ENTRY_BYTES:
            self._fail(f"entry is longer than {MAX_ENTRY_BYTES} bytes")
        return out

    def close(self) -> list[Entry]:
        """The last entries; raises if the body ended inside an entry."""
        rest = self._parse(b"", force=True) if self._pending else []
        if self._buf.strip(b"\n"):
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

    def _slow_entry(self, data: bytes, start: int) -> tuple[Entry, int] | None:
        """Field by field, for entries with binary fields; None if the entry is incomplete."""
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
                self._fail(f"more than {MAX_FIELDS} fields")
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
                if size > MAX_ENTRY_BYTES:
                    self._fail(f"field {_show(name_b)} claims {size} bytes (limit {MAX_ENTRY_BYTES})", pos)
                vstart = nl + 9
                vend = vstart + size
                if vend + 1 > n:
                    return None
                if data[vend] != 0x0A:
                    self._fail(
                        f"binary field {_show(name_b)} of {size} bytes is not followed by a newline", pos
                    )
                value = _json_value(data[vstart:vend])
                pos = vend + 1
            _add(entry, name_b.decode("utf-8", "replace"), value)
        self._check_names(entry)
        return entry, pos + 1


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


def parse_export(data: bytes) -> list[Entry]:
    """Parse a whole Journal Export Format body; raises ``ExportFormatError`` if malformed."""
    parser = ExportParser()
    return parser.feed(data) + parser.close()
