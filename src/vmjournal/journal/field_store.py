"""SQL of journal fields by name: ``FIELD=VALUE`` matches (a part of every event query's filter,
built by journal/store.py) and a field's distinct values (journalctl ``-F``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

import asyncpg

from vmjournal.journal import matches

# The field's stored JSON is one of the value's forms, or a repeated field holds one (journal/matches.py).
MATCH_JSON = (
    "((fields->{f})::text = ANY({forms}::text[]) OR (json_typeof(fields->{f}) = 'array' AND EXISTS "
    "(SELECT FROM json_array_elements(fields->{f}) v WHERE v::text = ANY({forms}::text[]))))"
)
# A necessary condition tried first: the entry's text contains a form. Cheaper than parsing the JSON.
MATCH_TEXT = "fields::text LIKE ANY({patterns}::text[])"
# The field is a list (repeated, or bytes): its column holds the first value only.
MATCH_LIST = "fields::text LIKE {pattern}"

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
FROM journal_event CROSS JOIN LATERAL (SELECT fields->$2 AS j) f
LEFT JOIN LATERAL json_array_elements(
    CASE WHEN json_typeof(j) = 'array' AND json_typeof(j->0) <> 'number' THEN j END) v ON true
WHERE vm_id = $1 AND json_typeof(j) IS DISTINCT FROM 'null' AND j IS NOT NULL
"""


def match_condition(arg: Callable[[Any], str], field: str, values: list[bytes]) -> str:
    """One field's match as an SQL boolean; ``arg`` binds a parameter and returns its placeholder."""
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
        if field in matches.CLIENT_COLUMNS:
            listed = MATCH_LIST.format(pattern=arg("%" + matches.like_escape(f'"{field}":[') + "%"))
            by_column = f"({by_column} OR {listed})"
        # The JSON check still decides: a column holds "6" for a stored "06", a uuid for any spelling.
        branches.append(f"{by_column} AND " + MATCH_JSON.format(f=arg(field), forms=arg(m.all_forms)))
    if m.other_forms:
        patterns = [f"%{matches.like_escape(form)}%" for form in m.other_forms]
        branches.append(
            MATCH_TEXT.format(patterns=arg(patterns))
            + " AND "
            + MATCH_JSON.format(f=arg(field), forms=arg(m.other_forms))
        )
    return "(" + " OR ".join(branches) + ")"


async def field_values(conn: asyncpg.Connection, vm_id: UUID, field: str) -> list[str]:
    """The distinct stored values of a field, as JSON texts (a string, or a list of byte numbers)."""
    return [r["value"] for r in await conn.fetch(SELECT_FIELD_VALUES, vm_id, field)]
