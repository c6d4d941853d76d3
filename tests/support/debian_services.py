"""What a Debian server guest's journal is made of (``debian_journal.txt``, beside this module): its
services and what each says, what PID 1 and the kernel say. Data for ``support.realistic``.

A line's text is a ``str.format`` template; ``FILL`` makes its placeholders' values (one value per
name per entry, so a name used twice in a line, or in a line and its extra fields, agrees).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

Transport = Literal["journal", "stdout", "syslog", "driver"]


@dataclass(frozen=True)
class Line:
    text: str
    priority: int = 6
    weight: float = 1.0
    code: str = ""  # "CODE_FILE:CODE_LINE:CODE_FUNC" of a sender using the journal API
    message_id: str = ""
    extra: tuple[tuple[str, str], ...] = ()  # more fields, templates like the text


@dataclass(frozen=True)
class Service:
    unit: str
    description: str
    comm: str
    exe: str
    cmdline: str
    transport: Transport
    weight: float  # share of the journal's userspace lines
    lines: tuple[Line, ...] = ()
    uid: str = "0"
    gid: str = "0"
    caps: str = "1ffffffffff"
    identifier: str = ""  # SYSLOG_IDENTIFIER; empty: the comm
    facility: str = "3"
    procs: int = 1  # processes writing at once (workers), each with its own _PID
    churn: float = 0.0  # chance per line that its process is a new one (sshd per connection, sudo)
    runs: int = 0  # a oneshot started by a timer: a new invocation every this many lines
    slice: str = "system.slice"
    cgroup: str = ""  # empty: /<slice>/<unit>
    extra: tuple[tuple[str, str], ...] = ()


def _hex(n: int) -> Callable[[random.Random], str]:
    return lambda r: f"{r.getrandbits(4 * n):0{n}x}"


_USERS = ["admin", "deploy", "alice", "bob", "ansible"]
_BAD_USERS = ["oracle", "test", "ubuntu", "user", "postgres", "git", "pi", "support", "guest", "ftpuser"]
_PATHS = ["/", "/api/v1/cart", "/api/v1/items/{}", "/products/{}", "/static/app.{}.js", "/checkout", "/search?q=s{}"]
_AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "curl/7.88.1",
    "Prometheus/2.42.0",
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
]
_TABLES = ["orders", "order_items", "products", "sessions", "carts", "payments", "stock_moves"]
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

FILL: dict[str, Callable[[random.Random], str]] = {
    "ip": lambda r: f"{r.choice((10, 172, 185, 91, 203))}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}",
    "port": lambda r: str(r.randrange(1024, 65536)),
    "user": lambda r: r.choice(_USERS),
    "baduser": lambda r: r.choice(_BAD_USERS),
    "n": lambda r: str(r.randrange(1, 100_000)),
    "small": lambda r: str(r.randrange(1, 10)),
    "pct": lambda r: f"{r.random() * 10:.1f}",
    "ms": lambda r: str(int(r.expovariate(1 / 40)) + 1),
    "sec3": lambda r: f"{r.expovariate(1 / 0.2):.3f}",
    "bytes": lambda r: str(r.randrange(200, 90_000)),
    "status": lambda r: r.choice(("200",) * 12 + ("304", "301", "404", "499", "502")),
    "method": lambda r: r.choice(("GET",) * 6 + ("POST", "HEAD")),
    "path": lambda r: r.choice(_PATHS).format(r.randrange(1, 9973)),
    "ua": lambda r: r.choice(_AGENTS),
    "table": lambda r: r.choice(_TABLES),
    "b64": lambda r: "".join(r.choices(_B64, k=43)),
    "hex7": _hex(7),
    "hex12": _hex(12),
    "hex32": _hex(32),
    "hex64": _hex(64),
    "uuid": lambda r: "{}-{}-{}-{}-{}".format(*(f"{r.getrandbits(4 * k):0{k}x}" for k in (8, 4, 4, 4, 12))),
    "pid": lambda r: str(r.randrange(300, 60_000)),
    "date": lambda r: (
        f"2025-11-{r.randrange(20, 28)} {r.randrange(24):02d}:{r.randrange(60):02d}:{r.randrange(60):02d}"
    ),
    "ms3": lambda r: f"{r.randrange(1000):03d}",
    "dbus": lambda r: r.choice(("hostname1", "timedate1", "locale1", "PackageKit")),
    "pkg": lambda r: r.choice(("libssl3", "openssl", "tzdata", "linux-image-6.1.0-28-cloud-amd64", "nginx-common")),
}

_LINE = re.compile(r"<([0-7])>(?:\*([0-9.]+) )?(.*)")


def _line(spec: str) -> Line:
    head, *fields = spec.split(" | ")
    m = _LINE.fullmatch(head)
    if m is None:
        raise ValueError(f"not a line: {spec!r}")
    pairs = [(k, v) for k, v in (f.split("=", 1) for f in fields)]
    named = dict(pairs)
    extra = tuple((k, v) for k, v in pairs if k not in ("CODE", "MESSAGE_ID"))
    return Line(m[3], int(m[1]), float(m[2] or 1), named.get("CODE", ""), named.get("MESSAGE_ID", ""), extra)


def _sections(text: str) -> dict[str, dict[str, list[str]]]:
    """``[name]`` sections of ``key = value`` lines; a key may repeat."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        if not raw.strip() or raw.startswith("#"):
            continue
        if raw.startswith("["):
            current = sections.setdefault(raw.strip("[]"), {})
            continue
        key, value = raw.split(" = ", 1)
        current.setdefault(key, []).append(value)
    return sections


def _service(unit: str, keys: dict[str, list[str]]) -> Service:
    one = {k: v[-1] for k, v in keys.items()}
    return Service(
        unit=unit,
        description=one["description"],
        comm=one["comm"],
        exe=one["exe"],
        cmdline=one["cmdline"],
        transport=cast(Transport, one["transport"]),
        weight=float(one["weight"]),
        lines=tuple(_line(spec) for spec in keys.get("line", [])),
        uid=one.get("uid", "0"),
        gid=one.get("gid", "0"),
        caps=one.get("caps", "1ffffffffff"),
        identifier=one.get("identifier", ""),
        facility=one.get("facility", "3"),
        procs=int(one.get("procs", 1)),
        churn=float(one.get("churn", 0)),
        runs=int(one.get("runs", 0)),
        slice=one.get("slice", "system.slice"),
        cgroup=one.get("cgroup", ""),
        extra=tuple((k, v) for k, v in (f.split("=", 1) for f in keys.get("field", []))),
    )


_DATA = _sections((Path(__file__).parent / "debian_journal.txt").read_text())
_PID1 = _DATA.pop("pid1")
_KERNEL = _DATA.pop("kernel")
_KERNEL_BOOT = _DATA.pop("kernel-boot")
PID1_LINES = tuple(_line(s) for s in _PID1["line"])
PID1_PERCENT = float(_PID1["weight"][0])  # of userspace lines
KERNEL_LINES = tuple(_line(s) for s in _KERNEL["line"])
KERNEL_SHARE = float(_KERNEL["percent"][0]) / 100  # of the lines after each boot's burst
KERNEL_BOOT_LINES = tuple(_line(s) for s in _KERNEL_BOOT["line"])
KERNEL_BOOT_BURST = int(_KERNEL_BOOT["count"][0])
SERVICES = tuple(_service(unit, keys) for unit, keys in _DATA.items())
