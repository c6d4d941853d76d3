"""A fake Azure Resource Manager over HTTP, for driving the real Azure SDK in tests.

It speaks the wire protocol the SDK's ARM polling expects (research notes §2): network and
compute PUTs answer 201 with ``Azure-AsyncOperation``, the operation URL is polled until a
terminal ``status``, then the SDK does a final GET of the resource; a resource group DELETE
answers 202 with ``Location`` (``operations``). It checks request bodies the way ARM does
(``validators``: REST camelCase under ``properties``, ids that point at resources that exist, a
Standard static public IP, SSH-key-only Linux, the CustomScript 2.1 extension with its secret
in ``protectedSettings``), so a request of the wrong shape fails with a 400 ARM error instead
of passing silently. Sizes and quota come from ``catalog``; ``dispatch`` routes each request.

Tests inject failures (``fail_next``, ``fail_operation``), hold operations in flight
(``hold``/``release``), forget operations (``expire_operations``) and read every request
from ``requests``. The server runs on its own thread and event loop, so it keeps answering
while a test blocks.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from fake_arm.catalog import Sku, default_skus, default_usage
from fake_arm.dispatch import dispatch
from fake_arm.operations import Operations
from fake_arm.wire import JSON, ArmError, Recorded, kind_of


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
        self.ops = Operations(self.resources)
        self.requests: list[Recorded] = []
        self.skus: list[Sku] = default_skus()
        self.usage: dict[str, tuple[int, int]] = default_usage()
        # How many polls an operation answers InProgress before it ends.
        self.polls_per_operation = 0
        self.retry_after = "1"
        self._injected: list[Injected] = []
        self._lock = threading.Lock()
        self._serials = itertools.count(1)
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
            self.ops.failing[kind.lower()] = {"code": code, "message": message, "details": []}

    def hold(self, kind: str) -> None:
        """Keep operations on ``kind`` in progress until ``release``."""
        with self._lock:
            self.ops.held_kinds.add(kind.lower())

    def release(self, kind: str) -> None:
        with self._lock:
            self.ops.release(kind.lower())

    def expire_operations(self) -> None:
        """Forget every operation, as ARM does some time after it ended: its URL answers 404."""
        with self._lock:
            self.ops.forget()

    def finish_expired(self) -> None:
        """End the operations that ``expire_operations`` forgot while they were held."""
        with self._lock:
            self.ops.finish_forgotten()

    def polled(self, kind: str) -> int:
        """How often the operations on ``kind`` that the fake still knows were polled."""
        with self._lock:
            return self.ops.polled(kind.lower())

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
            path = f"/subscriptions/{self.subscription_id}/resourcegroups/{name}".lower()
            self.resources[path] = self.group_resource(name, self.location, tags)

    def resource_groups(self) -> list[str]:
        with self._lock:
            return [r["name"] for p, r in self.resources.items() if kind_of(p) == "resourcegroups"]

    # -- for the handlers (called under the lock) -----------------------------------------------

    def raise_injected(self, method: str, kind: str) -> None:
        """Raise the failure a test queued for this request, once."""
        for i, injected in enumerate(self._injected):
            if injected.method == method and injected.kind == kind:
                del self._injected[i]
                raise ArmError(injected.status, injected.code, injected.message, injected.headers)

    def group_resource(self, name: str, location: str, tags: dict[str, str]) -> JSON:
        return {
            "id": f"/subscriptions/{self.subscription_id}/resourceGroups/{name}",
            "name": name,
            "type": "Microsoft.Resources/resourceGroups",
            "location": location,
            "tags": dict(tags),
            "properties": {"provisioningState": "Succeeded"},
        }

    def next_serial(self) -> int:
        return next(self._serials)

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
                status, payload, headers = dispatch(self, request, body)
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
