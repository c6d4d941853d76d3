"""Secrets the service hands out: per-VM ingest tokens and API keys. Only their hashes are stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_PREFIX = "vmj_"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


def matches(token: str, expected_hash: str | None) -> bool:
    return expected_hash is not None and hmac.compare_digest(token_hash(token), expected_hash)
