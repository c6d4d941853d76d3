"""SQL of journal fields by name: ``FIELD=VALUE`` matches (a part of every event query's filter,
built by journal/store.py) and a field's distinct values (journalctl ``-F``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from vmjournal.journal import layout, matches

# The field's stored JSON ({j}) is one of the value's forms, or a repeated field holds one (journal/matches.py).
MATCH_JSON = (
    "(({j})::text = ANY({forms}::text[]) OR (json_typeof({j}) = 'array' AND EXISTS "
    "(SELECT FROM json_array_elements({j}) v WHERE v::text = ANY({forms}::text[]))))"
)
# A necessary condition tried first: the stored JSON's text contains a form. Cheaper than parsing it.
MATCH_TEXT = "{text} LIKE ANY({patterns}::text[])"
# The field is a list (repeated, or bytes): its column holds the first value only.
MATCH_LIST = "{text} LIKE {pattern}"
# A process's fields live in the entry's context (journal/layout.py), found by its key.
IN_CONTEXT = (
    "EXISTS (SELECT FROM journal_context c WHERE c.vm_id = journal_event.vm_id "
    "AND c.id = journal_event.context_id AND {condition})"
)

_COLUMN_TYPES = {
    "unit": "text",
    "boot_id": "uuid",
    "hostname": "text",
    "pid": "int",
    "priority": "smallint",
    "identifier": "text",
}

# Distinct values of a field: each value of a repeated field on its own, as JSON texts.
SELECT_FIELD_VALUES = """
SELECT DISTINCT coalesce(v::text, j::text) AS value
FROM {table} CROSS JOIN LATERAL (SELECT {json} AS j) f
LEFT JOIN LATERAL json_array_elements(
    CASE WHEN json_typeof(j) = 'array' AND json_typeof(j->0) <> 'number' THEN j END) v ON true
WHERE vm_id = $1 AND json_typeof(j) IS DISTINCT FROM 'null' AND j IS NOT NULL
ORDER BY 1
"""


@dataclass(frozen=True)
class _Source:
    """Where a field's stored JSON is, for a row of journal_event."""

    json: str
    # Its JSON text for a LIKE pre-check, when there is one text to search.
    text: str | None
    in_context: bool

    def where(self, condition: str) -> str:
        return IN_CONTEXT.format(condition=condition) if self.in_context else condition


def _source(arg: Callable[[Any], str], field: str) -> _Source | None:
    """None for the cursor and clocks: journalctl matches data fields only."""
    if field.startswith("__") and field != "__SEQNUM_ID":
        return None
    if layout.in_context(field):
        return _Source(f"c.fields->{arg(field)}", "c.fields::text", True)
    # These two are in their column unless the column could not give back the stored text.
    if field == "MESSAGE":
        return _Source("coalesce(journal_event.rest->'MESSAGE', to_json(journal_event.message))", None, False)
    if field == "PRIORITY":
        return _Source(
            "coalesce(journal_event.rest->'PRIORITY', to_json(journal_event.priority::text))",
            "journal_event.rest::text",
            False,
        )
    return _Source(f"journal_event.rest->{arg(field)}", "journal_event.rest::text", False)


def match_condition(arg: Callable[[Any], str], field: str, values: list[bytes]) -> str:
    """One field's match as an SQL boolean; ``arg`` binds a parameter and returns its placeholder."""
    src = _source(arg, field)
    if src is None:
        return "false"
    m = matches.field_match(field, values)
    branches = []
    if m.column is not None:
        column_values = m.column_values
        # Plain equality for one value keeps a unit's index scan in time order.
        by_column = (
            f"{m.column} = {arg(column_values[0])}"
            if len(column_values) == 1
            else f"{m.column} = ANY({arg(column_values)}::{_COLUMN_TYPES[m.column]}[])"
        )
        if field in matches.CLIENT_COLUMNS and src.text is not None:
            pattern = arg("%" + matches.like_escape(f'"{field}":[') + "%")
            by_column = f"({by_column} OR {src.where(MATCH_LIST.format(text=src.text, pattern=pattern))})"
        # The JSON check still decides: a column holds "6" for a stored "06", a uuid for any spelling.
        branches.append(f"{by_column} AND " + src.where(MATCH_JSON.format(j=src.json, forms=arg(m.all_forms))))
    if m.other_forms:
        check = MATCH_JSON.format(j=src.json, forms=arg(m.other_forms))
        if src.text is not None:
            patterns = [f"%{matches.like_escape(form)}%" for form in m.other_forms]
            check = MATCH_TEXT.format(text=src.text, patterns=arg(patterns)) + " AND " + check
        branches.append(src.where(check))
    return "(" + " OR ".join(branches) + ")"


async def field_values(conn: asyncpg.Connection, vm_id: UUID, field: str) -> list[str]:
    """The distinct stored values of a field, as JSON texts (a string, or a list of byte numbers)."""
    src = _source(lambda value: "$2", field)
    if src is None:
        return []
    table = "journal_context c" if src.in_context else "journal_event"
    sql = SELECT_FIELD_VALUES.format(table=table, json=src.json)
    args = [vm_id, field] if "$2" in sql else [vm_id]
    return [r["value"] for r in await conn.fetch(sql, *args)]
