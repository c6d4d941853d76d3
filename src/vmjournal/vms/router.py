"""VM routes: the original design's paths, plus delete and token rotation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import PlainTextResponse

from vmjournal import agent_bundle
from vmjournal.config import SIZES
from vmjournal.deps import ApiKey, JobsDep, ProvidersDep, SessionDep, SettingsDep
from vmjournal.errors import BadRequest, Conflict, NotFound, Unauthorized, responses
from vmjournal.vms import orphans, service
from vmjournal.vms.schemas import OrphansPublic, TokenIssued, VMEnrolled, VMName, VMPublic, VMsPublic

router = APIRouter(prefix="/vm", tags=["vms"], dependencies=[ApiKey])
# No key and no secret here: the token reaches the script on the machine's standard input.
bootstrap_router = APIRouter(tags=["vms"])
azure_router = APIRouter(prefix="/azure", tags=["azure"], dependencies=[ApiKey])


class ShellScriptResponse(PlainTextResponse):
    media_type = "text/x-shellscript"


@bootstrap_router.get(
    "/agent/bootstrap.sh", summary="Agent installer for enrolled machines", response_class=ShellScriptResponse
)
async def bootstrap_script() -> ShellScriptResponse:
    """The script an enrolled machine's install command runs: `sh bootstrap.sh --url URL --name NAME < token`."""
    return ShellScriptResponse(agent_bundle.render_enroll_script())


@router.get("", summary="List VMs", response_model=VMsPublic, responses=responses(Unauthorized))
async def list_vms(
    session: SessionDep,
    include_deleted: Annotated[bool, Query(description="Also list deleted VMs.")] = False,
) -> VMsPublic:
    """All VMs with their status."""
    vms = [service.to_public(vm) for vm in await service.list_vms(session, include_deleted=include_deleted)]
    return VMsPublic(vms=vms, count=len(vms))


@router.get("/{name}", summary="Show a VM", response_model=VMPublic, responses=responses(NotFound, Unauthorized))
async def get_vm(name: VMName, session: SessionDep) -> VMPublic:
    """One VM: size, provider, status, error, addresses, timestamps, event count, last event time."""
    return service.to_public(await service.get_vm(session, name))


@router.delete(
    "/{name}",
    status_code=202,
    summary="Delete a VM",
    response_model=VMPublic,
    responses=responses(NotFound, Unauthorized),
)
async def delete_vm(name: VMName, session: SessionDep, jobs: JobsDep) -> VMPublic:
    """Deprovision the VM in the background; its status moves to `deleting`, then `deleted`."""
    return service.to_public(await service.delete_vm(session, jobs, name))


@router.post(
    "/{name}/token",
    summary="Rotate a VM's ingest token",
    response_model=TokenIssued,
    responses=responses(NotFound, Conflict, Unauthorized),
)
async def rotate_token(name: VMName, session: SessionDep) -> TokenIssued:
    """Issue a new ingest token, shown once; the old one stops working."""
    return TokenIssued(token=await service.rotate_token(session, name))


@router.post(
    "/{name}/{size}",
    status_code=202,
    summary="Create a VM",
    response_model=VMPublic | VMEnrolled,
    responses=responses(BadRequest, Conflict, Unauthorized),
)
async def create_vm(
    name: VMName,
    # Documented as an enum; checked by the service, so another size answers 400 (invalid_size), not 422.
    size: Annotated[
        str, Path(description="small, medium or large.", examples=["small"], json_schema_extra={"enum": list(SIZES)})
    ],
    session: SessionDep,
    jobs: JobsDep,
    settings: SettingsDep,
    providers: ProvidersDep,
    provider: Annotated[
        str | None,
        Query(
            description="azure, qemu or external (a machine you run; the answer carries its token "
            "and install command). Default: the service's provider."
        ),
    ] = None,
) -> VMPublic | VMEnrolled:
    """Ask for a VM of size `small`, `medium` or `large`; it is provisioned in the background (202)."""
    return await service.request_vm(
        session,
        jobs,
        name=name,
        size=size,
        provider=provider or settings.default_provider,
        providers=providers.keys(),
        service_url=settings.ingest_url,
    )


@azure_router.get(
    "/orphans", response_model=OrphansPublic, responses=responses(Conflict, orphans.AzureUnavailable, Unauthorized)
)
async def list_orphans(session: SessionDep, providers: ProvidersDep) -> OrphansPublic:
    """Resource groups tagged `managed-by: vmjournal` whose VM is deleted or unknown here: they may still
    cost money."""
    return await orphans.list_azure_orphans(session, providers)
