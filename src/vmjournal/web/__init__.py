"""The small web page at ``/ui``: VMs and their status, and a live journal tail.

Plain HTML, CSS and JavaScript files served as they are: nothing to build. The page talks to
the same HTTP API as everyone else, and follows a journal over Server-Sent Events read with
``fetch`` (EventSource cannot send the API key header).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"


def mount(app: FastAPI) -> None:
    """Serve the page at ``/ui/`` (``/ui`` redirects there)."""
    app.mount("/ui", StaticFiles(directory=STATIC_DIR, html=True), name="ui")
