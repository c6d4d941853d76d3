"""Pick the accelerator: KVM when a guest really runs under it, otherwise TCG (software emulation).

``/dev/kvm`` existing proves little: on some hosts (nested virtualisation) KVM guests hang or abort.
Measured here: a bare boot sector runs fine under KVM, but the Linux kernel then hangs in its
real-mode setup. So the probe boots in two stages, each with a timeout: a 512-byte boot sector
that writes to the serial port and exits QEMU through ``isa-debug-exit`` (cheap, catches a KVM that
aborts), then the guest's own kernel without a root disk, which must reach its "Kernel panic"
and reboot (``panic=-1 -no-reboot`` makes QEMU exit). Only a clean pass of both selects KVM.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

QEMU = "qemu-system-x86_64"
# 16-bit real mode: out 0x3f8 'K'; out 0xf4 0x31 (isa-debug-exit: QEMU exits with (0x31 << 1) | 1); hlt.
_BOOT_CODE = bytes.fromhex("b04bbaf803eeb031baf400eef4ebfd")
PROBE_EXIT_CODE = (0x31 << 1) | 1

_cache: dict[str, str] = {}


def probe_sector() -> bytes:
    return _BOOT_CODE.ljust(510, b"\0") + b"\x55\xaa"


async def _run_probe(argv: list[str], timeout: float, accel: str) -> tuple[int | None, str, str]:
    proc = await asyncio.create_subprocess_exec(
        QEMU,
        "-accel",
        accel,
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-serial",
        "stdio",
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None, "", ""
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def kvm_works(kernel: Path | None, timeout: float = 10.0, accel: str = "kvm") -> tuple[bool, str]:
    """Boot the probes under KVM; (works, why not). Without a kernel only the boot sector is tried.

    ``accel`` exists for the tests, which check that the probes pass where emulation works (TCG).
    """
    if accel == "kvm" and not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is missing or not accessible"
    with tempfile.TemporaryDirectory(prefix="vmjournal-kvm-probe-") as tmp:
        disk = Path(tmp) / "probe.img"
        disk.write_bytes(probe_sector())
        code, out, err = await _run_probe(
            [
                "-m",
                "16",
                "-drive",
                f"file={disk},format=raw,if=ide",
                "-device",
                "isa-debug-exit,iobase=0xf4,iosize=0x04",
            ],
            timeout,
            accel,
        )
    if code is None:
        return False, f"a {accel} guest did not finish a trivial boot within {timeout:.0f} s"
    if code != PROBE_EXIT_CODE or "K" not in out:
        detail = err.strip().splitlines()[-1:] or [f"exit {code}"]
        return False, f"a {accel} guest failed a trivial boot: " + detail[0]
    if kernel is None:
        return True, ""
    code, out, err = await _run_probe(
        [
            "-m",
            "256",
            "-no-reboot",
            "-kernel",
            str(kernel),
            "-append",
            "console=ttyS0 panic=-1 root=/dev/vmjournal-probe-none",
        ],
        timeout,
        accel,
    )
    if code is None:
        return False, f"the guest kernel did not boot under {accel} within {timeout:.0f} s"
    if "Kernel panic" not in out:
        detail = err.strip().splitlines()[-1:] or [f"exit {code}"]
        return False, f"the guest kernel failed under {accel}: " + detail[0]
    return True, ""


async def choose_accel(setting: str, kernel: Path | None = None) -> str:
    """``kvm`` or ``tcg`` for the ``VMJOURNAL_QEMU_ACCEL`` setting (``auto`` probes once per process)."""
    if setting in ("kvm", "tcg"):
        return setting
    if "auto" not in _cache:
        works, why = await kvm_works(kernel)
        _cache["auto"] = "kvm" if works else "tcg"
        if works:
            log.info("QEMU acceleration: KVM")
        else:
            log.info("QEMU acceleration: TCG (software emulation), because %s", why)
    return _cache["auto"]
