"""One QEMU process per VM: its files, its command line, starting, finding and stopping it.

Each VM lives in ``<data_dir>/vms/<resource name>/``: ``disk.qcow2`` (overlay of the base image),
``config.img`` (the config drive, removed once the agent is installed: it holds the token),
``console.log`` (serial console), ``qemu.log`` (QEMU's own messages), ``qemu.pid`` and
``machine.json`` (the launch parameters, so a restarted service can start the same guest again).

QEMU runs in its own session, not tied to the service: guests survive a service restart, and the
provider finds them again by pidfile plus a check of ``/proc/<pid>/cmdline``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from vmjournal.providers.base import ProviderError
from vmjournal.providers.qemu.accel import QEMU
from vmjournal.providers.qemu.image import BaseImage

log = logging.getLogger(__name__)

# The guest reaches the service at this address only (user-mode network with restrict=on).
GUEST_FWD_ADDR = "10.0.2.100"
GUEST_FWD_PORT = 8080
GUEST_ADDR = "10.0.2.15"
RELAY = Path(__file__).with_name("relay.py")
# Keeps guests apart from anything else that runs QEMU on the host.
NAME_PREFIX = "vmjournal-"


@dataclass(frozen=True)
class MachineConfig:
    vcpus: int
    memory_mib: int
    accel: str
    disk_format: str
    base_disk: str
    kernel: str | None
    initrd: str | None
    append: str
    service_host: str
    service_port: int


class Machine:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.disk = directory / "disk.qcow2"
        self.config_drive = directory / "config.img"
        self.console_log = directory / "console.log"
        self.qemu_log = directory / "qemu.log"
        self.pidfile = directory / "qemu.pid"
        self.exit_file = directory / "exit.json"
        self.config_file = directory / "machine.json"

    @property
    def name(self) -> str:
        return NAME_PREFIX + self.dir.name

    def load_config(self) -> MachineConfig | None:
        try:
            return MachineConfig(**json.loads(self.config_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def save_config(self, config: MachineConfig) -> None:
        tmp = self.config_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(config), indent=2) + "\n")
        os.replace(tmp, self.config_file)

    async def create_disk(self, base: BaseImage) -> None:
        if self.disk.exists():
            return
        tmp = self.disk.with_suffix(".tmp")
        proc = await asyncio.create_subprocess_exec(
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            str(base.disk.resolve()),
            "-F",
            base.disk_format,
            str(tmp),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise ProviderError("QemuDiskFailed", f"qemu-img create failed: {out.decode(errors='replace').strip()}")
        os.replace(tmp, self.disk)

    def argv(self, config: MachineConfig) -> list[str]:
        relay = " ".join(shlex.quote(a) for a in (sys.executable, "-I", "-S", str(RELAY)))
        relay += f" {shlex.quote(config.service_host)} {config.service_port}"
        fwd = f"tcp:{GUEST_FWD_ADDR}:{GUEST_FWD_PORT}-cmd:{relay}"
        argv = [
            QEMU,
            "-name",
            f"{_opt(self.name)},process={_opt(self.name)}",
            # Not q35: there a guest's reboot under TCG with -kernel hangs after the reset (measured).
            "-machine",
            "pc",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-smp",
            str(config.vcpus),
            "-m",
            str(config.memory_mib),
        ]
        if config.accel == "kvm":
            argv += ["-accel", "kvm", "-cpu", "host"]
        else:
            # TCG's translation cache defaults to 1 GiB; a small guest needs far less.
            argv += ["-accel", "tcg,tb-size=256"]
        if config.kernel:
            argv += ["-kernel", config.kernel, "-append", config.append]
            if config.initrd:
                argv += ["-initrd", config.initrd]
        argv += ["-drive", f"file={_opt(str(self.disk))},if=virtio,format=qcow2,discard=unmap"]
        if self.config_drive.exists():
            argv += ["-drive", f"file={_opt(str(self.config_drive))},if=virtio,format=raw,readonly=on"]
        argv += [
            "-netdev",
            f"user,id=net0,restrict=on,guestfwd={_opt(fwd)}",
            "-device",
            "virtio-net-pci,netdev=net0",
            "-device",
            "virtio-rng-pci",
            "-chardev",
            f"file,id=console,path={_opt(str(self.console_log))},append=on",
            "-serial",
            "chardev:console",
            "-pidfile",
            str(self.pidfile),
        ]
        return argv

    async def start(self, config: MachineConfig) -> int:
        """Start QEMU; returns its pid once it has written its pidfile (command line parsed, files open)."""
        self.exit_file.unlink(missing_ok=True)
        self.pidfile.unlink(missing_ok=True)
        with self.qemu_log.open("ab") as qlog:
            qlog.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} starting QEMU\n".encode())
            qlog.flush()
            # Not asyncio's subprocess: its transport kills the child when the event loop closes, and
            # guests must outlive the service. A thread reaps QEMU while this service is its parent.
            proc = subprocess.Popen(
                self.argv(config),
                stdin=subprocess.DEVNULL,
                stdout=qlog,
                stderr=qlog,
                start_new_session=True,
                cwd=self.dir,
            )
        threading.Thread(target=self._wait_exit, args=(proc,), daemon=True, name=f"reap-{self.name}").start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                await asyncio.sleep(0.1)  # let the reaper record the status
                raise ProviderError("QemuStartFailed", f"QEMU exited at start: {self.exit_reason()}")
            if self.pid() == proc.pid:
                return proc.pid
            await asyncio.sleep(0.1)
        raise ProviderError("QemuStartFailed", "QEMU did not write its pidfile within 30 s")

    def _wait_exit(self, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        try:
            self.exit_file.write_text(json.dumps({"returncode": code, "at": time.time()}) + "\n")
        except OSError:
            pass  # the VM directory is gone: it was deleted

    def pid(self) -> int | None:
        """The pid of this VM's QEMU if it runs (a pid reused by another program does not count)."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if is_our_qemu(pid, self.pidfile) else None

    def exit_reason(self) -> str:
        """Why QEMU is not running, as well as we can tell (exit status, its last message)."""
        parts: list[str] = []
        try:
            code = json.loads(self.exit_file.read_text())["returncode"]
            parts.append(f"QEMU exited with status {code}" if code >= 0 else f"QEMU was killed by signal {-code}")
        except (OSError, ValueError, KeyError):
            parts.append("QEMU is not running")
        try:
            lines = [ln for ln in self.qemu_log.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            lines = []
        if lines and not lines[-1].startswith("---"):
            parts.append(lines[-1].strip())
        return ": ".join(parts)

    def console_text(self) -> str:
        try:
            return self.console_log.read_text(errors="replace")
        except OSError:
            return ""

    async def stop(self, timeout: float = 10.0) -> None:
        pid = self.pid()
        if pid is not None:
            await terminate(pid, self.pidfile, timeout)


def _opt(value: str) -> str:
    """Escape a value inside a QEMU option list, where a comma separates options."""
    return value.replace(",", ",,")


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # A zombie has exited; its parent just has not reaped it yet.
            if f.read().rsplit(b")", 1)[-1].split()[0] == b"Z":
                return []
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except (OSError, IndexError):
        return []


def is_our_qemu(pid: int, pidfile: Path) -> bool:
    argv = _cmdline(pid)
    return bool(argv) and "-pidfile" in argv and str(pidfile) in argv


def find_qemu_processes(vms_root: Path) -> dict[int, Path]:
    """Every live QEMU whose VM directory is under ``vms_root``: pid -> that directory."""
    found: dict[int, Path] = {}
    prefix = str(vms_root) + os.sep
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        argv = _cmdline(int(entry))
        if "-pidfile" not in argv or not argv[0].endswith(QEMU):
            continue
        i = argv.index("-pidfile")
        if i + 1 < len(argv) and argv[i + 1].startswith(prefix):
            found[int(entry)] = Path(argv[i + 1]).parent
    return found


async def terminate(pid: int, pidfile: Path, timeout: float = 10.0) -> None:
    """SIGTERM (QEMU exits at once, the guest just stops), then SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not is_our_qemu(pid, pidfile):
                return
            await asyncio.sleep(0.1)
    log.warning("QEMU pid %d did not exit after SIGKILL", pid)
