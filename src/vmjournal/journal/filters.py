"""journalctl's filter language: unit names, priorities, time specs, boot offsets, grep case."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta, tzinfo

from vmjournal.input_errors import InvalidInput

PRIORITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
_PRIORITY_ALIASES = {"panic": 0, "error": 3, "warn": 4}

# systemd's unit types: a name ending in one of these is taken as it is; anything else is a service.
UNIT_TYPES = (
    "service",
    "socket",
    "target",
    "device",
    "mount",
    "automount",
    "swap",
    "timer",
    "path",
    "slice",
    "scope",
)
_UNIT_NAME = re.compile(r"[A-Za-z0-9:_.\\@*?\[\]-]{1,256}")

_UNITS_US = {
    "us": 1,
    "usec": 1,
    "ms": 1000,
    "msec": 1000,
    "s": 1_000_000,
    "sec": 1_000_000,
    "second": 1_000_000,
    "seconds": 1_000_000,
    "m": 60_000_000,
    "min": 60_000_000,
    "minute": 60_000_000,
    "minutes": 60_000_000,
    "h": 3_600_000_000,
    "hr": 3_600_000_000,
    "hour": 3_600_000_000,
    "hours": 3_600_000_000,
    "d": 86_400_000_000,
    "day": 86_400_000_000,
    "days": 86_400_000_000,
    "w": 604_800_000_000,
    "week": 604_800_000_000,
    "weeks": 604_800_000_000,
}
_CLOCK = re.compile(r"\d{1,2}:\d{2}(:\d{2})?")
_SPAN_PART = re.compile(r"\s*(\d+)\s*([a-z]*)")


def unit_name(name: str) -> str:
    """``nginx`` -> ``nginx.service``, as ``journalctl -u`` mangles names; validated."""
    if not _UNIT_NAME.fullmatch(name):
        raise InvalidInput(
            f"invalid unit name {name!r}: use letters, digits and :_.\\@- (globs * ? [] allowed), at most 256",
            code="invalid_unit",
        )
    if is_glob(name):
        return name
    suffix = name.rsplit(".", 1)[-1] if "." in name else ""
    return name if suffix in UNIT_TYPES else f"{name}.service"


def is_glob(name: str) -> bool:
    return any(c in name for c in "*?[")


def glob_to_like(pattern: str) -> str:
    """A unit glob as a LIKE pattern (``[...]`` classes are not supported by LIKE and rejected)."""
    if "[" in pattern:
        raise InvalidInput("unit globs support * and ? only", code="invalid_unit")
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def parse_priority(spec: str) -> tuple[int, int]:
    """``err`` or ``3`` -> (0, 3): this level and more severe; ``err..warning`` -> (3, 4)."""

    def level(token: str) -> int:
        token = token.strip().lower()
        if token.isascii() and token.isdigit() and int(token) <= 7:
            return int(token)
        if token in PRIORITIES:
            return PRIORITIES.index(token)
        if token in _PRIORITY_ALIASES:
            return _PRIORITY_ALIASES[token]
        raise InvalidInput(
            f"invalid priority {token!r}: use 0-7 or one of {', '.join(PRIORITIES)}, or a range FROM..TO",
            code="invalid_priority",
        )

    if ".." in spec:
        low, high = spec.split("..", 1)
        a, b = level(low) if low else 0, level(high) if high else 7
        return (min(a, b), max(a, b))
    return (0, level(spec))


def _span_us(text: str) -> int | None:
    total, pos = 0, 0
    for match in _SPAN_PART.finditer(text):
        if match.start() != pos:
            return None
        unit = match.group(2) or "s"
        if unit not in _UNITS_US:
            return None
        total += int(match.group(1)) * _UNITS_US[unit]
        pos = match.end()
    return total if pos == len(text) and pos > 0 else None


def parse_time(spec: str, *, now: datetime | None = None, tz: tzinfo = UTC) -> datetime:
    """journalctl ``--since`` forms: ISO 8601, ``YYYY-MM-DD [HH:MM[:SS]]`` or ``HH:MM:SS`` (today),
    read in ``tz`` unless an offset is given, ``@UNIX``, ``now``/``today``/``yesterday``/``tomorrow``,
    ``-1h30min``, ``+5m``, ``2 hours ago``."""
    text = spec.strip()
    now = (now or datetime.now(UTC)).astimezone(tz)
    lowered = text.lower()
    midnight = datetime.combine(now.date(), time(), tz)
    keywords = {
        "now": now,
        "today": midnight,
        "yesterday": midnight - timedelta(days=1),
        "tomorrow": midnight + timedelta(days=1),
    }
    if lowered in keywords:
        return keywords[lowered]
    if lowered.startswith("@"):
        try:
            return datetime.fromtimestamp(float(lowered[1:]), UTC)
        except (ValueError, OverflowError):
            pass
    sign, body = 0, lowered
    if lowered[:1] in "+-":
        sign, body = (1 if lowered[0] == "+" else -1), lowered[1:]
    elif lowered.endswith(" ago"):
        sign, body = -1, lowered[:-4]
    elif lowered.endswith(" left"):
        sign, body = 1, lowered[:-5]
    if sign:
        span = _span_us(body.replace(" ", ""))
        if span is not None:
            return now + sign * timedelta(microseconds=span)
    try:
        if _CLOCK.fullmatch(text):
            parsed = datetime.combine(now.date(), time.fromisoformat(text))
        else:
            parsed = datetime.fromisoformat(text.replace(" ", "T", 1) if len(text) > 10 else text)
    except ValueError:
        raise InvalidInput(
            f"invalid time {spec!r}: use ISO 8601 (2026-11-24T10:00:00Z), 'YYYY-MM-DD HH:MM:SS' (UTC), "
            "@UNIX_SECONDS, now, today, yesterday, or a relative time such as -1h or '2 hours ago'",
            code="invalid_time",
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


def smart_case(pattern: str) -> bool:
    """journalctl's rule: a pattern with no upper-case letter matches case-insensitively."""
    return any(c.isupper() for c in pattern)


def parse_boot(spec: str) -> str | int:
    """A boot id (32 hex or uuid form) or an offset: 0 current, -1 previous, 1 first."""
    text = spec.strip().lower()
    if re.fullmatch(r"[+-]?\d{1,6}", text):
        return int(text)
    if re.fullmatch(r"[0-9a-f]{32}|[0-9a-f-]{36}", text):
        return text.replace("-", "")
    raise InvalidInput(
        f"invalid boot {spec!r}: use a boot id, or an offset (0 current, -1 previous, 1 first)",
        code="invalid_boot",
    )
