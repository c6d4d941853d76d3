"""What the alert routes accept and answer.

A rule's body is checked here field by field, and every problem is an ``InvalidInput`` that names
the field (answered 400): the journal filters themselves (unit, priority, grep) are checked by the
journal's own filter builder in the service, so they mean on a rule what they mean on a page.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vmjournal.input_errors import InvalidInput
from vmjournal.vms.schemas import NAME_PATTERN, NAME_RULE

_NAME = re.compile(NAME_PATTERN)
# A VM name glob: the characters of VM names plus * ? and [] classes.
_VM_GLOB = re.compile(r"[A-Za-z0-9*?\[\]!-]{1,64}")
# journald's field names: upper-case letters, digits and underscores, not starting with a digit.
_FIELD = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
THRESHOLD_MAX = 10_000
WINDOW_MAX = 7 * 86_400
MATCH_MAX = 32


class AlertCreate(BaseModel):
    """A rule: fire when at least ``threshold`` matching entries of one VM fall in ``window_seconds``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "nginx-errors",
                    "vm": "web-*",
                    "unit": "nginx",
                    "priority": "err",
                    "grep": "upstream",
                    "match": ["_TRANSPORT=stdout"],
                    "threshold": 5,
                    "window_seconds": 60,
                    "webhook_url": "https://hooks.example.com/vmjournal",
                }
            ]
        },
    )

    name: str = Field(description=f"The rule's name: {NAME_RULE}.")
    vm: str = Field(default="*", description="A glob over VM names (* ? [...]); default every VM.")
    unit: str | None = Field(default=None, description="A unit name or glob, as `journalctl -u`.")
    priority: str | None = Field(default=None, description="0-7 or a name: this level and more severe; or FROM..TO.")
    grep: str | None = Field(
        default=None,
        description="A PostgreSQL regular expression on MESSAGE (case-insensitive without upper-case letters).",
    )
    match: list[str] = Field(
        default_factory=list,
        description="FIELD=VALUE matches, as journalctl takes them: one field's values OR, different fields AND.",
    )
    threshold: int = Field(default=1, description=f"Matching entries needed, 1-{THRESHOLD_MAX}.")
    window_seconds: int = Field(
        default=60,
        description="The window they must fall in (journal time), and the "
        f"quiet time after which a firing resolves; 1-{WINDOW_MAX}.",
    )
    webhook_url: str = Field(description="Where firings and resolutions are POSTed (http or https).")


def _invalid(field: str, problem: str) -> InvalidInput:
    return InvalidInput(f"{field}: {problem}", code=f"invalid_{field}")


def parse_match(items: list[str]) -> list[tuple[str, str]]:
    """``["FIELD=VALUE", ...]`` -> pairs; the field name as journald allows it."""
    if len(items) > MATCH_MAX:
        raise _invalid("match", f"at most {MATCH_MAX} matches")
    pairs = []
    for item in items:
        field, sep, value = item.partition("=")
        if not sep or not _FIELD.fullmatch(field):
            raise _invalid("match", f"{item!r} is not FIELD=VALUE with FIELD in upper-case letters, digits and _")
        pairs.append((field, value))
    return pairs


def _check(rule: AlertCreate) -> AlertCreate:
    if not _NAME.fullmatch(rule.name):
        raise _invalid("name", f"{rule.name!r} is not a valid name: {NAME_RULE}")
    if not _VM_GLOB.fullmatch(rule.vm):
        raise _invalid("vm", f"{rule.vm!r} is not a VM name glob (letters, digits, -, * ? [...])")
    if not 1 <= rule.threshold <= THRESHOLD_MAX:
        raise _invalid("threshold", f"must be between 1 and {THRESHOLD_MAX}")
    if not 1 <= rule.window_seconds <= WINDOW_MAX:
        raise _invalid("window_seconds", f"must be between 1 and {WINDOW_MAX}")
    url = urlsplit(rule.webhook_url)
    if url.scheme not in ("http", "https") or not url.hostname or len(rule.webhook_url) > 2048:
        raise _invalid("webhook_url", f"{rule.webhook_url!r} is not an http or https URL with a host")
    if rule.grep == "":
        raise _invalid("grep", "an empty pattern; leave grep out to match every message")
    parse_match(rule.match)
    return rule


def parse_create(body: bytes) -> AlertCreate:
    """The request body as a checked rule; ``InvalidInput`` naming the first bad field otherwise."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}", code="bad_json") from None
    if not isinstance(payload, dict):
        raise InvalidInput("the body must be a JSON object", code="bad_json")
    try:
        rule = AlertCreate.model_validate(payload)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"]) or "body"
        top = str(error["loc"][0]) if error["loc"] else "body"
        raise InvalidInput(f"{field}: {error['msg']}", code=f"invalid_{top}") from None
    return _check(rule)


class AlertPublic(BaseModel):
    """A rule as listed. Never carries its secret."""

    name: str
    vm: str
    unit: str | None
    priority: str | None
    grep: str | None
    match: list[str]
    threshold: int
    window_seconds: int
    webhook_url: str
    created_at: datetime
    status: str = Field(description="firing when any VM fires it, else ok.")
    firing_vms: list[str] = Field(description="VMs on which the rule fires now.")


class AlertCreated(AlertPublic):
    secret: str = Field(
        description="Signs every delivery (X-Vmjournal-Signature: sha256=HMAC-SHA256 of the body). Shown this once."
    )


class AlertVMState(BaseModel):
    vm: str
    status: str = Field(description="ok or firing.")
    matches: int = Field(description="Matching entries seen since the rule was made.")
    firings: int
    fired_at: datetime | None = Field(description="When it last fired.")
    first_at: datetime | None = Field(description="The last firing's first matching entry (journal time).")
    last_at: datetime | None = Field(description="The last matching entry (journal time).")
    last_seen_at: datetime | None = Field(description="When the service saw the last match.")


class AlertDetail(AlertPublic):
    vms: list[AlertVMState]
    last_firing: AlertEventPublic | None
    counts: dict[str, int] = Field(
        description="firings, resolutions, and notifications by delivery state (delivered, pending, failed)."
    )


class AlertEventPublic(BaseModel):
    """One notification: a firing or a resolution, and how its delivery went."""

    id: UUID = Field(description="Also the Idempotency-Key every delivery attempt carried.")
    vm: str
    status: str = Field(description="firing or resolved.")
    count: int
    first_at: datetime | None
    last_at: datetime | None
    created_at: datetime
    delivery: str = Field(description="pending, delivered or failed (gave up).")
    attempts: int
    delivered_at: datetime | None
    last_error: str | None
    payload: dict[str, Any] = Field(description="The JSON body posted to the webhook.")


AlertDetail.model_rebuild()
