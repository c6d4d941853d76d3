"""Machines the service did not create: nothing to provision, the user installs the agent.

The token was handed out when the machine was enrolled, so this provider never mints one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vmjournal.providers.base import JobContext, ProviderKind, ProviderVM, VMSpec


class ExternalProvider:
    name = ProviderKind.external

    async def provision(self, spec: VMSpec, job: JobContext) -> ProviderVM:
        return ProviderVM(state="running", details={"enrolled": "agent installed by the machine's owner"})

    async def deprovision(self, spec: VMSpec, job: JobContext) -> None:
        # The machine is not ours to remove; revoking its token (done on delete) is all there is.
        return None

    async def inspect(self, spec: VMSpec, state: Mapping[str, Any]) -> ProviderVM:
        return ProviderVM(state="running", details={"enrolled": "agent installed by the machine's owner"})

    async def aclose(self) -> None:
        return None
