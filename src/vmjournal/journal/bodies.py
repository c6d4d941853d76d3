"""Request bodies of the ingest routes: size limits and gzip, checked while the body arrives."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Iterator

from fastapi import Request

from vmjournal.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

_INFLATE_BLOCK = 1 << 20


async def decoded_chunks(request: Request, limit: int | None) -> AsyncIterator[bytes]:
    """The body, gunzipped if sent so, as it arrives: 413 as soon as it passes ``limit`` bytes
    (after inflating, in bounded steps, so a gzip bomb never fills memory), 415 for other encodings.
    ``limit`` None: no cap on the total (a stream parsed as it arrives); inflating stays bounded."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "", "gzip"):
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported; use gzip or none")
    declared = request.headers.get("content-length", "")
    if limit is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {limit} bytes per request")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS) if encoding == "gzip" else None
    too_large = (
        f"the body inflates past the limit of {limit} bytes; send smaller batches" if inflater
        else f"the body exceeds the limit of {limit} bytes per request"
    )
    total = 0
    async for chunk in request.stream():
        for piece in _inflated(inflater, chunk):
            total += len(piece)
            if limit is not None and total > limit:
                raise PayloadTooLarge(too_large)
            yield piece
    if inflater is not None and not inflater.eof:
        raise BadRequest("the gzip body is truncated", code="bad_gzip")


def _inflated(inflater: zlib._Decompress | None, chunk: bytes) -> Iterator[bytes]:
    """The chunk's bytes, inflated a block at a time so that the caller can stop between blocks."""
    if inflater is None:
        if chunk:
            yield chunk
        return
    try:
        piece = inflater.decompress(chunk, _INFLATE_BLOCK)
        while True:
            if piece:
                yield piece
            if not inflater.unconsumed_tail:
                return
            piece = inflater.decompress(inflater.unconsumed_tail, _INFLATE_BLOCK)
    except zlib.error as exc:
        raise BadRequest(f"the body is not valid gzip: {exc}", code="bad_gzip") from None


async def read_decoded(request: Request, limit: int) -> bytes:
    return b"".join([chunk async for chunk in decoded_chunks(request, limit)])
