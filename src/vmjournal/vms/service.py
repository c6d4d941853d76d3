"""VM lifecycle decisions. Routes call these; the worker's tasks (tasks.py) alone move a VM through provisioning."""

from __future__ import annotations

import re
import shlex
from collections.abc import Collection, Sequence
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from vmjournal import tokens
from vmjournal.config import SIZES
from vmjournal.errors import BadRequest, Conflict, NotFound
from vmjournal.models import VM, JobKind, VMStatus
from vmjournal.vms import store
from vmjournal.vms.queue import JobQueue
from vmjournal.vms.schemas import NAME_PATTERN, NAME_RULE, VMEnrolled, VMError, VMPublic

EXTERNAL = "external"
_NAME = re.compile(NAME_PATTERN)


def to_public(vm: VM) -> VMPublic:
    error = (
        VMError(code=vm.error_code, message=vm.error_message or "", details=list(vm.error_details or []))
        if vm.error_code
        else None
    )
    return VMPublic(
        id=vm.id,
        name=vm.name,
        size=vm.size,
        provider=vm.provider,
        status=vm.status,
        step=vm.step,
        error=error,
        addresses=dict(vm.addresses or {}),
        details=dict(vm.details or {}),
        created_at=vm.created_at,
        updated_at=vm.updated_at,
        deleted_at=vm.deleted_at,
        event_count=vm.event_count,
        last_event_at=vm.last_event_at,
        last_ingest_error=vm.last_ingest_error,
        last_ingest_error_at=vm.last_ingest_error_at,
    )


def validate_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise BadRequest(f"invalid VM name {name!r}: {NAME_RULE}", code="invalid_name")


def install_command(service_url: str, name: str, token: str) -> str:
    """The one command that installs the agent on a machine the service did not create.

    The token goes in on standard input through printf, a shell builtin, so no process's
    argument list ever holds it.
    """
    script = shlex.quote(service_url + "/agent/bootstrap.sh")
    return (
        f"curl -fsSL {script} -o vmjournal-bootstrap.sh && "
        f"printf '%s\\n' {shlex.quote(token)} | sudo sh vmjournal-bootstrap.sh "
        f"--url {shlex.quote(service_url)} --name {shlex.quote(name)}"
    )


async def request_vm(
    session: AsyncSession,
    jobs: JobQueue,
    *,
    name: str,
    size: str,
    provider: str,
    providers: Collection[str],
    service_url: str,
) -> VMPublic | VMEnrolled:
    """Record the VM and its provisioning job in one transaction; the worker does the rest.

    An enrolled (``external``) machine gets its ingest token now, since nothing will deliver it.
    """
    validate_name(name)
    if size not in SIZES:
        raise BadRequest(f"unknown size {size!r}: use one of {', '.join(SIZES)}", code="invalid_size")
    if provider not in providers:
        raise BadRequest(
            f"unknown provider {provider!r}: this service offers {', '.join(sorted(providers))}",
            code="invalid_provider",
        )
    token = tokens.new_token() if provider == EXTERNAL else None
    vm = VM(
        name=name,
        size=size,
        provider=provider,
        status=VMStatus.pending,
        step="queued",
        token_hash=tokens.token_hash(token) if token else None,
    )
    try:
        vm = await store.insert_vm(session, vm)
    except store.NameTaken:
        raise Conflict(
            f"a VM named {name!r} already exists; delete it first or pick another name", code="name_taken"
        ) from None
    jobs.enqueue(session, vm.id, JobKind.provision)
    public = to_public(vm)
    if token is None:
        return public
    return VMEnrolled(**public.model_dump(), token=token, install_command=install_command(service_url, name, token))


async def get_vm(session: AsyncSession, name: str, *, for_update: bool = False) -> VM:
    """The live VM of that name; 404 if there is none."""
    # No name holds a NUL (creation checks the name), and PostgreSQL would refuse to compare one.
    vm = None if "\x00" in name else await store.get_vm_by_name(session, name, for_update=for_update)
    if vm is None:
        raise _no_vm(name)
    return vm


async def get_agent_key(session: AsyncSession, name: str) -> tuple[UUID, str | None]:
    """The live VM's id and token hash, all an agent's batch needs; 404 as ``get_vm``."""
    found = None if "\x00" in name else await store.agent_key(session, name)
    if found is None:
        raise _no_vm(name)
    return found


def _no_vm(name: str) -> NotFound:
    # The one place that says so.
    return NotFound(f"no VM named {name!r}", code="vm_not_found")


async def list_vms(session: AsyncSession, *, include_deleted: bool = False) -> Sequence[VM]:
    return await store.list_vms(session, include_deleted=include_deleted)


async def names_by_id(session: AsyncSession, vm_ids: Sequence[UUID]) -> dict[UUID, str]:
    return await store.names_by_id(session, vm_ids)


async def delete_vm(session: AsyncSession, jobs: JobQueue, name: str) -> VM:
    """Start deprovisioning. A create still queued is cancelled; one in flight finishes first."""
    vm = await get_vm(session, name, for_update=True)
    if vm.status == VMStatus.deleting:
        return vm
    await jobs.cancel_queued(session, vm.id, JobKind.provision)
    await store.update_vm(session, vm.id, status=VMStatus.deleting, step="queued", token_hash=None)
    jobs.enqueue(session, vm.id, JobKind.deprovision)
    await session.flush()
    await session.refresh(vm)
    return vm


async def rotate_token(session: AsyncSession, name: str) -> str:
    """A new ingest token for the VM; the old one stops working at commit."""
    vm = await get_vm(session, name, for_update=True)
    if vm.status == VMStatus.deleting:
        raise Conflict(f"VM {name!r} is being deleted", code="vm_deleting")
    token = tokens.new_token()
    await store.update_vm(session, vm.id, token_hash=tokens.token_hash(token))
    return token
