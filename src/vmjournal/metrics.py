"""Prometheus metrics: counters kept per process, VM and job gauges set from the database at scrape."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

registry = CollectorRegistry()

ingested = Counter("vmjournal_ingest_entries", "Journal entries received by ingest", ["result"], registry=registry)
ingest_skipped = Counter(
    "vmjournal_ingest_skipped_entries",
    "Entries skipped inside an export-format stream because they could not be stored (too_large, bad_entry, "
    "database); each is logged with its VM and cursor",
    ["reason"],
    registry=registry,
)
ingest_seconds = Histogram(
    "vmjournal_ingest_batch_seconds",
    "Time to store one ingest batch",
    registry=registry,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
live_followers = Gauge("vmjournal_live_followers", "Open live follow streams", registry=registry)
live_queries = Counter(
    "vmjournal_live_queries", "Queries the live-follow hub ran to fan new events out", registry=registry
)
vms = Gauge("vmjournal_vms", "VMs by provider and status", ["provider", "status"], registry=registry)
alert_notifications = Counter(
    "vmjournal_alert_notifications",
    "Alert notifications written by this process: firings and resolutions",
    ["status"],
    registry=registry,
)
alert_deliveries = Counter(
    "vmjournal_alert_deliveries",
    "Webhook delivery attempts by this process: delivered, failed (retried later), gave_up",
    ["result"],
    registry=registry,
)
alert_outbox = Gauge(
    "vmjournal_alert_outbox",
    "Alert notifications not delivered (yet): pending or failed, all processes",
    ["delivery"],
    registry=registry,
)
jobs = Gauge("vmjournal_jobs", "Provisioning jobs by kind and status", ["kind", "status"], registry=registry)


journal_bytes = Gauge(
    "vmjournal_journal_bytes", "Bytes on disk of the journal: every partition, summary and index", registry=registry
)
journal_oldest = Gauge(
    "vmjournal_journal_oldest_entry_timestamp_seconds",
    "Time of the oldest stored journal entry (0: none)",
    registry=registry,
)


def render(
    vm_counts: Iterable[tuple[str, str, int]],
    job_counts: Iterable[tuple[str, str, int]],
    outbox_counts: Iterable[tuple[str, int]],
    journal: tuple[int, datetime | None] = (0, None),
) -> bytes:
    """The exposition text, with the gauges set from counts the caller read: (provider, status, n)
    for VMs, (kind, status, n) for unfinished jobs, (delivery, n) for undelivered alerts, and the
    journal's (bytes, oldest entry time)."""
    journal_bytes.set(journal[0])
    journal_oldest.set(journal[1].timestamp() if journal[1] is not None else 0)
    vms.clear()
    for provider, status, count in vm_counts:
        vms.labels(provider, status).set(count)
    jobs.clear()
    for kind, status, count in job_counts:
        jobs.labels(kind, status).set(count)
    alert_outbox.clear()
    for delivery, count in outbox_counts:
        alert_outbox.labels(delivery).set(count)
    return generate_latest(registry)
