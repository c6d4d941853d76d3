"""Compressed uploads (zstd, xz, lz4, gzip) on both ingest routes, as systemd-journal-upload 258 sends them."""

from __future__ import annotations

import gzip
import json
import lzma
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import lz4.frame
import pytest
from support.api import bearer, enroll
from support.journal_files import JOURNAL_REMOTE, sample_entries, write_journal
from support.service import Service

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

EXPORT = {"Content-Type": "application/vnd.fdo.journal"}

COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "zstd": zstd.compress,
    "xz": lambda data: lzma.compress(data, format=lzma.FORMAT_XZ),
    "lz4": lz4.frame.compress,
    "gzip": gzip.compress,
}


def export_of(path: Path) -> bytes:
    return subprocess.run(
        ["journalctl", f"--file={path}", "-o", "export", "--all"], capture_output=True, check=True
    ).stdout


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.fixture
def journal(tmp_path: Path, journal_tools: None) -> Path:
    assert JOURNAL_REMOTE
    return write_journal(sample_entries(600), tmp_path / "j")


async def count(service: Service, name: str) -> int:
    info = (await service.client.get(f"/vm/{name}")).json()
    value: int = info["event_count"]
    return value


class TestCompressedUploads:
    @pytest.mark.parametrize("encoding", list(COMPRESS))
    async def test_export_stored_once_on_both_routes(self, service: Service, journal: Path, encoding: str) -> None:
        token = await enroll(service.client, "c1")
        body = COMPRESS[encoding](export_of(journal))
        headers = EXPORT | {"Content-Encoding": encoding}
        first = await service.client.post(f"/ingest/{token}/upload", content=_chunks(body, 4096), headers=headers)
        assert first.status_code == 200, first.text
        assert first.json() == {"received": 600, "stored": 600, "duplicates": 0}
        assert set(first.headers["accept-encoding"].split(", ")) == {"zstd", "xz", "lz4", "gzip"}
        again = await service.client.post("/vm/c1/boot", content=body, headers=headers | bearer(token))
        assert again.json() == {"received": 600, "stored": 0, "duplicates": 600}
        assert "zstd" in again.headers["accept-encoding"]
        assert await count(service, "c1") == 600

    @pytest.mark.parametrize("encoding", ["zstd", "xz", "lz4"])
    async def test_json_batch(self, service: Service, encoding: str) -> None:
        token = await enroll(service.client, "c2")
        batch = [
            {"__CURSOR": f"s=z;i={i}", "__REALTIME_TIMESTAMP": str(1_764_000_000_000_000 + i), "MESSAGE": f"m{i}"}
            for i in range(50)
        ]
        body = COMPRESS[encoding](json.dumps(batch).encode())
        # Two frames one after another, as a streaming compressor may write them.
        body += COMPRESS[encoding](b" ")
        response = await service.client.post(
            "/vm/c2/boot", content=body, headers=bearer(token) | {"Content-Encoding": encoding}
        )
        assert response.json() == {"received": 50, "stored": 50, "duplicates": 0}, response.text

    @pytest.mark.parametrize("encoding", list(COMPRESS))
    async def test_bomb_is_cut_off(self, service_factory: Callable[..., Any], encoding: str) -> None:
        async with service_factory(max_body_bytes=100_000) as svc:
            token = await enroll(svc.client, "c3")
            bomb = COMPRESS[encoding](b"[" + b" " * 20_000_000 + b"]")
            assert len(bomb) < 100_000
            response = await svc.client.post(
                "/vm/c3/boot", content=bomb, headers=bearer(token) | {"Content-Encoding": encoding}
            )
            assert response.status_code == 413, response.text
            assert "inflates past the limit" in response.json()["message"]
            # An export stream has no cap on the whole, but one entry may not pass the limit either.
            response = await svc.client.post(
                f"/ingest/{token}/upload",
                content=COMPRESS[encoding](b"MESSAGE=" + b"x" * 20_000_000 + b"\n\n"),
                headers=EXPORT | {"Content-Encoding": encoding},
            )
            assert response.status_code in (200, 413), response.text
            assert await count(svc, "c3") == 0

    @pytest.mark.parametrize("encoding", ["zstd", "xz", "lz4"])
    async def test_corrupt_and_truncated(self, service: Service, encoding: str) -> None:
        token = await enroll(service.client, "c4")
        headers = bearer(token) | {"Content-Encoding": encoding}
        bad = await service.client.post("/vm/c4/boot", content=b"not compressed at all", headers=headers)
        assert (bad.status_code, bad.json()["error"]) == (400, f"bad_{encoding}"), bad.text
        whole = COMPRESS[encoding](json.dumps([{"__CURSOR": "a", "MESSAGE": "x" * 5000}]).encode())
        cut = await service.client.post("/vm/c4/boot", content=whole[: len(whole) // 2], headers=headers)
        assert (cut.status_code, cut.json()["error"]) == (400, f"bad_{encoding}"), cut.text
        assert await count(service, "c4") == 0

    @pytest.mark.parametrize("encoding", list(COMPRESS))
    async def test_a_truncated_export_stream_is_refused(self, service: Service, encoding: str) -> None:
        token = await enroll(service.client, "c6")
        whole = COMPRESS[encoding](b"".join(b"MESSAGE=%d %s\n\n" % (i, b"x" * 500) for i in range(200)))
        cut = await service.client.post(
            f"/ingest/{token}/upload", content=whole[: len(whole) // 2], headers=EXPORT | {"Content-Encoding": encoding}
        )
        assert (cut.status_code, cut.json()["error"]) == (400, f"bad_{encoding}"), cut.text
        assert f"the {encoding} body is truncated" in cut.json()["message"]

    async def test_unknown_encoding_names_the_supported_ones(self, service: Service) -> None:
        token = await enroll(service.client, "c5")
        response = await service.client.post(
            "/vm/c5/boot", content=b"[]", headers=bearer(token) | {"Content-Encoding": "br"}
        )
        assert response.status_code == 415
        assert "zstd" in response.json()["message"] and "zstd" in response.headers["accept-encoding"]
