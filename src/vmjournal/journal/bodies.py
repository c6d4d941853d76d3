"""Request bodies of the ingest routes: size limits and compression, checked while the body arrives."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import Request

from vmjournal.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from vmjournal.journal import inflate
from vmjournal.journal.inflate import ENCODINGS

# What we inflate, as systemd-journal-upload (258 and later) and our agent name it; advertised in
# every ingest answer's Accept-Encoding, which is how journal-upload learns it may compress.
ACCEPT_ENCODING = ", ".join(ENCODINGS)


def _encoding(request: Request, limit: int | None) -> str | None:
    """The body's encoding, None for none; 415 for one we do not inflate, 413 for a declared
    length past ``limit``."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "", *ENCODINGS):
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not supported; use one of {ACCEPT_ENCODING}, or none",
            headers={"Accept-Encoding": ACCEPT_ENCODING},
        )
    declared = request.headers.get("content-length", "")
    if limit is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {limit} bytes per request")
    return encoding if encoding in ENCODINGS else None


async def decoded_chunks(request: Request, limit: int | None) -> AsyncIterator[bytes]:
    """The body, inflated if sent compressed (zstd, xz, lz4 or gzip), as it arrives: 413 as soon
    as it passes ``limit`` bytes (after inflating, in bounded steps, so a bomb never fills memory),
    415 for other encodings. ``limit`` None: no cap on the total (a stream parsed as it arrives);
    inflating stays bounded."""
    encoding = _encoding(request, limit)
    stream = inflate.Stream(encoding) if encoding else None
    total = 0
    try:
        async for chunk in request.stream():
            for piece in stream.feed(chunk) if stream else ([chunk] if chunk else []):
                total += len(piece)
                if limit is not None and total > limit:
                    raise PayloadTooLarge(
                        inflate.TooLarge(limit).message
                        if stream
                        else f"the body exceeds the limit of {limit} bytes per request"
                    )
                yield piece
        if stream is not None:
            stream.close()
    except inflate.BadBody as exc:
        raise BadRequest(exc.message, code=exc.code) from None


async def read_as_sent(request: Request, limit: int) -> tuple[bytes, str | None]:
    """The whole body as sent, compressed or not, and its encoding (None for none): inflating it
    is the row worker's (journal/inflate.py ``inflated``, with the same ``limit``). 415 and 413 as
    ``decoded_chunks``; the body as sent is held to ``limit`` too."""
    encoding = _encoding(request, limit)
    chunks = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes per request")
        chunks.append(chunk)
    return b"".join(chunks), encoding
