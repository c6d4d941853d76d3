"""Routes over several VMs (``/journal``) and log volume (``/histogram``)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated
from uuid import UUID

import orjson
from fastapi import Depends, Query, Request
from fastapi.responses import Response
from fastapi.routing import APIRouter

from vmjournal.deps import ApiKey, SessionDep, SessionsDep
from vmjournal.errors import BadRequest, NotFound, Unauthorized, responses
from vmjournal.journal import answers, fleet, fleet_answers, volume
from vmjournal.journal.fleet_store import Target
from vmjournal.journal.render import JSON
from vmjournal.journal.router import EVENT_RESPONSES, Params, QueryParams, filter_for
from vmjournal.journal.schemas import FleetPage, Histogram
from vmjournal.vms import service as vms_service
from vmjournal.vms.schemas import VMName

router = APIRouter(tags=["journal"])


@dataclass
class FleetParams:
    vm: Annotated[
        list[str] | None,
        Query(description="A VM name or glob (web-*), repeatable; every VM if absent.", examples=["web-*"]),
    ] = None
    unit: Annotated[str | None, Query(description="A unit name or glob; nginx means nginx.service.")] = None


StepParam = Annotated[
    str | None,
    Query(
        description="Bucket width: seconds (60) or 30s, 1m, 1h, 1d. Default: a "
        "round step giving about 100 buckets over the range."
    ),
]


async def _fleet(request: Request, session: SessionDep, fp: FleetParams, p: QueryParams) -> fleet.Fleet:
    names = await fleet.select_vms(session, fp.vm)
    # Built once for all (so every filter of the VM routes applies), then per VM where it means
    # something per VM: a unit glob and the boot (-k means each VM's current boot, as journalctl's).
    boot = "0" if p.kernel and p.boot is None else p.boot
    base = await filter_for(request, session, next(iter(names), UUID(int=0)), fp.unit, replace(p, boot="all"))
    targets = await fleet.specialise(session, names, base, boot)
    return fleet.Fleet(names=names, targets=targets, patterns=tuple(fp.vm) if fp.vm else None, boot=boot, base=base)


@router.get(
    "/journal",
    summary="The fleet's journal",
    dependencies=[ApiKey],
    response_model=FleetPage,
    responses=EVENT_RESPONSES,
)
async def fleet_events(
    request: Request,
    session: SessionDep,
    sessions: SessionsDep,
    params: Params,
    fp: Annotated[FleetParams, Depends()],
) -> Response:
    """Events of every VM, or of those named by `vm`, merged in time order as `journalctl -m` merges
    journals; each carries `vm`. Every filter, output and follow mode of `/vm/{name}/boot` applies.
    `boot` is resolved per VM (0 is each VM's current boot); a glob in `vm` follows VMs created later."""
    fl = await _fleet(request, session, fp, params)
    query = answers.Query(
        limit=params.limit,
        descending=params.order == "desc",
        cursor=params.cursor,
        output=params.output,
        follow=params.follow,
    )
    return await fleet_answers.answer(request, session, sessions, fl, unit=fp.unit, q=query)


@router.get(
    "/journal/histogram",
    summary="The fleet's log volume",
    dependencies=[ApiKey],
    response_model=Histogram,
    responses=responses(BadRequest, NotFound, Unauthorized),
)
async def fleet_histogram(
    request: Request, session: SessionDep, params: Params, fp: Annotated[FleetParams, Depends()], step: StepParam = None
) -> Response:
    """Events per time bucket and priority over the selected VMs, with the filters of `/journal`; the
    totals add up to the number of events `/journal` returns for the same filters."""
    fl = await _fleet(request, session, fp, params)
    return Response(orjson.dumps(await volume.histogram(session, fl.targets, step=step)), media_type=JSON)


@router.get(
    "/vm/{name}/histogram",
    summary="A VM's log volume",
    dependencies=[ApiKey],
    response_model=Histogram,
    responses=responses(BadRequest, NotFound, Unauthorized),
)
async def vm_histogram(
    request: Request,
    name: VMName,
    session: SessionDep,
    params: Params,
    step: StepParam = None,
    unit: Annotated[str | None, Query(description="A unit name or glob.")] = None,
) -> Response:
    """Events per time bucket and priority, with the filters of `/vm/{name}/boot`; the totals add up
    to the number of events that route returns for the same filters."""
    vm = await vms_service.get_vm(session, name)
    f = await filter_for(request, session, vm.id, unit, params)
    return Response(orjson.dumps(await volume.histogram(session, [Target(vm.id, f)], step=step)), media_type=JSON)
