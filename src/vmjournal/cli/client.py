"""A small synchronous HTTP client for the vmjournal API, used by the CLI.

It knows the routes and the wire formats (JSON, NDJSON pages linked by ``Link: rel=next``,
Server-Sent Events) and nothing about terminals. Every failure is an ``APIError`` that says
what went wrong in words a person can act on, with an exit code the CLI hands to the shell.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from vmjournal.cli.event_query import EventQuery
from vmjournal.cli.exits import APIError, ExitCode

_EXIT_FOR_STATUS = {401: ExitCode.AUTH, 403: ExitCode.AUTH, 404: ExitCode.NOT_FOUND, 409: ExitCode.CONFLICT}


def _error_message(response: httpx.Response) -> str:
    """The JSON error text, whatever its shape (FastAPI's ``detail`` or our ``message``)."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:300] or response.reason_phrase
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        for key in ("message", "detail", "error"):
            value = body.get(key)
            if isinstance(value, str):
                return value
            if isinstance(value, list):
                # FastAPI's validation errors: [{"loc": [...], "msg": "..."}]
                parts = []
                for item in value:
                    if isinstance(item, dict):
                        loc = ".".join(str(p) for p in item.get("loc", [])[1:])
                        parts.append(f"{loc}: {item.get('msg')}" if loc else str(item.get("msg")))
                if parts:
                    return "; ".join(parts)
    return response.text[:300]


@dataclass
class SSEMessage:
    event: str
    data: str
    id: str | None


class Client:
    """One connection pool to one service; ``api_key`` goes out as a bearer token."""

    def __init__(self, url: str, api_key: str | None = None, *, timeout: float = 30.0) -> None:
        headers = {"User-Agent": "vmjournal-cli"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        self._check(response)
        return response

    def _unreachable(self, exc: Exception) -> APIError:
        return APIError(
            f"cannot reach the vmjournal service at {self.url} ({exc.__class__.__name__}: {exc}); "
            "is it running? (set --url or VMJOURNAL_URL)",
            exit_code=ExitCode.UNREACHABLE,
        )

    @staticmethod
    def _check(response: httpx.Response) -> None:
        if response.is_success:
            return
        if response.is_stream_consumed is False:
            response.read()
        status = response.status_code
        message = _error_message(response)
        if status == 401:
            message += " (set VMJOURNAL_API_KEY)"
        raise APIError(message, exit_code=_EXIT_FOR_STATUS.get(status, ExitCode.ERROR), status=status)

    @staticmethod
    def _vm_path(name: str) -> str:
        return "/vm/" + quote(name, safe="")

    def _journal_path(self, names: str | Sequence[str], unit: str | None) -> tuple[str, dict[str, Any]]:
        """One VM's route, or the fleet's (``/journal``) for several VMs or a glob."""
        if isinstance(names, str) and not any(c in names for c in "*?["):
            return self._boot_path(names, unit), {}
        extra: dict[str, Any] = {"vm": [names] if isinstance(names, str) else list(names)}
        if unit:
            extra["unit"] = unit
        return "/journal", extra

    def histogram(self, names: str | Sequence[str], query: EventQuery, step: str | None = None) -> dict[str, Any]:
        """Log volume per bucket and priority, of one VM or of the fleet."""
        path, extra = self._journal_path(names, None)
        params: dict[str, Any] = {**query.params(), **({"step": step} if step else {})}
        if path == "/journal":
            path, params = "/journal/histogram", {**params, **extra, **({"unit": query.unit} if query.unit else {})}
        else:
            path = self._vm_path(str(names)) + "/histogram"
            if query.unit:
                params["unit"] = query.unit
        result: dict[str, Any] = self._request("GET", path, params=params).json()
        return result

    def _boot_path(self, name: str, unit: str | None) -> str:
        path = self._vm_path(name) + "/boot"
        if unit:
            path += "/" + quote(unit, safe="")
        return path

    # -- VMs --------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/").json()
        return result

    def list_vms(self) -> list[dict[str, Any]]:
        body = self._request("GET", "/vm").json()
        if isinstance(body, dict):
            # Accept an envelope ({"data": [...]}) as well as a bare list.
            for key in ("data", "vms", "items"):
                if isinstance(body.get(key), list):
                    return list(body[key])
        return list(body)

    def get_vm(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", self._vm_path(name)).json()
        return result

    def create_vm(self, name: str, size: str, provider: str | None = None) -> dict[str, Any]:
        params = {"provider": provider} if provider else None
        path = f"{self._vm_path(name)}/{quote(size, safe='')}"
        result: dict[str, Any] = self._request("POST", path, params=params).json()
        return result

    def delete_vm(self, name: str) -> dict[str, Any]:
        response = self._request("DELETE", self._vm_path(name))
        if not response.content:
            return {}
        result: dict[str, Any] = response.json()
        return result

    # -- alerts -----------------------------------------------------------------------------

    @staticmethod
    def _alert_path(name: str) -> str:
        return "/alerts/" + quote(name, safe="")

    def create_alert(self, rule: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", "/alerts", json=rule).json()
        return result

    def list_alerts(self) -> list[dict[str, Any]]:
        return list(self._request("GET", "/alerts").json())

    def get_alert(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", self._alert_path(name)).json()
        return result

    def alert_events(self, name: str, limit: int) -> list[dict[str, Any]]:
        return list(self._request("GET", self._alert_path(name) + "/events", params={"limit": limit}).json())

    def delete_alert(self, name: str) -> None:
        self._request("DELETE", self._alert_path(name))

    # -- journal ----------------------------------------------------------------------------

    def events(self, name: str | Sequence[str], query: EventQuery) -> Iterator[dict[str, Any]]:
        """All matching events (or the first ``query.limit``) as an NDJSON stream; a ``Link: rel=next``
        header, if the server paginates, is followed. Several names or a glob read the fleet."""
        path, extra = self._journal_path(name, query.unit)
        params: dict[str, Any] = {**query.params(), **extra}
        wanted = query.limit
        url: str | None = path
        sent = 0
        first = True
        while url:
            try:
                with self._http.stream(
                    "GET", url, params=params if first else None, headers={"Accept": "application/x-ndjson"}
                ) as response:
                    self._check(response)
                    for line in response.iter_lines():
                        if not line.strip():
                            continue
                        yield orjson.loads(line)
                        sent += 1
                    url = response.links.get("next", {}).get("url")
            except httpx.TransportError as exc:
                raise self._unreachable(exc) from exc
            first = False
            if wanted is not None and sent >= wanted:
                return

    def follow(
        self,
        name: str | Sequence[str],
        query: EventQuery,
        *,
        last_event_id: str | None = None,
        retry: bool = True,
        skip_backlog: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Matching events as they arrive, over Server-Sent Events, reconnecting with Last-Event-ID.

        The server first sends the last ``query.limit`` events (the backlog), then ``event: live``;
        ``skip_backlog`` drops the backlog (``-n 0``)."""
        path, extra = self._journal_path(name, query.unit)
        params: dict[str, Any] = {**query.params(), **extra}
        delay = 0.5
        while True:
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
            if last_event_id:
                headers["Last-Event-ID"] = last_event_id
            try:
                with self._http.stream(
                    "GET", path, params=params, headers=headers, timeout=httpx.Timeout(30.0, read=None)
                ) as response:
                    self._check(response)
                    delay = 0.5
                    for message in parse_sse(response.iter_lines()):
                        if message.id is not None:
                            last_event_id = message.id
                        if message.event == "live":
                            skip_backlog = False
                        elif message.event == "overflow":
                            # We fell behind; reconnecting with our last id loses nothing.
                            break
                        elif message.event in ("", "message") and message.data and not skip_backlog:
                            yield orjson.loads(message.data)
            except (httpx.TransportError, httpx.RemoteProtocolError) as exc:
                if not retry:
                    raise self._unreachable(exc) from exc
            if not retry:
                return
            # The server closed the stream (restart, deploy): resume where we were.
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
            # A reconnect must not replay the backlog a fresh follow would send.
            params.pop("limit", None)


def parse_sse(lines: Iterator[str]) -> Iterator[SSEMessage]:
    """Server-Sent Events, as the HTML living standard parses them (comments and retry ignored)."""
    event = ""
    data: list[str] = []
    event_id: str | None = None
    for raw in lines:
        line = raw.rstrip("\r")
        if not line:
            if data or event:
                yield SSEMessage(event=event, data="\n".join(data), id=event_id)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            event_id = value
    if data:
        yield SSEMessage(event=event, data="\n".join(data), id=event_id)
