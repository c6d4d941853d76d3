"""The base image builder: mirror discovery, the cached build, waiting on another builder's lock."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import subprocess
from pathlib import Path

import pytest
from support.qemu import build_session_image

from vmjournal.config import QemuSettings
from vmjournal.providers.base import ProviderError
from vmjournal.providers.qemu import guest
from vmjournal.providers.qemu.image import ensure_base_image, find_debian_mirror, require_tools

DEB822 = """Types: deb
URIs: http://security.example.invalid/debian-security
Suites: bookworm-security
Components: main

Types: deb
# a comment inside the stanza
URIs: http://mirror.example.invalid/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/example.gpg
"""


def debugfs_cat(disk: Path, path: str) -> str:
    return subprocess.run(
        ["debugfs", "-R", f"cat {path}", str(disk)], capture_output=True, text=True, check=True
    ).stdout


class TestFindDebianMirror:
    def test_deb822_source(self, tmp_path: Path) -> None:
        (tmp_path / "sources.list.d").mkdir()
        (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
        source = find_debian_mirror("bookworm", tmp_path)
        assert source.uri == "http://mirror.example.invalid/debian"
        assert source.keyring == "/usr/share/keyrings/example.gpg"

    def test_one_line_source_with_options(self, tmp_path: Path) -> None:
        (tmp_path / "sources.list").write_text(
            "# deb http://old.example.invalid/debian bookworm main\n"
            "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example.invalid/debian bookworm main\n"
        )
        source = find_debian_mirror("bookworm", tmp_path)
        assert (source.uri, source.keyring) == ("http://mirror.example.invalid/debian", "/k.gpg")

    def test_disabled_stanza_and_other_suite_are_ignored(self, tmp_path: Path) -> None:
        (tmp_path / "sources.list.d").mkdir()
        (tmp_path / "sources.list.d" / "x.sources").write_text(
            "Types: deb\nURIs: http://a.example.invalid/debian\nSuites: bookworm\nEnabled: no\n\n"
            "Types: deb\nURIs: http://b.example.invalid/debian\nSuites: trixie\n"
        )
        with pytest.raises(ProviderError) as err:
            find_debian_mirror("bookworm", tmp_path)
        assert err.value.code == "QemuNoDebianMirror"
        assert "VMJOURNAL_QEMU_DEBIAN_MIRROR" in err.value.message


class TestRequireTools:
    def test_names_the_missing_packages(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        monkeypatch.setenv("PATH", str(tmp_path))
        with pytest.raises(ProviderError) as err:
            require_tools(["qemu-system-x86_64", "qemu-img", "debootstrap"])
        assert err.value.code == "QemuPrerequisitesMissing"
        assert "debootstrap qemu-system-x86 qemu-utils" in err.value.message


class TestEnsureBaseImage:
    async def test_builds_a_bootable_tree_once(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        images, image = await build_session_image(tmp_path_factory)
        assert image.kernel and image.kernel.stat().st_size > 1_000_000
        assert image.initrd and image.initrd.stat().st_size > 1_000_000
        manifest = json.loads((image.disk.parent / "manifest.json").read_text())
        assert manifest["suite"] == "bookworm"
        # Only the finished image is left: no build directory, no rootfs tree.
        assert sorted(p.name for p in images.iterdir() if not p.name.startswith(".build.lock")) == [
            image.disk.parent.name
        ]
        again = await ensure_base_image(QemuSettings(_env_file=None, images_dir=images), images.parent)
        assert again == image
        assert json.loads((image.disk.parent / "manifest.json").read_text()) == manifest

    async def test_guest_files_are_in_the_disk(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        _, image = await build_session_image(tmp_path_factory)
        assert debugfs_cat(image.disk, "/etc/systemd/system/vmjournal-firstboot.service") == guest.FIRSTBOOT_UNIT
        assert debugfs_cat(image.disk, "/usr/local/sbin/vmjournal-firstboot") == guest.FIRSTBOOT_SCRIPT
        # Empty, so that every VM generates its own machine id at first boot.
        assert debugfs_cat(image.disk, "/etc/machine-id") == ""
        assert "Storage=persistent" in debugfs_cat(image.disk, "/etc/systemd/journald.conf.d/vmjournal.conf")
        wants = subprocess.run(
            ["debugfs", "-R", "ls /etc/systemd/system/multi-user.target.wants", str(image.disk)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "vmjournal-firstboot.service" in wants and "systemd-networkd.service" in wants
        label = subprocess.run(["e2label", str(image.disk)], capture_output=True, text=True, check=True).stdout
        assert label.strip() == guest.ROOT_LABEL

    async def test_waits_for_another_builder_and_reuses_its_image(self, tmp_path: Path) -> None:
        settings = QemuSettings(_env_file=None, images_dir=tmp_path / "images")
        target = tmp_path / "images" / f"debian-bookworm-{guest.recipe_digest('bookworm')}"
        target.parent.mkdir()
        fd = os.open(target.parent / ".build.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # "another process is building"
        try:
            waiting = asyncio.create_task(ensure_base_image(settings, tmp_path))
            await asyncio.sleep(1.0)
            assert not waiting.done()
            assert [p.name for p in target.parent.iterdir()] == [".build.lock"]
            target.mkdir()
            for name in ("disk.raw", "vmlinuz", "initrd.img"):
                (target / name).write_bytes(b"")
            (target / "manifest.json").write_text("{}")
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        image = await asyncio.wait_for(waiting, 10)
        assert image.disk == target / "disk.raw"
        assert (target / "manifest.json").read_text() == "{}"  # reused, not rebuilt

    async def test_user_image_settings_are_checked(self, tmp_path: Path) -> None:
        with pytest.raises(ProviderError) as err:
            await ensure_base_image(QemuSettings(_env_file=None, kernel=tmp_path / "k"), tmp_path)
        assert err.value.code == "QemuBadSettings"
        with pytest.raises(ProviderError) as err:
            await ensure_base_image(QemuSettings(_env_file=None, image=tmp_path / "missing.qcow2"), tmp_path)
        assert "missing.qcow2" in err.value.message
