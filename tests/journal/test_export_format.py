"""The export-format parser gives exactly what ``journalctl -o json --all`` gives for the same journal."""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import pytest

from vmjournal.journal.export_format import MAX_FIELDS, ExportFormatError, ExportParser, SkippedEntry, parse_export

JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"


def _field(name: str, value: bytes) -> bytes:
    """Serialize as systemd does: text when printable without newline, else binary framing."""
    try:
        text = value.decode("utf-8")
        if text.isprintable() or all(c == "\t" or c.isprintable() for c in text):
            return name.encode() + b"=" + value + b"\n"
    except UnicodeDecodeError:
        pass
    return name.encode() + b"\n" + struct.pack("<Q", len(value)) + value + b"\n"


def _entry(i: int, fields: list[tuple[str, bytes]]) -> bytes:
    head = [
        ("__REALTIME_TIMESTAMP", str(1_700_000_000_000_000 + i).encode()),
        ("__MONOTONIC_TIMESTAMP", str(1000 + i).encode()),
        ("_BOOT_ID", b"0123456789abcdef0123456789abcdef"),
        ("_SYSTEMD_UNIT", b"demo.service"),
        ("PRIORITY", b"6"),
    ]
    return b"".join(_field(n, v) for n, v in head + fields) + b"\n"


ODD_ENTRIES: list[list[tuple[str, bytes]]] = [
    [("MESSAGE", b"plain ascii")],
    [("MESSAGE", b"multi\nline\nmessage")],
    [("MESSAGE", b"latin-1 \xe9t\xe9 is not UTF-8")],
    [("MESSAGE", "unicode \u00e9\u4e2d\U0001f600".encode())],
    [("MESSAGE", b"tab\there")],
    [("MESSAGE", b"bell \x07 and DEL \x7f")],
    [("MESSAGE", "C1 \u0085 control".encode())],
    [("MESSAGE", "nonchar \ufdd0 \U0001fffe".encode())],
    [("MESSAGE", b"x" * 5000), ("BIG", bytes(range(256)) * 20)],
    [("MESSAGE", b"has = signs = inside"), ("EMPTY", b"")],
    [("MESSAGE", b"repeated"), ("TAG", b"a"), ("TAG", b"b"), ("TAG", b"\xff"), ("TAG", b"c")],
    [("MESSAGE", b"binary first"), ("B", b"\x00\n\n\x00"), ("B", b"text")],
    [("MESSAGE", b"nul \x00 inside")],
    [("MESSAGE", "astral nonchar only \U0010ffff".encode())],
    [("MESSAGE", b"\n\nstarts with blank lines\n\n")],
]


def _journal(tmp_path: Path, export: bytes) -> Path:
    out = tmp_path / "test.journal"
    subprocess.run([JOURNAL_REMOTE, f"--output={out}", "-"], input=export, check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def odd_journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    entries = [_entry(i, f) for i, f in enumerate(ODD_ENTRIES)]
    entries += [_entry(100 + i, [("MESSAGE", f"bulk {i}".encode()), ("N", str(i).encode())]) for i in range(300)]
    return _journal(tmp_path_factory.mktemp("odd"), b"".join(entries))


def _journalctl(path: Path, output: str) -> bytes:
    return subprocess.run(
        ["journalctl", "--file", str(path), "-o", output, "--all", "--no-pager"],
        check=True,
        capture_output=True,
    ).stdout


class TestParseExport:
    def test_matches_journalctl_json(self, odd_journal: Path) -> None:
        expected = [json.loads(line) for line in _journalctl(odd_journal, "json").splitlines()]
        assert len(expected) == len(ODD_ENTRIES) + 300
        assert parse_export(_journalctl(odd_journal, "export")) == expected

    def test_shapes(self, odd_journal: Path) -> None:
        by_msg = {}
        for e in parse_export(_journalctl(odd_journal, "export")):
            assert isinstance(e, dict), e
            msg = e["MESSAGE"]
            by_msg[msg if isinstance(msg, str) else bytes(msg)] = e
        assert "multi\nline\nmessage" in by_msg
        assert b"latin-1 \xe9t\xe9 is not UTF-8" in by_msg
        assert by_msg["repeated"]["TAG"] == ["a", "b", [255], "c"]
        assert len(by_msg["x" * 5000]["BIG"]) == 5120

    @pytest.mark.parametrize("size", [1, 7, 4096])
    def test_chunked_feed_gives_the_same(self, odd_journal: Path, size: int) -> None:
        data = _journalctl(odd_journal, "export")
        parser = ExportParser()
        got = []
        for i in range(0, len(data), size):
            got += parser.feed(data[i : i + size])
        got += parser.close()
        assert got == parse_export(data)
        assert parser.entries == len(got)


class TestMalformed:
    def test_truncated_entry(self) -> None:
        with pytest.raises(ExportFormatError, match=r"entry 1 \(byte 12 of the body\): the body ends inside"):
            parse_export(b"MESSAGE=ok\n\nMESSAGE=cut")

    def test_truncated_binary_field(self) -> None:
        with pytest.raises(ExportFormatError, match="entry 0 .*ends inside an entry"):
            parse_export(b"MESSAGE\n" + struct.pack("<Q", 100) + b"short\n\n")

    def test_binary_length_mismatch(self) -> None:
        body = b"A=1\n\nMESSAGE\n" + struct.pack("<Q", 3) + b"abcd\n\n"
        with pytest.raises(ExportFormatError, match=r"entry 1 .*'MESSAGE' of 3 bytes is not followed by a newline"):
            parse_export(body)

    def test_bad_field_name(self) -> None:
        with pytest.raises(ExportFormatError, match=r"entry 2 .*invalid field name 'lower'"):
            parse_export(b"A=1\n\nB=2\n\nlower=x\n\n")

    def test_empty_field_name(self) -> None:
        with pytest.raises(ExportFormatError, match=r"entry 0 .*invalid field name ''"):
            parse_export(b"=x\n\n")

    def test_huge_binary_claim(self) -> None:
        with pytest.raises(ExportFormatError, match="claims 18446744073709551615 bytes"):
            parse_export(b"M\n" + b"\xff" * 8 + b"x\n\n")

    def test_big_entry_in_small_chunks(self) -> None:
        body = b"MESSAGE\n" + struct.pack("<Q", 3_000_000) + b"\x00" * 3_000_000 + b"\nA=1\n\nA=2\n\n"
        parser = ExportParser()
        got = []
        for i in range(0, len(body), 1000):
            got += parser.feed(body[i : i + 1000])
        got += parser.close()
        first = got[0]
        assert isinstance(first, dict), first
        assert [len(first["MESSAGE"]), first["A"], got[1]] == [3_000_000, "1", {"A": "2"}]

    def test_error_is_a_value_error(self) -> None:
        assert issubclass(ExportFormatError, ValueError)

    def test_blank_lines_between_entries_are_ignored(self) -> None:
        assert parse_export(b"\nA=1\n\n\n\nA=2\n\n") == [{"A": "1"}, {"A": "2"}]


class TestSkippedEntries:
    """An entry too big to hold, or with more fields than journal-remote takes, is passed over."""

    def _feed(self, body: bytes, size: int, limit: int) -> list[object]:
        parser = ExportParser(limit)
        got: list[object] = []
        for i in range(0, len(body), size):
            got += parser.feed(body[i : i + size])
        got += parser.close()
        assert parser.entries == len(got)
        return got

    @pytest.mark.parametrize("size", [1, 100, 1 << 20])
    def test_too_long_binary_field(self, size: int) -> None:
        big = b"__CURSOR=c2\nMESSAGE\n" + struct.pack("<Q", 5000) + b"\n\n\x00" * 1666 + b"xy\nA=2\n\n"
        body = b"__CURSOR=c1\nA=1\n\n" + big + b"__CURSOR=c3\nA=3\n\n"
        got = self._feed(body, size, 1000)
        assert got == [
            {"__CURSOR": "c1", "A": "1"},
            SkippedEntry(1, "c2", "entry is longer than 1000 bytes"),
            {"__CURSOR": "c3", "A": "3"},
        ]

    @pytest.mark.parametrize("size", [1, 7, 100, 1 << 20])
    def test_too_long_text_entry(self, size: int) -> None:
        body = b"A=1\n\n__CURSOR=c2\nM=" + b"x" * 3000 + b"\nB=2\n\n__CURSOR=c3\n\n"
        got = self._feed(body, size, 1000)
        assert got == [{"A": "1"}, SkippedEntry(1, "c2", "entry is longer than 1000 bytes"), {"__CURSOR": "c3"}]

    def test_too_many_fields(self) -> None:
        fields = b"".join(b"F%d=v\n" % i for i in range(MAX_FIELDS + 1))
        body = b"__CURSOR=c1\nB\n" + struct.pack("<Q", 1) + b"\x00\n" + fields + b"\nA=2\n\n"
        got = parse_export(body)
        assert got == [SkippedEntry(0, "c1", f"more than {MAX_FIELDS} fields"), {"A": "2"}]

    def test_body_ending_inside_a_skipped_entry(self) -> None:
        with pytest.raises(ExportFormatError, match="ends inside an entry"):
            parse_export(b"M\n" + struct.pack("<Q", 5000) + b"x" * 100, 1000)
