#!/usr/bin/env python3
"""vmjournal-agent: ship this machine's systemd journal to a vmjournal service, each entry once.

Pipeline:  journalctl -o json --all [--after-cursor=C | --boot] [--follow]  ->  batches  ->  gzip  ->  POST

          It first reads to the end without --follow (journalctl's --follow implies --boot, which
          would skip the rest of an earlier boot after C), then follows from the last cursor.

Reads     the system journal (or --directory / --file) by running journalctl; needs root or the
          systemd-journal group, nothing else. No shell, no third-party modules (Python 3.8+ stdlib).
Sends     POST <url>/vm/<name>/boot, "Authorization: Bearer <token>", a gzipped JSON array of
          `journalctl -o json` objects. A batch closes at --batch-entries, --batch-bytes, or
          --flush-seconds after its first entry arrived; up to --in-flight batches (default 2) are
          on the wire at once. Redirects are not followed. A --file is re-read every second
          (journalctl cannot follow a single file). vmjournal_agent_send.py, installed beside this
          file, does the sending.
State     --state-file holds LAST_CURSOR=<cursor of the last entry the service acknowledged, with
          every entry before it acknowledged too>. It is rewritten (temp file, fsync, rename) only
          after a 2xx for that batch and every batch before it, and on start the agent resumes after
          it, so the end of the previous boot is not lost. Without a state it sends the current boot
          (with --directory/--file: everything in them). A crash resends at most the batches that
          were in flight, which the service deduplicates by __CURSOR.
Errors    Network errors, 5xx, 408 and 429 retry the batch with exponential backoff and jitter (at most
          60 s), honouring Retry-After. 3xx, 401, 403 and 404 mean the agent is misconfigured, not that
          an entry is bad: retried every minute or so. Any other 4xx splits the batch in halves until
          the rejected entries are found; each is reported on stderr and skipped.
It never listens on a port and never runs anything the service sends.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from typing import IO, Any

# No __pycache__ beside the installed files (nor in the source tree the service's package ships).
sys.dont_write_bytecode = True
from vmjournal_agent_send import TICK, Sender, Watchdog, Window, sd_notify, write_cursor  # noqa: E402

VERSION = "0.1.0"
DEFAULT_CONFIG = "/etc/vmjournal-agent/agent.conf"
DEFAULT_STATE = "/var/lib/vmjournal-agent/state"
# fmt: off
DEFAULTS: dict[str, Any] = {
    "url": None, "name": None, "token": None, "token_file": None, "state_file": DEFAULT_STATE,
    "directory": None, "file": None, "once": False, "verbose": False,
    "batch_entries": 2000, "batch_bytes": 4 * 1024 * 1024, "flush_seconds": 1.0, "in_flight": 2,
}
NUMBERS = {"batch_entries": int, "batch_bytes": int, "flush_seconds": float, "in_flight": int}
# fmt: on

log = logging.getLogger("vmjournal-agent")


class ConfigError(Exception):
    pass


def read_chunks(fd: int, chunks: queue.Queue[bytes], stop: threading.Event) -> None:
    """Move journalctl's output into ``chunks`` (bounded: memory stays small); b"" marks the end."""
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except OSError:
            chunk = b""
        while True:
            try:
                chunks.put(chunk, timeout=1.0)
                break
            except queue.Full:
                if stop.is_set():
                    return
        if not chunk:
            return


class Agent:
    def __init__(self, cfg: argparse.Namespace, token: str) -> None:
        self.cfg = cfg
        self.endpoint = f"{cfg.url.rstrip('/')}/vm/{urllib.parse.quote(cfg.name, safe='')}/boot"
        headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
        headers.update({"Content-Encoding": "gzip", "User-Agent": "vmjournal-agent/" + VERSION})
        self.watchdog = Watchdog()
        self.window = Window(Sender(self.endpoint, headers, self.watchdog), cfg.state_file, cfg.in_flight)

    def journalctl(self, follow: bool) -> subprocess.Popen[bytes]:
        argv = ["journalctl", "-o", "json", "--all", "--no-pager", "-q"]
        if self.cfg.directory:
            argv += ["--directory", self.cfg.directory]
        elif self.cfg.file:
            argv += ["--file", self.cfg.file]
        if self.window.cursor:
            argv.append("--after-cursor=" + self.window.cursor)
        elif not (self.cfg.directory or self.cfg.file):
            argv.append("--boot")
        if follow:
            argv += ["--follow", "--no-tail"]
        log.debug("running %s", " ".join(argv))
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)

    def run(self) -> None:
        sd_notify("READY=1")
        follow, failures = False, 0
        while True:
            proc = self.journalctl(follow)
            stdout: IO[bytes] = proc.stdout  # type: ignore[assignment]
            # A reader thread keeps journalctl producing while a batch is on the wire.
            chunks: queue.Queue[bytes] = queue.Queue(maxsize=64)
            stop = threading.Event()
            reader = threading.Thread(target=read_chunks, args=(stdout.fileno(), chunks, stop), daemon=True)
            reader.start()
            try:
                lines = self.pump(chunks)
            finally:
                stop.set()
                if proc.poll() is None:
                    proc.kill()
                code = proc.wait()
                reader.join(5)
                stdout.close()
            failures = failures + 1 if code != 0 and lines == 0 else 0
            if failures >= 3 and self.window.cursor:
                # A corrupt saved cursor must not stall the agent forever; the service
                # deduplicates whatever is sent again.
                log.error("journalctl keeps failing (exit %d) from the saved cursor; starting afresh", code)
                self.window.cursor = None
            elif self.cfg.once and (code == 0 or failures >= 3):
                if code != 0:
                    raise ConfigError(f"journalctl failed (exit {code})")
                log.info("done: %d entries sent, %d rejected", self.window.sent, self.window.skipped)
                return
            elif code == 0 and not follow and not self.cfg.file:
                follow = True  # caught up; journalctl cannot follow a single --file, so that is polled
                continue
            elif code != 0 or not self.cfg.file:
                log.warning("journalctl exited (%d); restarting it", code)
            follow = False
            self.watchdog.pause(min(60.0, 2.0**failures))

    def pump(self, chunks: queue.Queue[bytes]) -> int:
        """Read journalctl's output, sending batches as they close; returns the lines read at EOF."""
        cfg, rest, size, deadline, total = self.cfg, b"", 0, 0.0, 0
        batch: list[bytes] = []
        while True:
            timeout = TICK if not batch else max(0.0, min(TICK, deadline - time.monotonic()))
            try:
                chunk: bytes | None = chunks.get(timeout=timeout)
            except queue.Empty:
                chunk = None
            if chunk == b"":
                if rest.strip():
                    batch.append(rest)
                if batch:
                    self.window.ship(batch)
                self.window.drain()  # the next journalctl starts after the saved cursor
                return total
            if chunk:
                lines = (rest + chunk).split(b"\n")
                rest = lines.pop()
                for line in lines:
                    if not line:
                        continue
                    if not batch:
                        deadline = time.monotonic() + cfg.flush_seconds
                    batch.append(line)
                    size += len(line) + 1
                    total += 1
                    if len(batch) >= cfg.batch_entries or size >= cfg.batch_bytes:
                        self.window.ship(batch)
                        batch, size = [], 0
            if batch and time.monotonic() >= deadline:
                self.window.ship(batch)
                batch, size = [], 0
            self.watchdog.ping()


def parse_config(path: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith(("#", ";", "[")):
                continue
            key, sep, value = line.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in DEFAULTS:
                raise ConfigError(f"{path}:{number}: expected one of {', '.join(DEFAULTS)} = value")
            values[key] = value.strip()
    for key in ("once", "verbose"):
        if key in values:
            values[key] = values[key].lower() in ("1", "yes", "true", "on")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="vmjournal-agent",
        description="Ship the systemd journal to a vmjournal service: the current boot first (or everything "
        "after the saved cursor), then new entries as they are written. Every option can also be set in the "
        "config file as 'name = value' (e.g. 'batch-entries = 500'), where command-line options override "
        "them; the token goes only there (token = ...) or in --token-file, never on the command line.",
    )
    p.add_argument("--config", metavar="FILE", help=f"config file (default {DEFAULT_CONFIG} if it exists)")
    p.add_argument("--url", help="base URL of the vmjournal service, e.g. https://logs.example.com")
    p.add_argument("--name", help="this VM's name in the service")
    p.add_argument("--token-file", metavar="F", help="file holding the VM's ingest token")
    p.add_argument("--state-file", metavar="F", help=f"where the acknowledged cursor is kept ({DEFAULT_STATE})")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--directory", "-D", metavar="D", help="read the journal files in D (journalctl -D)")
    src.add_argument("--file", metavar="F", help="read the journal file F (journalctl --file)")
    p.add_argument("--once", action="store_true", default=None, help="send what is there, then exit")
    p.add_argument("--batch-entries", type=int, metavar="N", help="most entries per request (default 2000)")
    p.add_argument("--batch-bytes", type=int, metavar="N", help="most JSON bytes per request (default 4 MiB)")
    p.add_argument("--flush-seconds", type=float, metavar="S", help="send S s after a batch's first entry (1)")
    p.add_argument("--in-flight", type=int, metavar="N", help="batches on the wire at once (default 2; 1: one by one)")
    p.add_argument("-v", "--verbose", action="store_true", default=None, help="log every request (to stderr)")
    p.add_argument("--version", action="version", version="vmjournal-agent " + VERSION)
    args = p.parse_args(argv)
    settings = dict(DEFAULTS)
    config = args.config or (DEFAULT_CONFIG if os.path.exists(DEFAULT_CONFIG) else None)
    if config:
        settings.update(parse_config(config))
    settings.update({k: v for k, v in vars(args).items() if v is not None and k != "config"})
    try:
        for key, kind in NUMBERS.items():
            settings[key] = kind(settings[key])
    except ValueError as exc:
        raise ConfigError(f"bad number: {exc}") from None
    if settings["directory"] and settings["file"]:
        raise ConfigError("give --directory or --file, not both")
    return argparse.Namespace(**settings)


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_args(argv)
    except (ConfigError, OSError) as exc:
        sys.stderr.write(f"vmjournal-agent: {exc}\n")
        return 2
    level = logging.DEBUG if cfg.verbose else logging.INFO
    logging.basicConfig(stream=sys.stderr, level=level, format="%(levelname)s %(message)s")
    try:
        for key in ("url", "name"):
            if not getattr(cfg, key):
                raise ConfigError(f"--{key} is required (or '{key} = ...' in the config file)")
        if urllib.parse.urlsplit(cfg.url).scheme not in ("http", "https"):
            raise ConfigError("--url must start with http:// or https://")
        token = cfg.token
        if cfg.token_file:
            with open(cfg.token_file, encoding="utf-8") as f:
                token = f.read().strip()
        if not token:
            raise ConfigError("no token: set --token-file, or 'token = ...' in the config file")
        if min(cfg.batch_entries, cfg.batch_bytes, cfg.in_flight) < 1 or cfg.flush_seconds < 0:
            raise ConfigError("batch sizes and --in-flight must be positive and --flush-seconds not negative")
        os.makedirs(os.path.dirname(os.path.abspath(cfg.state_file)), exist_ok=True)
        # One agent per state file; and fail now, not after the first batch, if state cannot be saved.
        lock = open(cfg.state_file + ".lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another agent is using {cfg.state_file}") from None
        agent = Agent(cfg, token)
        write_cursor(cfg.state_file, agent.window.cursor)
    except (ConfigError, OSError) as exc:
        log.error("%s", exc)
        return 2

    def stop(*_: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    source = cfg.directory or cfg.file or "the journal"
    cursor = agent.window.cursor or "none: from the start"
    log.info("shipping %s to %s (after cursor %s)", source, agent.endpoint, cursor)
    try:
        agent.run()
    except ConfigError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
