"""Every table, so that Alembic's env sees them all.

The journal tables are written by raw asyncpg on the hot path (journal/ingest_store.py); they are
declared here so that migrations and the schema stay in one place.
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlmodel import Field, SQLModel

SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class VMStatus(enum.StrEnum):
    pending = "pending"
    provisioning = "provisioning"
    running = "running"
    deleting = "deleting"
    deleted = "deleted"
    failed = "failed"


class JobKind(enum.StrEnum):
    provision = "provision"
    deprovision = "deprovision"


class JobStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


def _tz(**kw: Any) -> Any:
    return sa.Column(sa.DateTime(timezone=True), **kw)


class VM(SQLModel, table=True):
    __tablename__ = "vm"
    __table_args__ = (
        # A name is taken while its VM exists; a deleted VM's name may be reused.
        sa.Index("uq_vm_live_name", "name", unique=True, postgresql_where=sa.text("status <> 'deleted'")),
        # /ingest/{token}/upload finds the VM by its token.
        sa.Index("ix_vm_token_hash", "token_hash", unique=True),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    name: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    size: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    provider: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    status: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    step: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    error_code: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    error_message: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    error_details: list[str] = Field(
        default_factory=list, sa_column=sa.Column(pg.JSONB, nullable=False, server_default="[]")
    )
    addresses: dict[str, str] = Field(
        default_factory=dict, sa_column=sa.Column(pg.JSONB, nullable=False, server_default="{}")
    )
    details: dict[str, str] = Field(
        default_factory=dict, sa_column=sa.Column(pg.JSONB, nullable=False, server_default="{}")
    )
    # SHA-256 of the ingest token; the token itself is never stored.
    token_hash: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    event_count: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False, server_default="0"))
    last_event_at: datetime | None = Field(default=None, sa_column=_tz())
    # The last entry an export-format stream had to skip (journal/export_ingest.py), and when.
    last_ingest_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    last_ingest_error_at: datetime | None = Field(default=None, sa_column=_tz())
    created_at: datetime | None = Field(default=None, sa_column=_tz(nullable=False, server_default=sa.func.now()))
    updated_at: datetime | None = Field(default=None, sa_column=_tz(nullable=False, server_default=sa.func.now()))
    deleted_at: datetime | None = Field(default=None, sa_column=_tz())


class Job(SQLModel, table=True):
    """A durable unit of provisioning work, claimed by one worker at a time."""

    __tablename__ = "job"
    __table_args__ = (
        sa.Index(
            "ix_job_claimable", "status", "run_after", postgresql_where=sa.text("status IN ('queued', 'running')")
        ),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True))
    vm_id: UUID = Field(sa_column=sa.Column(pg.UUID, sa.ForeignKey("vm.id", ondelete="CASCADE"), nullable=False))
    kind: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    status: str = Field(sa_column=sa.Column(sa.Text, nullable=False, server_default="queued"))
    step: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    # Provider checkpoints (Azure continuation tokens, QEMU pids): what a resumed run needs.
    state: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column(pg.JSONB, nullable=False, server_default="{}")
    )
    attempts: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    locked_by: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    heartbeat_at: datetime | None = Field(default=None, sa_column=_tz())
    run_after: datetime | None = Field(default=None, sa_column=_tz(nullable=False, server_default=sa.func.now()))
    created_at: datetime | None = Field(default=None, sa_column=_tz(nullable=False, server_default=sa.func.now()))
    updated_at: datetime | None = Field(default=None, sa_column=_tz(nullable=False, server_default=sa.func.now()))


class JournalEvent(SQLModel, table=True):
    """One journal entry: the columns filters need, a reference to its context (the sending
    process's fields, stored once in ``journal_context``) and its own remaining fields in ``rest``;
    journal/layout.py puts the original entry back together from them.

    Range-partitioned by ``ts``, one partition per UTC day (journal/partition_store.py creates them
    and retention drops them); Alembic's env leaves the partitions themselves alone.
    """

    __tablename__ = "journal_event"
    __table_args__ = (
        # A unit's and an identifier's entries by a bigint hash of (vm_id, name): index tuples of two
        # bigints, which the B-tree packs full while a day is written (alembic 4a7c2e9b3d18).
        sa.Index(
            "ix_journal_event_unit_key_ts",
            sa.func.journal_key(sa.literal_column("vm_id"), sa.literal_column("unit")),
            "ts",
            postgresql_where=sa.text("unit IS NOT NULL"),
        ),
        sa.Index(
            "ix_journal_event_vm_about_unit_ts",
            "vm_id",
            "about_unit",
            "ts",
            "seq",
            postgresql_where=sa.text("about_unit IS NOT NULL"),
        ),
        sa.Index(
            "ix_journal_event_identifier_key_ts",
            sa.func.journal_key(sa.literal_column("vm_id"), sa.literal_column("identifier")),
            "ts",
            postgresql_where=sa.text("identifier IS NOT NULL"),
        ),
        # Warnings and worse are a few percent of a journal: their pages must not walk the rest.
        sa.Index(
            "ix_journal_event_vm_severe_ts",
            "vm_id",
            "priority",
            "ts",
            "seq",
            postgresql_where=sa.text("priority <= 4"),
        ),
        # A unit's warnings and worse: a few of its entries, which its own index would walk all of.
        sa.Index(
            "ix_journal_event_vm_unit_severe_ts",
            "vm_id",
            "unit",
            "ts",
            "seq",
            postgresql_where=sa.text("priority <= 4"),
        ),
        sa.PrimaryKeyConstraint("vm_id", "ts", "seqnum", "xor", name="pk_journal_event"),
        {"postgresql_partition_by": "RANGE (ts)"},
    )

    # The identity is the cursor's sequence number and entry hash (or a hash of a cursor of
    # another shape), and the partition key is in every unique key: an entry's partition comes
    # from its own timestamp, so a resent entry meets its first copy.
    # No foreign key to vm: attaching a day partition would then lock vm against every in-flight
    # ingest's counter update, and each row would pay the check. Ingest writes only the VM it
    # authenticated; purge removes a VM's events.
    vm_id: UUID = Field(sa_column=sa.Column(pg.UUID, nullable=False))
    ts: datetime = Field(sa_column=_tz(nullable=False))
    # Insertion order: the tie-breaker that makes keyset pagination stable.
    seq: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), nullable=False))
    seqnum: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    xor: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    context_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    monotonic_us: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    boot_id: UUID | None = Field(default=None, sa_column=sa.Column(pg.UUID))
    pid: int | None = Field(default=None, sa_column=sa.Column(sa.Integer))
    priority: int | None = Field(default=None, sa_column=sa.Column(sa.SmallInteger))
    # _SYSTEMD_UNIT: the unit whose processes wrote the entry.
    unit: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    # The unit an entry is *about* (UNIT from PID 1, OBJECT_SYSTEMD_UNIT, COREDUMP_UNIT), as journalctl -u matches.
    about_unit: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    identifier: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    hostname: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    message: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    # json, not jsonb: kept as sent, and faster to ingest. Null when the columns and context hold it all.
    rest: Any = Field(default=None, sa_column=sa.Column(sa.JSON))


class JournalContext(SQLModel, table=True):
    """An entry template: field names in order, the sending process's values (journal/layout.py).

    ``id`` is a hash of ``fields``' text. ``last_day`` is the latest day of an entry using it, so
    retention can drop the contexts no remaining day refers to."""

    __tablename__ = "journal_context"
    # Retention deletes the contexts whose last day is gone.
    __table_args__ = (sa.Index("ix_journal_context_last_day", "last_day"),)

    vm_id: UUID = Field(sa_column=sa.Column(pg.UUID, primary_key=True))
    id: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True, autoincrement=False))
    last_day: date = Field(sa_column=sa.Column(sa.Date, nullable=False))
    fields: Any = Field(sa_column=sa.Column(sa.JSON, nullable=False))


class JournalTrigrams(SQLModel, table=True):
    """The letter trigrams of a stored batch (of each thousand of its entries) and the time range
    of those entries (journal/trigrams.py), so a grep reads only the ranges that can match, and the
    batch's highest seq (NULL in rows written before it was kept). No foreign key: retention
    deletes these in bulk."""

    __tablename__ = "journal_trigrams"
    __table_args__ = (
        sa.Index("ix_journal_trigrams_grams", "grams", postgresql_using="gin"),
        # Small batches' rows, which the retention pass merges (journal/trigram_store.py).
        sa.Index(
            "ix_journal_trigrams_small",
            "vm_id",
            "first_at",
            "id",
            postgresql_where=sa.text("cardinality(grams) < 1000"),
        ),
        # The batches from a time on, which alert evaluation is reading (journal/trigram_store.py).
        sa.Index("ix_journal_trigrams_vm_last", "vm_id", "last_at"),
    )

    vm_id: UUID = Field(sa_column=sa.Column(pg.UUID, primary_key=True))
    id: int = Field(sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True))
    first_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    last_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    grams: list[int] = Field(sa_column=sa.Column(pg.ARRAY(sa.Integer), nullable=False))
    last_seq: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))


class JournalBoot(SQLModel, table=True):
    """Per-boot summary, maintained by ingest, so boot offsets and --list-boots need no scan."""

    __tablename__ = "journal_boot"

    vm_id: UUID = Field(sa_column=sa.Column(pg.UUID, sa.ForeignKey("vm.id", ondelete="CASCADE"), primary_key=True))
    boot_id: UUID = Field(sa_column=sa.Column(pg.UUID, primary_key=True))
    first_at: datetime = Field(sa_column=_tz(nullable=False))
    last_at: datetime = Field(sa_column=_tz(nullable=False))
    entries: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))


class JournalUnit(SQLModel, table=True):
    """Per-unit summary (entries journalctl -u UNIT would select), maintained by ingest."""

    __tablename__ = "journal_unit"

    vm_id: UUID = Field(sa_column=sa.Column(pg.UUID, sa.ForeignKey("vm.id", ondelete="CASCADE"), primary_key=True))
    unit: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    entries: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    first_at: datetime = Field(sa_column=_tz(nullable=False))
    last_at: datetime = Field(sa_column=_tz(nullable=False))


class JournalVolume(SQLModel, table=True):
    """Events per VM, minute and priority, maintained by ingest: log volume without reading events."""

    __tablename__ = "journal_volume"

    vm_id: UUID = Field(sa_column=sa.Column(pg.UUID, sa.ForeignKey("vm.id", ondelete="CASCADE"), primary_key=True))
    # The minute's start (date_bin from the epoch, so independent of the session's time zone).
    minute: datetime = Field(sa_column=_tz(primary_key=True))
    priority: int = Field(sa_column=sa.Column(sa.SmallInteger, primary_key=True))
    entries: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))


class AlertRule(SQLModel, table=True):
    """A rule that calls a webhook when a VM's journal matches it often enough (alerts/)."""

    __tablename__ = "alert_rule"
    __table_args__ = (sa.Index("uq_alert_rule_name", "name", unique=True),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    name: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    vm_glob: str = Field(sa_column=sa.Column(sa.Text, nullable=False, server_default="*"))
    unit: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    priority: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    grep: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    match: list[str] = Field(
        default_factory=list, sa_column=sa.Column(pg.ARRAY(sa.Text), nullable=False, server_default="{}")
    )
    threshold: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    window_seconds: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    webhook_url: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    # Kept as is: every delivery signs with it. It leaves the service only in the create answer.
    secret: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    # The last journal seq drawn when the rule was made: older entries never fire it.
    start_seq: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    created_at: datetime | None = Field(default=None, sa_column=_tz(nullable=False, server_default=sa.func.now()))


class AlertCursor(SQLModel, table=True):
    """How far alert evaluation has read one VM's journal (every rule at once)."""

    __tablename__ = "alert_cursor"

    vm_id: UUID = Field(sa_column=sa.Column(pg.UUID, sa.ForeignKey("vm.id", ondelete="CASCADE"), primary_key=True))
    # Every entry of the VM with seq up to this one has been evaluated.
    seq: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    # vm.event_count when that was read: unequal after a restart means entries came while no one listened.
    event_count: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    updated_at: datetime | None = Field(default=None, sa_column=_tz(nullable=False, server_default=sa.func.now()))


class AlertState(SQLModel, table=True):
    """One rule on one VM: ok or firing, and the recent matches that decide it."""

    __tablename__ = "alert_state"
    __table_args__ = (sa.Index("ix_alert_state_firing", "last_seen_at", postgresql_where=sa.text("status = 'firing'")),)

    rule_id: UUID = Field(
        sa_column=sa.Column(pg.UUID, sa.ForeignKey("alert_rule.id", ondelete="CASCADE"), primary_key=True)
    )
    vm_id: UUID = Field(sa_column=sa.Column(pg.UUID, sa.ForeignKey("vm.id", ondelete="CASCADE"), primary_key=True))
    status: str = Field(sa_column=sa.Column(sa.Text, nullable=False, server_default="ok"))
    # The latest matches (journal timestamps and seqs, oldest first), at most max(threshold, 5).
    recent_ts: list[datetime] = Field(
        default_factory=list,
        sa_column=sa.Column(pg.ARRAY(sa.DateTime(timezone=True)), nullable=False, server_default="{}"),
    )
    recent_seq: list[int] = Field(
        default_factory=list, sa_column=sa.Column(pg.ARRAY(sa.BigInteger), nullable=False, server_default="{}")
    )
    # The current (or last) firing: its first and last matching entry, and how many matched since.
    first_at: datetime | None = Field(default=None, sa_column=_tz())
    last_at: datetime | None = Field(default=None, sa_column=_tz())
    episode_count: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False, server_default="0"))
    fired_at: datetime | None = Field(default=None, sa_column=_tz())
    # Service time of the last match seen: the quiet window is measured from it.
    last_seen_at: datetime | None = Field(default=None, sa_column=_tz())
    matches: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False, server_default="0"))
    firings: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))
    updated_at: datetime | None = Field(default=None, sa_column=_tz(nullable=False, server_default=sa.func.now()))


class AlertNotification(SQLModel, table=True):
    """A firing or a resolution: the history of a rule and the outbox its webhook is called from."""

    __tablename__ = "alert_notification"
    __table_args__ = (
        sa.Index("ix_alert_notification_due", "next_attempt_at", postgresql_where=sa.text("delivery = 'pending'")),
        sa.Index("ix_alert_notification_rule", "rule_id", "created_at"),
    )

    # Also the Idempotency-Key: every attempt of one notification carries it.
    id: UUID = Field(default_factory=uuid4, primary_key=True)
    rule_id: UUID = Field(
        sa_column=sa.Column(pg.UUID, sa.ForeignKey("alert_rule.id", ondelete="CASCADE"), nullable=False)
    )
    vm_id: UUID = Field(sa_column=sa.Column(pg.UUID, sa.ForeignKey("vm.id", ondelete="CASCADE"), nullable=False))
    status: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    count: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    first_at: datetime | None = Field(default=None, sa_column=_tz())
    last_at: datetime | None = Field(default=None, sa_column=_tz())
    # The exact bytes every attempt sends, so the signature and the payload never change.
    body: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    delivery: str = Field(sa_column=sa.Column(sa.Text, nullable=False, server_default="pending"))
    attempts: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))
    next_attempt_at: datetime | None = Field(default=None, sa_column=_tz(nullable=False, server_default=sa.func.now()))
    # A claim: until then one process is posting it; a killed process's claim simply runs out.
    locked_until: datetime | None = Field(default=None, sa_column=_tz())
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    delivered_at: datetime | None = Field(default=None, sa_column=_tz())
    created_at: datetime | None = Field(default=None, sa_column=_tz(nullable=False, server_default=sa.func.now()))
