"""Runs the real service with the test provider added, for tests that need a separate process
(SIGKILL and restart, two processes on one database). Settings come from the environment.

Run as ``python -m support.serve [SLOW_SECONDS]`` with ``tests/`` on PYTHONPATH (``LiveService`` does)."""

from __future__ import annotations

import sys

import uvicorn

from support.provider import ScriptedProvider
from vmjournal.config import Settings
from vmjournal.main import create_app
from vmjournal.providers.registry import build_providers


def main() -> None:
    settings = Settings()
    slow = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    providers = {
        **build_providers(settings),
        "test": ScriptedProvider(settings.data_dir / "test-provider", slow_seconds=slow),
    }
    app = create_app(settings, providers)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")


if __name__ == "__main__":
    main()
