"""Alert routes: rules that call a webhook when a VM's journal matches them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from vmjournal.alerts import service
from vmjournal.alerts.schemas import AlertCreate, AlertCreated, AlertDetail, AlertEventPublic, AlertPublic, parse_create
from vmjournal.deps import ApiKey, SessionDep
from vmjournal.errors import BadRequest, Conflict, NotFound, Unauthorized, responses

router = APIRouter(prefix="/alerts", tags=["alerts"], dependencies=[ApiKey])

AlertName = Annotated[str, Path(description="The rule's name.", examples=["nginx-errors"])]


@router.post(
    "",
    status_code=201,
    summary="Create an alert rule",
    response_model=AlertCreated,
    responses=responses(BadRequest, Conflict, Unauthorized),
    # Read by parse_create, not by FastAPI: a bad field is a 400 naming it, like every other input.
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": AlertCreate.model_json_schema()}}}
    },
)
async def create(request: Request, session: SessionDep) -> AlertCreated:
    """Fire when at least `threshold` entries of one VM matching the filters (as on `/vm/{name}/boot`) fall
    within `window_seconds`; resolve after `window_seconds` without one. Each firing and resolution is POSTed
    to `webhook_url`, signed with the `secret` this answer carries once. A 400 names the field at fault."""
    rule = parse_create(await request.body())
    return await service.create_rule(session, rule)


@router.get("", summary="List alert rules", responses=responses(Unauthorized))
async def list_rules(session: SessionDep) -> list[AlertPublic]:
    """Every rule, whether it fires now and on which VMs."""
    return await service.list_rules(session)


@router.get("/{name}", summary="Show an alert rule", responses=responses(NotFound, Unauthorized))
async def get_rule(name: AlertName, session: SessionDep) -> AlertDetail:
    """The rule with its state on each VM, its last firing, and counts of notifications and deliveries."""
    return await service.get_rule(session, name)


@router.delete("/{name}", status_code=204, summary="Delete an alert rule", responses=responses(NotFound, Unauthorized))
async def delete_rule(name: AlertName, session: SessionDep) -> Response:
    """The rule stops; its state and history go, and notifications not yet delivered are dropped."""
    await service.delete_rule(session, name)
    return Response(status_code=204)


@router.get("/{name}/events", summary="An alert rule's history", responses=responses(NotFound, Unauthorized))
async def history(
    name: AlertName,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=service.HISTORY_MAX, description="Newest first.")] = 100,
) -> list[AlertEventPublic]:
    """Firings and resolutions, newest first, with the payload sent and how its delivery went."""
    return await service.history(session, name, limit=limit)
