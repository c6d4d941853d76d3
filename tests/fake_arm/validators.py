"""Request bodies checked as ARM checks them, one function per resource kind.

Each takes the body, the resource group's location and what exists, and raises the ``ArmError``
ARM would answer; a body it passes is one ARM would accept.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fake_arm.catalog import Sku
from fake_arm.wire import JSON, ArmError, check_location, kind_of, member


@dataclass(frozen=True)
class Known:
    """What a body may refer to: the resources that exist (by lower-case path) and the VM sizes offered."""

    resources: Mapping[str, JSON]
    skus: list[Sku]

    def check_reference(self, ref: Any, what: str, kind: str) -> None:
        if not isinstance(ref, dict) or not isinstance(ref.get("id"), str):
            raise ArmError(400, "InvalidRequestFormat", f"{what} must be an object with an 'id'.")
        if kind_of(ref["id"].lower()) != kind or ref["id"].lower() not in self.resources:
            raise ArmError(400, "InvalidResourceReference", f"Resource {ref['id']} referenced by {what} was not found.")


def network_security_group(body: JSON, location: str, known: Known) -> None:
    check_location(body, location)
    for rule in member(body, "properties", default={}).get("securityRules", []):
        props = member(rule, "properties")
        for key in ("protocol", "access", "direction", "priority", "destinationPortRange"):
            member(props, key)
        if not (props.get("sourceAddressPrefix") or props.get("sourceAddressPrefixes")):
            raise ArmError(400, "SecurityRuleInvalidAddressPrefix", "A source address prefix is required.")


def virtual_network(body: JSON, location: str, known: Known) -> None:
    check_location(body, location)
    prefixes = member(body, "properties", "addressSpace", "addressPrefixes")
    if not prefixes:
        raise ArmError(400, "InvalidAddressSpace", "addressPrefixes must not be empty.")
    for inline in body["properties"].get("subnets", []):
        member(inline, "name")
        subnet(inline, location, known)


def subnet(body: JSON, location: str, known: Known) -> None:
    """A subnet on its own path, or inline in its VNet's body (it has no location of its own)."""
    member(body, "properties", "addressPrefix")
    if "networkSecurityGroup" in body["properties"]:
        known.check_reference(body["properties"]["networkSecurityGroup"], "subnet NSG", "networksecuritygroups")


def public_ip_address(body: JSON, location: str, known: Known) -> None:
    check_location(body, location)
    if member(body, "sku", "name") != "Standard":
        raise ArmError(400, "BasicSkuPublicIpIsRetired", "Basic SKU public IP addresses can no longer be created.")
    if member(body, "properties", "publicIPAllocationMethod") != "Static":
        raise ArmError(
            400,
            "StandardSkuPublicIPAddressesMustBeStatic",
            "Standard sku public IP addresses must have allocation method Static.",
        )


def network_interface(body: JSON, location: str, known: Known) -> None:
    check_location(body, location)
    configs = member(body, "properties", "ipConfigurations")
    if not configs:
        raise ArmError(400, "InvalidRequestFormat", "At least one ipConfiguration is required.")
    for config in configs:
        member(config, "name")
        props = member(config, "properties")
        subnet_ref = member(props, "subnet")
        subnet_id = subnet_ref.get("id", "") if isinstance(subnet_ref, dict) else ""
        path = subnet_id.lower()
        vnet = known.resources.get(path.rsplit("/subnets/", 1)[0])
        inline = [s["name"].lower() for s in (vnet or {}).get("properties", {}).get("subnets", [])]
        # A subnet exists on its own path, or inline in its VNet's body.
        if path not in known.resources and (vnet is None or path.rsplit("/", 1)[-1] not in inline):
            raise ArmError(400, "InvalidResourceReference", f"Subnet {subnet_id} referenced by the NIC was not found.")
        if "publicIPAddress" in props:
            known.check_reference(props["publicIPAddress"], "NIC public IP", "publicipaddresses")
    if "networkSecurityGroup" in body["properties"]:
        known.check_reference(body["properties"]["networkSecurityGroup"], "NIC NSG", "networksecuritygroups")


def virtual_machine(body: JSON, location: str, known: Known) -> None:
    check_location(body, location)
    size = member(body, "properties", "hardwareProfile", "vmSize")
    if size.lower() not in {sku.name.lower() for sku in known.skus}:
        raise ArmError(400, "InvalidParameter", f"The value {size} provided for the VM size is not valid.")
    image = member(body, "properties", "storageProfile", "imageReference")
    if "id" not in image:
        for key in ("publisher", "offer", "sku", "version"):
            member(image, key)
    if member(body, "properties", "storageProfile", "osDisk", "createOption") != "FromImage":
        raise ArmError(400, "InvalidParameter", "osDisk.createOption must be FromImage for an image.")
    os_profile = member(body, "properties", "osProfile")
    member(os_profile, "computerName")
    admin = member(os_profile, "adminUsername")
    linux = member(os_profile, "linuxConfiguration")
    if "adminPassword" in os_profile or linux.get("disablePasswordAuthentication") is not True:
        raise ArmError(400, "InvalidParameter", "This fake only accepts SSH-key-only Linux VMs.")
    keys = member(linux, "ssh", "publicKeys")
    if not keys or any(
        key.get("path") != f"/home/{admin}/.ssh/authorized_keys" or not str(key.get("keyData", "")).startswith("ssh-")
        for key in keys
    ):
        raise ArmError(400, "InvalidParameter", "ssh.publicKeys needs keyData and the admin's authorized_keys path.")
    nics = member(body, "properties", "networkProfile", "networkInterfaces")
    if not nics:
        raise ArmError(400, "InvalidParameter", "At least one network interface is required.")
    for nic in nics:
        known.check_reference(nic, "networkProfile", "networkinterfaces")


def extension(body: JSON, location: str, known: Known) -> None:
    check_location(body, location)
    props = member(body, "properties")
    if (props.get("publisher"), props.get("type")) != ("Microsoft.Azure.Extensions", "CustomScript"):
        raise ArmError(400, "InvalidParameter", "Only Microsoft.Azure.Extensions/CustomScript is known here.")
    if not str(props.get("typeHandlerVersion", "")).startswith("2."):
        raise ArmError(400, "InvalidParameter", "CustomScript for Linux needs typeHandlerVersion 2.x.")
    protected = props.get("protectedSettings")
    if not isinstance(protected, dict) or not (protected.get("script") or protected.get("commandToExecute")):
        raise ArmError(400, "InvalidParameter", "protectedSettings with script or commandToExecute is required.")
    public = props.get("settings") or {}
    both = set(public) & set(protected)
    if both:
        raise ArmError(400, "VMExtensionProvisioningError", f"Keys in both settings and protectedSettings: {both}.")
    if "script" in protected:
        try:
            base64.b64decode(protected["script"], validate=True)
        except ValueError as e:
            raise ArmError(400, "InvalidParameter", "protectedSettings.script is not base64.") from e


Validator = Callable[[JSON, str, Known], None]
# By the kind ``wire.kind_of`` names: every kind in ``wire.TYPES`` has one.
VALIDATORS: dict[str, Validator] = {
    "networksecuritygroups": network_security_group,
    "virtualnetworks": virtual_network,
    "subnets": subnet,
    "publicipaddresses": public_ip_address,
    "networkinterfaces": network_interface,
    "virtualmachines": virtual_machine,
    "extensions": extension,
}
