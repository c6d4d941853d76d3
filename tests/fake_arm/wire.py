"""What every ARM request and answer shares: the error shape, resource paths, member checks."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]
# (status, body or None, headers): what a handler answers.
Answer = tuple[int, JSON | None, dict[str, str]]

# Resource types created through a long-running operation, keyed by the last path segment kind.
TYPES = {
    "networksecuritygroups": ("Microsoft.Network", "networkSecurityGroups"),
    "virtualnetworks": ("Microsoft.Network", "virtualNetworks"),
    "subnets": ("Microsoft.Network", "virtualNetworks/subnets"),
    "publicipaddresses": ("Microsoft.Network", "publicIPAddresses"),
    "networkinterfaces": ("Microsoft.Network", "networkInterfaces"),
    "virtualmachines": ("Microsoft.Compute", "virtualMachines"),
    "extensions": ("Microsoft.Compute", "virtualMachines/extensions"),
}
# Body keys that hold free-form maps, where names need not be camelCase.
_FREE_FORM = {"tags", "settings", "protectedSettings"}
_TOP_LEVEL = {"location", "tags", "properties", "sku", "zones", "identity", "name", "id", "type", "etag", "plan"}


class ArmError(Exception):
    """Answered as ARM answers a refusal: ``{"error": {"code", "message", "details"}}``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int
    at: float
    headers: dict[str, str]


def kind_of(path: str) -> str:
    """The resource kind a path names (``virtualmachines``, ``resourcegroups``), or ``""``."""
    parts = path.lower().rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] in TYPES:
        return parts[-2]
    if len(parts) == 5 and parts[3] == "resourcegroups":
        return "resourcegroups"
    return ""


def check_shape(body: JSON) -> None:
    """Reject what a snake_case SDK sample sends: ARM knows only camelCase members under ``properties``."""
    unknown = set(body) - _TOP_LEVEL
    if unknown:
        raise ArmError(400, "InvalidRequestContent", f"Could not find member(s) {sorted(unknown)} on the resource.")

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if "_" in key:
                    raise ArmError(400, "InvalidRequestContent", f"Could not find member '{key}' at {where}.")
                if key not in _FREE_FORM:
                    walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    walk({k: v for k, v in body.items() if k != "tags"}, "$")


def check_location(body: JSON, location: str) -> None:
    if body.get("location", "").lower() != location.lower():
        raise ArmError(400, "LocationRequired", f"The location must be set to the resource group's, '{location}'.")


def member(node: Any, *keys: str, default: Any = None) -> Any:
    """``node[keys[0]][keys[1]]...``; a missing one is ``default`` if given, else a 400 naming it."""
    where = "$"
    for key in keys:
        where += f".{key}"
        if not isinstance(node, dict) or key not in node:
            if default is not None:
                return default
            raise ArmError(400, "InvalidRequestContent", f"The required member {where} is missing.")
        node = node[key]
    return node


def public_view(resource: JSON) -> JSON:
    """What a GET returns: never the extension's protected settings."""
    out = copy.deepcopy(resource)
    out.get("properties", {}).pop("protectedSettings", None)
    return out
