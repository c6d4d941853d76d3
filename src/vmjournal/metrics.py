"""Prometheus metrics: counters kept per process, VM and job gauges read from the database at scrape."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

registry = CollectorRegistry()

ingested = Counter("vmjournal_ingest_entries", "Journal entries received by ingest", ["result"], registry=registry)
ingest_skipped = Counter(
    "vmjournal_ingest_skipped_entries",
    "Entries skipped inside an export-format stream because they could not be stored (too_large, bad_entry, "
    "database); each is logged with its VM and cursor",
    ["reason"], registry=registry,
)
ingest_seconds = Histogram(
    "vmjournal_ingest_batch_seconds", "Time to store one ingest batch", registry=registry,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
live_followers = Gauge("vmjournal_live_followers", "Open live follow streams", registry=registry)
live_queries = Counter(
    "vmjournal_live_queries", "Queries the live-follow hub ran to fan new events out", registry=registry
)
vms = Gauge("vmjournal_vms", "VMs by provider and status", ["provider", "status"], registry=registry)
alert_notifications = Counter(
    "vmjournal_alert_notifications", "Alert notifications written by this process: firings and resolutions",
    ["status"], registry=registry,
)
alert_deliveries = Counter(
    "vmjournal_alert_deliveries", "Webhook delivery attempts by this process: delivered, failed (retried later), "
    "gave_up", ["result"], registry=registry,
)
alert_outbox = Gauge(
    "vmjournal_alert_outbox", "Alert notifications not delivered (yet): pending or failed, all processes",
    ["delivery"], registry=registry,
)
jobs = Gauge("vmjournal_jobs", "Provisioning jobs by kind and status", ["kind", "status"], registry=registry)

VM_COUNTS = text("SELECT provider, status, count(*) FROM vm GROUP BY provider, status")
# Delivered ones are history, not backlog: left out so a scrape stays cheap as history grows.
ALERT_OUTBOX = text("SELECT delivery, count(*) FROM alert_notification WHERE delivery <> 'delivered' GROUP BY delivery")
JOB_COUNTS = text("SELECT kind, status, count(*) FROM job WHERE status IN ('queued', 'running') GROUP BY kind, status")


async def render(session: AsyncSession) -> bytes:
    vms.clear()
    for provider, status, count in (await session.execute(VM_COUNTS)).all():
        vms.labels(provider, status).set(count)
    jobs.clear()
    for kind, status, count in (await session.execute(JOB_COUNTS)).all():
        jobs.labels(kind, status).set(count)
    alert_outbox.clear()
    for delivery, count in (await session.execute(ALERT_OUTBOX)).all():
        alert_outbox.labels(delivery).set(count)
    return generate_latest(registry)
