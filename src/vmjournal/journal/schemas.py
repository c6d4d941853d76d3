"""What the journal routes answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class IngestResponse(BaseModel):
    received: int = Field(description="Entries in the batch.")
    stored: int = Field(description="Entries stored now.")
    duplicates: int = Field(description="Entries already stored before (same __CURSOR); not stored twice.")
    skipped: int | None = Field(
        default=None,
        description="Only when some were: entries of an export-format stream that could not be stored, "
        "skipped and reported (see the VM's last_ingest_error). JSON batches are refused whole instead.",
    )

    @classmethod
    def of(cls, result: Any) -> IngestResponse:
        return cls(
            received=result.received, stored=result.stored, duplicates=result.duplicates, skipped=result.skipped or None
        )


class BootPublic(BaseModel):
    offset: int = Field(description="0 is the current boot, -1 the one before (journalctl -b).")
    index: int = Field(description="1 is the first boot.")
    boot_id: str
    first_at: datetime
    last_at: datetime
    entries: int


class UnitPublic(BaseModel):
    unit: str
    entries: int = Field(description="Events that `-u UNIT` selects.")
    first_at: datetime
    last_at: datetime


class EventsPage(BaseModel):
    vm: str
    unit: str | None
    count: int
    next: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")
    events: list[dict[str, Any]] = Field(
        description="Journal entries with every original field, plus cursor, timestamp (ISO 8601 UTC), boot_id, "
        "unit, priority, identifier, pid, hostname, message and position."
    )


class FleetPage(BaseModel):
    vms: list[str] = Field(description="The VMs the query selected, by name.")
    unit: str | None
    count: int
    next: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")
    events: list[dict[str, Any]] = Field(
        description="Events as the VM routes give them, each with `vm`, its VM's name, merged in time order across VMs."
    )


class VolumeBucket(BaseModel):
    start: str = Field(description="The bucket's start, ISO 8601 UTC.")
    total: int
    by_priority: dict[str, int] = Field(description='Events per priority ("3" is err), only those with any.')


class Histogram(BaseModel):
    step_seconds: int
    buckets: list[VolumeBucket]
