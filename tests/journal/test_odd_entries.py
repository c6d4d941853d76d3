"""Entries with the bytes real journals hold (NUL anywhere, invalid UTF-8, control characters, 100 kB
fields, repeated and very many fields) are stored, and filter as journalctl filters the same journal."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from support.api import bearer, enroll
from support.journal_files import journal_json, odd_entries, write_journal
from support.service import Service

pytestmark = pytest.mark.usefixtures("journal_tools")

EXPORT = {"Content-Type": "application/vnd.fdo.journal"}


@pytest.fixture(scope="module")
def odd_journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The same field repeated: journal-remote keeps both values, journalctl prints a list.
    path = write_journal(odd_entries(), tmp_path_factory.mktemp("odd"))
    return path


def export_of(path: Path) -> bytes:
    return subprocess.run(
        ["journalctl", f"--file={path}", "-o", "export", "--no-pager"], check=True, capture_output=True
    ).stdout


def originals(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["__CURSOR"]: {k: v for k, v in e.items() if not k.islower()} for e in events}


async def cursors(service: Service, path: str, **params: str) -> list[str]:
    response = await service.client.get(path, params={"limit": "1000", **params})
    assert response.status_code == 200, response.text
    return [e["__CURSOR"] for e in response.json()["events"]]


def journalctl_cursors(journal: Path, *args: str) -> list[str]:
    return [e["__CURSOR"] for e in journal_json(journal, *args)]


@pytest.fixture
async def stored(service: Service, odd_journal: Path) -> Service:
    """The odd journal shipped as the agent ships it: ``journalctl -o json`` batches."""
    token = await enroll(service.client, "odd")
    response = await service.client.post("/vm/odd/boot", json=journal_json(odd_journal), headers=bearer(token))
    assert response.status_code == 200, response.text
    return service


class TestEveryEntryStored:
    async def test_json_batch(self, stored: Service, odd_journal: Path) -> None:
        expected = journal_json(odd_journal)
        assert len(expected) == len(odd_entries())
        events = (await stored.client.get("/vm/odd/boot", params={"limit": 1000})).json()["events"]
        assert originals(events) == {e["__CURSOR"]: e for e in expected}
        by_message = {e["message"]: e for e in events}
        assert by_message["nul\ufffdinside foo"]["MESSAGE"] == list(b"nul\x00inside foo")
        assert by_message["caf\ufffd bad utf8 foo"]["MESSAGE"] == list(b"caf\xe9 bad utf8 foo")
        assert by_message["ident nul"]["identifier"] is None
        assert by_message["host nul"]["hostname"] is None
        assert by_message["priority out of range"]["priority"] is None
        assert by_message["priority out of range"]["pid"] is None

    async def test_export_stream(self, service: Service, odd_journal: Path) -> None:
        token = await enroll(service.client, "odd2")
        response = await service.client.post(
            "/vm/odd2/boot", content=export_of(odd_journal), headers=EXPORT | bearer(token)
        )
        assert response.json() == {"received": len(odd_entries()), "stored": len(odd_entries()), "duplicates": 0}
        events = (await service.client.get("/vm/odd2/boot", params={"limit": 1000})).json()["events"]
        assert originals(events) == {e["__CURSOR"]: e for e in journal_json(odd_journal)}

    async def test_nul_in_a_json_string(self, service: Service) -> None:
        # journalctl never prints one (it makes such a value a byte array), but a client may send it.
        token = await enroll(service.client, "odd3")
        entry = {
            "__CURSOR": "c1",
            "__REALTIME_TIMESTAMP": "1764000000000000",
            "MESSAGE": "a\x00b",
            "_SYSTEMD_UNIT": "x\x00.service",
            "SYSLOG_IDENTIFIER": "i\x00",
            "_HOSTNAME": "h\x00",
            "O": "\x00",
        }
        response = await service.client.post("/vm/odd3/boot", json=[entry], headers=bearer(token))
        assert response.json()["stored"] == 1
        event = (await service.client.get("/vm/odd3/boot")).json()["events"][0]
        assert {k: v for k, v in event.items() if not k.islower()} == entry
        assert event["message"] == "a\ufffdb" and event["unit"] is None

    @pytest.mark.parametrize(
        ("entry", "problem"),
        [
            ({"__CURSOR": "c\x00"}, "__CURSOR is not a journal cursor"),
            ({"__CURSOR": "c" * 2000}, "__CURSOR is not a journal cursor"),
            ({"__CURSOR": "c", "lower": "x"}, "invalid field name 'lower'"),
            ({"__CURSOR": "c", "A B": "x"}, "invalid field name 'A B'"),
        ],
    )
    async def test_what_journald_cannot_write_is_refused(
        self, service: Service, entry: dict[str, str], problem: str
    ) -> None:
        token = await enroll(service.client, "odd4")
        response = await service.client.post(
            "/vm/odd4/boot", json=[{"__REALTIME_TIMESTAMP": "1", **entry}], headers=bearer(token)
        )
        assert response.status_code == 400
        assert response.json()["message"].startswith(f"entry 0: {problem}")


class TestFiltersAsJournalctl:
    @pytest.mark.parametrize("unit", ["a.service", "we*", "we?ird.service", "b.service", "b*", "init.scope"])
    async def test_unit(self, stored: Service, odd_journal: Path, unit: str) -> None:
        path = f"/vm/odd/boot/{quote(unit, safe='')}"
        assert await cursors(stored, path) == journalctl_cursors(odd_journal, "-u", unit)

    @pytest.mark.parametrize("pattern", ["foo", "nul.inside", "caf.", "inside", "ctl.char", "^multi", "line foo"])
    async def test_grep(self, stored: Service, odd_journal: Path, pattern: str) -> None:
        assert await cursors(stored, "/vm/odd/boot", grep=pattern) == journalctl_cursors(odd_journal, "-g", pattern)

    @pytest.mark.parametrize("identifier", ["id"])
    async def test_identifier(self, stored: Service, odd_journal: Path, identifier: str) -> None:
        assert await cursors(stored, "/vm/odd/boot", identifier=identifier) == journalctl_cursors(
            odd_journal, "-t", identifier
        )

    @pytest.mark.parametrize("priority", ["info", "err"])
    async def test_priority(self, stored: Service, odd_journal: Path, priority: str) -> None:
        assert await cursors(stored, "/vm/odd/boot", priority=priority) == journalctl_cursors(
            odd_journal, "-p", priority
        )


class TestTextAsJournalctl:
    @pytest.mark.parametrize("mode", ["short", "cat"])
    async def test_output(self, stored: Service, odd_journal: Path, mode: str) -> None:
        response = await stored.client.get("/vm/odd/boot", params={"output": mode}, headers={"Accept": "text/plain"})
        expected = subprocess.run(
            ["journalctl", f"--file={odd_journal}", "-o", mode, "--utc", "--no-pager"],
            check=True,
            capture_output=True,
            env={"TZ": "UTC", "SYSTEMD_COLORS": "0"},
        ).stdout
        assert response.content.splitlines() == expected.splitlines()
