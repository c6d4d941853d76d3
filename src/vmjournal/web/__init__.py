"""The console at ``/ui``: VMs (create, delete, status), a journal view over one VM or the fleet
with every filter, a volume chart, pages and a live tail, and the alert rules.

Plain HTML, CSS and JavaScript modules served as they are: nothing to build, nothing fetched from
elsewhere. The page talks to the same HTTP API as everyone else, and follows a journal over
Server-Sent Events read with ``fetch`` (EventSource cannot send the API key header). Its URL
fragment holds the view (format at the top of ``static/app.js``), so a link opens the same view.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"


def mount(app: FastAPI) -> None:
    """Serve the page at ``/ui/`` (``/ui`` redirects there)."""
    app.mount("/ui", StaticFiles(directory=STATIC_DIR, html=True), name="ui")
