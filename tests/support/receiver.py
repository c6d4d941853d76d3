"""A real webhook receiver on loopback: records every POST and answers the status codes it is given."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when it arrived

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def key(self) -> str:
        return self.headers["idempotency-key"]

    def signed_with(self, secret: str) -> bool:
        expected = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.headers.get("x-vmjournal-signature", ""), expected)


class Receiver:
    """``answers`` are the status codes of the first requests, in order; 200 after them."""

    def __init__(self, answers: list[int] | None = None, port: int = 0) -> None:
        self.answers = list(answers or [])
        self.received: list[Received] = []
        self.answered: list[int] = []
        # Seconds to hold the first request before answering it (to kill the sender mid-POST).
        self.delay_first = 0.0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            # Keep-alive, as webhook endpoints answer: a sender reuses its connection.
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.received.append(
                        Received({k.lower(): v for k, v in self.headers.items()}, body, time.time())
                    )
                    status = receiver.answers.pop(0) if receiver.answers else 200
                    receiver.answered.append(status)
                    delay = receiver.delay_first if len(receiver.received) == 1 else 0.0
                time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender is gone (killed mid-POST)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port: int = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def ok(self) -> list[Received]:
        """The requests answered 2xx."""
        with self._lock:
            return [r for r, s in zip(self.received, self.answered, strict=True) if 200 <= s < 300]

    async def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        """At least ``count`` requests received (whatever they were answered)."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.received)} requests received, wanted {count}")
            await asyncio.sleep(0.02)
        return list(self.received)

    def wait_for_sync(self, count: int, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.received)} requests received, wanted {count}")
            time.sleep(0.02)
        return list(self.received)
