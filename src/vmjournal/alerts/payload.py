"""What a webhook receives: the JSON body, its signature, and the console link to the entries."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import orjson

from vmjournal.alerts.rules import Rule
from vmjournal.journal.events import event_from_record

SIGNATURE_HEADER = "X-Vmjournal-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def sign(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of the body>``, as receivers check it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def console_url(base_url: str, rule: Rule, vm: str, since: datetime | None) -> str:
    """The console page showing the rule's entries on the VM, from the firing's first one."""
    params = {
        "vm": vm,
        "unit": rule.unit,
        "priority": rule.priority,
        "grep": rule.grep,
        "since": since.isoformat() if since else None,
    }
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{base_url.rstrip('/')}/ui/#{query}"


def body(
    rule: Rule,
    *,
    status: str,
    vm: str,
    count: int,
    first_at: datetime | None,
    last_at: datetime | None,
    sample: Sequence[Mapping[str, Any]],
    base_url: str,
) -> bytes:
    """The notification as it is stored and sent, byte for byte, on every attempt."""
    since = first_at - timedelta(seconds=1) if first_at else None
    return orjson.dumps(
        {
            "alert": rule.name,
            "status": status,
            "vm": vm,
            "count": count,
            "window_seconds": rule.window_seconds,
            "first_at": first_at,
            "last_at": last_at,
            "sample": [event_from_record(r) for r in sample],
            "url": console_url(base_url, rule, vm, since),
        }
    )
