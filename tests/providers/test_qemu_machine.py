"""QEMU processes: start, find, stop, restart after a service restart, orphans, the config drive, the relay."""

from __future__ import annotations

import asyncio
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from support.provider import MemoryJob
from support.qemu import build_session_image

from vmjournal.agent_bundle import render_bootstrap_script
from vmjournal.config import Settings
from vmjournal.providers.base import AgentConfig, ProviderError, VMSpec
from vmjournal.providers.qemu import guest
from vmjournal.providers.qemu.image import BaseImage
from vmjournal.providers.qemu.machine import (
    RELAY,
    Machine,
    MachineConfig,
    find_qemu_processes,
)
from vmjournal.providers.qemu.provider import QemuProvider, guest_hostname, write_config_drive


def machine_config(image: BaseImage, **overrides: Any) -> MachineConfig:
    config = MachineConfig(
        vcpus=1,
        memory_mib=256,
        accel="tcg",
        disk_format=image.disk_format,
        base_disk=str(image.disk),
        kernel=str(image.kernel),
        initrd=str(image.initrd),
        append=image.append,
        service_host="127.0.0.1",
        service_port=9,
    )
    return replace(config, **overrides)


@pytest.fixture
async def image(tmp_path_factory: pytest.TempPathFactory) -> BaseImage:
    return (await build_session_image(tmp_path_factory))[1]


@pytest.fixture
async def vms_root(tmp_path: Path) -> AsyncIterator[Path]:
    root = tmp_path / "data" / "vms"
    root.mkdir(parents=True)
    yield root
    for pid in find_qemu_processes(root):
        os.kill(pid, 9)


async def started(root: Path, image: BaseImage, name: str = "vmj-test") -> tuple[Machine, MachineConfig]:
    m = Machine(root / name)
    m.dir.mkdir()
    await m.create_disk(image)
    config = machine_config(image)
    m.save_config(config)
    await m.start(config)
    return m, config


def spec_for(name: str) -> VMSpec:
    return VMSpec(uuid.uuid4(), name, "small")


class TestMachine:
    async def test_start_find_stop(self, image: BaseImage, vms_root: Path) -> None:
        m, _ = await started(vms_root, image)
        pid = m.pid()
        assert pid is not None
        assert find_qemu_processes(vms_root) == {pid: m.dir}
        # The guest's kernel talks on the serial console, which goes to the log file.
        deadline = time.monotonic() + 120
        while "Linux version" not in m.console_text() and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        assert "Linux version" in m.console_text()
        await m.stop()
        assert m.pid() is None
        assert find_qemu_processes(vms_root) == {}
        await asyncio.sleep(0.3)
        assert "QEMU exited with status 0" in m.exit_reason() or "signal" in m.exit_reason()

    async def test_a_start_that_fails_says_why(self, image: BaseImage, vms_root: Path) -> None:
        m = Machine(vms_root / "vmj-broken")
        m.dir.mkdir()
        await m.create_disk(image)
        with pytest.raises(ProviderError) as err:
            await m.start(machine_config(image, kernel=str(vms_root / "no-such-kernel")))
        assert err.value.code == "QemuStartFailed"
        assert "no-such-kernel" in err.value.message
        assert find_qemu_processes(vms_root) == {}

    def test_argv_keeps_the_guest_off_the_network(self, image: BaseImage, tmp_path: Path) -> None:
        m = Machine(tmp_path / "a,b" / "vmj-x")
        argv = m.argv(machine_config(image, service_port=8123))
        netdev = argv[argv.index("-netdev") + 1]
        assert netdev.startswith("user,id=net0,restrict=on,guestfwd=tcp:10.0.2.100:8080-cmd:")
        assert f"{RELAY} 127.0.0.1 8123" in netdev
        # A comma in a path is doubled, or QEMU would split the option there.
        assert "a,,b/vmj-x/disk.qcow2" in " ".join(argv)


class TestProviderLifecycle:
    def provider(self, root: Path) -> QemuProvider:
        return QemuProvider(Settings(_env_file=None, data_dir=root.parent, port=9))

    async def test_inspect_restarts_a_guest_that_should_run(self, image: BaseImage, vms_root: Path) -> None:
        spec = spec_for("web")
        provider = self.provider(vms_root)
        m, _ = await started(vms_root, image, spec.resource_name)
        first = m.pid()
        assert first is not None
        os.kill(first, 9)  # QEMU dies
        while m.pid() is not None or not m.exit_file.exists():  # the reaper thread records the status
            await asyncio.sleep(0.05)
        not_yet = await provider.inspect(spec, {})
        assert not_yet.state == "failed" and not_yet.error and not_yet.error.code == "QemuExited"
        assert "signal 9" in not_yet.error.message
        seen = await provider.inspect(spec, {"agent_installed": True})
        assert seen.state == "running"
        assert seen.details["pid"] != str(first) and m.pid() == int(seen.details["pid"])
        assert seen.details["console_log"] == str(m.console_log)

    async def test_deprovision_leaves_nothing(self, image: BaseImage, vms_root: Path) -> None:
        spec = spec_for("gone")
        provider = self.provider(vms_root)
        m, _ = await started(vms_root, image, spec.resource_name)
        await provider.deprovision(spec, MemoryJob(spec.name))
        assert not m.dir.exists()
        assert find_qemu_processes(vms_root) == {}
        assert (await provider.inspect(spec, {})).state == "gone"
        await provider.deprovision(spec, MemoryJob(spec.name))  # already gone: fine

    async def test_orphans_of_removed_vms_are_stopped(self, image: BaseImage, vms_root: Path) -> None:
        kept, _ = await started(vms_root, image, "vmj-kept")
        orphan, _ = await started(vms_root, image, "vmj-orphan")
        orphan.config_file.unlink()  # its VM was deleted while QEMU kept running
        await self.provider(vms_root).reap_orphans()
        assert set(find_qemu_processes(vms_root).values()) == {kept.dir}


class TestConfigDrive:
    async def test_holds_the_bootstrap_script_only_for_root(self, tmp_path: Path) -> None:
        drive = tmp_path / "config.img"
        agent = AgentConfig(url="http://10.0.2.100:8080", name="web", token="s3cret-token")
        await write_config_drive(drive, agent, "web_1", after_install="echo hi")
        assert drive.stat().st_mode & 0o777 == 0o600
        label = subprocess.run(["e2label", str(drive)], capture_output=True, text=True, check=True).stdout
        assert label.strip() == guest.CONFIG_LABEL

        def cat(path: str) -> str:
            return subprocess.run(
                ["debugfs", "-R", f"cat {path}", str(drive)], capture_output=True, text=True, check=True
            ).stdout

        assert cat("/bootstrap.sh") == render_bootstrap_script(agent)
        assert cat("/hostname") == "web-1\n"
        assert cat("/after-install.sh") == "#!/bin/sh\necho hi\n"
        stat = subprocess.run(
            ["debugfs", "-R", "stat /bootstrap.sh", str(drive)], capture_output=True, text=True, check=True
        ).stdout
        assert "Mode:  0600" in stat
        assert [p.name for p in tmp_path.iterdir()] == ["config.img"]

    def test_hostname_from_vm_name(self) -> None:
        assert guest_hostname("web-1") == "web-1"
        assert guest_hostname("--") == "vmjournal"


class _Echo(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def echo_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def start_relay(relay_side: socket.socket, port: int, cwd: Path) -> subprocess.Popen[bytes]:
    """The relay as QEMU runs it: the guest's connection on fds 0, 1 and 2."""
    with relay_side:
        fd = relay_side.fileno()
        return subprocess.Popen(
            [sys.executable, "-I", "-S", str(RELAY), "127.0.0.1", str(port)], stdin=fd, stdout=fd, stderr=fd, cwd=cwd
        )


class TestRelay:
    def test_carries_a_request_and_its_answer(self, echo_server: int, tmp_path: Path) -> None:
        guest_side, relay_side = socket.socketpair()
        proc = start_relay(relay_side, echo_server, tmp_path)
        payload = b"x" * 200_000
        guest_side.sendall(
            b"POST /vm/a/boot HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
            + f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        received = b""
        while chunk := guest_side.recv(65536):
            received += chunk
        guest_side.close()
        assert proc.wait(10) == 0
        assert received.startswith(b"HTTP/1.0 200") and received.endswith(payload)

    def test_unreachable_service_is_logged(self, tmp_path: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed_port = s.getsockname()[1]
        guest_side, relay_side = socket.socketpair()
        proc = start_relay(relay_side, closed_port, tmp_path)
        assert proc.wait(10) == 1
        assert guest_side.recv(100) == b""  # nothing leaks into the guest's connection
        assert f"cannot reach 127.0.0.1:{closed_port}" in (tmp_path / "relay.log").read_text()
