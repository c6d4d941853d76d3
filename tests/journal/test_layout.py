"""An entry split into its row, context and rest (journal/layout.py, journal/entries.py) and put
back together gives the entry back, and journald's own cursors are kept as numbers, not text."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmjournal.journal import entries, layout
from vmjournal.journal.entries import ROW_COLUMNS

U64 = st.integers(0, 2**64 - 1)
# __MONOTONIC_TIMESTAMP up to its whole range: a server up for more than 28 hours writes 12 digits.
MONOTONIC = st.one_of(st.integers(0, 10**6), st.integers(10**11, 2**63 - 1))
REALTIME = st.integers(0, 253_402_300_799_000_000)
# Fields of the process (context) and of the entry (rest), as journalctl -o json prints them.
OTHER = st.dictionaries(
    st.sampled_from(["_PID", "_COMM", "_SYSTEMD_UNIT", "SYSLOG_IDENTIFIER", "CODE_LINE", "_SOURCE_REALTIME_TIMESTAMP"]),
    st.text(max_size=12),
    max_size=6,
)


@st.composite
def journald_entries(draw: st.DrawFn) -> dict[str, Any]:
    boot = uuid.UUID(int=draw(st.integers(0, 2**128 - 1))).hex
    seqnum, xor, monotonic, realtime = draw(U64), draw(U64), draw(MONOTONIC), draw(REALTIME)
    entry: dict[str, Any] = {
        "__CURSOR": f"s={uuid.uuid4().hex};i={seqnum:x};b={boot};m={monotonic:x};t={realtime:x};x={xor:x}",
        "__REALTIME_TIMESTAMP": str(realtime),
        "__MONOTONIC_TIMESTAMP": str(monotonic),
        "_BOOT_ID": boot,
        "MESSAGE": draw(st.text(max_size=30)),
        "PRIORITY": draw(st.sampled_from(["0", "3", "6", "7", "07"])),
        **draw(OTHER),
    }
    if draw(st.booleans()):
        entry["__SEQNUM"] = str(seqnum)
    return entry


def put_back(row: entries.Row, context: str) -> dict[str, Any]:
    """The entry as a stored row reads back."""
    record: dict[str, Any] = dict(zip(ROW_COLUMNS, row, strict=True))
    record["ts"] = entries.timestamp_from_us(record.pop("ts_us"))
    record["boot_id"] = record["boot_id"] and uuid.UUID(record["boot_id"])
    record["context"] = context
    return layout.assemble(record)


@settings(max_examples=300)
@given(entry=journald_entries())
def test_a_journald_entry_comes_back_and_its_cursor_is_kept_as_numbers(entry: dict[str, Any]) -> None:
    row, context = entries.to_row(entry)
    assert put_back(row, context) == entry
    rest = row[ROW_COLUMNS.index("rest")] or ""
    assert isinstance(rest, str)
    # Only a seqnum journald's text cannot match (above 2**63, kept signed) stays as text.
    assert "__CURSOR" not in rest and "__MONOTONIC_TIMESTAMP" not in rest and "__REALTIME_TIMESTAMP" not in rest


def test_a_server_up_for_a_month_keeps_its_monotonic_clock_in_its_column() -> None:
    month_us = 30 * 86_400 * 1_000_000
    boot = uuid.uuid4().hex
    entry = {
        "__CURSOR": f"s={uuid.uuid4().hex};i=2a;b={boot};m={month_us:x};t=64d2c3a1b2c3d;x=1f",
        "__REALTIME_TIMESTAMP": str(0x64D2C3A1B2C3D),
        "__MONOTONIC_TIMESTAMP": str(month_us),
        "_BOOT_ID": boot,
        "MESSAGE": "up for a month",
    }
    row, context = entries.to_row(entry)
    record = dict(zip(ROW_COLUMNS, row, strict=True))
    assert (record["monotonic_us"], record["seqnum"], record["rest"]) == (month_us, 0x2A, None)
    assert put_back(row, context) == entry


def test_digits_python_reads_but_int_does_not_are_not_numbers() -> None:
    # "²" passes str.isdigit(); a column that took it for a number failed the whole batch.
    entry = {"__CURSOR": "s=x;i=1", "__REALTIME_TIMESTAMP": "1764000000000000", "_PID": "²", "PRIORITY": "²"}
    row, context = entries.to_row(entry)
    record = dict(zip(ROW_COLUMNS, row, strict=True))
    assert (record["pid"], record["priority"]) == (None, None)
    assert put_back(row, context) == entry
    with pytest.raises(entries.EntryProblem, match="__REALTIME_TIMESTAMP"):
        entries.to_row({**entry, "__REALTIME_TIMESTAMP": "²"})
