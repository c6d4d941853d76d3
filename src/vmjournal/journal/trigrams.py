"""Letter trigrams: how a grep finds the few stored batches that can hold a word, instead of
reading a VM's whole journal.

Each stored batch records, beside its entries, the time range of its new entries and the set of
letter trigrams of their messages (three ASCII letters, case folded: ``fai``, ``ail``, ``ile`` of
"Failed"). A message can only match a grep whose every match holds the word "failed" if it holds
those trigrams, so a page needs to read only the time ranges of the batches that have them all.

Letters only: digits and hex ids make most of a batch's distinct trigrams (8.5 k of them in 1000
realistic entries, against 1.2 k of letters). Numbers have keys of their own instead: each word
that holds a digit (``4242``, ``0x1f``, ``eth0``) is hashed to one of about a million keys, so
``items/4242 `` needs the batches that hold the word ``4242`` and not only the many that say
"items". Letter keys are salted with the VM, so the index answers for one VM without reading other
VMs' batches. Number keys are not: with some 2000 numbers in a batch, a VM's share of the key
space would leave one batch in eight holding any number's key.

A batch of more than ``CHUNK_ENTRIES`` entries (an upload, a backlog sent in big batches) gets a
row per run of that many, so a rare word costs reading about that many entries per match, whatever
size the sender chose.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Set
from dataclasses import dataclass
from uuid import UUID

from vmjournal.journal.entries import MESSAGE, TS_US, Batch

# Upper case ASCII folded to lower, any other byte (digits, punctuation, UTF-8) a word break.
_FOLD = bytes(c + 32 if 65 <= c <= 90 else c if 97 <= c <= 122 else 32 for c in range(256))
# ASCII letters folded to lower case and digits kept, any other byte a break: a message's words.
_FOLD_WORDS = bytes(c + 32 if 65 <= c <= 90 else c if 97 <= c <= 122 or 48 <= c <= 57 else 32 for c in range(256))
_WORD = re.compile(rb"[0-9a-z]+")
_LETTERS = 26
GRAM_BITS = 15  # 26 ** 3 trigrams fit in 15 bits; the VM's salt takes the other 17 of an int4
# Within each block of 2 ** 15 keys, the values above the trigrams' hold numbers, and the last one
# marks the rows stored before numbers had keys (alembic 6c3e8b1f5a92): those hold letters only.
# Numbers take these values in the first NUMBER_BLOCKS blocks: whatever VMs' letters share them,
# a key never means both a number and letters.
_NUMBERS_FROM: int = _LETTERS**3
LETTERS_ONLY: int = 2**GRAM_BITS - 1
_NUMBER_VALUES = LETTERS_ONLY - _NUMBERS_FROM
NUMBER_BLOCKS = 64
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


def _number_key(word: bytes) -> int:
    # crc32, not hash(): the same word must have the same key in every process, forever.
    h: int = zlib.crc32(word)
    block = h * NUMBER_BLOCKS >> 32
    return (block << GRAM_BITS) - 2**31 + _NUMBERS_FROM + h % _NUMBER_VALUES


def _grams(vm_id: UUID, words: Iterable[bytes], numbers: Iterable[bytes] = ()) -> list[int]:
    grams: set[int] = set()
    for word in words:
        if len(word) >= 3:
            grams.update(_grams_of_word(word))
    salt = _salt(vm_id)
    return sorted({salt + g for g in grams}.union(map(_number_key, numbers)))


def of_messages(vm_id: UUID, messages: Iterable[str | None]) -> list[int]:
    """The VM's keys of these messages (a stored batch's): letter trigrams and numbers."""
    text = "\n".join(m for m in messages if m).encode("utf-8", "replace")
    numbers = {w for w in text.translate(_FOLD_WORDS).split() if not w.isalpha()}
    return _grams(vm_id, set(text.translate(_FOLD).split()), numbers)


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


# A pattern without these characters is a plain substring (journal/store.py ``grep_condition``).
REGEX_SYNTAX = frozenset("\\.^$*+?()[]{}|")


@dataclass(frozen=True)
class Needed:
    """What a stored batch's keys hold if its entries can match a pattern: every key of ``keys``;
    or, for a row stored before numbers had keys (it holds ``LETTERS_ONLY``), every key of
    ``old``. ``old`` is None when ``keys`` are letter trigrams only, which such rows hold too."""

    keys: list[int]
    old: list[int] | None = None

    def held_by(self, held: Set[int]) -> bool:
        return held >= set(self.keys) or (self.old is not None and held >= set(self.old))


def of_pattern(vm_id: UUID, pattern: str) -> Needed | None:
    """Keys every message matching this PostgreSQL regex must hold (case folded, so the same keys
    serve ``~`` and ``~*``); None when the pattern guarantees none, or is not a plain sequence of
    literals, escaped punctuation, ``.``, anchors and quantifiers."""
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
    letters = _grams(vm_id, runs)
    numbers = _numbers_of(pattern)
    if not numbers:
        return Needed(letters) if letters else None
    return Needed(_grams(vm_id, runs, numbers), sorted([*letters, _salt(vm_id) + LETTERS_ONLY]))


def _numbers_of(pattern: str) -> set[bytes]:
    """The words with a digit that every match of a plain ASCII substring holds whole: those with a
    break on both sides within the pattern (``4242`` of ``items/4242 ``, not of ``items/4242``).
    Not of a regex or of other text, whose case folding or classes may match across a break."""
    if REGEX_SYNTAX.intersection(pattern) or not pattern.isascii():
        return set()
    folded = pattern.encode().translate(_FOLD_WORDS)
    return {m[0] for m in _WORD.finditer(folded) if m.start() > 0 and m.end() < len(folded) and not m[0].isalpha()}
