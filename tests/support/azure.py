"""Shared pieces of the Azure tests: the fake ARM running, its settings, what the provider sent it."""

from __future__ import annotations

import base64
import gzip
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from fake_arm import FakeARM
from pydantic import SecretStr

from vmjournal.config import AzureSettings

SUBSCRIPTION = "00000000-0000-4000-8000-000000000001"
ARM_TOKEN = "fake-arm-bearer-" + "x" * 16


def azure_settings(fake: FakeARM, **overrides: Any) -> AzureSettings:
    values: dict[str, Any] = {
        "subscription_id": SUBSCRIPTION,
        "location": fake.location,
        "arm_endpoint": fake.endpoint,
        "static_token": SecretStr(ARM_TOKEN),
        **overrides,
    }
    return AzureSettings(**values)


def extension_script(body: Mapping[str, Any]) -> str:
    """The script a CustomScript PUT delivers, decoded (it may be gzipped)."""
    raw = base64.b64decode(body["properties"]["protectedSettings"]["script"])
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw.decode()


@contextmanager
def running_fake_arm() -> Iterator[FakeARM]:
    fake = FakeARM(subscription_id=SUBSCRIPTION, token=ARM_TOKEN)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


def unpack(script: str) -> dict[str, bytes]:
    """The files the bootstrap script writes, from its base64 here-documents."""
    pattern = re.compile(r"base64 -d > \"\$dir/([^\"]+)\" <<'VMJOURNAL_EOF'\n(.*?)VMJOURNAL_EOF\n", re.S)
    return {name: base64.b64decode(data) for name, data in pattern.findall(script)}
