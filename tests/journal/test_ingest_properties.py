"""Property-based ingest: arbitrary field names and bytes, batch splits and resends never get a 5xx, and
what is stored is exactly what was sent, once."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from itertools import count
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.api import bearer, enroll_sync
from support.journal_files import journal_json, write_journal

pytestmark = pytest.mark.usefixtures("journal_tools")

BOOT = "0f5e3c4b8a6d4e2f9b1c7d8e6f5a4b3c"
EXPORT = {"Content-Type": "application/vnd.fdo.journal"}
# The fields the service reads besides the address fields, so that odd values reach every column.
KNOWN = [
    "MESSAGE",
    "PRIORITY",
    "_PID",
    "_UID",
    "_SYSTEMD_UNIT",
    "UNIT",
    "OBJECT_SYSTEMD_UNIT",
    "SYSLOG_IDENTIFIER",
    "_HOSTNAME",
    "__MONOTONIC_TIMESTAMP",
    "COREDUMP_UNIT",
    "MESSAGE_ID",
]
names = st.sampled_from(KNOWN) | st.from_regex(r"[A-Z_][A-Z0-9_]{0,63}", fullmatch=True).filter(
    lambda n: n not in ("__CURSOR", "__REALTIME_TIMESTAMP", "_BOOT_ID")
)
invalid_names = st.text(min_size=0, max_size=70).filter(
    lambda n: (
        not (
            0 < len(n) <= 64
            and n[0] not in "0123456789"
            and all(c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_" for c in n)
        )
    )
)
raw_values = st.binary(max_size=300) | st.sampled_from([b"", b"\x00", b"1", b"99999999999999", b"init.scope"])
# journalctl -o json: printable text as a string, anything else as a byte array, repeats as a list.
json_values = (
    st.text(max_size=200)
    | raw_values.map(list)
    | st.lists(st.text(max_size=20) | st.binary(max_size=20).map(list), min_size=2, max_size=3)
)
ids = count()

# Each example enrolls a VM of its own in one service process shared by the module.
FEW = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def url(live_service: Callable[..., Any]) -> str:
    svc: Any = live_service()
    return str(svc.url)


def enroll_next(url: str) -> tuple[str, dict[str, str]]:
    """A VM of the example's own: its name and its ingest headers."""
    name = f"p{next(ids)}"
    return name, bearer(enroll_sync(url, name))


def stored(url: str, name: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/vm/{name}/boot", params={"limit": 10_000}, timeout=30)
    assert response.status_code == 200, response.text
    return [{k: v for k, v in e.items() if not k.islower()} for e in response.json()["events"]]


def by_cursor(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {e["__CURSOR"]: e for e in entries}
    assert len(out) == len(entries), "an entry was stored twice"
    return out


@st.composite
def json_entries(draw: st.DrawFn) -> list[dict[str, Any]]:
    size = draw(st.integers(1, 12))
    return [
        {
            "__CURSOR": f"s=p;i={i}",
            "__REALTIME_TIMESTAMP": str(1_764_000_000_000_000 + i),
            "_BOOT_ID": BOOT,
            **draw(st.dictionaries(names, json_values, max_size=8)),
        }
        for i in range(size)
    ]


def splits(items: int) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, items), max_size=4).map(lambda cuts: sorted({0, items, *cuts}))


class TestJsonIngestProperties:
    @FEW
    @given(data=st.data(), entries=json_entries())
    def test_stored_once_whatever_the_split_and_resends(
        self, url: str, data: st.DataObject, entries: list[dict[str, Any]]
    ) -> None:
        name, auth = enroll_next(url)
        cuts = data.draw(splits(len(entries)))
        batches = [entries[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
        resends = data.draw(st.lists(st.sampled_from(batches), max_size=3))
        for batch in [*batches, *resends]:
            response = httpx.post(f"{url}/vm/{name}/boot", json=batch, headers=auth, timeout=30)
            assert response.status_code == 200, response.text
        assert by_cursor(stored(url, name)) == by_cursor(entries)

    @FEW
    @given(entries=json_entries(), bad_name=invalid_names, where=st.integers(0, 11), value=json_values)
    def test_invalid_field_name_is_refused_naming_the_entry(
        self, url: str, entries: list[dict[str, Any]], bad_name: str, where: int, value: Any
    ) -> None:
        name, auth = enroll_next(url)
        where %= len(entries)
        entries[where] = {**entries[where], bad_name: value}
        response = httpx.post(f"{url}/vm/{name}/boot", json=entries, headers=auth, timeout=30)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "bad_entry"
        assert response.json()["message"].startswith(f"entry {where}: invalid field name")
        assert stored(url, name) == []


@st.composite
def raw_entries(draw: st.DrawFn) -> list[dict[str, str | bytes]]:
    # A small pool of names: journal-remote rotates its file when the field hash table fills.
    pool = st.sampled_from(KNOWN) | st.sampled_from([f"F{i}" for i in range(20)])
    size = draw(st.integers(1, 12))
    return [
        {
            "__REALTIME_TIMESTAMP": str(1_764_000_000_000_000 + i),
            "_BOOT_ID": BOOT,
            **draw(st.dictionaries(pool, raw_values, max_size=8)),
        }
        for i in range(size)
    ]


class TestExportIngestProperties:
    @FEW
    @given(data=st.data(), entries=raw_entries())
    def test_stream_stores_what_journalctl_reads(
        self, url: str, data: st.DataObject, entries: list[dict[str, str | bytes]]
    ) -> None:
        # The reference is the real tools: the entries through journal-remote, read back by journalctl.
        with TemporaryDirectory() as tmp:
            journal = write_journal(entries, Path(tmp))
            expected = journal_json(journal)
            body = subprocess.run(
                ["journalctl", f"--file={journal}", "-o", "export", "--no-pager"], check=True, capture_output=True
            ).stdout
        name, auth = enroll_next(url)
        step = data.draw(st.integers(1, max(1, len(body))))
        cut = data.draw(st.integers(0, len(expected)))
        # A stream cut off after some entries, then the whole of it again, as journal-upload resends.
        for payload in (_first_entries(body, cut), body):
            if not payload:
                continue
            chunks = [payload[i : i + step] for i in range(0, len(payload), step)]
            response = httpx.post(f"{url}/vm/{name}/boot", content=iter(chunks), headers=EXPORT | auth, timeout=30)
            assert response.status_code == 200, response.text
        assert by_cursor(stored(url, name)) == by_cursor(expected)


def _first_entries(body: bytes, n: int) -> bytes:
    """The first ``n`` entries of an export body (journalctl writes the cursor first in each)."""
    starts = [0] + [i + 2 for i in range(len(body)) if body.startswith(b"\n\n__CURSOR=", i)]
    return body[: starts[n]] if n < len(starts) else body
