"""journalctl's matches, -k, -t, -F, --list-boots and output modes, checked against real journalctl on
the same journal file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from support.api import bearer, enroll
from support.habits import BLOB, CONTROL, cursors_of, journalctl, write_habits
from support.journal_files import journal_json
from support.service import Service

Loaded = tuple[Service, Path]


@pytest.fixture
async def habits(service: Service, tmp_path: Path, journal_tools: None) -> Loaded:
    path = write_habits(tmp_path / "j")
    token = await enroll(service.client, "vm1")
    response = await service.client.post("/vm/vm1/boot", json=journal_json(path), headers=bearer(token))
    assert response.status_code == 200, response.text
    return service, path


def match_query(terms: list[bytes], **extra: str) -> str:
    """A query string with match terms percent-encoded byte for byte."""
    parts = [f"match={quote_from_bytes(t, safe='')}" for t in terms]
    parts += [f"{k}={v}" for k, v in extra.items()]
    return "&".join(parts)


async def ndjson(service: Service, url: str) -> list[dict[str, Any]]:
    response = await service.client.get(url, headers={"Accept": "application/x-ndjson"})
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.content.splitlines()]


def cursors(events: list[dict[str, Any]]) -> list[str]:
    return [e["__CURSOR"] for e in events]


MATCHES: list[list[bytes]] = [
    [b"_SYSTEMD_UNIT=nginx.service"],
    [b"_SYSTEMD_UNIT=nginx.service", b"_SYSTEMD_UNIT=cron.service"],
    [b"_SYSTEMD_UNIT=nginx.service", b"PRIORITY=3"],
    [b"_SYSTEMD_UNIT=nginx.service", b"_SYSTEMD_UNIT=ssh.service", b"PRIORITY=3", b"PRIORITY=4"],
    [b"SYSLOG_IDENTIFIER=multi"],
    [b"PRIORITY=3"],
    [b"_PID=1"],
    [b"_HOSTNAME=vm-test", b"UNIT=ssh.service"],
    [b"_TRANSPORT=kernel"],
    [b"TAG=two"],
    [b"TAG=one", b"TAG=\xff\x01"],
    [b"BLOB=" + BLOB],
    [b"CTL=" + CONTROL.encode()],
    [b"NOTE=first\nsecond\n"],
    [b"_SYSTEMD_USER_UNIT=user-app.service", b"_SYSTEMD_UNIT=cron.service"],
    [b"NOSUCH=x"],
]


class TestMatchesEqualJournalctl:
    @pytest.mark.parametrize("terms", MATCHES, ids=lambda t: " ".join(x.decode(errors="replace") for x in t))
    async def test_match(self, habits: Loaded, terms: list[bytes]) -> None:
        service, path = habits
        expected = cursors_of(path, *terms)
        got = cursors(await ndjson(service, "/vm/vm1/boot?" + match_query(terms)))
        assert got == expected
        if terms != [b"NOSUCH=x"]:
            assert expected, "the journal must hold entries that match"

    async def test_binary_message(self, habits: Loaded) -> None:
        service, path = habits
        binary = [e for e in journal_json(path) if isinstance(e["MESSAGE"], list)]
        assert binary
        term = b"MESSAGE=" + bytes(binary[0]["MESSAGE"])
        got = cursors(await ndjson(service, "/vm/vm1/boot?" + match_query([term])))
        assert got == cursors_of(path, term) == [binary[0]["__CURSOR"]]

    async def test_with_a_unit_and_a_boot(self, habits: Loaded) -> None:
        service, path = habits
        got = await ndjson(service, "/vm/vm1/boot/nginx?" + match_query([b"PRIORITY=3"], boot="-1"))
        assert cursors(got) == cursors(journal_json(path, "-u", "nginx", "-b", "-1", "PRIORITY=3"))

    @pytest.mark.parametrize("term", ["nofield", "lower=x", "1ABC=x", "=x", "A-B=x"])
    async def test_bad_match(self, habits: Loaded, term: str) -> None:
        service, _ = habits
        response = await service.client.get("/vm/vm1/boot", params={"match": term})
        assert response.status_code == 400
        assert response.json()["error"] == "bad_match" and "match" in response.json()["message"]


class TestKernelAndIdentifier:
    @pytest.mark.parametrize(
        ("params", "args"),
        [
            ({"kernel": "true"}, ["-k"]),
            ({"kernel": "true", "boot": "-1"}, ["-k", "-b", "-1"]),
            ({"kernel": "true", "boot": "all"}, ["-k", "-b", "all"]),
            ({"identifier": ["nginx", "cron"]}, ["-t", "nginx", "-t", "cron"]),
            ({"identifier": ["nginx"], "match": "PRIORITY=3"}, ["-t", "nginx", "PRIORITY=3"]),
        ],
    )
    async def test_same_entries(self, habits: Loaded, params: dict[str, Any], args: list[str]) -> None:
        service, path = habits
        expected = cursors(journal_json(path, *args))
        assert expected
        response = await service.client.get("/vm/vm1/boot", params=params, headers={"Accept": "application/x-ndjson"})
        assert cursors([json.loads(line) for line in response.content.splitlines()]) == expected


class TestFieldValues:
    @pytest.mark.parametrize("field", ["_SYSTEMD_UNIT", "PRIORITY", "TAG", "BLOB", "CTL", "NOTE", "_BOOT_ID"])
    async def test_same_values(self, habits: Loaded, field: str) -> None:
        service, path = habits
        expected = journalctl(path, "-F", field)
        text = await service.client.get(f"/vm/vm1/fields/{field}", headers={"Accept": "text/plain"})
        # journalctl lists values in its hash table's order.
        assert sorted(text.content.splitlines()) == sorted(expected.splitlines())
        values = (await service.client.get(f"/vm/vm1/fields/{field}")).json()
        as_bytes = [bytes(v) if isinstance(v, list) else v.encode() for v in values]
        # A value may hold newlines, so each value with its line end is looked for in journalctl's output.
        assert len(as_bytes) == len(set(as_bytes)) and all(v + b"\n" in expected for v in as_bytes)
        assert sum(len(v) + 1 for v in as_bytes) == len(expected)

    async def test_binary_values_are_byte_lists(self, habits: Loaded) -> None:
        service, _ = habits
        assert (await service.client.get("/vm/vm1/fields/BLOB")).json() == [list(BLOB)]
        assert sorted(map(str, (await service.client.get("/vm/vm1/fields/TAG")).json())) == sorted(
            ["one", "two", str(list(b"\xff\x01"))]
        )

    async def test_bad_field(self, habits: Loaded) -> None:
        service, _ = habits
        response = await service.client.get("/vm/vm1/fields/lower")
        assert response.status_code == 400 and response.json()["error"] == "bad_field"


class TestListBoots:
    async def test_short_is_journalctl_list_boots(self, habits: Loaded) -> None:
        service, path = habits
        response = await service.client.get("/vm/vm1/boots", params={"output": "short"})
        assert response.content == journalctl(path, "--list-boots")
        boots = (await service.client.get("/vm/vm1/boots")).json()
        listed = json.loads(journalctl(path, "--list-boots", "-o", "json"))
        assert [(b["offset"], b["boot_id"]) for b in boots] == [(b["index"], b["boot_id"]) for b in listed]


TEXT_MODES = ["short", "short-iso", "short-precise", "short-monotonic", "short-unix", "short-full", "with-unit"]


class TestOutputModesEqualJournalctl:
    @pytest.mark.parametrize("mode", TEXT_MODES)
    @pytest.mark.parametrize("args", [[], ["-u", "nginx"], ["-r", "PRIORITY=3"]])
    async def test_text_byte_for_byte(self, habits: Loaded, mode: str, args: list[str]) -> None:
        service, path = habits
        expected = journalctl(path, "-o", mode, *args)
        # Two boots: journalctl's boot line is part of the output.
        assert b"-- Boot " in expected or args
        url = "/vm/vm1/boot" + ("/nginx" if "-u" in args else "")
        params: dict[str, str] = {"output": mode}
        if "-r" in args:
            params |= {"order": "desc", "match": "PRIORITY=3"}
        response = await service.client.get(url, params=params)
        assert response.content == expected

    async def test_boot_line_only_in_text_modes(self, habits: Loaded) -> None:
        service, path = habits
        for mode in ("cat", "json", "export"):
            assert b"-- Boot" not in journalctl(path, "-o", mode)
            assert b"-- Boot" not in (await service.client.get("/vm/vm1/boot", params={"output": mode})).content
        cat = await service.client.get("/vm/vm1/boot", params={"output": "cat"})
        assert cat.content == journalctl(path, "-o", "cat")

    async def test_verbose(self, habits: Loaded) -> None:
        service, path = habits
        expected = journalctl(path, "-o", "verbose")
        got = (await service.client.get("/vm/vm1/boot", params={"output": "verbose"})).content
        # journalctl orders fields as its file lays them out; each entry's lines are compared as a set.
        assert verbose_entries(got) == verbose_entries(expected)
        assert got.count(b"-- Boot ") == expected.count(b"-- Boot ") == 1

    async def test_json_pretty(self, habits: Loaded) -> None:
        service, path = habits
        expected = journalctl(path, "-o", "json-pretty")
        got = (await service.client.get("/vm/vm1/boot", params={"output": "json-pretty"})).content
        assert pretty_entries(got) == pretty_entries(expected)

    async def test_json_seq(self, habits: Loaded) -> None:
        service, path = habits
        expected = journalctl(path, "-o", "json-seq")
        response = await service.client.get("/vm/vm1/boot", params={"output": "json-seq"})
        assert response.headers["content-type"] == "application/json-seq"
        assert seq_records(response.content) == seq_records(expected)


def verbose_entries(out: bytes) -> list[tuple[bytes, frozenset[bytes]]]:
    """Each entry's header line and its field lines (a continuation line kept with its field)."""
    entries: list[tuple[bytes, list[bytes]]] = []
    for line in out.split(b"\n")[:-1]:
        if line.startswith(b"-- Boot "):
            continue
        if not line.startswith(b" "):
            entries.append((line, []))
        elif line.startswith(b"    ") and not line.startswith(b"     "):
            entries[-1][1].append(line)
        else:
            entries[-1][1][-1] += b"\n" + line
    return [(head, frozenset(fields)) for head, fields in entries]


def pretty_entries(out: bytes) -> list[frozenset[bytes]]:
    """Each object's top-level members, exactly as printed (with their nested lines), in any order."""
    entries: list[list[bytes]] = []
    for line in out.split(b"\n")[:-1]:
        if line == b"{":
            entries.append([])
        elif line.startswith(b'\t"'):
            entries[-1].append(line.rstrip(b","))
        elif line != b"}":
            entries[-1][-1] += b"\n" + line.rstrip(b",")
    return [frozenset(e) for e in entries]


def seq_records(out: bytes) -> list[dict[str, Any]]:
    records = out.split(b"\x1e")
    assert records[0] == b"" and all(r.endswith(b"\n") for r in records[1:])
    return [json.loads(r) for r in records[1:]]
