"""Database outages: which errors mean "the database is unreachable", and one log line per change.

A request that fails for that reason is answered 503 with ``Retry-After`` (see ``errors``), not
500: nothing is wrong with the request, and the client (the agent, a load balancer) should come
back. The service recovers by itself: the pool pings a connection before handing it out
(``pool_pre_ping``) and discards those that broke, and ``recovered`` is called on every checkout
that passed its ping.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from types import TracebackType

import asyncpg
import sqlalchemy.exc

log = logging.getLogger(__name__)

# What the service tells clients to wait before retrying a request it could not complete.
RETRY_AFTER_SECONDS = 5
# ... and when every pooled connection stayed busy for the pool timeout (load, not an outage).
SATURATED_RETRY_AFTER_SECONDS = 1

# SQLSTATEs of a server that is gone, starting, stopping or full (not of a bad statement):
# class 08 (connection exception), admin/crash shutdown, cannot connect now, idle session
# timeout, too many connections.
_UNAVAILABLE_STATES = ("57P01", "57P02", "57P03", "57P05", "53300")
# asyncpg's InterfaceError also covers misuse (too many arguments, a busy connection); only these mean a lost link.
_CLOSED_MARKERS = ("connection is closed", "connection was closed", "underlying connection is closed")
# asyncpg's protocol still consuming an error the server sent unasked (a shutdown's FATAL to an idle
# connection), whose close it has not read yet, when the next statement comes.
_GOODBYE_MARKER = "another operation (2) is in progress"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The error, the DBAPI error SQLAlchemy wraps, and the driver's error behind that."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, sqlalchemy.exc.DBAPIError):
            todo.append(current.orig)
        todo.append(current.__cause__)


def _raised_by_driver(tb: TracebackType | None) -> bool:
    """A bare OSError counts only when it came out of the database driver (not, say, an Azure call)."""
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if module.startswith(("asyncpg", "sqlalchemy")):
            return True
        tb = tb.tb_next
    return False


def _is_unavailable_one(exc: BaseException) -> bool:
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        return state.startswith("08") or state in _UNAVAILABLE_STATES
    if isinstance(exc, asyncpg.InterfaceError):
        return any(marker in str(exc) for marker in _CLOSED_MARKERS)
    if isinstance(exc, asyncpg.InternalClientError):
        return _GOODBYE_MARKER in str(exc)
    if isinstance(exc, OSError):
        return _raised_by_driver(exc.__traceback__)
    return False


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means the database could not be reached or dropped the connection.

    Covers asyncpg's connection and shutdown errors (``CannotConnectNowError``,
    ``ConnectionDoesNotExistError``, a closed connection's ``InterfaceError``), OS errors raised
    inside the driver (refused, reset, timed out), and SQLAlchemy's wrappers of them, including a
    connection it invalidated. A bad statement, a constraint violation or a bug is not an outage.
    """
    return any(_is_unavailable_one(e) for e in _chain(exc))


def is_saturated(exc: BaseException) -> bool:
    """True when no pooled connection came free within the pool timeout: load, not a fault."""
    return isinstance(exc, sqlalchemy.exc.TimeoutError)


class _OutageLog:
    """Logs the moment the database went away and the moment it came back, once each."""

    def __init__(self) -> None:
        self.down_since: float | None = None

    def down(self, exc: BaseException) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.warning("database unavailable (%s: %s); answering 503 until it is back", type(exc).__name__, reason)

    def up(self) -> None:
        if self.down_since is not None:
            seconds = time.monotonic() - self.down_since
            self.down_since = None
            log.warning("database is back after %.1f s", seconds)


# One per process: a process uses one database, and its workers and requests share the news.
_state = _OutageLog()


def unavailable(exc: BaseException) -> None:
    """Record that an operation failed because the database is unavailable (logs on the first)."""
    _state.down(exc)


def recovered() -> None:
    """Record that the database answered (logs if it had been unavailable)."""
    _state.up()


def is_down() -> bool:
    return _state.down_since is not None
