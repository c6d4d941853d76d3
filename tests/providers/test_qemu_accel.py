"""The KVM probe: its payloads really boot (checked under TCG, which works everywhere)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.qemu import build_session_image

from vmjournal.providers.qemu.accel import choose_accel, kvm_works, probe_sector


class TestProbe:
    def test_boot_sector_is_a_boot_sector(self) -> None:
        sector = probe_sector()
        assert len(sector) == 512 and sector[-2:] == b"\x55\xaa"

    async def test_probes_pass_where_the_accelerator_works(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        _, image = await build_session_image(tmp_path_factory)
        assert await kvm_works(image.kernel, timeout=60, accel="tcg") == (True, "")

    async def test_a_kernel_that_does_not_boot_fails_the_probe(self, tmp_path: Path) -> None:
        bogus = tmp_path / "vmlinuz"
        bogus.write_bytes(b"\0" * 4096)
        works, why = await kvm_works(bogus, timeout=5, accel="tcg")
        assert not works
        assert "kernel" in why


class TestChooseAccel:
    async def test_forced_settings_are_kept(self) -> None:
        assert await choose_accel("tcg") == "tcg"
        assert await choose_accel("kvm") == "kvm"
