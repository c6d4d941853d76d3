"""A grep without regex syntax is a substring search (journal/store.py ``grep_condition``): it
matches exactly the messages PostgreSQL's regex matches, with case or without, whatever the text
holds (letters whose case maps to or from ASCII, ligatures, non-ASCII patterns)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmjournal.journal import filters, store

# Letters whose case crosses into ASCII or changes length, beside plain ones.
TRICKY = list("aAkKsSiIfFxX0 -_:/\n\t") + [
    "\u212a",
    "\u017f",
    "\u0131",
    "\u0130",
    "\u03c3",
    "\u03c2",
    "\ufb00",
    "é",
    "É",
]
messages = st.lists(
    st.text(st.sampled_from(TRICKY) | st.characters(exclude_categories=["Cs"]), max_size=24), max_size=40
)
patterns = st.text(st.sampled_from(TRICKY), min_size=1, max_size=4)


def matches(database_url: str, texts: list[str], pattern: str) -> tuple[list[bool], list[bool]]:
    """The substring condition's answers and the regex's, for each text."""
    case_sensitive = filters.smart_case(pattern)
    sql, value = store.grep_condition("m", pattern, case_sensitive)
    regex = "m ~ $2" if case_sensitive else "m ~* $2"
    query = (
        f"SELECT {sql.format('$3')} AS fast, {regex} AS slow FROM unnest($1::text[]) WITH ORDINALITY t(m, i) ORDER BY i"
    )

    async def run() -> list[Any]:
        conn = await asyncpg.connect(database_url)
        try:
            return list(await conn.fetch(query, [t.replace("\x00", "") for t in texts], pattern, value))
        finally:
            await conn.close()

    rows = asyncio.run(run())
    return [r["fast"] for r in rows], [r["slow"] for r in rows]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=messages, pattern=patterns)
def test_a_substring_grep_matches_what_the_regex_matches(database_url: str, texts: list[str], pattern: str) -> None:
    fast, slow = matches(database_url, texts, pattern)
    assert fast == slow


def test_the_cases_that_cross_into_ascii(database_url: str) -> None:
    texts = ["\u212aernel", "Kernel", "KERNEL", "kernel", "ker\u017fel", "KERS", "ke rnel", "caf\u00e9", "CAF\u00c9"]
    assert matches(database_url, texts, "kernel")[0] == [False, True, True, True, False, False, False, False, False]
    assert matches(database_url, texts, "kers")[0] == [False, False, False, False, False, True, False, False, False]
    # A non-ASCII pattern without case is left to the regex.
    fast, slow = matches(database_url, texts, "caf\u00e9")
    assert fast == slow == [False] * 7 + [True, True]
    assert store.grep_condition("m", "caf\u00e9", False)[0].startswith("m ~*")
    assert matches(database_url, texts, "Kernel")[0] == [False, True, False, False, False, False, False, False, False]
