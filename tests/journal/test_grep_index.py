"""A grep reads only the time ranges of the batches holding its letter trigrams (journal/trigrams.py):
its pages are exactly those of a scan of the whole journal, and a word no batch holds reads nothing."""

from __future__ import annotations

import random
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.realistic import DebianGuest

from vmjournal.journal import entries, ingest_store, pages, store, trigram_store, trigrams

VM = uuid.UUID("6a1f0c52-9d1e-4f7b-8a11-3c5d2e7f9b40")

# Pattern pieces, each with a strategy for text it matches (case-insensitively).
_LETTER = st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_PLAIN = st.sampled_from(list(" -_:/=,;@%&<>~!'\"0123456789"))
_ESCAPED = st.sampled_from(list(".*+?{}|()[]$^\\"))
_ANY_CHAR = st.characters(codec="utf-8", exclude_characters="\x00")


@st.composite
def _atom(draw: st.DrawFn) -> tuple[str, str]:
    kind = draw(st.sampled_from(["letter"] * 6 + ["plain", "escaped", "dot", "accented"]))
    if kind == "letter":
        c = draw(_LETTER)
        return c, draw(st.sampled_from([c.lower(), c.upper()]))
    if kind == "plain":
        c = draw(_PLAIN)
        return c, c
    if kind == "escaped":
        c = draw(_ESCAPED)
        return "\\" + c, c
    if kind == "accented":
        return "é", draw(st.sampled_from(["é", "É"]))
    return ".", draw(_ANY_CHAR)


@st.composite
def _piece(draw: st.DrawFn) -> tuple[str, str]:
    pattern, text = draw(_atom())
    quantifier = draw(st.sampled_from(["", "", "", "?", "*", "+", "{2}", "{1,3}"]))
    if not quantifier:
        return pattern, text
    low, high = {"?": (0, 1), "*": (0, 3), "+": (1, 3), "{2}": (2, 2), "{1,3}": (1, 3)}[quantifier]
    return pattern + quantifier, text * draw(st.integers(low, high))


@st.composite
def pattern_and_message(draw: st.DrawFn) -> tuple[str, str]:
    pieces = draw(st.lists(_piece(), min_size=1, max_size=12))
    pattern = "".join(p for p, _ in pieces)
    text = "".join(t for _, t in pieces)
    if draw(st.booleans()):
        pattern, text = "^" + pattern, text
        prefix = ""
    else:
        prefix = draw(st.text(min_size=0, max_size=8))
    return pattern, prefix + text + draw(st.text(min_size=0, max_size=8))


@settings(max_examples=400)
@given(pattern_and_message())
def test_a_pattern_needs_only_keys_its_matches_hold(case: tuple[str, str]) -> None:
    pattern, message = case
    assert re.search(pattern, message, re.IGNORECASE | re.DOTALL), "the generator makes a matching message"
    needed = trigrams.of_pattern(VM, pattern)
    if needed is not None:
        assert set(needed) <= set(trigrams.of_messages(VM, [message]))


def test_keys_of_words_and_patterns() -> None:
    def grams(pattern: str) -> list[int] | None:
        return trigrams.of_pattern(VM, pattern)

    assert grams("Failed") == grams("failed") == trigrams.of_messages(VM, ["FAILED"])
    # Words' trigrams, not the letters': "xylo phone" has no "oph".
    xylophone = grams("xylophone")
    assert xylophone is not None and not set(xylophone) <= set(trigrams.of_messages(VM, ["xylo phone"]))
    # Nothing three letters long that every match must hold, or more than literals and quantifiers.
    for unusable in ("ab", "a.b.c", "fo+", "(failed)", "fail|error", "[abc]def", r"\bword", r"\d+", "ab?c"):
        assert grams(unusable) is None, unusable
    # The letter before a quantifier may be missing; the rest of the run is still needed.
    assert grams("timed? out") == trigrams.of_messages(VM, ["time out"])
    # Another VM's keys differ: its batches never answer for this one.
    assert not set(trigrams.of_pattern(uuid.uuid4(), "failed") or ()) & set(grams("failed") or ())


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    await connection.execute(
        "INSERT INTO vm (id, name, size, provider, status) VALUES ($1, 'grep', 'small', 'external', 'running')", VM
    )
    yield connection
    await connection.close()


TRIGRAMS_SIZE = "SELECT count(*), sum(pg_column_size(t.*)) FROM journal_trigrams t"


def _with_cursors(batch: list[dict[str, str]], first: int) -> list[dict[str, str]]:
    """What journal-remote's files would add: the cursor."""
    for n, e in enumerate(batch, first):
        e["__CURSOR"] = (
            f"s=5c1f0a2b3c4d4e5f8a9b0c1d2e3f4a5b;i={n + 1:x};b={e['_BOOT_ID']};"
            f"m={int(e['__MONOTONIC_TIMESTAMP']):x};t={int(e['__REALTIME_TIMESTAMP']):x};x={n * 7919:x}"
        )
    return batch


async def _store(conn: asyncpg.Connection, batches: list[list[dict[str, str]]]) -> None:
    for batch in batches:
        async with conn.transaction():
            await ingest_store.ingest(conn, VM, entries.to_rows(batch))


async def _scan(conn: asyncpg.Connection, f: store.EventFilter, descending: bool) -> list[int]:
    """Every matching entry's seq, the way a grep read before batches kept their trigrams."""
    sql, args = store.page_query(VM, f, limit=1_000_000, descending=descending)
    return [r["seq"] for r in await conn.fetch(sql, *args)]


async def _paged(conn: asyncpg.Connection, f: store.EventFilter, descending: bool, limit: int) -> list[int]:
    seqs: list[int] = []
    after = None
    while page := await pages.query_events(conn, VM, f, limit=limit, after=after, descending=descending):
        seqs += [r["seq"] for r in page]
        after = store.Position(page[-1]["ts"], page[-1]["seq"])
    return seqs


async def test_grep_pages_equal_a_scan_and_read_only_their_batches(conn: asyncpg.Connection) -> None:
    guest = DebianGuest(11, start_us=1_764_000_000_000_000, interval_us=40_000)
    batches = [_with_cursors(guest.take(100), 100 * n) for n in range(40)]
    await _store(conn, batches)
    stored = await conn.fetchval("SELECT count(*) FROM journal_trigrams WHERE vm_id = $1", VM)
    assert stored == len(batches)
    # A resend stores nothing new, and no batch of trigrams either.
    async with conn.transaction():
        assert await ingest_store.ingest(conn, VM, entries.to_rows(batches[3])) == 0
    assert await conn.fetchval("SELECT count(*) FROM journal_trigrams") == stored

    words = Counter(w for b in batches for e in b for w in re.findall(r"[A-Za-z]{5,}", e.get("MESSAGE", "")))
    rare = [w for w, n in words.items() if n == 1]
    common = [w for w, n in words.most_common(3)]
    assert rare and common
    patterns = [
        *random.Random(3).sample(rare, 5),
        *common,
        "xylophone",
        common[0].upper(),
        f"{common[0][:4]}.*{common[1][-3:]}",
        f"^{common[0][:2]}.{common[0][3:]}",
        "Start(ing|ed)",
    ]
    for pattern in patterns:
        for case_sensitive in (True, False):
            f = store.EventFilter(grep=pattern, grep_case_sensitive=case_sensitive)
            for descending in (False, True):
                expected = await _scan(conn, f, descending)
                assert await _paged(conn, f, descending, limit=7) == expected, (pattern, case_sensitive, descending)
                assert await _paged(conn, f, descending, limit=100) == expected, (pattern, case_sensitive, descending)

    async def ranges(word: str) -> list[trigram_store.Range] | None:
        return await trigram_store.ranges(conn, VM, trigrams.of_pattern(VM, word) or [], None, None)

    assert await ranges("xylophone") == []
    # A word in every batch is read in journal order, not batch by batch.
    everywhere = set.intersection(
        *({w for e in b for w in re.findall(r"[A-Za-z]{5,}", e.get("MESSAGE", ""))} for b in batches)
    )
    assert everywhere and await ranges(sorted(everywhere)[0]) is None
    narrowed = await ranges(rare[0])
    assert narrowed is not None and 1 <= len(narrowed) < len(batches) // 4
    # A unit, priority and time window narrow the grep as they narrow any page.
    middle = batches[20][50]
    unit = middle.get("_SYSTEMD_UNIT")
    f = store.EventFilter(
        grep=common[0],
        grep_case_sensitive=False,
        units=[unit] if unit else None,
        since=entries.timestamp_from_us(int(batches[10][0]["__REALTIME_TIMESTAMP"])),
        until=entries.timestamp_from_us(int(middle["__REALTIME_TIMESTAMP"])),
    )
    assert await _paged(conn, f, False, limit=5) == await _scan(conn, f, False)


async def test_small_batches_rows_merge_and_grep_still_finds_every_entry(conn: asyncpg.Connection) -> None:
    # An agent following a quiet journal: batches of a few entries.
    guest = DebianGuest(12, start_us=1_764_000_000_000_000, interval_us=900_000)
    batches = [_with_cursors(guest.take(5), 5 * n) for n in range(300)]
    await _store(conn, batches)
    rows, size = await conn.fetchrow(TRIGRAMS_SIZE)
    assert rows == len(batches)
    words = Counter(w for b in batches for e in b for w in re.findall(r"[A-Za-z]{5,}", e.get("MESSAGE", "")))
    patterns = [w for w, n in words.items() if n == 1][:5] + [w for w, _ in words.most_common(2)] + ["xylophone"]
    before = {p: await _scan(conn, store.EventFilter(grep=p), False) for p in patterns}

    assert await trigram_store.merge_small(conn) > 0
    merged_rows, merged_size = await conn.fetchrow(TRIGRAMS_SIZE)
    assert merged_rows < len(batches) // 5 and merged_size < size // 2
    # Merged rows still cover every entry with letters, in time order per VM, and grep pages agree.
    uncovered = await conn.fetchval(
        "SELECT count(*) FROM journal_event e WHERE e.message ~ '[A-Za-z]{3}' AND NOT EXISTS ("
        "SELECT FROM journal_trigrams t WHERE t.vm_id = e.vm_id AND e.ts BETWEEN t.first_at AND t.last_at)"
    )
    assert uncovered == 0
    # Each merged row's last seq is the highest seq of the entries it covers (alert evaluation reads
    # up to it, alerts/evaluation.py).
    wrong = await conn.fetchval(
        "SELECT count(*) FROM journal_trigrams t WHERE t.last_seq IS DISTINCT FROM (SELECT max(e.seq) "
        "FROM journal_event e WHERE e.vm_id = t.vm_id AND e.ts BETWEEN t.first_at AND t.last_at)"
    )
    assert wrong == 0
    for pattern, expected in before.items():
        assert await _paged(conn, store.EventFilter(grep=pattern), False, limit=9) == expected, pattern
    # A second merge finds little or nothing left to merge; a server's rows of a chunk of entries are left alone.
    await trigram_store.merge_small(conn)
    await _store(conn, [_with_cursors(guest.take(1000), 10_000)])
    count = await conn.fetchval("SELECT count(*) FROM journal_trigrams")
    assert await trigram_store.merge_small(conn) == 0
    assert await conn.fetchval("SELECT count(*) FROM journal_trigrams") == count


async def test_a_big_batch_gets_a_row_per_chunk_of_entries(conn: asyncpg.Connection) -> None:
    """An upload or a backlog sent in big batches: a rare word still reads about a chunk of entries."""
    chunk = trigrams.CHUNK_ENTRIES
    guest = DebianGuest(13, start_us=1_764_000_000_000_000, interval_us=40_000)
    size, marked = 5 * chunk + chunk // 2, 3 * chunk + chunk // 3
    batch = _with_cursors(guest.take(size), 0)
    batch[marked]["MESSAGE"] = "quuxplosion detected"
    await _store(conn, [batch])
    rows = await conn.fetch("SELECT first_at, last_at, cardinality(grams) AS keys, last_seq FROM journal_trigrams")
    assert len(rows) == 6 and all(r["keys"] > 0 for r in rows)
    last_seq = await conn.fetchval("SELECT max(seq) FROM journal_event")
    assert {r["last_seq"] for r in rows} == {last_seq}
    stamps = sorted(entries.timestamp_from_us(int(e["__REALTIME_TIMESTAMP"])) for e in batch)
    assert (min(r["first_at"] for r in rows), max(r["last_at"] for r in rows)) == (stamps[0], stamps[-1])
    found = await trigram_store.ranges(conn, VM, trigrams.of_pattern(VM, "quuxplosion") or [], None, None)
    assert found == [(stamps[3 * chunk], stamps[4 * chunk - 1])]
    f = store.EventFilter(grep="quuxplosion")
    assert await _paged(conn, f, False, limit=10) == await _scan(conn, f, False) != []
    # A server's full chunks hold more keys than a merge takes: retention keeps their rows apart.
    full = sorted(rows, key=lambda r: r["first_at"])[:5]
    assert min(r["keys"] for r in full) >= trigram_store.SMALL_KEYS
    assert await trigram_store.merge_small(conn) == 0


def test_grep_windows_follow_the_matches_per_range() -> None:
    assert pages.next_window(0, 0, 0, 100) == pages.FIRST_WINDOW
    # About one match per range (a word in 1 entry of 10 000): the next window is what the page
    # still needs, with a margin, not a fixed 64 then 256.
    assert 84 <= pages.next_window(16, 16, 16, 100) <= 110
    # A common word filled most of the page from the first window: the next one stays small.
    assert pages.next_window(16, 16, 90, 100) == pages.FIRST_WINDOW
    # Nothing found yet (batches holding the letters, not the word): four times more, up to the cap.
    assert pages.next_window(16, 16, 0, 100) == 64
    assert pages.next_window(256, 336, 0, 100) == pages.MAX_WINDOW
    assert pages.next_window(16, 16, 1, 100) == pages.MAX_WINDOW
