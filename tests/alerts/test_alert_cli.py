"""``vmjournal alert create|list|show|delete`` as a user runs it, against the service as its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
from support.alerts import entry
from support.api import bearer
from support.receiver import Receiver
from support.service import LiveService

VMJOURNAL = Path(sys.executable).parent / "vmjournal"


def cli(svc: LiveService, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMJOURNAL_")} | {"VMJOURNAL_URL": svc.url}
    return subprocess.run([str(VMJOURNAL), "alert", *args], env=env, capture_output=True, text=True, timeout=60)


class TestAlertCommands:
    def test_create_list_show_delete(self, live_service: Callable[..., LiveService]) -> None:
        svc = live_service(VMJOURNAL_ALERT_TICK_SECONDS="0.3")
        token = httpx.post(f"{svc.url}/vm/web-1/small", params={"provider": "external"}).json()["token"]
        with Receiver() as hook:
            created = cli(
                svc,
                "create",
                "nginx-errs",
                "--webhook",
                hook.url,
                "--vm",
                "web-*",
                "-u",
                "nginx",
                "-p",
                "err",
                "-m",
                "_TRANSPORT=stdout",
                "--threshold",
                "1",
                "--window",
                "30",
            )
            assert created.returncode == 0, created.stderr
            secret = created.stdout.rsplit(": ", 1)[1].strip()
            response = httpx.post(
                f"{svc.url}/vm/web-1/boot", headers=bearer(token), json=[entry("upstream down", _TRANSPORT="stdout")]
            )
            assert response.status_code == 200
            [got] = hook.wait_for_sync(1)
        assert got.signed_with(secret)

        listed = cli(svc, "list")
        assert listed.returncode == 0
        header, row = listed.stdout.splitlines()
        assert header.split() == ["NAME", "STATUS", "VM", "FILTERS", "THRESHOLD", "FIRING_ON"]
        assert row.split()[:3] == ["nginx-errs", "firing", "web-*"] and row.split()[-1] == "web-1"
        assert "unit=nginx" in row and "_TRANSPORT=stdout" in row and secret not in listed.stdout

        shown = cli(svc, "show", "nginx-errs")
        assert shown.returncode == 0
        assert "status: firing" in shown.stdout and "vm web-1: firing, 1 matches, 1 firings" in shown.stdout
        assert "firing   web-1  count=1  delivered after 1 attempt(s)" in shown.stdout
        as_json = json.loads(cli(svc, "show", "nginx-errs", "--json").stdout)
        assert as_json["events"][0]["payload"]["alert"] == "nginx-errs" and secret not in json.dumps(as_json)

        assert cli(svc, "delete", "nginx-errs").returncode == 0
        missing = cli(svc, "show", "nginx-errs")
        assert missing.returncode == 3 and "no alert named 'nginx-errs'" in missing.stderr

    def test_bad_input_is_reported(self, live_service: Callable[..., LiveService]) -> None:
        svc = live_service()
        bad = cli(svc, "create", "x", "--webhook", "http://127.0.0.1:9/", "--grep", "([")
        assert bad.returncode == 1 and "invalid grep pattern" in bad.stderr
