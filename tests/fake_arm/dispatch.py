"""From an HTTP request to the ARM answer: authentication, routing, and the resource handlers."""

from __future__ import annotations

import copy
import re
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from fake_arm.catalog import skus_body, usages_body
from fake_arm.operations import async_operation_answer, location_answer
from fake_arm.validators import VALIDATORS, Known
from fake_arm.wire import JSON, TYPES, Answer, ArmError, check_shape, kind_of, public_view

if TYPE_CHECKING:
    from fake_arm.server import FakeARM


def dispatch(arm: FakeARM, request: web.Request, body: Any) -> Answer:
    """Answer one request; raises ``ArmError`` for anything ARM would refuse. Runs under the fake's lock."""
    if request.headers.get("Authorization") != f"Bearer {arm.token}":
        raise ArmError(401, "AuthenticationFailed", "Authentication failed: missing or wrong bearer token.")
    if "api-version" not in request.query:
        raise ArmError(400, "MissingApiVersionParameter", "The api-version query parameter is required.")
    path = request.path.rstrip("/")
    lower = path.lower()
    prefix = f"/subscriptions/{arm.subscription_id}"
    if not lower.startswith(prefix):
        raise ArmError(404, "SubscriptionNotFound", f"The subscription in '{path}' could not be found.")
    kind = kind_of(lower)
    arm.raise_injected(request.method, kind)
    rest = lower[len(prefix) :]
    base = f"{request.scheme}://{request.host}"
    if rest == "/providers/microsoft.compute/skus":
        return 200, skus_body(arm.skus, arm.location, request.query.get("$filter", "")), {}
    if m := re.fullmatch(r"/providers/microsoft\.compute/locations/([^/]+)/usages", rest):
        return 200, usages_body(arm.usage, arm.location, m.group(1)), {}
    if m := re.fullmatch(r"/providers/[^/]+/locations/[^/]+/operations/([^/]+)", rest):
        return async_operation_answer(arm.ops.poll(m.group(1)), arm.retry_after)
    if m := re.fullmatch(r"/operationresults/([^/]+)", rest):
        poll_url = f"{base}{path}?api-version=2025-04-01"
        return location_answer(arm.ops.poll(m.group(1)), poll_url, arm.retry_after)
    if rest == "/resourcegroups":
        return 200, _list_groups(arm, request.query.get("$filter", "")), {}
    if m := re.fullmatch(r"/resourcegroups/([^/]+)", rest):
        return _resource_group(arm, request.method, m.group(1), lower, body, base)
    if kind in TYPES:
        return _resource(arm, request.method, path, kind, body, base)
    raise ArmError(404, "InvalidResourceType", f"No route for {request.method} {path}.")


def _list_groups(arm: FakeARM, tag_filter: str) -> JSON:
    groups = [r for p, r in arm.resources.items() if kind_of(p) == "resourcegroups"]
    if m := re.fullmatch(r"tagName eq '([^']+)' and tagValue eq '([^']+)'", tag_filter.strip()):
        groups = [g for g in groups if g.get("tags", {}).get(m.group(1)) == m.group(2)]
    return {"value": copy.deepcopy(groups)}


def _resource_group(arm: FakeARM, method: str, name: str, lower: str, body: Any, base: str) -> Answer:
    existing = arm.resources.get(lower)
    if method == "PUT":
        if not isinstance(body, dict) or not isinstance(body.get("location"), str):
            raise ArmError(400, "LocationRequired", "The location property is required for this definition.")
        check_shape(body)
        group = arm.group_resource(name, body["location"], body.get("tags", {}))
        arm.resources[lower] = group
        return (200 if existing else 201), copy.deepcopy(group), {}
    if existing is None:
        raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{name}' could not be found.")
    if method == "GET":
        return 200, copy.deepcopy(existing), {}
    if method == "DELETE":
        existing["properties"]["provisioningState"] = "Deleting"
        op = arm.ops.start("resourcegroups", lower, polls=arm.polls_per_operation)
        url = f"{base}/subscriptions/{arm.subscription_id}/operationresults/{op.id}?api-version=2025-04-01"
        return 202, None, {"Location": url, "Retry-After": arm.retry_after}
    raise ArmError(405, "MethodNotAllowed", f"{method} is not supported here.")


def _resource(arm: FakeARM, method: str, path: str, kind: str, body: Any, base: str) -> Answer:
    lower = path.lower()
    parts = path.split("/")
    group_path = "/".join(parts[:5]).lower()
    if group_path not in arm.resources:
        raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{parts[4]}' could not be found.")
    existing = arm.resources.get(lower)
    if method == "GET":
        if existing is None:
            raise ArmError(404, "ResourceNotFound", f"The Resource '{path}' was not found.")
        return 200, public_view(existing), {}
    if method != "PUT":
        raise ArmError(405, "MethodNotAllowed", f"{method} is not supported here.")
    if not isinstance(body, dict):
        raise ArmError(400, "InvalidRequestContent", "The request content is not a JSON object.")
    check_shape(body)
    if existing is not None and existing["properties"].get("provisioningState") in ("Creating", "Updating"):
        raise ArmError(409, "AnotherOperationInProgress", f"Another operation on '{parts[-1]}' is in progress.")
    group_location = arm.resources[group_path]["location"]
    VALIDATORS[kind](body, group_location, Known(arm.resources, arm.skus))
    namespace, resource_type = TYPES[kind]
    resource = copy.deepcopy(body)
    resource.update({"id": path, "name": parts[-1], "type": f"{namespace}/{resource_type}"})
    resource.setdefault("properties", {})
    resource["properties"]["provisioningState"] = "Updating" if existing else "Creating"
    _fill_in(arm, kind, resource)
    arm.resources[lower] = resource
    op = arm.ops.start(kind, lower, polls=arm.polls_per_operation)
    location = resource.get("location", group_location)
    url = (
        f"{base}/subscriptions/{arm.subscription_id}/providers/{namespace}/locations/{location}"
        f"/operations/{op.id}?api-version=2026-01-01"
    )
    headers = {"Azure-AsyncOperation": url, "Retry-After": arm.retry_after}
    return (200 if existing else 201), public_view(resource), headers


def _fill_in(arm: FakeARM, kind: str, resource: JSON) -> None:
    """What ARM adds to a body it accepts: addresses, the VM's id."""
    serial = arm.next_serial()
    props = resource["properties"]
    if kind == "publicipaddresses":
        props["ipAddress"] = f"20.50.{serial // 250}.{serial % 250 + 1}"
    elif kind == "networkinterfaces":
        for config in props["ipConfigurations"]:
            config["properties"]["privateIPAddress"] = "10.0.0.4"
    elif kind == "virtualmachines":
        props["vmId"] = str(uuid.uuid4())
