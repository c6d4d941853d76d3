"""Names and request bodies of the Azure resources behind one VM.

Bodies are REST wire-shape dicts (camelCase, nested under ``properties``): the 2026 SDKs send
a plain dict verbatim, so the snake_case dicts of older samples would reach ARM unchanged and
be ignored or refused. Every name derives from the VM id, so a resumed job finds the same
resources, and every resource carries our tags, so a leftover one can be found again.
"""

from __future__ import annotations

import base64
import gzip
import time
from dataclasses import dataclass
from typing import Any

from vmjournal.config import AzureSettings
from vmjournal.net import hostname_label
from vmjournal.providers.base import VMSpec

JSON = dict[str, Any]

MANAGED_BY = "vmjournal"
TAG_MANAGED_BY = "managed-by"
TAG_VM_NAME = "vmjournal-vm"
TAG_VM_ID = "vmjournal-vm-id"
EXTENSION_NAME = "vmjournal-agent"
# CustomScript refuses a script larger than this (base64 of the possibly gzipped text).
_SCRIPT_LIMIT = 256 * 1024


@dataclass(frozen=True)
class ResourceNames:
    subscription_id: str
    resource_group: str
    nsg: str
    vnet: str
    subnet: str
    public_ip: str
    nic: str
    vm: str
    os_disk: str
    extension: str

    @classmethod
    def for_spec(cls, spec: VMSpec, subscription_id: str) -> ResourceNames:
        base = spec.resource_name
        return cls(
            subscription_id=subscription_id,
            resource_group=f"{base}-rg",
            nsg=f"{base}-nsg",
            vnet=f"{base}-vnet",
            subnet="default",
            public_ip=f"{base}-ip",
            nic=f"{base}-nic",
            vm=base,
            os_disk=f"{base}-osdisk",
            extension=EXTENSION_NAME,
        )

    def _id(self, provider: str, kind: str, name: str) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/{provider}/{kind}/{name}"
        )

    @property
    def nsg_id(self) -> str:
        return self._id("Microsoft.Network", "networkSecurityGroups", self.nsg)

    @property
    def subnet_id(self) -> str:
        return self._id("Microsoft.Network", "virtualNetworks", self.vnet) + f"/subnets/{self.subnet}"

    @property
    def public_ip_id(self) -> str:
        return self._id("Microsoft.Network", "publicIPAddresses", self.public_ip)

    @property
    def nic_id(self) -> str:
        return self._id("Microsoft.Network", "networkInterfaces", self.nic)


def tags(spec: VMSpec) -> dict[str, str]:
    # Tag values are limited to 256 characters.
    return {TAG_MANAGED_BY: MANAGED_BY, TAG_VM_NAME: spec.name[:256], TAG_VM_ID: str(spec.vm_id)}


def resource_group(spec: VMSpec, settings: AzureSettings) -> JSON:
    return {"location": settings.location, "tags": tags(spec)}


def nsg(spec: VMSpec, settings: AzureSettings) -> JSON:
    rules: list[JSON] = []
    sources = [s.strip() for s in settings.ssh_source_range.split(",") if s.strip()]
    if sources:
        source: JSON = {"sourceAddressPrefix": sources[0]} if len(sources) == 1 else {"sourceAddressPrefixes": sources}
        rules.append(
            {
                "name": "allow-ssh",
                "properties": {
                    "protocol": "Tcp",
                    "access": "Allow",
                    "direction": "Inbound",
                    "priority": 1000,
                    "sourcePortRange": "*",
                    "destinationPortRange": "22",
                    "destinationAddressPrefix": "*",
                    **source,
                },
            }
        )
    # No rule at all otherwise: a Standard public IP is closed inbound, and the agent only dials out.
    return {"location": settings.location, "tags": tags(spec), "properties": {"securityRules": rules}}


def vnet(spec: VMSpec, settings: AzureSettings, names: ResourceNames) -> JSON:
    # The subnet is declared inline: one operation instead of two. New subnets are private by
    # default; the VM's Standard public IP gives it its outbound path to the service.
    return {
        "location": settings.location,
        "tags": tags(spec),
        "properties": {
            "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
            "subnets": [{"name": names.subnet, "properties": {"addressPrefix": "10.0.0.0/24"}}],
        },
    }


def public_ip(spec: VMSpec, settings: AzureSettings) -> JSON:
    return {
        "location": settings.location,
        "tags": tags(spec),
        "sku": {"name": "Standard", "tier": "Regional"},
        "properties": {"publicIPAllocationMethod": "Static", "publicIPAddressVersion": "IPv4"},
    }


def nic(spec: VMSpec, settings: AzureSettings, names: ResourceNames) -> JSON:
    return {
        "location": settings.location,
        "tags": tags(spec),
        "properties": {
            "ipConfigurations": [
                {
                    "name": "ipconfig1",
                    "properties": {
                        "subnet": {"id": names.subnet_id},
                        "publicIPAddress": {"id": names.public_ip_id},
                        "privateIPAllocationMethod": "Dynamic",
                    },
                }
            ],
            "networkSecurityGroup": {"id": names.nsg_id},
        },
    }


def image_reference(image: str) -> JSON:
    """``publisher:offer:sku:version`` (an image URN) or the resource id of a custom image."""
    if image.startswith("/"):
        return {"id": image}
    parts = image.split(":")
    if len(parts) != 4 or not all(parts):
        raise ValueError(f"image must be publisher:offer:sku:version or an image resource id, not {image!r}")
    publisher, offer, sku, version = parts
    return {"publisher": publisher, "offer": offer, "sku": sku, "version": version}


def computer_name(spec: VMSpec) -> str:
    """The guest's hostname: the VM's name where Linux and Azure accept it, else the resource name."""
    return hostname_label(spec.name) or spec.resource_name


def vm(spec: VMSpec, settings: AzureSettings, names: ResourceNames, ssh_public_key: str) -> JSON:
    admin = settings.admin_user
    return {
        "location": settings.location,
        "tags": tags(spec),
        "properties": {
            "hardwareProfile": {"vmSize": settings.sku_for(spec.size)},
            "storageProfile": {
                "imageReference": image_reference(settings.image),
                "osDisk": {
                    "name": names.os_disk,
                    "createOption": "FromImage",
                    "caching": "ReadWrite",
                    "managedDisk": {"storageAccountType": "StandardSSD_LRS"},
                    "deleteOption": "Delete",
                },
            },
            "osProfile": {
                "computerName": computer_name(spec),
                "adminUsername": admin,
                "linuxConfiguration": {
                    "disablePasswordAuthentication": True,
                    "ssh": {
                        "publicKeys": [
                            {"path": f"/home/{admin}/.ssh/authorized_keys", "keyData": ssh_public_key},
                        ]
                    },
                    # The VM agent runs extensions; without it the CustomScript never starts.
                    "provisionVMAgent": True,
                },
            },
            "networkProfile": {
                "networkInterfaces": [
                    {"id": names.nic_id, "properties": {"primary": True, "deleteOption": "Delete"}},
                ]
            },
        },
    }


def encode_script(script: str) -> str:
    """Base64 for ``protectedSettings.script``; gzipped first when plain would be too large."""
    raw = script.encode()
    encoded = base64.b64encode(raw).decode()
    if len(encoded) > _SCRIPT_LIMIT:
        encoded = base64.b64encode(gzip.compress(raw, mtime=0)).decode()
    if len(encoded) > _SCRIPT_LIMIT:
        raise ValueError(f"the bootstrap script is {len(encoded)} bytes encoded; CustomScript takes 256 KiB")
    return encoded


def extension(spec: VMSpec, settings: AzureSettings, script: str) -> JSON:
    return {
        "location": settings.location,
        "tags": tags(spec),
        "properties": {
            "publisher": "Microsoft.Azure.Extensions",
            "type": "CustomScript",
            "typeHandlerVersion": "2.1",
            "autoUpgradeMinorVersion": True,
            # Public settings are readable by anyone who can GET the VM: nothing secret here.
            # A new timestamp makes a re-delivered script (a fresh token) run again.
            "settings": {"timestamp": int(time.time()) & 0x7FFFFFFF},
            # Encrypted to the VM and never returned by a GET: the script carries the ingest token.
            "protectedSettings": {"script": encode_script(script)},
        },
    }
