"""The compute catalog: which VM sizes the location offers, and the subscription's vCPU quota."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fake_arm.wire import JSON


@dataclass
class Sku:
    name: str
    family: str
    vcpus: int
    restricted: bool = False


def default_skus() -> list[Sku]:
    return [
        Sku("Standard_B2ats_v2", "standardBasv2Family", 2),
        Sku("Standard_D2as_v5", "standardDASv5Family", 2),
        Sku("Standard_D4as_v5", "standardDASv5Family", 4),
    ]


def default_usage() -> dict[str, tuple[int, int]]:
    """Quota name -> (current, limit)."""
    return {"cores": (0, 20), "standardBasv2Family": (0, 10), "standardDASv5Family": (0, 10)}


def skus_body(skus: list[Sku], location: str, location_filter: str) -> JSON:
    """``GET .../providers/Microsoft.Compute/skus?$filter=location eq 'X'``."""
    m = re.search(r"location eq '([^']+)'", location_filter)
    if not m or m.group(1).lower() != location.lower():
        return {"value": []}
    out: list[JSON] = []
    for sku in skus:
        restrictions = []
        if sku.restricted:
            restrictions.append(
                {
                    "type": "Location",
                    "values": [location],
                    "restrictionInfo": {"locations": [location]},
                    "reasonCode": "NotAvailableForSubscription",
                }
            )
        out.append(
            {
                "resourceType": "virtualMachines",
                "name": sku.name,
                "tier": "Standard",
                "size": sku.name.split("_", 1)[1],
                "family": sku.family,
                "locations": [location],
                "locationInfo": [{"location": location, "zones": ["1", "2", "3"]}],
                "capabilities": [{"name": "vCPUs", "value": str(sku.vcpus)}],
                "restrictions": restrictions,
            }
        )
    out.append({"resourceType": "disks", "name": "StandardSSD_LRS", "locations": [location]})
    return {"value": out}


def usages_body(usage: dict[str, tuple[int, int]], location: str, asked: str) -> JSON:
    """``GET .../providers/Microsoft.Compute/locations/X/usages`` (``asked`` is lower case, from the path)."""
    if asked != location.lower():
        return {"value": []}
    return {
        "value": [
            {"unit": "Count", "currentValue": current, "limit": limit, "name": {"value": name, "localizedValue": name}}
            for name, (current, limit) in usage.items()
        ]
    }
