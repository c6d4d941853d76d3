"""Errors a client can act on. Every one is answered as ``{"error": code, "message": text}``.

The ``AppError`` classes are raised where a request is handled; the parsers below them raise
``InvalidInput`` (a ``ValueError``, no HTTP), which is answered here as a ``BadRequest``.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from vmjournal import outage
from vmjournal.input_errors import InvalidInput

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    error: str
    message: str


class AppError(Exception):
    status_code = 400
    default_code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.headers = headers


class BadRequest(AppError):
    pass


class Unauthorized(AppError):
    status_code = 401
    default_code = "unauthorized"


class Forbidden(AppError):
    status_code = 403
    default_code = "forbidden"


class NotFound(AppError):
    status_code = 404
    default_code = "not_found"


class Conflict(AppError):
    status_code = 409
    default_code = "conflict"


class PayloadTooLarge(AppError):
    status_code = 413
    default_code = "payload_too_large"


class UnsupportedMediaType(AppError):
    status_code = 415
    default_code = "unsupported_media_type"


class DatabaseUnavailable(AppError):
    """The database is unreachable: nothing was done; retry after `Retry-After` seconds."""

    status_code = 503
    default_code = "database_unavailable"

    def __init__(self) -> None:
        super().__init__(
            "the service cannot reach its database; nothing was done, retry later",
            headers={"Retry-After": str(outage.RETRY_AFTER_SECONDS)},
        )


class Saturated(AppError):
    """Every database connection of this process stayed busy for the pool timeout: retry after `Retry-After`."""

    status_code = 429
    default_code = "saturated"

    def __init__(self) -> None:
        super().__init__(
            "the service is at capacity (no database connection came free in time); nothing was done, retry later",
            headers={"Retry-After": str(outage.SATURATED_RETRY_AFTER_SECONDS)},
        )


# Errors that may mean an outage: classified by ``outage.is_unavailable``; the rest are bugs (500).
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    sqlalchemy.exc.SQLAlchemyError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
)


def holds_nul(exc: BaseException) -> bool:
    """PostgreSQL refused a text value with a NUL byte (U+0000), which its text type cannot hold:
    the request carried it (a grep, an identifier...), since what the service stores never has one."""
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, asyncpg.CharacterNotInRepertoireError):
            return True
        current = current.orig if isinstance(current, sqlalchemy.exc.DBAPIError) else current.__cause__
    return False


def responses(*errors: type[AppError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for the errors a route may answer."""
    return {e.status_code: {"model": ErrorBody, "description": e.__doc__ or e.default_code} for e in errors}


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path"))
    return f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid"))


def install(app: FastAPI) -> None:
    async def app_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AppError)
        return JSONResponse(
            {"error": exc.code, "message": exc.message}, status_code=exc.status_code, headers=exc.headers
        )

    async def invalid_input(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, InvalidInput)
        return JSONResponse({"error": exc.code, "message": exc.message}, status_code=BadRequest.status_code)

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        message = "; ".join(_describe(e) for e in exc.errors())
        return JSONResponse({"error": "invalid_request", "message": message}, status_code=422)

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            {"error": code, "message": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        # A bug: logged with its traceback, answered without internals.
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(
            {"error": "internal_error", "message": "the service failed to handle this request; it was logged"},
            status_code=500,
        )

    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        if holds_nul(exc):
            # Bad input, not a bug: nothing stored can contain it, so nothing can match it either.
            return await app_error(
                request,
                BadRequest(
                    "a parameter contains a NUL byte (\\u0000), which no stored value can contain", code="nul_in_text"
                ),
            )
        if outage.is_saturated(exc):
            # The pool's checkout timed out: load, not a fault; the agent backs off and resends.
            log.debug("no database connection came free in time: answered 429")
            return await app_error(request, Saturated())
        if not outage.is_unavailable(exc):
            return await unexpected(request, exc)
        # Not a traceback per request: one line when the outage starts, one when it ends.
        outage.unavailable(exc)
        return await app_error(request, DatabaseUnavailable())

    app.add_exception_handler(AppError, app_error)
    app.add_exception_handler(InvalidInput, invalid_input)
    app.add_exception_handler(Exception, unexpected)
    for kind in DATABASE_ERRORS:
        app.add_exception_handler(kind, database_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
