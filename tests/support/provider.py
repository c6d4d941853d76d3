"""A provider written for the tests, and a job context kept in memory for driving a provider directly.

The provider behaves like a real one (takes time in steps, checkpoints, fails on request, delivers
the token to a "config drive" file) and records every step it runs, so tests can prove a job
resumed instead of starting over, and ran once."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vmjournal.providers.base import AgentConfig, JobContext, ProviderError, ProviderVM, VMSpec

STEPS = ("allocate", "boot", "install-agent")


class ScriptedProvider:
    """Names steer it: ``fail-*`` fails for good, ``flaky-*`` fails once (retryable), ``slow-*`` takes
    ``slow_seconds`` per step; everything else takes ``step_seconds`` per step."""

    name = "test"

    def __init__(self, root: Path, *, step_seconds: float = 0.05, slow_seconds: float = 3.0) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.step_seconds = step_seconds
        self.slow_seconds = slow_seconds

    def record(self, name: str, event: str) -> None:
        # O_APPEND writes of one short line are atomic, so two service processes can share the log.
        with open(self.root / "calls.log", "a") as log:
            log.write(f"{name} {event} {os.getpid()}\n")

    def calls(self) -> list[tuple[str, str, int]]:
        path = self.root / "calls.log"
        if not path.exists():
            return []
        return [(n, e, int(p)) for n, e, p in (line.split() for line in path.read_text().splitlines())]

    def inspections(self) -> list[tuple[str, int]]:
        """Every ``inspect`` call as (VM name, pid), from all processes sharing this root."""
        path = self.root / "inspections.log"
        if not path.exists():
            return []
        return [(n, int(p)) for n, p in (line.split() for line in path.read_text().splitlines())]

    def token_file(self, name: str) -> Path:
        return self.root / f"{name}.token"

    async def provision(self, spec: VMSpec, job: JobContext) -> ProviderVM:
        delay = self.slow_seconds if spec.name.startswith("slow-") else self.step_seconds
        done = list(job.state.get("done", []))
        for step in STEPS:
            if step in done:
                continue
            self.record(spec.name, step)
            await job.save(step=step)
            await asyncio.sleep(delay)
            if spec.name.startswith("fail-") and step == "boot":
                raise ProviderError("TestBootFailure", "the guest did not boot", details=["NoBootDevice"])
            if spec.name.startswith("flaky-") and step == "boot" and not job.state.get("flaked"):
                await job.save(flaked=True)
                raise ProviderError("Throttled", "try again later", retryable=True)
            if step == "install-agent":
                config = await job.issue_agent_config()
                self.token_file(spec.name).write_text(config.token)
            done.append(step)
            await job.save(done=done)
        return ProviderVM(state="running", addresses={"loopback": "127.0.0.1"}, details={"steps": ",".join(done)})

    async def deprovision(self, spec: VMSpec, job: JobContext) -> None:
        self.record(spec.name, "deprovision")
        await asyncio.sleep(self.step_seconds)
        self.token_file(spec.name).unlink(missing_ok=True)

    async def inspect(self, spec: VMSpec, state: Mapping[str, Any]) -> ProviderVM:
        # Apart from calls.log, so that monitor passes never disturb the tests that count steps.
        with open(self.root / "inspections.log", "a") as log:
            log.write(f"{spec.name} {os.getpid()}\n")
        if spec.name.startswith("lost-"):
            return ProviderVM(state="gone", error=ProviderError("VMGone", "the test guest vanished"))
        return ProviderVM(state="running", addresses={"loopback": "127.0.0.1"})

    async def aclose(self) -> None:
        return None


class MemoryJob:
    """A ``JobContext`` that keeps its state in a dict, as the worker keeps it in a row."""

    def __init__(self, name: str, state: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self._state: dict[str, Any] = dict(state or {})
        self.steps: list[str] = []
        self.tokens: list[str] = []

    @property
    def state(self) -> Mapping[str, Any]:
        return self._state

    async def save(self, *, step: str | None = None, **values: Any) -> None:
        self._state.update(values)
        if step:
            self.steps.append(step)

    async def issue_agent_config(self) -> AgentConfig:
        token = secrets.token_urlsafe(24)
        self.tokens.append(token)
        return AgentConfig(url="http://127.0.0.1:9", name=self.name, token=token)
