"""The one interface every VM provider implements, and the types it speaks.

Providers never touch the database. The worker hands them a ``JobContext`` through which
they checkpoint progress: whatever a provider saves there is committed at once, so a
service killed mid-step calls the provider again with the same spec and the saved state,
and the provider resumes (continues an Azure operation from its token, finds its QEMU
process again) instead of starting over.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol, runtime_checkable
from uuid import UUID

from vmjournal.agent_bundle import AgentConfig as AgentConfig  # re-exported: part of what providers speak


class ProviderKind(StrEnum):
    """The providers this build ships, by the name stored in ``vm.provider``.

    Registries are keyed by the plain string, so a test can register a kind of its own.
    """

    azure = "azure"
    qemu = "qemu"
    external = "external"


@dataclass(frozen=True)
class VMSpec:
    """What the user asked for. ``resource_name`` is derived from the VM id, so a rerun finds the same VM."""

    vm_id: UUID
    name: str
    size: str

    @property
    def resource_name(self) -> str:
        return f"vmj-{self.vm_id.hex[:12]}"


@dataclass
class ProviderVM:
    """What a provider reports about a VM it runs."""

    state: Literal["running", "failed", "gone"]
    addresses: dict[str, str] = field(default_factory=dict)
    # Free-form facts a user may want (console log path, Azure resource group, accelerator).
    details: dict[str, str] = field(default_factory=dict)
    error: ProviderError | None = None


class ProviderError(Exception):
    """A failure the user should see on the VM record.

    ``code`` is the provider's own error code (Azure ``error.code``), ``details`` the codes of
    ``error.details[]``. ``retryable`` errors (throttling, transient network) make the worker
    retry the job later instead of failing the VM.
    """

    def __init__(self, code: str, message: str, *, details: list[str] | None = None, retryable: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details or []
        self.retryable = retryable


class JobContext(Protocol):
    """The worker's side of a running job, as a provider sees it."""

    @property
    def state(self) -> Mapping[str, Any]:
        """What earlier runs of this job saved (empty on the first run)."""
        ...

    async def save(self, *, step: str | None = None, **values: Any) -> None:
        """Merge ``values`` into the job state and record ``step``; committed before returning.

        Call it before waiting on anything long (an Azure LRO, a guest boot): after a crash the
        next run sees exactly what was saved.
        """
        ...

    async def issue_agent_config(self) -> AgentConfig:
        """Mint a fresh ingest token for this VM (the previous one stops working) and return it.

        Call it only right before delivering the token to the VM: the plaintext exists nowhere
        else, so a provider that resumes after delivery must not call it again.
        """
        ...


class VMProvider(Protocol):
    """Creates, inspects and removes VMs of one kind (Azure, local QEMU, enrolled machines)."""

    @property
    def name(self) -> str:
        """The kind, as ``vm.provider`` stores it (a ``ProviderKind`` for the providers shipped)."""
        ...

    async def provision(self, spec: VMSpec, job: JobContext) -> ProviderVM:
        """Create the VM and deliver the agent; return once the VM runs.

        Idempotent and resumable: called again with the same spec and the job's saved state
        after a restart, it finishes what is left. Raises ``ProviderError`` on failure.
        """
        ...

    async def deprovision(self, spec: VMSpec, job: JobContext) -> None:
        """Remove the VM and everything created for it. Already gone is not an error."""
        ...

    async def inspect(self, spec: VMSpec, state: Mapping[str, Any]) -> ProviderVM:
        """Report the VM's current state; may restart a local VM that should run but does not.

        Called for running VMs when the service starts and periodically, with the state the
        provisioning job saved.
        """
        ...

    async def aclose(self) -> None:
        """Release clients and background resources."""
        ...


@dataclass(frozen=True)
class Orphan:
    """A resource group a provider created for a VM the service no longer has."""

    resource_group: str
    vm_name: str
    vm_id: str
    location: str
    provisioning_state: str


@runtime_checkable
class ListsOrphans(Protocol):
    """A provider whose resources can outlive the VM record: a delete that never finished, a
    database reset, a test run against a real subscription. They keep costing money until
    someone finds them, and only the provider can tell which are its own.
    """

    async def find_orphans(self, live_vm_ids: Collection[UUID], live_names: Collection[str]) -> list[Orphan]:
        """What the provider created (by its tags) for no VM in ``live_vm_ids`` (or, for resources
        tagged before ids were, ``live_names``). Raises ``ProviderError`` when the cloud does not answer.
        """
        ...
