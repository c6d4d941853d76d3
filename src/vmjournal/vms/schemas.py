"""What the VM routes accept and answer."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

NAME_RULE = (
    "1-64 characters: letters, digits and hyphens, starting and ending with a letter or digit "
    "(Azure's rule for Linux VM names)"
)
NAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?$"

VMName = Annotated[str, Path(description=f"The VM's name: {NAME_RULE}.", examples=["web-1"])]


class VMError(BaseModel):
    code: str = Field(description="The provider's error code (Azure: error.code).", examples=["SkuNotAvailable"])
    message: str
    details: list[str] = Field(default_factory=list, description="Codes of the provider's error details.")


class VMPublic(BaseModel):
    """A VM as users see it. Never carries its ingest token."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "web-1",
                    "size": "small",
                    "provider": "qemu",
                    "status": "running",
                    "step": "running",
                    "error": None,
                    "addresses": {"guest": "10.0.2.15"},
                    "details": {},
                    "created_at": "2026-11-24T10:00:00Z",
                    "updated_at": "2026-11-24T10:00:40Z",
                    "event_count": 1523,
                    "last_event_at": "2026-11-24T10:00:41Z",
                }
            ]
        }
    )

    id: UUID
    name: str
    size: str
    provider: str
    status: str = Field(description="pending, provisioning, running, deleting, deleted or failed.")
    step: str | None = Field(description="The provisioning step reached.")
    error: VMError | None
    addresses: dict[str, str]
    details: dict[str, str]
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None
    event_count: int
    last_event_at: datetime | None
    last_ingest_error: str | None = Field(
        default=None, description="The last journal entry ingest had to skip, with its cursor and why."
    )
    last_ingest_error_at: datetime | None = None


class VMsPublic(BaseModel):
    vms: list[VMPublic]
    count: int


class VMEnrolled(VMPublic):
    """An enrolled machine (provider ``external``): the token is shown this once."""

    token: str = Field(description="The ingest token. Shown once; rotate it with POST /vm/{name}/token.")
    install_command: str = Field(description="Run this as root on the machine to install the agent.")


class TokenIssued(BaseModel):
    token: str = Field(description="The new ingest token; the previous one no longer works. Shown once.")


class OrphanPublic(BaseModel):
    resource_group: str = Field(description="Delete it (az group delete -n NAME) if nothing else uses it.")
    vm_name: str = Field(description="The VM it was created for (tag vmjournal-vm).")
    vm_id: str
    location: str
    provisioning_state: str


class OrphansPublic(BaseModel):
    orphans: list[OrphanPublic]
    count: int
