"""The real agent program as a subprocess: run by the system's python3 with nothing installed, as on a
fresh VM, its token only in its config file (never in argv)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

AGENT = Path(__file__).resolve().parents[2] / "agent" / "vmjournal_agent.py"
PYTHON = "/usr/bin/python3"


class Agent:
    """One agent's config and state; ``start`` runs it (again), each run with a log of its own."""

    def __init__(self, tmp: Path, url: str, name: str, token: str, source: list[str]) -> None:
        self.tmp = tmp
        tmp.mkdir()
        self.state = tmp / "state" / "cursor"
        self.config = tmp / "agent.conf"
        self.config.write_text(f"url = {url}\nname = {name}\ntoken = {token}\n")
        self.config.chmod(0o600)
        self.source = source
        self.runs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = self.tmp / f"agent-{len(self.logs)}.log"
        self.logs.append(log)
        argv = [
            PYTHON,
            str(AGENT),
            "--config",
            str(self.config),
            "--state-file",
            str(self.state),
            "-v",
            *self.source,
            *args,
        ]
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        self.runs.append(proc)
        return proc

    def once(self, *args: str, timeout: float = 120) -> str:
        proc = self.start("--once", *args)
        assert proc.wait(timeout) == 0, self.logs[-1].read_text()
        return self.logs[-1].read_text()

    def log(self) -> str:
        """What every run logged, in order."""
        return "".join(log.read_text(errors="replace") for log in self.logs if log.exists())

    def responses(self) -> list[dict[str, int]]:
        """Every ingest answer the agent logged, over all its runs."""
        found = []
        for log in self.logs:
            for line in log.read_text().splitlines():
                m = re.search(r"sent \d+ entries: HTTP 2\d\d (\{.*\})", line)
                if m:
                    found.append(json.loads(m.group(1)))
        return found

    def stop_all(self) -> None:
        for proc in self.runs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
