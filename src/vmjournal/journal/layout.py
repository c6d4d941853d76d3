"""How an entry is laid out in the store, and put back together byte for byte.

journald stores each distinct ``FIELD=value`` once and lets entries point at it; most of an
entry's fields are the sending process's (its PID, command line, cgroup, unit, boot, host) and
repeat across thousands of entries. So an entry is split three ways:

- its *context*: the entry's field names (in a canonical order), with the values of the process's fields
  (``_*`` trusted fields, the syslog identifier, the source file and function); every other name
  holds ``0``, a value no journal field can have (fields are strings or lists). Stored once per VM
  in ``journal_context``, keyed by a hash of its text;
- the values the event's columns already hold (``__REALTIME_TIMESTAMP``, ``__MONOTONIC_TIMESTAMP``,
  ``MESSAGE``, ``PRIORITY``, and the cursor's sequence number and hash), whenever the column gives
  back the very same text; otherwise the value stays with the entry's other fields;
- the entry's *rest*: its own remaining fields, a small JSON object.

Fields come back in one canonical order (journalctl's own JSON order is its hash table's, a
different one for each entry); every name and value comes back byte for byte.
"""

from __future__ import annotations

import bisect
import hashlib
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from uuid import UUID

import orjson

# A process's fields that are the entry's own, not the process's.
_PER_ENTRY_TRUSTED = frozenset(
    {"_SOURCE_REALTIME_TIMESTAMP", "_SOURCE_MONOTONIC_TIMESTAMP", "_SOURCE_BOOTTIME_TIMESTAMP", "_LINE_BREAK"}
)
# Fields a client writes that stay the same across a process's entries (or a few values of them).
_PER_PROCESS_CLIENT = frozenset(
    {"SYSLOG_IDENTIFIER", "SYSLOG_FACILITY", "SYSLOG_PID", "CODE_FILE", "CODE_FUNC", "MESSAGE_ID", "__SEQNUM_ID"}
)
# journald's cursor: sequence id, sequence number, boot, monotonic and realtime clocks, entry hash.
# Hex numbers without leading zeros, so rebuilding the text from the numbers gives it back exactly.
_HEX = r"(0|[1-9a-f][0-9a-f]{0,15})"
_CURSOR = re.compile(rf"s=([0-9a-f]{{32}});i={_HEX};b=([0-9a-f]{{32}});m={_HEX};t={_HEX};x={_HEX}")
_U64 = 1 << 64
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
# Contexts already made, by field names and values: a VM's batches keep reusing a few hundred.
_KNOWN_MAX = 20_000
_known: dict[Any, tuple[str, int]] = {}


def in_context(name: str) -> bool:
    """Whether a field's values belong to the process (its context) rather than to one entry."""
    if name[:1] == "_" and name[1:2] != "_":
        return name not in _PER_ENTRY_TRUSTED
    return name in _PER_PROCESS_CLIENT


# Plans by field-name set: a journal has a few hundred (bounded, so odd senders cannot grow it).
_PLANS_MAX = 10_000
_plans: dict[frozenset[str], _Plan] = {}
_FIELD_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")


def _canonical_order(names: Iterable[str]) -> tuple[str, ...]:
    """The cursor and clocks first, then the fields by name. journalctl -o json prints an entry's
    fields in its hash table's order, a different one for each entry: kept, every entry of a
    process would need a context of its own."""
    ordered = sorted(names)
    # "__*" sorts after every other name ("_" follows the letters and digits).
    cut = bisect.bisect_left(ordered, "__")
    return (*ordered[cut:], *ordered[:cut])


def _signed(number: int) -> int:
    return number - _U64 if number >= _U64 >> 1 else number


def hash64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big", signed=True)


class BadName(ValueError):
    """A field name journald could not have written."""


@dataclass(frozen=True, slots=True, eq=False)
class _Plan:
    """How entries with one set of field names split: the context's names and the entry's own but
    for the fields the columns may give back (each read in one C call), which of those it has, and
    the template with 0 everywhere, in the canonical order. Compared and hashed by identity."""

    context_values: Callable[[Mapping[str, Any]], Any]
    context_names: tuple[str, ...]
    own_values: Callable[[Mapping[str, Any]], Any]
    own_names: tuple[str, ...]
    has_seqnum: bool
    has_realtime: bool
    has_monotonic: bool
    has_message: bool
    has_priority: bool
    zeros: dict[str, Any]


# The entry's own fields that the event's columns give back when they hold the very same text.
_COLUMN_FIELDS = frozenset(
    {"__CURSOR", "__SEQNUM", "__REALTIME_TIMESTAMP", "__MONOTONIC_TIMESTAMP", "MESSAGE", "PRIORITY"}
)


def _getter(names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], Any]:
    if len(names) == 1:
        name = names[0]
        return lambda entry: (entry[name],)
    return operator.itemgetter(*names) if names else lambda entry: ()


def _plan(key: frozenset[str]) -> _Plan:
    names = _canonical_order(key)
    for name in names:
        if not _FIELD_NAME.fullmatch(name):
            shown = name if len(name) <= 80 else name[:80] + "..."
            raise BadName(f"invalid field name {shown!r} (journal fields are A-Z, 0-9 and _, at most 64)")
    context = tuple(n for n in names if in_context(n))
    own = tuple(n for n in names if not in_context(n) and n not in _COLUMN_FIELDS)
    plan = _Plan(
        _getter(context),
        context,
        _getter(own),
        own,
        "__SEQNUM" in key,
        "__REALTIME_TIMESTAMP" in key,
        "__MONOTONIC_TIMESTAMP" in key,
        "MESSAGE" in key,
        "PRIORITY" in key,
        dict.fromkeys(names, 0),
    )
    if len(_plans) >= _PLANS_MAX:
        _plans.clear()
    _plans[key] = plan
    return plan


def split(
    entry: Mapping[str, Any], ts_us: int, monotonic_us: int | None, message: str | None, priority: int | None
) -> tuple[int, int, int, str, str | None]:
    """The entry's identity numbers (the cursor's sequence number and hash, or a hash of a cursor of
    another shape), its context's id and text, and its rest: its own fields but those the columns
    (``ts_us``, ``monotonic_us``, ``message``, ``priority``) give back. The entry has a ``__CURSOR``
    string; raises ``BadName`` for an impossible field name."""
    # A set of names finds the plan at half the cost of sorting them.
    key = frozenset(entry)
    plan = _plans.get(key) or _plan(key)
    rest = dict(zip(plan.own_names, plan.own_values(entry), strict=True))
    cursor: str = entry["__CURSOR"]
    m = _CURSOR.fullmatch(cursor)
    seqnum_id: str | None = None
    if (
        m is not None
        and m[3] == entry.get("_BOOT_ID")
        and monotonic_us is not None
        and int(m[4], 16) == monotonic_us
        and int(m[5], 16) == ts_us
    ):
        seqnum_id = m[1]
        seqnum, xor = _signed(int(m[2], 16)), _signed(int(m[6], 16))
        if plan.has_seqnum and entry["__SEQNUM"] != str(seqnum):
            rest["__SEQNUM"] = entry["__SEQNUM"]
    else:
        # Another sender's cursor: kept as it is, and identified by its hash.
        seqnum, xor = hash64(cursor.encode("utf-8", "surrogatepass")), 0
        rest["__CURSOR"] = cursor
        if plan.has_seqnum:
            rest["__SEQNUM"] = entry["__SEQNUM"]
    if plan.has_realtime and entry["__REALTIME_TIMESTAMP"] != str(ts_us):
        rest["__REALTIME_TIMESTAMP"] = entry["__REALTIME_TIMESTAMP"]
    if plan.has_monotonic and (monotonic_us is None or entry["__MONOTONIC_TIMESTAMP"] != str(monotonic_us)):
        rest["__MONOTONIC_TIMESTAMP"] = entry["__MONOTONIC_TIMESTAMP"]
    if plan.has_message and (message is None or entry["MESSAGE"] != message):
        rest["MESSAGE"] = entry["MESSAGE"]
    if plan.has_priority and (priority is None or entry["PRIORITY"] != str(priority)):
        rest["PRIORITY"] = entry["PRIORITY"]
    text, context_id = _context(plan, plan.context_values(entry), seqnum_id)
    return seqnum, xor, context_id, text, orjson.dumps(rest).decode() if rest else None


def _context(plan: _Plan, values: Any, seqnum_id: str | None) -> tuple[str, int]:
    """The context's text and id, from the cache when the same process sent the same fields before
    (the text decoded once, not for each of its entries)."""
    key: Any = (plan, values, seqnum_id)
    try:
        known = _known.get(key)
    except TypeError:  # a list value (repeated field, bytes): not hashable, so never cached
        key = known = None
    if known is not None:
        return known
    template = plan.zeros.copy()
    template.update(zip(plan.context_names, values, strict=True))
    if seqnum_id is not None:
        template["__CURSOR"] = seqnum_id
    text = orjson.dumps(template)
    found = (text.decode(), hash64(text))
    if key is not None:
        if len(_known) >= _KNOWN_MAX:
            _known.clear()
        _known[key] = found
    return found


@lru_cache(maxsize=4096)
def _template(text: str) -> dict[str, Any]:
    parsed: dict[str, Any] = orjson.loads(text)
    return parsed


def assemble(record: Mapping[str, Any]) -> dict[str, Any]:
    """The entry as it was received, from an event row: ``context`` (the template's text), ``rest``,
    and the columns ``ts``, ``monotonic_us``, ``message``, ``priority``, ``boot_id``, ``seqnum``, ``xor``."""
    template = _template(record["context"])
    rest_text = record["rest"]
    rest: dict[str, Any] = orjson.loads(rest_text) if rest_text is not None else {}
    entry: dict[str, Any] = {}
    for name, value in template.items():
        if value.__class__ is not int:
            if name == "__CURSOR":
                entry[name] = _cursor(value, record)
            else:
                entry[name] = value
        elif name in rest:
            entry[name] = rest[name]
        else:
            entry[name] = _from_columns(name, record)
    return entry


def _cursor(seqnum_id: str, record: Mapping[str, Any]) -> str:
    boot_id: UUID = record["boot_id"]
    return (
        f"s={seqnum_id};i={record['seqnum'] % _U64:x};b={boot_id.hex};m={record['monotonic_us']:x};"
        f"t={ts_us(record['ts']):x};x={record['xor'] % _U64:x}"
    )


def _from_columns(name: str, record: Mapping[str, Any]) -> Any:
    if name == "MESSAGE":
        return record["message"]
    if name == "__REALTIME_TIMESTAMP":
        return str(ts_us(record["ts"]))
    if name == "__MONOTONIC_TIMESTAMP":
        return str(record["monotonic_us"])
    if name == "PRIORITY":
        return str(record["priority"])
    if name == "__SEQNUM":
        return str(record["seqnum"] % _U64)
    raise ValueError(f"field {name} is in neither the entry nor its columns")


def ts_us(ts: datetime) -> int:
    return (ts - _EPOCH) // _US
