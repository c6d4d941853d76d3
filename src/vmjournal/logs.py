"""The service's logs: ``vmjournal.*`` and uvicorn's loggers through one handler on stderr, as
text (time, level, logger, message) or JSON lines (``VMJOURNAL_LOG_FORMAT=json``, for shippers).

Ingest tokens ride in one URL (``/ingest/<token>/upload``, for journal-upload, which cannot send
headers); every record passes a filter that masks them. Other secrets travel only in headers,
which nothing here logs.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from vmjournal.config import Settings

# Only these follow VMJOURNAL_LOG_LEVEL; other libraries keep the root's level (WARNING): their
# debug output (SQL with its parameters, say) is not ours to ship.
_OURS = ("vmjournal", "uvicorn")
_TOKEN_IN_PATH = re.compile(r"(/ingest/)[^/?#\s\"]+")


class RedactIngestTokens(logging.Filter):
    """Masks the token of ``/ingest/<token>/upload`` in log records (uvicorn's access log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_IN_PATH.sub(r"\1***", a) if isinstance(a, str) and "/ingest/" in a else a for a in record.args
            )
        if isinstance(record.msg, str) and "/ingest/" in record.msg:
            record.msg = _TOKEN_IN_PATH.sub(r"\1***", record.msg)
        return True


def redact_tokens_in_access_log() -> None:
    """Install the filter on uvicorn's access logger (idempotent). Filters on a logger run before
    any handler, so this holds whoever configured the handlers."""
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactIngestTokens) for f in logger.filters):
        logger.addFilter(RedactIngestTokens())


class JsonFormatter(logging.Formatter):
    """One JSON object per line; uvicorn's access records also get their request fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, _, status = record.args
            line |= {"client": client, "method": method, "path": path, "status": status}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _: object) -> None:
        pass


def _formatter(fmt: str) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter()
    return logging.Formatter("%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")


def configure(settings: Settings) -> None:
    """Route our loggers and uvicorn's through one stderr handler in the configured format and level.

    Safe to call again: the handler is replaced, not added twice. Called by ``create_app`` (which
    ``uvicorn --factory`` runs after configuring its loggers) and again by the lifespan (which
    ``uvicorn.run(app)`` runs after); uvicorn's loggers are taken over either way. An access log
    uvicorn was told to turn off stays off.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Stderr)]:
        root.removeHandler(handler)
    handler = _Stderr()
    handler.setFormatter(_formatter(settings.log_format))
    root.addHandler(handler)
    for name in _OURS:
        logging.getLogger(name).setLevel(settings.log_level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        if logger.handlers:
            logger.handlers.clear()
            logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    if access.propagate:
        access.setLevel(min(logging.INFO, logging.getLevelName(settings.log_level)))
    redact_tokens_in_access_log()
