"""The whole path on a real guest: create through the API, QEMU boots Debian, the first-boot unit
installs the agent from the config drive, the journal arrives, the guest reboots, delete.

Runs under TCG when KVM does not work, so it works on every CI machine; slow by nature (minutes).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.api import wait_for_status
from support.qemu import build_session_image

from vmjournal.providers.qemu import guest
from vmjournal.providers.qemu.machine import find_qemu_processes, terminate
from vmjournal.providers.qemu.provider import guest_hostname

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

# Runs once in the guest after the agent is installed: wait until the agent has had a batch
# acknowledged, log a marker, and reboot cleanly. The marker is written moments before the reboot,
# so it reaches the service only if the agent resumes from its saved cursor in the next boot.
AFTER_INSTALL = """
i=0
until grep -q '^LAST_CURSOR=' /var/lib/vmjournal-agent/state 2>/dev/null || [ "$i" -ge 600 ]; do
    sleep 1; i=$((i + 1))
done
echo "vmjournal-e2e: rebooting now" | systemd-cat -t vmjournal-e2e
systemctl reboot
"""
VM = "e2e-guest"


async def events(client: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every event of a /boot query, following the pages."""
    found: list[dict[str, Any]] = []
    query: dict[str, Any] = {"limit": 1000, **params}
    while True:
        response = await client.get(path, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        found += page["events"]
        if not page["next"]:
            return found
        query["cursor"] = page["next"]


async def wait_for(
    client: httpx.AsyncClient,
    path: str,
    check: Callable[[list[dict[str, Any]]], bool],
    timeout: float,
    **params: Any,
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        found = await events(client, path, **params)
        if check(found):
            return found
        await asyncio.sleep(1)
    raise AssertionError(f"{path} {params}: condition not met in {timeout}s; {len(found)} events")


def messages(found: list[dict[str, Any]]) -> list[str]:
    return [e.get("message") or "" for e in found]


def seqnum(event: dict[str, Any]) -> tuple[str, int]:
    """(sequence number id, sequence number) from the cursor (systemd 252's JSON has no __SEQNUM)."""
    fields = dict(part.split("=", 1) for part in event["cursor"].split(";"))
    return fields["s"], int(fields["i"], 16)


def qemu_running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except OSError:
        return False


@pytest.fixture
async def no_leftover_guests(tmp_path: Path) -> AsyncIterator[None]:
    """Whatever the test's outcome, no QEMU of this test outlives it (the service leaves guests running)."""
    yield
    vms = tmp_path / "data" / "vms"
    leftovers = find_qemu_processes(vms)
    for pid, directory in leftovers.items():
        await terminate(pid, directory / "qemu.pid")


@pytest.mark.usefixtures("no_leftover_guests")
async def test_qemu_vm_end_to_end(live_service: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory) -> None:
    images, _ = await build_session_image(tmp_path_factory)
    env = {
        "VMJOURNAL_PROVIDER": "qemu",
        "VMJOURNAL_QEMU_IMAGES_DIR": str(images),
        "VMJOURNAL_QEMU_AFTER_INSTALL": AFTER_INSTALL,
        "VMJOURNAL_QEMU_BOOT_TIMEOUT_SECONDS": "600",
    }
    svc = live_service(**env)
    async with httpx.AsyncClient(base_url=svc.url, timeout=30) as client:
        created = await client.post(f"/vm/{VM}/small")
        assert created.status_code == 202, created.text
        assert created.json()["provider"] == "qemu"

        vm = await wait_for_status(client, VM, {"running", "failed"}, timeout=900)
        assert vm["status"] == "running", vm
        console_log = Path(vm["details"]["console_log"])
        pid = int(vm["details"]["pid"])
        vm_dir = console_log.parent
        assert qemu_running(pid)
        assert guest.MARKER_OK in console_log.read_text(errors="replace")
        assert not (vm_dir / "config.img").exists(), "the config drive (it holds the token) must be gone"

        journald = await wait_for(client, f"/vm/{VM}/boot/systemd-journald", lambda ev: len(ev) > 0, 300)
        assert all(
            e["unit"] == "systemd-journald.service" or e.get("UNIT") == "systemd-journald.service" for e in journald
        )
        firstboot = await wait_for(
            client, f"/vm/{VM}/boot/vmjournal-firstboot", lambda ev: guest.JOURNAL_MARKER in messages(ev), 300
        )
        assert any(e.get("_SYSTEMD_UNIT") == "vmjournal-firstboot.service" for e in firstboot)

        # The after-install commands reboot the guest once; wait for events of the second boot.
        deadline = time.monotonic() + 600
        boots: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            boots = (await client.get(f"/vm/{VM}/boots")).json()
            if len(boots) >= 2:
                break
            await asyncio.sleep(2)
        assert len(boots) == 2, boots
        first, second = sorted(boots, key=lambda b: b["index"])
        await wait_for(client, f"/vm/{VM}/boot/systemd-journald", lambda ev: len(ev) > 0, 300, boot=second["boot_id"])

        everything = await events(client, f"/vm/{VM}/boot")
        cursors = [e["cursor"] for e in everything]
        assert len(cursors) == len(set(cursors)), "an entry was stored twice"
        by_boot = {b["boot_id"]: [e for e in everything if e["boot_id"] == b["boot_id"]] for b in (first, second)}
        assert all(by_boot.values())
        # The VM's name is the hostname from the first entry on (the image's own name never shows).
        assert {e.get("_HOSTNAME") for e in by_boot[first["boot_id"]]} == {guest_hostname(VM)}
        # Logged just before the reboot: it arrived only because the agent resumed from its cursor.
        agent_log = [
            f"{e['boot_id'][:8]} {e['message']}"
            for e in everything
            if e.get("_SYSTEMD_UNIT") == "vmjournal-agent.service"
        ]
        for b, evs in by_boot.items():
            nums = sorted(seqnum(e)[1] for e in evs)
            agent_log.append(
                f"boot {b[:8]}: {len(evs)} entries, seqnum {hex(nums[0])}..{hex(nums[-1])}, "
                f"ids {sorted({seqnum(e)[0][:8] for e in evs})}"
            )
        assert "vmjournal-e2e: rebooting now" in messages(by_boot[first["boot_id"]]), "\n".join(agent_log)
        # Nothing lost: within one journal file the sequence numbers of what we stored have no gaps.
        seqnums: dict[str, list[int]] = {}
        for e in everything:
            seqnum_id, number = seqnum(e)
            seqnums.setdefault(seqnum_id, []).append(number)
        for numbers in seqnums.values():
            numbers.sort()
            assert numbers == list(range(numbers[0], numbers[-1] + 1)), "a gap in the journal sequence"

    # The host goes down: service and guest die together. The restarted service starts the guest
    # again (a third boot) and its journal keeps flowing.
    svc.kill()
    assert qemu_running(pid), "a service crash must not take its guests down"
    os.kill(pid, signal.SIGKILL)
    while qemu_running(pid):
        await asyncio.sleep(0.1)
    svc = live_service(VMJOURNAL_PORT=str(svc.port), **env)
    async with httpx.AsyncClient(base_url=svc.url, timeout=30) as client:
        deadline = time.monotonic() + 120
        vm = (await client.get(f"/vm/{VM}")).json()
        while vm["details"].get("pid") == str(pid) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            vm = (await client.get(f"/vm/{VM}")).json()
        assert vm["status"] == "running", vm
        assert "restarted_after" in vm["details"]
        pid = int(vm["details"]["pid"])
        assert qemu_running(pid)
        deadline = time.monotonic() + 600
        while len(boots := (await client.get(f"/vm/{VM}/boots")).json()) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(2)
        assert len(boots) == 3, boots
        third = max(boots, key=lambda b: b["index"])
        await wait_for(client, f"/vm/{VM}/boot/systemd-journald", lambda ev: len(ev) > 0, 300, boot=third["boot_id"])
        everything = await events(client, f"/vm/{VM}/boot")
        assert len({e["cursor"] for e in everything}) == len(everything), "an entry was stored twice"

        deleted = await client.delete(f"/vm/{VM}")
        assert deleted.status_code == 202, deleted.text
        deadline = time.monotonic() + 120
        while (await client.get(f"/vm/{VM}")).status_code != 404 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        listed = (await client.get("/vm", params={"include_deleted": True})).json()["vms"]
        assert [v["status"] for v in listed if v["name"] == VM] == ["deleted"]
        assert not qemu_running(pid)
        assert not vm_dir.exists()
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _is_qemu_of(int(p), vm_dir)]


def _is_qemu_of(pid: int, vm_dir: Path) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return str(vm_dir).encode() in f.read()
    except OSError:
        return False
