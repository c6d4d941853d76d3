"""The CLI starts without the service: importing it loads neither FastAPI nor the database stack,
nor the HTTP client, which only commands that talk to the service need."""

from __future__ import annotations

import json
import subprocess
import sys

from vmjournal.cli.logs import parse_time

SERVICE_MODULES = ("fastapi", "starlette", "sqlalchemy", "uvicorn", "vmjournal.main", "vmjournal.errors")


class TestImport:
    def test_importing_the_cli_loads_no_service_module(self) -> None:
        # A fresh interpreter: this test process has the service loaded already.
        probe = "import json, sys, vmjournal.cli; print(json.dumps(sorted(sys.modules)))"
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=60, check=True)
        loaded = set(json.loads(done.stdout))
        assert "vmjournal.cli.logs" in loaded
        assert [m for m in SERVICE_MODULES if m in loaded] == []
        # --help and shell completion (the CLI run on every TAB) should not pay for httpx.
        assert "httpx" not in loaded


class TestParseTime:
    def test_a_form_it_reads_goes_out_as_utc(self) -> None:
        assert parse_time("@0") == "1970-01-01T00:00:00Z"

    def test_a_form_it_cannot_read_goes_to_the_service_as_given(self) -> None:
        # The service's own parser answers it with a message saying which forms it takes.
        assert parse_time("next tuesday-ish") == "next tuesday-ish"
