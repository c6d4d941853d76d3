"""The base image: a Debian tree from debootstrap turned into a disk, a kernel and an initrd.

Built once on first use and cached under ``<data_dir>/images/<suite>-<recipe digest>/``; every VM
boots a copy-on-write overlay of it. Nothing here mounts anything: ``mkfs.ext4 -d`` writes the
tree straight into the disk image. debootstrap needs root (it chroots to configure packages).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vmjournal.config import QemuSettings
from vmjournal.providers.base import ProviderError
from vmjournal.providers.qemu import guest
from vmjournal.providers.qemu.accel import QEMU

log = logging.getLogger(__name__)

DISK_SIZE = "2G"
# Debian package that provides each program we run on the host.
HOST_TOOLS = {
    QEMU: "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "debootstrap": "debootstrap",
    "mkfs.ext4": "e2fsprogs",
}


@dataclass(frozen=True)
class BaseImage:
    """What a VM boots: ``kernel``/``initrd`` may be None for a disk that boots itself."""

    disk: Path
    disk_format: str
    kernel: Path | None
    initrd: Path | None
    append: str


def missing_tools(names: Iterable[str]) -> list[str]:
    """The Debian packages to install for the programs in ``names`` that are not on PATH."""
    return sorted({HOST_TOOLS[n] for n in names if shutil.which(n) is None})


def require_tools(names: Iterable[str]) -> None:
    missing = missing_tools(names)
    if missing:
        raise ProviderError(
            "QemuPrerequisitesMissing",
            "the local QEMU provider needs these Debian packages: "
            + " ".join(missing)
            + " (install them with apt-get, or run the README's `make run`)",
        )


@dataclass(frozen=True)
class AptSource:
    uri: str
    keyring: str | None


def _deb822_stanzas(text: str) -> list[dict[str, str]]:
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if current:
                stanzas.append(current)
            current, key = {}, ""
        elif line[0] in " \t" and key:
            current[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            current[key] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def find_debian_mirror(suite: str, apt_dir: Path = Path("/etc/apt")) -> AptSource:
    """The mirror this machine's apt already uses for ``suite`` (deb822 ``.sources`` or ``sources.list``)."""
    sources_d = apt_dir / "sources.list.d"
    candidates: list[AptSource] = []
    for path in sorted(sources_d.glob("*.sources")) if sources_d.is_dir() else []:
        for st in _deb822_stanzas(path.read_text(errors="replace")):
            if st.get("enabled", "yes").lower() == "no" or "deb" not in st.get("types", "").split():
                continue
            if suite in st.get("suites", "").split():
                keyring = st.get("signed-by")
                if keyring and not keyring.startswith("/"):
                    keyring = None  # an inline key block; debootstrap needs a file
                candidates += [AptSource(u, keyring) for u in st.get("uris", "").split()]
    lists = [apt_dir / "sources.list"]
    lists += sorted(sources_d.glob("*.list")) if sources_d.is_dir() else []
    for path in lists:
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            words = line.split("#", 1)[0].split()
            if len(words) < 3 or words[0] != "deb":
                continue
            keyring = None
            if words[1].startswith("["):
                opts = []
                while words and not words[0].endswith("]"):
                    opts.append(words.pop(0))
                opts.append(words.pop(0))
                for opt in " ".join(opts).strip("[] ").split():
                    if opt.startswith("signed-by="):
                        keyring = opt.split("=", 1)[1]
                words.insert(0, "deb")
            if len(words) >= 3 and words[2] == suite:
                candidates.append(AptSource(words[1], keyring))
    # The security archive carries only updates; debootstrap needs the main archive.
    for source in candidates:
        if "security" not in source.uri:
            return source
    raise ProviderError(
        "QemuNoDebianMirror",
        f"no apt source for Debian {suite!r} found under {apt_dir}; set VMJOURNAL_QEMU_DEBIAN_MIRROR "
        "to a Debian mirror URL, or VMJOURNAL_QEMU_IMAGE/KERNEL/INITRD to your own guest",
    )


def images_dir(settings: QemuSettings, data_dir: Path) -> Path:
    return settings.images_dir or data_dir / "images"


def _built_image(directory: Path) -> BaseImage:
    return BaseImage(
        disk=directory / "disk.raw",
        disk_format="raw",
        kernel=directory / "vmlinuz",
        initrd=directory / "initrd.img",
        append=f"root=LABEL={guest.ROOT_LABEL} rw console=ttyS0",
    )


def user_image(settings: QemuSettings) -> BaseImage | None:
    """The guest the user configured instead of ours, if any."""
    if settings.image is None:
        if settings.kernel or settings.initrd:
            raise ProviderError("QemuBadSettings", "VMJOURNAL_QEMU_KERNEL/INITRD need VMJOURNAL_QEMU_IMAGE too")
        return None
    for path in (settings.image, settings.kernel, settings.initrd):
        if path is not None and not path.is_file():
            raise ProviderError("QemuBadSettings", f"configured guest file {path} does not exist")
    fmt = _probe_format(settings.image)
    return BaseImage(
        disk=settings.image,
        disk_format=fmt,
        kernel=settings.kernel,
        initrd=settings.initrd,
        append=settings.kernel_append or "root=/dev/vda1 rw console=ttyS0",
    )


def _probe_format(path: Path) -> str:
    with path.open("rb") as f:
        return "qcow2" if f.read(4) == b"QFI\xfb" else "raw"


async def ensure_base_image(settings: QemuSettings, data_dir: Path) -> BaseImage:
    """The image to boot; builds (and caches) ours on first use. Two callers never build it twice."""
    own = user_image(settings)
    if own is not None:
        return own
    suite = settings.debian_suite
    directory = images_dir(settings, data_dir) / f"debian-{suite}-{guest.recipe_digest(suite)}"
    if (directory / "manifest.json").is_file():
        return _built_image(directory)
    require_tools(["debootstrap", "mkfs.ext4"])
    if os.geteuid() != 0:
        raise ProviderError(
            "QemuImageNeedsRoot",
            "building the base image runs debootstrap, which needs root; run the service as root once, "
            "or set VMJOURNAL_QEMU_IMAGE/KERNEL/INITRD to your own guest",
        )
    directory.parent.mkdir(parents=True, exist_ok=True)
    lock_path = directory.parent / ".build.lock"
    lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        # Another create (or another service process) may be building: wait for it, then reuse.
        await asyncio.to_thread(fcntl.flock, lock_fd, fcntl.LOCK_EX)
        if not (directory / "manifest.json").is_file():
            await _build(settings, directory)
    finally:
        os.close(lock_fd)
    return _built_image(directory)


async def _run(argv: list[str], *, step: str, env: dict[str, str] | None = None) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    tail: list[str] = []
    async for raw in proc.stdout:
        line = raw.decode(errors="replace").rstrip()
        log.debug("%s: %s", step, line)
        tail = (tail + [line])[-15:]
    if await proc.wait() != 0:
        raise ProviderError("QemuImageBuildFailed", f"{step} failed (exit {proc.returncode}): " + " | ".join(tail))


async def _build(settings: QemuSettings, directory: Path) -> None:
    started = time.monotonic()
    # We hold the lock, so any other build directory is what a killed builder left behind.
    for stale in directory.parent.glob(f".build-{directory.name}-*"):
        await asyncio.to_thread(shutil.rmtree, stale, True)
    work = directory.parent / f".build-{directory.name}-{os.getpid()}"
    work.mkdir()
    tree = work / "rootfs"
    try:
        source = (
            AptSource(settings.debian_mirror, None)
            if settings.debian_mirror
            else find_debian_mirror(settings.debian_suite)
        )
        log.info("base image: debootstrap %s from %s (step 1/3, about a minute)", settings.debian_suite, source.uri)
        argv = ["debootstrap", "--variant=minbase", "--include=" + ",".join(guest.PACKAGES)]
        if source.keyring:
            argv.append("--keyring=" + source.keyring)
        argv += [settings.debian_suite, str(tree), source.uri]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
        await _run(argv, step="debootstrap", env=env)
        log.info(
            "base image: debootstrap done after %.0f s; configuring the guest (step 2/3)", time.monotonic() - started
        )
        await asyncio.to_thread(_customise, tree)
        for unit in guest.ENABLE_UNITS:
            await _run(["systemctl", "--root", str(tree), "enable", unit], step=f"enable {unit}")
        for unit in guest.MASK_UNITS:
            await _run(["systemctl", "--root", str(tree), "mask", unit], step=f"mask {unit}")
        kernels = sorted((tree / "boot").glob("vmlinuz-*"))
        initrds = sorted((tree / "boot").glob("initrd.img-*"))
        if not kernels or not initrds:
            raise ProviderError("QemuImageBuildFailed", "debootstrap installed no kernel/initrd under /boot")
        shutil.copyfile(kernels[-1], work / "vmlinuz")
        shutil.copyfile(initrds[-1], work / "initrd.img")
        log.info("base image: writing the disk image (step 3/3)")
        await _run(
            ["mkfs.ext4", "-q", "-F", "-L", guest.ROOT_LABEL, "-d", str(tree), str(work / "disk.raw"), DISK_SIZE],
            step="mkfs.ext4",
        )
        await asyncio.to_thread(shutil.rmtree, tree)
        manifest = {
            "suite": settings.debian_suite,
            "mirror": source.uri,
            "kernel": kernels[-1].name,
            "built_at": time.time(),
            "build_seconds": round(time.monotonic() - started, 1),
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        await asyncio.to_thread(shutil.rmtree, directory, True)
        os.replace(work, directory)
        log.info("base image ready in %.0f s: %s", time.monotonic() - started, directory)
    finally:
        if work.exists():
            await asyncio.to_thread(shutil.rmtree, work, True)


def _customise(tree: Path) -> None:
    for rel, (mode, content) in guest.FILES.items():
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        path.chmod(mode)
    (tree / "var/log/journal").mkdir(parents=True, exist_ok=True)
    # An empty machine-id makes each VM generate its own at first boot (shared base image).
    (tree / "etc/machine-id").write_text("")
    (tree / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    for junk in (
        "var/cache/apt/archives",
        "var/lib/apt/lists",
        "usr/share/doc",
        "usr/share/man",
        "usr/share/info",
        "usr/share/locale",
    ):
        target = tree / junk
        if target.is_dir():
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                elif child.name != "lock":
                    child.unlink()
