"""Journals shaped like a Debian server guest's ``journalctl -o json --all``, deterministic from a seed.

About 29 fields and 1 kB of JSON per entry once read back: about 2 % kernel lines, the rest a few
dozen services (``support.debian_services``) and PID 1 about them. Each service runs one or a few
processes whose trusted fields (``_PID`` ... ``_SYSTEMD_INVOCATION_ID``, ``_STREAM_ID``) stay the
same for the process's life, so they repeat across thousands of entries as on a real machine;
per entry vary the message, priority, timestamps and code location.

The entries carry ``__REALTIME_TIMESTAMP``, ``__MONOTONIC_TIMESTAMP`` and ``_BOOT_ID`` for
``systemd-journal-remote`` (``support.journal_files.export_format``); journalctl then adds the
cursors. ``DebianGuest.take`` continues the same machine's journal, so a long one can be written and
read in pieces.
"""

from __future__ import annotations

import bisect
import itertools
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from support.debian_services import (
    FILL,
    KERNEL_BOOT_BURST,
    KERNEL_BOOT_LINES,
    KERNEL_LINES,
    KERNEL_SHARE,
    PID1_LINES,
    PID1_PERCENT,
    SERVICES,
    Line,
    Service,
)

Entry = dict[str, str]
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_PID1 = Service(
    "init.scope",
    "System and Service Manager",
    "systemd",
    "/usr/lib/systemd/systemd",
    "/sbin/init",
    "journal",
    0,
    (),
    slice="-.slice",
    cgroup="/init.scope",
    identifier="systemd",
)


class _Values(dict[str, str]):
    """A line's placeholder values, made on first use."""

    def __init__(self, rng: random.Random, **given: str) -> None:
        super().__init__(given)
        self.rng = rng

    def __missing__(self, key: str) -> str:
        value = self[key] = FILL[key](self.rng)
        return value


class _Picker:
    """Weighted choice among lines by one uniform draw."""

    def __init__(self, lines: tuple[Line, ...]) -> None:
        self.lines = lines
        self.bounds = list(itertools.accumulate(line.weight for line in lines))

    def pick(self, rng: random.Random) -> Line:
        return self.lines[bisect.bisect(self.bounds, rng.random() * self.bounds[-1])]


@dataclass
class _Unit:
    service: Service
    picker: _Picker
    invocation: str = ""
    procs: list[Entry] = field(default_factory=list)
    lines_left: int = 0  # of a oneshot's run


class DebianGuest:
    """One guest's journal as a stream: ``take(n)`` returns its next ``n`` entries, ``reboot()`` starts
    a new boot. Entries are ``interval_us`` apart on average (exponential gaps)."""

    def __init__(self, seed: int, *, start_us: int, interval_us: float, hostname: str = "") -> None:
        self.rng = random.Random(seed)
        self.machine_id = self._hex(32)
        self.hostname = hostname or f"shop-web-{seed:02d}"
        self.now_us = start_us
        self.interval_us = interval_us
        self.boot_ids: list[str] = []
        self._units = [_Unit(s, _Picker(s.lines)) for s in SERVICES]
        weights = [u.service.weight for u in self._units]
        self._unit_bounds = list(itertools.accumulate([*weights, PID1_PERCENT * sum(weights) / 100]))
        self._pid1 = _Picker(PID1_LINES)
        self._kernel = _Picker(KERNEL_LINES)
        self._kernel_boot = _Picker(KERNEL_BOOT_LINES)
        self._next_pid = 0
        self._boot_us = 0
        self._burst = 0
        self._pid1_proc: Entry = {}

    def _hex(self, digits: int) -> str:
        return f"{self.rng.getrandbits(4 * digits):0{digits}x}"

    def reboot(self, downtime_us: int = 90_000_000) -> None:
        """A new boot: new boot id, PIDs, invocations and streams; the kernel's burst comes first."""
        if self.boot_ids:
            self.now_us += downtime_us
        self.boot_ids.append(self._hex(32))
        self._boot_us = self.now_us - 2_500_000
        self._next_pid = 280
        self._burst = KERNEL_BOOT_BURST
        self._pid1_proc = self._process(_PID1, "", pid="1")
        for unit in self._units:
            unit.invocation, unit.procs, unit.lines_left = "", [], 0

    def _process(self, s: Service, invocation: str, pid: str = "") -> Entry:
        if not pid:
            self._next_pid += self.rng.randrange(1, 40)
            pid = str(self._next_pid)
        proc = {
            "_BOOT_ID": self.boot_ids[-1],
            "_MACHINE_ID": self.machine_id,
            "_HOSTNAME": self.hostname,
            "_RUNTIME_SCOPE": "system",
            "_TRANSPORT": s.transport,
            "_PID": pid,
            "_UID": s.uid,
            "_GID": s.gid,
            "_COMM": s.comm,
            "_EXE": s.exe,
            "_CMDLINE": s.cmdline,
            "_CAP_EFFECTIVE": s.caps,
            "_SELINUX_CONTEXT": "unconfined\n",
            "_SYSTEMD_CGROUP": s.cgroup or f"/{s.slice}/{s.unit}",
            "_SYSTEMD_UNIT": s.unit,
            "_SYSTEMD_SLICE": s.slice,
            "SYSLOG_IDENTIFIER": s.identifier or s.comm,
            "SYSLOG_FACILITY": s.facility,
            **dict(s.extra),
        }
        if invocation:
            proc["_SYSTEMD_INVOCATION_ID"] = invocation
        if s.transport == "stdout":
            proc["_STREAM_ID"] = self._hex(32)
        elif s.transport == "syslog":
            proc["SYSLOG_PID"] = pid
        return proc

    def _start(self, unit: _Unit) -> None:
        unit.invocation = self._hex(32)
        unit.procs = [self._process(unit.service, unit.invocation) for _ in range(unit.service.procs)]
        unit.lines_left = unit.service.runs

    def _tick(self) -> tuple[int, int]:
        self.now_us += max(1, int(self.rng.expovariate(1 / self.interval_us)))
        return self.now_us, self.now_us - self._boot_us

    def take(self, count: int) -> list[Entry]:
        """The journal's next ``count`` entries (the first boot starts on the first call)."""
        if not self.boot_ids:
            self.reboot()
        return [self._entry() for _ in range(count)]

    def _entry(self) -> Entry:
        rng = self.rng
        realtime, monotonic = self._tick()
        if self._burst or rng.random() < KERNEL_SHARE:
            return self._kernel_entry(realtime, monotonic)
        i = bisect.bisect(self._unit_bounds, rng.random() * self._unit_bounds[-1])
        if i == len(self._units):
            about = self._units[rng.randrange(len(self._units))]
            if not about.invocation:
                self._start(about)
            values = _Values(rng, unit=about.service.unit, desc=about.service.description)
            line = self._pid1.pick(rng)
            entry = self._pid1_proc | {"UNIT": about.service.unit, "INVOCATION_ID": about.invocation}
        else:
            unit = self._units[i]
            if not unit.invocation or (unit.lines_left == 1):
                self._start(unit)
            elif unit.lines_left:
                unit.lines_left -= 1
            k = rng.randrange(len(unit.procs))
            if unit.service.churn and rng.random() < unit.service.churn:
                unit.procs[k] = self._process(unit.service, unit.invocation)
            values = _Values(rng)
            line = unit.picker.pick(rng)
            entry = dict(unit.procs[k])
        entry |= {
            "__REALTIME_TIMESTAMP": str(realtime),
            "__MONOTONIC_TIMESTAMP": str(monotonic),
            "PRIORITY": str(line.priority),
            "MESSAGE": line.text.format_map(values),
        }
        transport = entry["_TRANSPORT"]
        if transport != "stdout":
            entry["_SOURCE_REALTIME_TIMESTAMP"] = str(realtime - rng.randrange(15, 400))
        if transport == "syslog":
            t = time.gmtime(realtime // 1_000_000)
            entry["SYSLOG_TIMESTAMP"] = (
                f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} "
            )
        if line.code:
            code_file, code_line, func = line.code.split(":")
            entry |= {"CODE_FILE": code_file, "CODE_LINE": code_line, "CODE_FUNC": func}
        if line.message_id:
            entry["MESSAGE_ID"] = line.message_id
        for key, template in line.extra:
            entry[key] = template.format_map(values)
        return entry

    def _kernel_entry(self, realtime: int, monotonic: int) -> Entry:
        rng = self.rng
        line = (self._kernel_boot if self._burst else self._kernel).pick(rng)
        if self._burst:
            self._burst -= 1
        values = _Values(rng)
        entry = {
            "__REALTIME_TIMESTAMP": str(realtime),
            "__MONOTONIC_TIMESTAMP": str(monotonic),
            "_BOOT_ID": self.boot_ids[-1],
            "_MACHINE_ID": self.machine_id,
            "_HOSTNAME": self.hostname,
            "_RUNTIME_SCOPE": "system",
            "_TRANSPORT": "kernel",
            "_SOURCE_MONOTONIC_TIMESTAMP": str(monotonic - rng.randrange(50, 5000)),
            "SYSLOG_FACILITY": "0",
            "SYSLOG_IDENTIFIER": "kernel",
            "PRIORITY": str(line.priority),
            "MESSAGE": line.text.format_map(values),
        }
        for key, template in line.extra:
            entry[key] = template.format_map(values)
        return entry


def journal(
    seed: int, count: int, *, start_us: int, interval_us: float, boots: int = 2, chunk: int = 100_000
) -> Iterator[list[Entry]]:
    """A guest's ``count`` entries over ``boots`` boots of equal length, in pieces of at most ``chunk``."""
    guest = DebianGuest(seed, start_us=start_us, interval_us=interval_us)
    cuts = sorted({count * b // boots for b in range(boots)} | {count})
    done = 0
    for _, hi in itertools.pairwise(cuts):
        guest.reboot()
        while done < hi:
            n = min(chunk, hi - done)
            yield guest.take(n)
            done += n


def corpus(seed: int, count: int, *, start_us: int, interval_us: float, boots: int = 2) -> list[Entry]:
    """``journal`` in one list."""
    return [e for piece in journal(seed, count, start_us=start_us, interval_us=interval_us, boots=boots) for e in piece]
