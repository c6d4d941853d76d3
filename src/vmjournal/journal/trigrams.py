"""Letter trigrams: how a grep finds the few stored batches that can hold a word, instead of
reading a VM's whole journal.

Each stored batch records, beside its entries, the time range of its new entries and the set of
letter trigrams of their messages (three ASCII letters, case folded: ``fai``, ``ail``, ``ile`` of
"Failed"). A message can only match a grep whose every match holds the word "failed" if it holds
those trigrams, so a page needs to read only the time ranges of the batches that have them all.

Letters only: digits and hex ids make most of a batch's distinct trigrams (8.5 k of them in 1000
realistic entries, against 1.2 k of letters), and a search rarely hinges on them alone. Keys are
salted with the VM, so the index answers for one VM without reading other VMs' batches.

A batch of more than ``CHUNK_ENTRIES`` entries (the agent's, a backlog, an upload) gets a row per
run of that many, so a rare word costs reading about that many entries per match, whatever size the
sender chose.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from vmjournal.journal.entries import MESSAGE, TS_US, Batch

# Upper case ASCII folded to lower, any other byte (digits, punctuation, UTF-8) a word break.
_FOLD = bytes(c + 32 if 65 <= c <= 90 else c if 97 <= c <= 122 else 32 for c in range(256))
_LETTERS = 26
GRAM_BITS = 15  # 26 ** 3 trigrams fit in 15 bits; the VM's salt takes the other 17 of an int4
_WORD_CACHE_MAX = 200_000
_word_grams: dict[bytes, tuple[int, ...]] = {}

# Characters that make a pattern more than a sequence of literals and quantifiers: alternation,
# groups (and PostgreSQL's embedded options) and bracket expressions. Such patterns are read whole.
_STRUCTURE = frozenset("|()[]")
_QUANTIFIERS = frozenset("*+?{")


def _salt(vm_id: UUID) -> int:
    return (int.from_bytes(vm_id.bytes[:4], "big") >> GRAM_BITS << GRAM_BITS) - 2**31


def _grams_of_word(word: bytes) -> tuple[int, ...]:
    grams = _word_grams.get(word)
    if grams is None:
        if len(_word_grams) >= _WORD_CACHE_MAX:
            _word_grams.clear()
        grams = tuple(
            ((word[i] - 97) * _LETTERS + word[i + 1] - 97) * _LETTERS + word[i + 2] - 97 for i in range(len(word) - 2)
        )
        _word_grams[word] = grams
    return grams


def _grams(vm_id: UUID, words: Iterable[bytes]) -> list[int]:
    grams: set[int] = set()
    for word in words:
        if len(word) >= 3:
            grams.update(_grams_of_word(word))
    salt = _salt(vm_id)
    return sorted(salt + g for g in grams)


def of_messages(vm_id: UUID, messages: Iterable[str | None]) -> list[int]:
    """The VM's trigram keys of these messages (a stored batch's)."""
    text = "\n".join(m for m in messages if m).encode("utf-8", "replace")
    return _grams(vm_id, set(text.translate(_FOLD).split()))


# A word rarer than one entry in a chunk costs reading about a chunk per match of the page. Chunks
# of 500 were measured: at 10 M events a word in 1 entry of 10 000 went 121 / 92 -> 82 / 50 ms p99
# cold / warm, but 2.1 keys per entry instead of 1.2 cost four VMs' ingest 9 % (45.4 -> 41.1 k/s).
CHUNK_ENTRIES = 1000


@dataclass(frozen=True)
class Chunks:
    """A batch's trigram rows: per run of up to ``CHUNK_ENTRIES`` entries in batch order, the time
    range of its entries (µs since the epoch) and its keys, ``keys[starts[i]:stops[i]]``."""

    first_us: list[int]
    last_us: list[int]
    starts: list[int]
    stops: list[int]
    keys: list[int]


def of_batch(vm_id: UUID, batch: Batch) -> Chunks:
    """The VM's trigram rows of a batch about to be stored."""
    chunks = Chunks([], [], [], [], [])
    rows = batch.rows
    for at in range(0, len(rows), CHUNK_ENTRIES):
        run = rows[at : at + CHUNK_ENTRIES]
        stamps = [row[TS_US] for row in run]
        chunks.first_us.append(min(stamps))
        chunks.last_us.append(max(stamps))
        chunks.starts.append(len(chunks.keys))
        chunks.keys.extend(of_messages(vm_id, (row[MESSAGE] for row in run)))
        chunks.stops.append(len(chunks.keys))
    return chunks


def of_pattern(vm_id: UUID, pattern: str) -> list[int] | None:
    """Trigram keys every message matching this PostgreSQL regex must hold (case folded, so the
    same keys serve ``~`` and ``~*``); None when the pattern guarantees none, or is not a plain
    sequence of literals, escaped punctuation, ``.``, anchors and quantifiers."""
    if _STRUCTURE.intersection(pattern):
        return None
    runs: list[bytes] = []
    run = bytearray()
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            # An escaped letter or digit is a class, a boundary or a back reference: not literal.
            if i + 1 >= len(pattern) or pattern[i + 1].isalnum() or not pattern[i + 1].isascii():
                return None
            runs.append(bytes(run))
            run.clear()
            i += 2
            continue
        if c in _QUANTIFIERS:
            # The letter before a quantifier may be missing or repeated: the run ends before it.
            del run[-1:]
            runs.append(bytes(run))
            run.clear()
            if c == "{":
                close = pattern.find("}", i)
                if close < 0:
                    return None
                i = close
        elif c.isascii() and c.isalpha():
            run.append(ord(c.lower()))
        else:
            runs.append(bytes(run))
            run.clear()
        i += 1
    runs.append(bytes(run))
    return _grams(vm_id, runs) or None
