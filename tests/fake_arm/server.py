"""A fake Azure Resource Manager over HTTP, for driving the real Azure SDK in tests.

It speaks the wire protocol the SDK's ARM polling expects (research notes §2): network and
compute PUTs answer 201 with ``Azure-AsyncOperation``, the operation URL is polled until a
terminal ``status``, then the SDK does a final GET of the resource; a resource group DELETE
answers 202 with ``Location``. It checks request bodies the way ARM does (REST camelCase
under ``properties``, ids that point at resources that exist, a Standard static public IP,
SSH-key-only Linux, the CustomScript 2.1 extension with its secret in ``protectedSettings``),
so a request of the wrong shape fails with a 400 ARM error instead of passing silently.

Tests inject failures (``fail_next``, ``fail_operation``), hold operations in flight
(``hold``/``release``), forget operations (``expire_operations``) and read every request
from ``requests``. The server runs on its own thread and event loop, so it keeps answering
while a test blocks.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import itertools
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

JSON = dict[str, Any]

# Resource types created through a long-running operation, keyed by the last path segment kind.
_TYPES = {
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
_TOP_LEVEL = {
    "location",
    "tags",
    "properties",
    "sku",
    "zones",
    "identity",
    "name",
    "id",
    "type",
    "etag",
    "plan",
}


class ArmError(Exception):
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


@dataclass
class Operation:
    id: str
    kind: str
    path: str | None  # resource path (lower case); None for a delete of a resource group
    polls_left: int
    held: bool
    status: str = "InProgress"
    error: JSON | None = None
    polled: int = 0


@dataclass
class Sku:
    name: str
    family: str
    vcpus: int
    restricted: bool = False


@dataclass
class Injected:
    method: str
    kind: str
    status: int
    code: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)


class FakeARM:
    """State and behaviour of the fake; ``start()`` serves it on 127.0.0.1 and a free port."""

    def __init__(self, *, subscription_id: str, token: str, location: str = "westeurope") -> None:
        self.subscription_id = subscription_id
        self.token = token
        self.location = location
        self.resources: dict[str, JSON] = {}
        self.operations: dict[str, Operation] = {}
        self.requests: list[Recorded] = []
        self.skus = [
            Sku("Standard_B2ats_v2", "standardBasv2Family", 2),
            Sku("Standard_D2as_v5", "standardDASv5Family", 2),
            Sku("Standard_D4as_v5", "standardDASv5Family", 4),
        ]
        self.usage: dict[str, tuple[int, int]] = {
            "cores": (0, 20),
            "standardBasv2Family": (0, 10),
            "standardDASv5Family": (0, 10),
        }
        # How many polls an operation answers InProgress before it ends.
        self.polls_per_operation = 0
        self.retry_after = "1"
        self._injected: list[Injected] = []
        self._failing_ops: dict[str, JSON] = {}
        self._held: set[str] = set()
        self._orphan_held: list[Operation] = []
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- test controls ---------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(
        self,
        method: str,
        kind: str,
        *,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``method`` request on a resource of ``kind`` with an ARM error."""
        with self._lock:
            self._injected.append(Injected(method, kind.lower(), status, code, message, headers or {}))

    def fail_operation(self, kind: str, *, code: str, message: str) -> None:
        """Make the next long-running operation on ``kind`` end ``Failed`` (the poll answers 200)."""
        with self._lock:
            self._failing_ops[kind.lower()] = {"code": code, "message": message, "details": []}

    def hold(self, kind: str) -> None:
        """Keep operations on ``kind`` in progress until ``release``."""
        with self._lock:
            self._held.add(kind.lower())

    def release(self, kind: str) -> None:
        with self._lock:
            self._held.discard(kind.lower())
            for op in self.operations.values():
                if op.kind == kind.lower() and op.held:
                    op.held = False
                    self._finish(op)

    def expire_operations(self) -> None:
        """Forget every operation, as ARM does some time after it ended: its URL answers 404."""
        with self._lock:
            for op in self.operations.values():
                if op.status == "InProgress" and not op.held:
                    self._finish(op)
            # Held ones keep their resource in progress; release() would find nothing to end.
            held = [op for op in self.operations.values() if op.held]
            self.operations.clear()
            self._orphan_held = held

    def finish_expired(self) -> None:
        """End the operations that ``expire_operations`` forgot while they were held."""
        with self._lock:
            for op in self._orphan_held:
                op.held = False
                self._finish(op)
            self._orphan_held = []

    def polled(self, kind: str) -> int:
        """How often the operations on ``kind`` that the fake still knows were polled."""
        with self._lock:
            return sum(op.polled for op in self.operations.values() if op.kind == kind.lower())

    def calls(self, method: str, kind: str) -> list[Recorded]:
        """The recorded requests of ``method`` whose path ends in a resource of ``kind``."""
        with self._lock:
            return [r for r in self.requests if r.method == method and kind_of(r.path) == kind.lower()]

    def resource(self, path_suffix: str) -> JSON | None:
        with self._lock:
            for path, res in self.resources.items():
                if path.endswith(path_suffix.lower()):
                    return copy.deepcopy(res)
        return None

    def add_resource_group(self, name: str, tags: dict[str, str]) -> None:
        """A group made outside the service (an earlier deployment, a crashed test run)."""
        with self._lock:
            self.resources[f"/subscriptions/{self.subscription_id}/resourcegroups/{name}".lower()] = {
                "id": f"/subscriptions/{self.subscription_id}/resourceGroups/{name}",
                "name": name,
                "type": "Microsoft.Resources/resourceGroups",
                "location": self.location,
                "tags": dict(tags),
                "properties": {"provisioningState": "Succeeded"},
            }

    def resource_groups(self) -> list[str]:
        with self._lock:
            return [r["name"] for p, r in self.resources.items() if kind_of(p) == "resourcegroups"]

    # -- serving ------------------------------------------------------------------------------

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application(client_max_size=4 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-arm", daemon=True)
        self._thread.start()
        ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
        with self._lock:
            try:
                status, payload, headers = self._dispatch(request, body)
            except ArmError as e:
                status, headers = e.status, e.headers
                payload = {"error": {"code": e.code, "message": e.message, "details": []}}
            self.requests.append(
                Recorded(
                    request.method,
                    request.path,
                    dict(request.query),
                    body,
                    status,
                    time.monotonic(),
                    {k: v for k, v in request.headers.items() if k.lower() != "authorization"},
                )
            )
        headers = {"x-ms-request-id": str(uuid.uuid4()), **headers}
        if payload is None:
            return web.Response(status=status, headers=headers)
        return web.json_response(payload, status=status, headers=headers)

    # -- protocol --------------------------------------------------------------------------

    def _dispatch(self, request: web.Request, body: Any) -> tuple[int, JSON | None, dict[str, str]]:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            raise ArmError(401, "AuthenticationFailed", "Authentication failed: missing or wrong bearer token.")
        if "api-version" not in request.query:
            raise ArmError(400, "MissingApiVersionParameter", "The api-version query parameter is required.")
        path = request.path.rstrip("/")
        lower = path.lower()
        prefix = f"/subscriptions/{self.subscription_id}"
        if not lower.startswith(prefix):
            raise ArmError(404, "SubscriptionNotFound", f"The subscription in '{path}' could not be found.")
        kind = kind_of(lower)
        for i, inj in enumerate(self._injected):
            if inj.method == request.method and inj.kind == kind:
                del self._injected[i]
                raise ArmError(inj.status, inj.code, inj.message, inj.headers)
        rest = lower[len(prefix) :]
        base = f"{request.scheme}://{request.host}"
        if rest == "/providers/microsoft.compute/skus":
            return 200, self._skus(request.query.get("$filter", "")), {}
        if m := re.fullmatch(r"/providers/microsoft\.compute/locations/([^/]+)/usages", rest):
            return 200, self._usages(m.group(1)), {}
        if m := re.fullmatch(r"/providers/[^/]+/locations/[^/]+/operations/([^/]+)", rest):
            return self._poll(m.group(1))
        if m := re.fullmatch(r"/operationresults/([^/]+)", rest):
            return self._poll_delete(m.group(1), base, path)
        if rest == "/resourcegroups":
            return 200, self._list_groups(request.query.get("$filter", "")), {}
        if m := re.fullmatch(r"/resourcegroups/([^/]+)", rest):
            return self._resource_group(request.method, m.group(1), lower, body, base)
        if kind in _TYPES:
            return self._resource(request.method, path, lower, kind, body, base)
        raise ArmError(404, "InvalidResourceType", f"No route for {request.method} {path}.")

    def _skus(self, filt: str) -> JSON:
        m = re.search(r"location eq '([^']+)'", filt)
        if not m or m.group(1).lower() != self.location.lower():
            return {"value": []}
        out = []
        for s in self.skus:
            restrictions = []
            if s.restricted:
                restrictions.append(
                    {
                        "type": "Location",
                        "values": [self.location],
                        "restrictionInfo": {"locations": [self.location]},
                        "reasonCode": "NotAvailableForSubscription",
                    }
                )
            out.append(
                {
                    "resourceType": "virtualMachines",
                    "name": s.name,
                    "tier": "Standard",
                    "size": s.name.split("_", 1)[1],
                    "family": s.family,
                    "locations": [self.location],
                    "locationInfo": [{"location": self.location, "zones": ["1", "2", "3"]}],
                    "capabilities": [{"name": "vCPUs", "value": str(s.vcpus)}],
                    "restrictions": restrictions,
                }
            )
        out.append({"resourceType": "disks", "name": "StandardSSD_LRS", "locations": [self.location]})
        return {"value": out}

    def _usages(self, location: str) -> JSON:
        if location != self.location.lower():
            return {"value": []}
        return {
            "value": [
                {
                    "unit": "Count",
                    "currentValue": cur,
                    "limit": lim,
                    "name": {"value": name, "localizedValue": name},
                }
                for name, (cur, lim) in self.usage.items()
            ]
        }

    def _list_groups(self, filt: str) -> JSON:
        groups = [r for p, r in self.resources.items() if kind_of(p) == "resourcegroups"]
        if m := re.fullmatch(r"tagName eq '([^']+)' and tagValue eq '([^']+)'", filt.strip()):
            groups = [g for g in groups if g.get("tags", {}).get(m.group(1)) == m.group(2)]
        return {"value": copy.deepcopy(groups)}

    def _resource_group(
        self, method: str, name: str, lower: str, body: Any, base: str
    ) -> tuple[int, JSON | None, dict[str, str]]:
        existing = self.resources.get(lower)
        if method == "PUT":
            if not isinstance(body, dict) or not isinstance(body.get("location"), str):
                raise ArmError(400, "LocationRequired", "The location property is required for this definition.")
            _check_shape(body)
            group = {
                "id": f"/subscriptions/{self.subscription_id}/resourceGroups/{name}",
                "name": name,
                "type": "Microsoft.Resources/resourceGroups",
                "location": body["location"],
                "tags": body.get("tags", {}),
                "properties": {"provisioningState": "Succeeded"},
            }
            self.resources[lower] = group
            return (200 if existing else 201), copy.deepcopy(group), {}
        if existing is None:
            raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{name}' could not be found.")
        if method == "GET":
            return 200, copy.deepcopy(existing), {}
        if method == "DELETE":
            existing["properties"]["provisioningState"] = "Deleting"
            op = self._new_op("resourcegroups", lower, held="resourcegroups" in self._held)
            url = f"{base}/subscriptions/{self.subscription_id}/operationresults/{op.id}?api-version=2025-04-01"
            return 202, None, {"Location": url, "Retry-After": self.retry_after}
        raise ArmError(405, "MethodNotAllowed", f"{method} is not supported here.")

    def _resource(
        self, method: str, path: str, lower: str, kind: str, body: Any, base: str
    ) -> tuple[int, JSON | None, dict[str, str]]:
        parts = path.split("/")
        group_path = "/".join(parts[:5]).lower()
        if group_path not in self.resources:
            raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{parts[4]}' could not be found.")
        existing = self.resources.get(lower)
        if method == "GET":
            if existing is None:
                raise ArmError(404, "ResourceNotFound", f"The Resource '{path}' was not found.")
            return 200, _public(existing), {}
        if method != "PUT":
            raise ArmError(405, "MethodNotAllowed", f"{method} is not supported here.")
        if not isinstance(body, dict):
            raise ArmError(400, "InvalidRequestContent", "The request content is not a JSON object.")
        _check_shape(body)
        if existing is not None and existing["properties"].get("provisioningState") in (
            "Creating",
            "Updating",
        ):
            raise ArmError(409, "AnotherOperationInProgress", f"Another operation on '{parts[-1]}' is in progress.")
        group_location = self.resources[group_path]["location"]
        validate = getattr(self, f"_validate_{kind}")
        validate(body, group_location)
        namespace, rtype = _TYPES[kind]
        resource = copy.deepcopy(body)
        resource.update({"id": path, "name": parts[-1], "type": f"{namespace}/{rtype}"})
        resource.setdefault("properties", {})
        resource["properties"]["provisioningState"] = "Updating" if existing else "Creating"
        self._enrich(kind, resource)
        self.resources[lower] = resource
        op = self._new_op(kind, lower, held=kind in self._held)
        location = resource.get("location", group_location)
        url = (
            f"{base}/subscriptions/{self.subscription_id}/providers/{namespace}/locations/{location}"
            f"/operations/{op.id}?api-version=2026-01-01"
        )
        headers = {"Azure-AsyncOperation": url, "Retry-After": self.retry_after}
        return (200 if existing else 201), _public(resource), headers

    def _enrich(self, kind: str, resource: JSON) -> None:
        n = next(self._counter)
        props = resource["properties"]
        if kind == "publicipaddresses":
            props["ipAddress"] = f"20.50.{n // 250}.{n % 250 + 1}"
        elif kind == "networkinterfaces":
            for cfg in props["ipConfigurations"]:
                cfg["properties"]["privateIPAddress"] = "10.0.0.4"
        elif kind == "virtualmachines":
            props["vmId"] = str(uuid.uuid4())

    def _new_op(self, kind: str, path: str, *, held: bool) -> Operation:
        op = Operation(uuid.uuid4().hex, kind, path, self.polls_per_operation, held)
        if kind in self._failing_ops:
            op.error = self._failing_ops.pop(kind)
        self.operations[op.id] = op
        return op

    def _finish(self, op: Operation) -> None:
        op.status = "Failed" if op.error else "Succeeded"
        if op.kind == "resourcegroups":
            assert op.path is not None
            for p in [p for p in self.resources if p == op.path or p.startswith(op.path + "/")]:
                del self.resources[p]
            return
        res = self.resources.get(op.path or "")
        if res is not None:
            res["properties"]["provisioningState"] = op.status

    def _poll(self, op_id: str) -> tuple[int, JSON | None, dict[str, str]]:
        op = self.operations.get(op_id)
        if op is None:
            raise ArmError(404, "OperationNotFound", f"The operation '{op_id}' was not found.")
        op.polled += 1
        if op.status == "InProgress" and not op.held:
            op.polls_left -= 1
            if op.polls_left < 0:
                self._finish(op)
        body: JSON = {"name": op.id, "status": op.status, "startTime": "2026-11-24T08:00:00Z"}
        if op.error and op.status == "Failed":
            body["error"] = op.error
        # A held operation is polled by a real client: keep it from spinning.
        return 200, body, {"Retry-After": "1" if op.held else self.retry_after}

    def _poll_delete(self, op_id: str, base: str, path: str) -> tuple[int, JSON | None, dict[str, str]]:
        op = self.operations.get(op_id)
        if op is None:
            raise ArmError(404, "OperationNotFound", f"The operation '{op_id}' was not found.")
        op.polled += 1
        if op.status == "InProgress" and not op.held:
            op.polls_left -= 1
            if op.polls_left < 0:
                self._finish(op)
        if op.status == "InProgress":
            return (
                202,
                None,
                {"Location": f"{base}{path}?api-version=2025-04-01", "Retry-After": self.retry_after},
            )
        return 200, None, {}

    # -- validation, as ARM would answer -------------------------------------------------------

    def _exists(self, ref: Any, what: str, kind: str) -> None:
        if not isinstance(ref, dict) or not isinstance(ref.get("id"), str):
            raise ArmError(400, "InvalidRequestFormat", f"{what} must be an object with an 'id'.")
        if kind_of(ref["id"].lower()) != kind or ref["id"].lower() not in self.resources:
            raise ArmError(400, "InvalidResourceReference", f"Resource {ref['id']} referenced by {what} was not found.")

    def _validate_networksecuritygroups(self, body: JSON, location: str) -> None:
        _location(body, location)
        for rule in _get(body, "properties", default={}).get("securityRules", []):
            props = _get(rule, "properties")
            for key in ("protocol", "access", "direction", "priority", "destinationPortRange"):
                _get(props, key)
            if not (props.get("sourceAddressPrefix") or props.get("sourceAddressPrefixes")):
                raise ArmError(400, "SecurityRuleInvalidAddressPrefix", "A source address prefix is required.")

    def _validate_virtualnetworks(self, body: JSON, location: str) -> None:
        _location(body, location)
        prefixes = _get(body, "properties", "addressSpace", "addressPrefixes")
        if not prefixes:
            raise ArmError(400, "InvalidAddressSpace", "addressPrefixes must not be empty.")
        for subnet in body["properties"].get("subnets", []):
            _get(subnet, "name")
            _get(subnet, "properties", "addressPrefix")
            if "networkSecurityGroup" in subnet["properties"]:
                self._exists(subnet["properties"]["networkSecurityGroup"], "subnet NSG", "networksecuritygroups")

    def _validate_subnets(self, body: JSON, location: str) -> None:
        _get(body, "properties", "addressPrefix")
        if "networkSecurityGroup" in body["properties"]:
            self._exists(body["properties"]["networkSecurityGroup"], "subnet NSG", "networksecuritygroups")

    def _validate_publicipaddresses(self, body: JSON, location: str) -> None:
        _location(body, location)
        if _get(body, "sku", "name") != "Standard":
            raise ArmError(400, "BasicSkuPublicIpIsRetired", "Basic SKU public IP addresses can no longer be created.")
        if _get(body, "properties", "publicIPAllocationMethod") != "Static":
            raise ArmError(
                400,
                "StandardSkuPublicIPAddressesMustBeStatic",
                "Standard sku public IP addresses must have allocation method Static.",
            )

    def _validate_networkinterfaces(self, body: JSON, location: str) -> None:
        _location(body, location)
        configs = _get(body, "properties", "ipConfigurations")
        if not configs:
            raise ArmError(400, "InvalidRequestFormat", "At least one ipConfiguration is required.")
        for cfg in configs:
            _get(cfg, "name")
            props = _get(cfg, "properties")
            subnet = _get(props, "subnet")
            sid = subnet.get("id", "") if isinstance(subnet, dict) else ""
            parent = sid.lower().rsplit("/subnets/", 1)[0]
            vnet = self.resources.get(parent)
            names = [s["name"].lower() for s in (vnet or {}).get("properties", {}).get("subnets", [])]
            if sid.lower() not in self.resources and (vnet is None or sid.lower().rsplit("/", 1)[-1] not in names):
                raise ArmError(400, "InvalidResourceReference", f"Subnet {sid} referenced by the NIC was not found.")
            if "publicIPAddress" in props:
                self._exists(props["publicIPAddress"], "NIC public IP", "publicipaddresses")
        if "networkSecurityGroup" in body["properties"]:
            self._exists(body["properties"]["networkSecurityGroup"], "NIC NSG", "networksecuritygroups")

    def _validate_virtualmachines(self, body: JSON, location: str) -> None:
        _location(body, location)
        size = _get(body, "properties", "hardwareProfile", "vmSize")
        if size.lower() not in {s.name.lower() for s in self.skus}:
            raise ArmError(400, "InvalidParameter", f"The value {size} provided for the VM size is not valid.")
        image = _get(body, "properties", "storageProfile", "imageReference")
        if "id" not in image:
            for key in ("publisher", "offer", "sku", "version"):
                _get(image, key)
        if _get(body, "properties", "storageProfile", "osDisk", "createOption") != "FromImage":
            raise ArmError(400, "InvalidParameter", "osDisk.createOption must be FromImage for an image.")
        os_profile = _get(body, "properties", "osProfile")
        _get(os_profile, "computerName")
        admin = _get(os_profile, "adminUsername")
        linux = _get(os_profile, "linuxConfiguration")
        if "adminPassword" in os_profile or linux.get("disablePasswordAuthentication") is not True:
            raise ArmError(400, "InvalidParameter", "This fake only accepts SSH-key-only Linux VMs.")
        keys = _get(linux, "ssh", "publicKeys")
        if not keys or any(
            k.get("path") != f"/home/{admin}/.ssh/authorized_keys" or not str(k.get("keyData", "")).startswith("ssh-")
            for k in keys
        ):
            raise ArmError(
                400, "InvalidParameter", "ssh.publicKeys needs keyData and the admin's authorized_keys path."
            )
        nics = _get(body, "properties", "networkProfile", "networkInterfaces")
        if not nics:
            raise ArmError(400, "InvalidParameter", "At least one network interface is required.")
        for nic in nics:
            self._exists(nic, "networkProfile", "networkinterfaces")

    def _validate_extensions(self, body: JSON, location: str) -> None:
        _location(body, location)
        props = _get(body, "properties")
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


def kind_of(path: str) -> str:
    parts = path.lower().rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] in _TYPES:
        return parts[-2]
    if len(parts) == 5 and parts[3] == "resourcegroups":
        return "resourcegroups"
    return ""


def _check_shape(body: JSON) -> None:
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


def _location(body: JSON, location: str) -> None:
    if body.get("location", "").lower() != location.lower():
        raise ArmError(400, "LocationRequired", f"The location must be set to the resource group's, '{location}'.")


def _get(node: Any, *keys: str, default: Any = None) -> Any:
    where = "$"
    for key in keys:
        where += f".{key}"
        if not isinstance(node, dict) or key not in node:
            if default is not None:
                return default
            raise ArmError(400, "InvalidRequestContent", f"The required member {where} is missing.")
        node = node[key]
    return node


def _public(resource: JSON) -> JSON:
    """What a GET returns: never the extension's protected settings."""
    out = copy.deepcopy(resource)
    out.get("properties", {}).pop("protectedSettings", None)
    return out
