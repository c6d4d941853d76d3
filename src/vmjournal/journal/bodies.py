"""Request bodies of the ingest routes: size limits and compression, checked while the body arrives."""

from __future__ import annotations

import lzma
import sys
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Protocol, cast

import lz4.frame
from fastapi import Request
from isal import isal_zlib

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

from vmjournal.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

_INFLATE_BLOCK = 1 << 20


# What we inflate, as systemd-journal-upload (258 and later) and our agent name it; advertised in
# every ingest answer's Accept-Encoding, which is how journal-upload learns it may compress.
ENCODINGS = ("zstd", "xz", "lz4", "gzip")
ACCEPT_ENCODING = ", ".join(ENCODINGS)


class _Inflater(Protocol):
    """lzma's decompressor interface, which zstd and lz4 frames share."""

    @property
    def eof(self) -> bool: ...

    @property
    def needs_input(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


class _Gzip:
    """A gzip inflater behind lzma's interface. ISA-L's (isal), which keeps zlib's interface: it
    inflates an agent's batch three times as fast as zlib (1.7 against 5.5 us an entry, measured),
    and that was a quarter of the event loop's CPU during ingest."""

    def __init__(self) -> None:
        self._z = isal_zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)

    @property
    def eof(self) -> bool:
        return self._z.eof

    @property
    def needs_input(self) -> bool:
        return not self._z.unconsumed_tail

    @property
    def unused_data(self) -> bytes:
        return self._z.unused_data

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        return self._z.decompress(
            self._z.unconsumed_tail + data if data else self._z.unconsumed_tail, max(max_length, 0)
        )


def _inflater(encoding: str) -> _Inflater:
    if encoding == "gzip":
        return _Gzip()
    if encoding == "xz":
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    if encoding == "zstd":
        return zstd.ZstdDecompressor()
    frames: _Inflater = lz4.frame.LZ4FrameDecompressor()
    return frames


# isal's stubs declare its error an instance; it is the class.
_GZIP_ERROR = cast(type[Exception], isal_zlib.error)
_ERRORS: tuple[type[Exception], ...] = (_GZIP_ERROR, lzma.LZMAError, zstd.ZstdError, RuntimeError, ValueError)


async def decoded_chunks(request: Request, limit: int | None) -> AsyncIterator[bytes]:
    """The body, inflated if sent compressed (zstd, xz, lz4 or gzip), as it arrives: 413 as soon
    as it passes ``limit`` bytes (after inflating, in bounded steps, so a bomb never fills memory),
    415 for other encodings. ``limit`` None: no cap on the total (a stream parsed as it arrives);
    inflating stays bounded."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "", *ENCODINGS):
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not supported; use one of {ACCEPT_ENCODING}, or none",
            headers={"Accept-Encoding": ACCEPT_ENCODING},
        )
    declared = request.headers.get("content-length", "")
    if limit is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {limit} bytes per request")
    stream = _Stream(encoding) if encoding in ENCODINGS else None
    too_large = (
        f"the body inflates past the limit of {limit} bytes; send smaller batches"
        if stream
        else f"the body exceeds the limit of {limit} bytes per request"
    )
    total = 0
    async for chunk in request.stream():
        for piece in stream.feed(chunk) if stream else ([chunk] if chunk else []):
            total += len(piece)
            if limit is not None and total > limit:
                raise PayloadTooLarge(too_large)
            yield piece
    if stream is not None and not stream.finished:
        raise BadRequest(f"the {encoding} body is truncated", code=f"bad_{encoding}")


class _Stream:
    """One compressed body: frames (or gzip members) one after another, as streaming compressors
    may write them, inflated a block at a time so that the caller can stop between blocks."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._inflater = _inflater(encoding)
        self._started = False

    @property
    def finished(self) -> bool:
        return self._inflater.eof or not self._started

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        try:
            while chunk:
                self._started = True
                piece = self._inflater.decompress(chunk, _INFLATE_BLOCK)
                while True:
                    if piece:
                        yield piece
                    if self._inflater.eof or self._inflater.needs_input:
                        break
                    piece = self._inflater.decompress(b"", _INFLATE_BLOCK)
                chunk = b""
                if self._inflater.eof and self._inflater.unused_data:
                    # The next frame: a new inflater takes what followed the last one's end.
                    chunk = self._inflater.unused_data
                    self._inflater = _inflater(self.encoding)
        except _ERRORS as exc:
            raise BadRequest(f"the body is not valid {self.encoding}: {exc}", code=f"bad_{self.encoding}") from None


async def read_decoded(request: Request, limit: int) -> bytes:
    return b"".join([chunk async for chunk in decoded_chunks(request, limit)])
