"""The bootstrap script providers deliver, and install.sh, run for real into a staging root (DESTDIR)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from vmjournal.agent_bundle import AgentConfig, agent_files, render_bootstrap_script

REPO_AGENT = Path(__file__).resolve().parents[2] / "agent"
CONFIG = AgentConfig(url="http://127.0.0.1:8000", name="vm-1", token="tok_secret-123")


def run_bootstrap(script: str, root: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "DESTDIR": str(root), "TMPDIR": str(tmp)}
    # dash: the POSIX sh of Debian and Ubuntu, stricter than bash.
    return subprocess.run(["dash", "-s"], input=script, env=env, capture_output=True, text=True, timeout=60)


class TestAgentFiles:
    def test_are_the_repository_files(self) -> None:
        files = agent_files()
        assert set(files) == {"vmjournal_agent.py", "vmjournal_agent_send.py", "vmjournal-agent.service", "install.sh"}
        for name, data in files.items():
            assert data == (REPO_AGENT / name).read_bytes()

    def test_returns_a_copy(self) -> None:
        agent_files()["install.sh"] = b"tampered"
        assert agent_files()["install.sh"] == (REPO_AGENT / "install.sh").read_bytes()


class TestBootstrapScript:
    def test_installs_files_with_modes_and_cleans_up(self, tmp_path: Path) -> None:
        root, scratch = tmp_path / "root", tmp_path / "scratch"
        scratch.mkdir()
        result = run_bootstrap(render_bootstrap_script(CONFIG), root, scratch)
        assert result.returncode == 0, result.stderr

        program = root / "usr/local/lib/vmjournal-agent/vmjournal_agent.py"
        module = root / "usr/local/lib/vmjournal-agent/vmjournal_agent_send.py"
        config = root / "etc/vmjournal-agent/agent.conf"
        unit = root / "etc/systemd/system/vmjournal-agent.service"
        assert program.read_bytes() == (REPO_AGENT / "vmjournal_agent.py").read_bytes()
        assert module.read_bytes() == (REPO_AGENT / "vmjournal_agent_send.py").read_bytes()
        assert unit.read_bytes() == (REPO_AGENT / "vmjournal-agent.service").read_bytes()
        assert stat.S_IMODE(program.stat().st_mode) == 0o755
        assert stat.S_IMODE(module.stat().st_mode) == 0o644
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
        assert (config.stat().st_uid, config.stat().st_gid) == (0, 0)
        text = config.read_text()
        assert "url = http://127.0.0.1:8000\n" in text and "name = vm-1\n" in text
        assert "token = tok_secret-123\n" in text
        assert list(scratch.iterdir()) == []  # the unpacked files, token included, are gone

    def test_installed_agent_reads_the_installed_config(self, tmp_path: Path) -> None:
        root = tmp_path / "root"
        assert run_bootstrap(render_bootstrap_script(CONFIG), root, tmp_path).returncode == 0
        result = subprocess.run(
            [
                "/usr/bin/python3",
                str(root / "usr/local/lib/vmjournal-agent/vmjournal_agent.py"),
                "--config",
                str(root / "etc/vmjournal-agent/agent.conf"),
                "--state-file",
                str(tmp_path / "s"),
                "--file",
                str(tmp_path / "missing.journal"),
                "--once",
                "-v",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        # It got url, name and token from the config; it fails only on the missing journal file.
        assert "shipping" in result.stderr and "/vm/vm-1/boot" in result.stderr
        assert "journalctl failed" in result.stderr
        assert "tok_secret-123" not in result.stderr

    def test_unit_passes_systemd_analyze(self, tmp_path: Path) -> None:
        unit = tmp_path / "vmjournal-agent.service"
        shutil.copy(REPO_AGENT / "vmjournal-agent.service", unit)
        result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert "vmjournal-agent.service" not in result.stderr

    def test_rerun_upgrades_in_place(self, tmp_path: Path) -> None:
        root = tmp_path / "root"
        assert run_bootstrap(render_bootstrap_script(CONFIG), root, tmp_path).returncode == 0
        rotated = AgentConfig(url=CONFIG.url, name=CONFIG.name, token="tok_new")
        assert run_bootstrap(render_bootstrap_script(rotated), root, tmp_path).returncode == 0
        assert "token = tok_new\n" in (root / "etc/vmjournal-agent/agent.conf").read_text()

    @pytest.mark.parametrize(
        ("config", "problem"),
        [
            (AgentConfig(url="http://x", name="vm\n1", token="t"), "name must be"),
            (AgentConfig(url="http://x", name="vm", token=""), "token must be"),
            (AgentConfig(url="ftp://x", name="vm", token="t"), "url must start"),
        ],
    )
    def test_rejects_values_that_cannot_go_in_the_config(self, config: AgentConfig, problem: str) -> None:
        with pytest.raises(ValueError, match=problem):
            render_bootstrap_script(config)


class TestInstallScript:
    def test_missing_config_is_a_clear_error(self, tmp_path: Path) -> None:
        for name in ("install.sh", "vmjournal_agent.py", "vmjournal_agent_send.py", "vmjournal-agent.service"):
            shutil.copy(REPO_AGENT / name, tmp_path / name)
        result = subprocess.run(
            ["dash", str(tmp_path / "install.sh")],
            env={"PATH": os.environ["PATH"], "DESTDIR": str(tmp_path / "r")},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 1
        assert "config file" in result.stderr and "not found" in result.stderr
