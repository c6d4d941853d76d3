"""The FastAPI application: factory and lifespan (database, migrations, providers, worker)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from vmjournal import __version__, db, errors, logs, metrics, web
from vmjournal.alerts import store as alerts_store
from vmjournal.alerts.delivery import Deliverer
from vmjournal.alerts.evaluation import Evaluator
from vmjournal.alerts.router import router as alerts_router
from vmjournal.config import Settings, get_settings
from vmjournal.deps import ApiKey, SessionDep
from vmjournal.jobs import store as jobs_store
from vmjournal.jobs.worker import Worker
from vmjournal.journal import row_workers
from vmjournal.journal import service as journal_service
from vmjournal.journal.fleet_router import router as fleet_router
from vmjournal.journal.live import LiveHub
from vmjournal.journal.retention import Pruner
from vmjournal.journal.router import router as journal_router
from vmjournal.journal.upload import router as upload_router
from vmjournal.providers.base import VMProvider
from vmjournal.providers.registry import build_providers
from vmjournal.vms import store as vms_store
from vmjournal.vms.queue import JobQueue
from vmjournal.vms.router import azure_router, bootstrap_router
from vmjournal.vms.router import router as vms_router
from vmjournal.vms.tasks import VMTasks

log = logging.getLogger(__name__)

DESCRIPTION = """
Creates Linux VMs (on Azure, or locally under QEMU) and collects their systemd journals.

* Ask for a VM with `POST /vm/{name}/{size}`; follow its status with `GET /vm/{name}`.
* The agent on the VM pushes its journal to `POST /vm/{name}/boot` with the VM's token.
* Read it with `GET /vm/{name}/boot` or one unit's with `GET /vm/{name}/boot/{unit}`, filtered like journalctl.
* Follow it live with `Accept: text/event-stream` (Server-Sent Events), or watch it in the web page at [/ui/](/ui/).

Management routes need an API key (`Authorization: Bearer <key>`) when the service has keys configured.
"""


class InsecureBinding(SystemExit):
    pass


def check_binding(settings: Settings) -> None:
    """Refuse to serve beyond loopback without API keys: the management API would be open to the network."""
    if not settings.api_keys and not settings.listens_on_loopback():
        raise InsecureBinding(
            f"refusing to listen on {settings.host} without API keys: set VMJOURNAL_API_KEYS "
            "(comma-separated) or listen on 127.0.0.1"
        )


def create_app(settings: Settings | None = None, providers: Mapping[str, VMProvider] | None = None) -> FastAPI:
    settings = settings or get_settings()
    check_binding(settings)
    logs.configure(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        # Again: uvicorn.run(app) configures its loggers after the app was built (a factory runs after).
        logs.configure(settings)
        active = dict(providers) if providers is not None else build_providers(settings)
        if settings.default_provider not in active:
            offered = ", ".join(active)
            raise SystemExit(f"VMJOURNAL_PROVIDER={settings.default_provider!r} is not available: use one of {offered}")
        url, embedded = await asyncio.to_thread(db.resolve_database_url, settings)
        try:
            await db.upgrade(url)
        except BaseException:
            if embedded is not None:
                await asyncio.to_thread(db.release, embedded)
            raise
        engine = db.create_engine(
            url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout=settings.db_pool_timeout,
        )
        sessions = db.session_factory(engine)
        # The queue and the VM domain meet only here: jobs run the VM's tasks, the VM routes enqueue.
        jobs: JobQueue = jobs_store
        tasks = VMTasks(sessions, active, jobs, ingest_url=settings.ingest_url, purge_journal=journal_service.purge)
        worker = Worker(settings, sessions, tasks.handlers(), monitor=tasks.inspect_running)
        worker.start()
        hub = LiveHub(url, sessions)
        deliverer = Deliverer(
            sessions,
            timeout=settings.alert_delivery_timeout_seconds,
            retry_base=settings.alert_retry_seconds,
            max_attempts=settings.alert_max_attempts,
        )
        evaluator = Evaluator(
            sessions,
            base_url=settings.ingest_url,
            tick_seconds=settings.alert_tick_seconds,
            on_notification=deliverer.wake,
        )
        # Subscribed before the hub listens: a batch stored after that is heard of, one before is caught up.
        hub.subscribe(evaluator.notify)
        await hub.start()
        evaluator.start()
        deliverer.start()
        pruner = Pruner(sessions, settings)
        pruner.start()
        processes = settings.ingest_processes
        rows = row_workers.RowBuilder(row_workers.default_processes() if processes is None else processes)
        log.info("vmjournal %s ready; providers: %s", __version__, ", ".join(active))
        try:
            yield {
                "settings": settings,
                "sessions": sessions,
                "providers": active,
                "jobs": jobs,
                "database_url": url,
                "live": hub,
                "rows": rows,
            }
        finally:
            rows.close()
            await deliverer.stop()
            await evaluator.stop()
            await pruner.stop()
            await hub.stop()
            await worker.stop()
            if providers is None:
                for provider in active.values():
                    await provider.aclose()
            await engine.dispose()
            if embedded is not None:
                await asyncio.to_thread(db.release, embedded)

    app = FastAPI(
        title="vmjournal",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "vms", "description": "Create, inspect and delete VMs."},
            {"name": "journal", "description": "Ingest and query journal events."},
            {"name": "alerts", "description": "Rules that call a webhook when a journal matches them."},
            {"name": "service", "description": "Service health."},
        ],
    )
    errors.install(app)

    @app.get("/", tags=["service"], summary="Service identity")
    async def root() -> dict[str, str]:
        """The application's name and version."""
        return {"application": "vmjournal", "version": __version__}

    @app.get(
        "/healthz", tags=["service"], summary="Health check", responses=errors.responses(errors.DatabaseUnavailable)
    )
    async def healthz(session: SessionDep) -> dict[str, str]:
        """OK when the service can reach its database; 503 while it cannot."""
        await session.execute(text("SELECT 1"))
        return {"status": "ok"}

    # Response, not PlainTextResponse: that would document the JSON errors as text/plain too.
    @app.get(
        "/metrics",
        tags=["service"],
        summary="Prometheus metrics",
        dependencies=[ApiKey],
        response_class=Response,
        responses={
            200: {
                "description": "The Prometheus text exposition format.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            **errors.responses(errors.Unauthorized),
        },
    )
    async def prometheus(session: SessionDep) -> PlainTextResponse:
        """Ingest counters and latency (this process); VMs by status, pending jobs, undelivered alerts,
        the journal's bytes on disk and its oldest entry's time (all processes)."""
        exposition = metrics.render(
            await vms_store.count_by_provider_status(session),
            await jobs_store.count_unfinished(session),
            await alerts_store.count_undelivered(await db.raw_connection(session)),
            journal=await journal_service.storage(session),
        )
        return PlainTextResponse(exposition, media_type=CONTENT_TYPE_LATEST)

    # The journal router first: /vm/{name}/boot must win over /vm/{name}/{size}.
    app.include_router(journal_router)
    app.include_router(fleet_router)
    app.include_router(upload_router)
    app.include_router(vms_router)
    app.include_router(bootstrap_router)
    app.include_router(azure_router)
    app.include_router(alerts_router)
    # Last: a mount at /ui must not shadow any route.
    web.mount(app)
    return app
