"""Settings, read from the environment (prefix ``VMJOURNAL_``) and an optional ``.env`` file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import platformdirs
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from vmjournal.net import is_loopback

SIZES = ("small", "medium", "large")


def _env(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, env_file=".env", extra="ignore")


class AzureSettings(BaseSettings):
    """Azure provider settings: ``VMJOURNAL_AZURE_*``."""

    model_config = _env("VMJOURNAL_AZURE_")

    subscription_id: str = ""
    location: str = "westeurope"
    size_small: str = "Standard_B2ats_v2"
    size_medium: str = "Standard_D2as_v5"
    size_large: str = "Standard_D4as_v5"
    image: str = "Canonical:ubuntu-24_04-lts:server:latest"
    admin_user: str = "azureuser"
    ssh_public_key: str = ""
    ssh_source_range: str = ""
    arm_endpoint: str = "https://management.azure.com"
    # A fixed bearer token instead of DefaultAzureCredential, for emulators and tests.
    static_token: SecretStr | None = None

    def sku_for(self, size: str) -> str:
        return {"small": self.size_small, "medium": self.size_medium, "large": self.size_large}[size]


class QemuSettings(BaseSettings):
    """Local QEMU provider settings: ``VMJOURNAL_QEMU_*``."""

    model_config = _env("VMJOURNAL_QEMU_")

    # vCPUs and MiB of memory per size.
    size_small: tuple[int, int] = (1, 1024)
    size_medium: tuple[int, int] = (2, 2048)
    size_large: tuple[int, int] = (2, 4096)
    # "auto" probes KVM and falls back to TCG; "kvm" or "tcg" force one.
    accel: str = "auto"
    # Bring your own guest instead of the debootstrap-built base image.
    kernel: Path | None = None
    initrd: Path | None = None
    image: Path | None = None
    kernel_append: str = ""
    debian_suite: str = "bookworm"
    # Where built base images are cached; empty: <data_dir>/images.
    images_dir: Path | None = None
    # Empty: the mirror this machine's apt uses for the suite.
    debian_mirror: str = ""
    # Shell commands the guest runs once after the agent is installed (in their own unit).
    after_install: str = ""
    # How long a create waits for the guest to report the agent installed.
    boot_timeout_seconds: float = 600.0

    def resources_for(self, size: str) -> tuple[int, int]:
        return {"small": self.size_small, "medium": self.size_medium, "large": self.size_large}[size]


class Settings(BaseSettings):
    """Service settings: ``VMJOURNAL_*``."""

    model_config = _env("VMJOURNAL_")

    database_url: str = ""
    data_dir: Path = Field(default_factory=lambda: platformdirs.user_data_path("vmjournal"))
    provider: str = ""
    public_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    # Ingest limits: a batch larger than this is refused with 413, never partly stored.
    max_batch_entries: int = 10_000
    max_body_bytes: int = 32 * 1024 * 1024
    # The service's own logs: the level of the vmjournal and uvicorn loggers, and text or JSON lines.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    # Connection pool per process: requests beyond size + overflow wait up to pool_timeout seconds.
    db_pool_size: int = 10
    db_max_overflow: int = 10
    db_pool_timeout: float = 30.0
    # Provisioning worker.
    worker_concurrency: int = 4
    job_heartbeat_seconds: float = 5.0
    job_stale_seconds: float = 30.0
    # How often running VMs are inspected (one process at a time does it).
    monitor_seconds: float = 30.0
    # Alert webhooks: one attempt's timeout, the first retry's delay (doubling after each failure),
    # attempts before giving up; how often quiet firings are looked for.
    alert_delivery_timeout_seconds: float = 10.0
    alert_retry_seconds: float = 5.0
    alert_max_attempts: int = 12
    alert_tick_seconds: float = 1.0
    # Worker processes that build ingested batches' rows beside the event loop (journal/row_workers.py);
    # unset: one per core but one, at most four. 0 builds them in the loop.
    ingest_processes: int | None = Field(default=None, ge=0)
    # Journal retention: whole days older than this go (0 keeps everything), and the oldest days go
    # while the journal is larger than max_bytes (unset: no cap). One process prunes at a time.
    retention_days: int = Field(default=30, ge=0)
    retention_max_bytes: int | None = Field(default=None, gt=0)
    retention_check_seconds: float = 300.0
    azure: AzureSettings = Field(default_factory=AzureSettings)
    qemu: QemuSettings = Field(default_factory=QemuSettings)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @property
    def default_provider(self) -> str:
        if self.provider:
            return self.provider
        return "azure" if self.azure.subscription_id else "qemu"

    @property
    def ingest_url(self) -> str:
        """The base URL a VM's agent pushes to."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    def listens_on_loopback(self) -> bool:
        return is_loopback(self.host)


@lru_cache
def get_settings() -> Settings:
    return Settings()
