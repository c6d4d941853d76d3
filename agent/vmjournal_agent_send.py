"""Delivery for vmjournal-agent (vmjournal_agent.py runs it): POST batches until the service
acknowledges them, and save the cursor only after everything before it was acknowledged.

Up to --in-flight batches are on the wire at once, each posted by a worker thread. A batch that fails
is retried on its own (Retry-After and backoff are shared, so the others wait too) while no new batch
goes out: a batch keeps its slot until it is saved, so the state file only ever names the last entry
of a run of acknowledged batches with nothing unacknowledged before it, and every retry starts at the
saved cursor. A crash loses at most the answers of the batches in flight; they are sent again and the
service deduplicates them. With --in-flight 1 the main thread posts each batch itself, as before.
"""

from __future__ import annotations

import email.utils
import gzip
import json
import logging
import os
import queue
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any

HTTP_TIMEOUT = 30.0
MAX_BACKOFF = 60.0
MAX_RETRY_AFTER = 600.0
MISCONFIGURED = {401, 403, 404}  # about the agent, not the entries: splitting would drop them all
TICK = 10.0  # longest wait between watchdog pings

log = logging.getLogger("vmjournal-agent")


class Rejected(Exception):
    """The service refused a batch for its content (a 4xx other than 408/429)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # surfaces as an HTTPError; a redirect would resend the token elsewhere


def sd_notify(message: str) -> None:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.debug("sd_notify failed: %s", exc)


class Watchdog:
    """Pings systemd's watchdog from whichever thread is making progress (reading or sending)."""

    def __init__(self) -> None:
        self.last_ping = 0.0

    def ping(self) -> None:
        now = time.monotonic()
        if now - self.last_ping >= TICK / 2:
            self.last_ping = now
            sd_notify("WATCHDOG=1")

    def pause(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            self.ping()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, TICK))


def read_cursor(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("LAST_CURSOR="):
                    return line[len("LAST_CURSOR=") :].strip() or None
    except FileNotFoundError:
        pass
    return None


def write_cursor(path: str, cursor: str | None) -> None:
    """Replace the state file atomically, so a crash leaves either the old cursor or the new one."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("# vmjournal-agent state. Do not edit.\n")
        if cursor:
            f.write(f"LAST_CURSOR={cursor}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def cursor_of(line: bytes) -> str | None:
    try:
        cursor = json.loads(line).get("__CURSOR")
    except (ValueError, AttributeError):
        return None
    return cursor if isinstance(cursor, str) else None


def retry_after(headers: Any) -> float | None:
    value = (headers or {}).get("Retry-After")
    if not value:
        return None
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(value)))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return min(MAX_RETRY_AFTER, max(0.0, when - time.time()))


class Sender:
    """Posts one batch until the service acknowledges it; safe to call from several threads."""

    def __init__(self, endpoint: str, headers: dict[str, str], watchdog: Watchdog) -> None:
        self.endpoint, self.headers, self.watchdog = endpoint, headers, watchdog
        self.opener = urllib.request.build_opener(_NoRedirect)
        # A Retry-After or backoff holds every batch, not only the one that was answered with it.
        self.not_before = 0.0

    def deliver(self, lines: list[bytes]) -> tuple[int, int]:
        """Send lines; on a content rejection, bisect to find and skip the offending entries.

        Returns how many entries were sent and how many were skipped."""
        while True:
            try:
                self.post(lines)
                return len(lines), 0
            except Rejected as exc:
                if len(lines) > 1:
                    mid = len(lines) // 2
                    first, second = self.deliver(lines[:mid]), self.deliver(lines[mid:])
                    return first[0] + second[0], first[1] + second[1]
                try:
                    self.post([])  # a service (or proxy) refusing even an empty batch is not the entry's fault
                except Rejected as again:
                    log.error("the service refuses every batch (%s); retrying in a minute", again)
                    self.watchdog.pause(60.0)
                    continue
                log.error("service rejected entry %s (%s); skipping it", cursor_of(lines[0]) or lines[0][:200], exc)
                return 0, 1

    def post(self, lines: list[bytes]) -> None:
        body = gzip.compress(b"[" + b",".join(lines) + b"]", compresslevel=3)
        attempt = 0
        while True:
            self.watchdog.pause(self.not_before - time.monotonic())  # also pings: a long bisect is progress
            request = urllib.request.Request(self.endpoint, data=body, headers=self.headers, method="POST")
            delay = min(MAX_BACKOFF, 0.5 * 2**attempt) * random.uniform(0.5, 1.0)
            try:
                with self.opener.open(request, timeout=HTTP_TIMEOUT) as response:
                    text = response.read(4096).decode("utf-8", "replace")
                log.debug("sent %d entries: HTTP %d %s", len(lines), response.status, text)
                return
            except urllib.error.HTTPError as exc:
                text = exc.read(500).decode("utf-8", "replace").strip()
                exc.close()
                if exc.code in (408, 429) or exc.code >= 500:
                    after = retry_after(exc.headers)
                    delay = delay if after is None else after
                elif exc.code in MISCONFIGURED or exc.code < 400:
                    delay = max(delay, 30.0 + random.uniform(0, 30.0))
                else:
                    raise Rejected(exc.code, text) from None
                problem = f"HTTP {exc.code}: {text}"
            except (OSError, ValueError) as exc:  # URLError, timeouts, resets, bad status lines
                problem = str(exc)
            log.warning("sending %d entries failed (%s); retrying in %.1f s", len(lines), problem, delay)
            attempt += 1
            self.not_before = max(self.not_before, time.monotonic() + delay)


class Window:
    """At most ``size`` batches between the saved cursor and the newest batch sent."""

    def __init__(self, sender: Sender, state_file: str, size: int) -> None:
        self.sender, self.state_file, self.size = sender, state_file, size
        self.cursor = read_cursor(state_file)
        self.sent = self.skipped = 0
        self.slots = threading.Semaphore(size)  # taken when a batch is shipped, given back once it is saved
        self.lock = threading.Lock()
        self.shipped = self.saved = 0  # batches numbered in journal order: handed out, saved
        self.acked: dict[int, str | None] = {}  # acknowledged but not saved yet: number -> its last cursor
        self.todo: queue.SimpleQueue[tuple[int, list[bytes]]] = queue.SimpleQueue()
        self.failure: BaseException | None = None
        for _ in range(size if size > 1 else 0):
            threading.Thread(target=self._work, daemon=True).start()

    def ship(self, lines: list[bytes]) -> None:
        """Hand a batch over; waits while ``size`` batches are not saved yet."""
        self._take()
        number, self.shipped = self.shipped, self.shipped + 1
        if self.size == 1:
            self._send(number, lines)
        else:
            self.todo.put((number, lines))

    def drain(self) -> None:
        """Wait until every batch shipped so far is acknowledged and its cursor saved."""
        for _ in range(self.size):
            self._take()
        for _ in range(self.size):
            self.slots.release()

    def _take(self) -> None:
        # No watchdog ping while waiting: the workers ping while they make progress, so a stuck
        # worker still gets the agent restarted.
        while not self.slots.acquire(timeout=TICK):
            self._check()
        self._check()

    def _check(self) -> None:
        if self.failure is not None:
            raise self.failure

    def _work(self) -> None:
        while True:
            number, lines = self.todo.get()
            try:
                self._send(number, lines)
            except BaseException as exc:  # re-raised in the main thread, which ends the agent
                self.failure = exc
                self.slots.release()
                return

    def _send(self, number: int, lines: list[bytes]) -> None:
        log.debug("sending %d entries (%d batches in flight)", len(lines), self.shipped - self.saved)
        sent, skipped = self.sender.deliver(lines)
        with self.lock:
            self.sent += sent
            self.skipped += skipped
            self.acked[number] = cursor_of(lines[-1])
            cursor, done = None, 0
            while self.saved in self.acked:  # the acknowledged prefix: save its last cursor once
                cursor = self.acked.pop(self.saved) or cursor
                self.saved += 1
                done += 1
            if cursor:
                write_cursor(self.state_file, cursor)
                self.cursor = cursor
        for _ in range(done):
            self.slots.release()
