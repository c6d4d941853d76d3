"""``QemuProvider``: local VMs under QEMU, the default when no Azure subscription is configured.

Provisioning, with a checkpoint before each long wait so a restarted service resumes it:
base image (built once) -> overlay disk -> config drive with a fresh token -> QEMU -> wait until
the first-boot unit reports on the serial console that the agent is installed -> remove the
config drive (the token must not stay on the host's disk).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from vmjournal.agent_bundle import render_bootstrap_script
from vmjournal.config import Settings
from vmjournal.net import hostname_label
from vmjournal.providers.base import AgentConfig, JobContext, ProviderError, ProviderKind, ProviderVM, VMSpec
from vmjournal.providers.qemu import guest
from vmjournal.providers.qemu.accel import QEMU, choose_accel
from vmjournal.providers.qemu.image import ensure_base_image, require_tools
from vmjournal.providers.qemu.machine import (
    GUEST_ADDR,
    GUEST_FWD_ADDR,
    GUEST_FWD_PORT,
    Machine,
    MachineConfig,
    find_qemu_processes,
    terminate,
)

log = logging.getLogger(__name__)

CONFIG_DRIVE_SIZE = "2M"


class QemuProvider:
    name = ProviderKind.qemu

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.qemu = settings.qemu
        self.vms_root = settings.data_dir / "vms"
        self._swept = False

    def machine(self, spec: VMSpec) -> Machine:
        return Machine(self.vms_root / spec.resource_name)

    async def provision(self, spec: VMSpec, job: JobContext) -> ProviderVM:
        require_tools([QEMU, "qemu-img", "mkfs.ext4"])
        await self.reap_orphans()
        m = self.machine(spec)
        if job.state.get("agent_installed"):
            # Resumed after the guest was already up: just make sure it still runs.
            return await self.inspect(spec, job.state)
        await job.save(step="qemu:image")
        base = await ensure_base_image(self.qemu, self.settings.data_dir)
        m.dir.mkdir(parents=True, exist_ok=True)
        m.dir.chmod(0o700)
        await m.create_disk(base)
        config = m.load_config()
        if config is None:
            vcpus, memory = self.qemu.resources_for(spec.size)
            config = MachineConfig(
                vcpus=vcpus,
                memory_mib=memory,
                accel=await choose_accel(self.qemu.accel, base.kernel),
                disk_format=base.disk_format,
                base_disk=str(base.disk),
                kernel=str(base.kernel) if base.kernel else None,
                initrd=str(base.initrd) if base.initrd else None,
                # The hostname from the kernel command line is set by PID 1 before journald starts,
                # so even the first boot's earliest entries carry the VM's name.
                append=f"{base.append} systemd.hostname={guest_hostname(spec.name)}",
                service_host=self._service_host(),
                service_port=self.settings.port,
            )
            m.save_config(config)
        if m.pid() is None and not m.config_drive.exists():
            # Mint the token only now, right before it goes on the drive. A drive that exists was
            # written completely (atomic rename) with the newest token, so a resumed job reuses it.
            agent = await job.issue_agent_config()
            await write_config_drive(
                m.config_drive, self._guest_agent_config(agent), spec.name, self.qemu.after_install
            )
        if m.pid() is None:
            log.info(
                "starting QEMU for %s (%s, %d vCPU, %d MiB)", spec.name, config.accel, config.vcpus, config.memory_mib
            )
            await m.start(config)
        await job.save(step="qemu:boot", accel=config.accel)
        await self._wait_for_agent(m, spec)
        m.config_drive.unlink(missing_ok=True)
        await job.save(step="qemu:agent", agent_installed=True)
        return self._running(m, config)

    async def _wait_for_agent(self, m: Machine, spec: VMSpec) -> None:
        deadline = time.monotonic() + self.qemu.boot_timeout_seconds
        while True:
            console = m.console_text()
            if guest.MARKER_OK in console:
                return
            failed = _marker_line(console, guest.MARKER_FAILED)
            if failed:
                await m.stop()
                raise ProviderError("QemuBootstrapFailed", f"{failed} (console log: {m.console_log})")
            if m.pid() is None:
                raise ProviderError(
                    "QemuExited", f"{m.exit_reason()}, before the agent was installed (console log: {m.console_log})"
                )
            if time.monotonic() > deadline:
                await m.stop()
                raise ProviderError(
                    "QemuAgentNotReached",
                    f"the guest did not report the agent installed within {self.qemu.boot_timeout_seconds:.0f} s; "
                    f"QEMU was stopped (console log: {m.console_log})",
                )
            await asyncio.sleep(0.5)

    async def deprovision(self, spec: VMSpec, job: JobContext) -> None:
        m = self.machine(spec)
        # First, so that a concurrent inspect no longer restarts this guest (it needs machine.json).
        m.config_file.unlink(missing_ok=True)
        await m.stop()
        await self._stop_all_of(m)
        await asyncio.to_thread(shutil.rmtree, m.dir, True)
        # An inspect that read machine.json just before we removed it may have started QEMU again.
        await self._stop_all_of(m)

    async def _stop_all_of(self, m: Machine) -> None:
        """Any QEMU of this VM, with or without its pidfile (e.g. killed mid-start)."""
        for pid, directory in find_qemu_processes(self.vms_root).items():
            if directory == m.dir:
                await terminate(pid, m.pidfile)

    async def inspect(self, spec: VMSpec, state: Mapping[str, Any]) -> ProviderVM:
        await self.reap_orphans()
        m = self.machine(spec)
        config = m.load_config()
        if not m.dir.exists() or config is None:
            return ProviderVM(state="gone")
        if m.pid() is not None:
            return self._running(m, config)
        reason = m.exit_reason()
        if not state.get("agent_installed"):
            return ProviderVM(
                state="failed",
                details=self._details(m, config),
                error=ProviderError("QemuExited", f"{reason} (console log: {m.console_log})"),
            )
        log.warning("QEMU of %s is not running (%s); starting it again", spec.name, reason)
        try:
            await m.start(config)
        except ProviderError as e:
            return ProviderVM(state="failed", details=self._details(m, config), error=e)
        vm = self._running(m, config)
        vm.details["restarted_after"] = reason
        return vm

    async def aclose(self) -> None:
        # Guests keep running across a service restart on purpose; nothing to release.
        return None

    async def reap_orphans(self) -> None:
        """Stop QEMU processes whose VM directory is gone (deleted while this service was down)."""
        if self._swept:
            return
        self._swept = True
        for pid, directory in find_qemu_processes(self.vms_root).items():
            if not (directory / "machine.json").exists():
                log.warning("stopping orphaned QEMU pid %d of removed VM directory %s", pid, directory)
                await terminate(pid, directory / "qemu.pid")

    def _service_host(self) -> str:
        host = self.settings.host
        try:
            if ipaddress.ip_address(host).is_unspecified:
                return "127.0.0.1"
        except ValueError:
            return "127.0.0.1" if host == "localhost" else host
        return host

    def _guest_agent_config(self, agent: AgentConfig) -> AgentConfig:
        # The guest sees the service only at the guestfwd address, whatever the public URL is.
        return replace(agent, url=f"http://{GUEST_FWD_ADDR}:{GUEST_FWD_PORT}")

    def _details(self, m: Machine, config: MachineConfig) -> dict[str, str]:
        return {
            "console_log": str(m.console_log),
            "qemu_log": str(m.qemu_log),
            "accel": config.accel,
            "vcpus": str(config.vcpus),
            "memory_mib": str(config.memory_mib),
        }

    def _running(self, m: Machine, config: MachineConfig) -> ProviderVM:
        details = self._details(m, config)
        details["pid"] = str(m.pid())
        return ProviderVM(state="running", addresses={"guest": GUEST_ADDR}, details=details)


def _marker_line(text: str, marker: str) -> str | None:
    for line in text.splitlines():
        if marker in line:
            return line[line.index(marker) :].strip()
    return None


def guest_hostname(name: str) -> str:
    return hostname_label(name) or "vmjournal"


async def write_config_drive(path: Path, agent: AgentConfig, name: str, after_install: str = "") -> None:
    """The per-VM config drive: an ext4 image (made without mounting) holding bootstrap.sh."""
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".config-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir(mode=0o700)
        files = {"bootstrap.sh": render_bootstrap_script(agent), "hostname": guest_hostname(name) + "\n"}
        if after_install.strip():
            files["after-install.sh"] = "#!/bin/sh\n" + after_install.strip() + "\n"
        for fname, content in files.items():
            fd = os.open(root / fname, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(content)
        image = Path(tmp) / "config.img"
        proc = await asyncio.create_subprocess_exec(
            "mkfs.ext4",
            "-q",
            "-F",
            "-L",
            guest.CONFIG_LABEL,
            "-d",
            str(root),
            str(image),
            CONFIG_DRIVE_SIZE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise ProviderError("QemuConfigDriveFailed", f"mkfs.ext4 failed: {out.decode(errors='replace').strip()}")
        image.chmod(0o600)
        os.replace(image, path)
