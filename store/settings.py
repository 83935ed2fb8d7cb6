"""Service settings, read from environment variables (and a ``.env`` file) by pydantic-settings.

Embedded defaults (DESIGN.md §5) all live under ``DATA_DIR``: a SQLite file, a folder as object
storage and kombu's ``filesystem://`` broker folder, so one machine runs with no external service.
Production sets ``DATABASE_URL``, ``BROKER_URL``, ``STORAGE_URL`` (+ ``S3_*``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from store.webhooks import AddressPolicy

MB = 1024 * 1024
DEFAULT_MAX_ATTEMPTS = 3


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    data_dir: Path = Field(Path("./ganforge-data"), description="base folder of the embedded mode")
    database_url: str = Field("", description="default: sqlite file under DATA_DIR")
    broker_url: str = Field("", description="default: kombu filesystem:// under DATA_DIR")
    storage_url: str = Field("", description="file:///abs/path or s3://bucket[/prefix]")
    s3_endpoint_url: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_region: str | None = None
    ganforge_data_dir: Path | None = Field(
        None, description="where gan_engine finds the builtin datasets (passed through)"
    )

    # Upload limits.
    max_upload_bytes: int = Field(200 * MB, gt=0)
    max_images: int = Field(200_000, gt=0)
    max_image_side: int = Field(256, gt=0)
    max_zip_entries: int = Field(250_000, gt=0)
    max_zip_ratio: float = Field(100.0, gt=1, description="uncompressed / compressed size")

    # Jobs.
    lease_s: float = Field(60.0, gt=0, description="a running job's lease; heartbeats renew it")
    heartbeat_s: float = Field(10.0, gt=0)
    reap_interval_s: float = Field(15.0, gt=0)
    requeue_queued_after_s: float = Field(
        600.0, gt=0, description="re-enqueue queued jobs untouched this long (lost messages)"
    )
    max_concurrent_jobs_per_tenant: int = Field(4, ge=1, description="queued + running")
    max_steps: int = Field(1_000_000, ge=1)
    keep_checkpoints: int = Field(
        3,
        ge=1,
        description="a job's newest checkpoints kept as it trains (plus its best evaluated one); "
        "older ones are deleted",
    )
    max_job_memory_bytes: int = Field(
        8 * 1024 * MB,
        gt=0,
        description="a job's training memory: specs estimated above it are refused at submission, "
        "and a worker stops a job that grows past it",
    )
    # The worker's local copies of uploaded packs (worker.pack_cache, docs/large-datasets.md).
    pack_cache_dir: Path | None = Field(
        None,
        description="where a worker keeps the packs it trains on, shared by the worker "
        "processes of a host; default DATA_DIR/pack-cache",
    )
    pack_cache_bytes: int = Field(
        20 * 1024 * MB,
        gt=0,
        description="the pack cache's size on disk: past it the least recently used packs are "
        "deleted (never one a job is opening); a pack larger than it is still downloaded",
    )

    # Webhooks (store.webhooks, worker.webhooks).
    webhook_allowed_addresses: AddressPolicy = Field(
        AddressPolicy.PUBLIC,
        description="public: refuse loopback, link-local and private receivers; loopback: allow "
        "this machine too (ganforge up sets it); any: private networks as well",
    )
    webhook_timeout_s: float = Field(10.0, gt=0, description="each try: connect, send and answer")
    webhook_max_attempts: int = Field(6, ge=1, le=20, description="tries of one delivery")
    webhook_backoff_s: float = Field(
        5.0, gt=0, description="wait before the 2nd try; it doubles after each failed try"
    )
    webhook_progress_interval_s: float = Field(
        30.0, gt=0, description="at most one progress delivery a job this often"
    )

    # Usage.
    max_storage_bytes_per_tenant: int | None = Field(
        None, gt=0, description="quota: past it, uploads and submissions answer 429"
    )

    # Workers: which training queues a worker consumes (store.queue.worker_queues).
    worker_gpus: int | None = Field(
        None,
        ge=0,
        le=64,
        description="GPUs this worker serves jobs with (its queue train.gpu.N); default: the "
        "GPUs torch sees",
    )
    worker_cpu_jobs: bool = Field(
        True,
        description="a GPU worker also takes device-cpu jobs (train.cpu); set false where a CPU "
        "pool serves them, so no CPU job holds a GPU",
    )

    # Faults: how often a job may lose its worker, and how long object storage may keep us
    # waiting (every request is bounded: a timeout per connection and read, a number of tries).
    max_attempts: int = Field(
        DEFAULT_MAX_ATTEMPTS,
        ge=1,
        description="attempts that may lose their worker; then the job fails with worker_lost",
    )
    storage_timeout_s: float = Field(
        10.0, gt=0, description="object storage: connect and read timeout of each try"
    )
    storage_max_attempts: int = Field(
        3, ge=1, description="object storage: tries of each request (the S3 client's retries)"
    )

    @model_validator(mode="after")
    def _embedded_defaults(self) -> Settings:
        data_dir = self.data_dir.expanduser().resolve()
        self.data_dir = data_dir
        if not self.database_url:
            self.database_url = f"sqlite:///{data_dir / 'ganforge.db'}"
        if not self.broker_url:
            self.broker_url = "filesystem://"
        if not self.storage_url:
            self.storage_url = (data_dir / "objects").as_uri()
        if self.heartbeat_s >= self.lease_s:
            raise ValueError(
                f"HEARTBEAT_S ({self.heartbeat_s}) must be shorter than LEASE_S ({self.lease_s})"
            )
        return self

    @property
    def broker_folder(self) -> Path:
        return self.data_dir / "broker"

    def broker_transport_options(self) -> dict[str, Any]:
        """Celery ``broker_transport_options``: the folders of the filesystem transport.

        Producer and consumer share one folder, so any process on this machine sees the queue.
        """
        if not self.broker_url.startswith("filesystem://"):
            return {}
        queue = self.broker_folder / "queue"
        return {
            "data_folder_in": str(queue),
            "data_folder_out": str(queue),
            "processed_folder": str(self.broker_folder / "processed"),
            "control_folder": str(self.broker_folder / "control"),
            "store_processed": False,
        }

    def ensure_dirs(self) -> None:
        """Create the embedded folders that the URLs point into (no-op for servers)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for key in ("data_folder_in", "processed_folder", "control_folder"):
            folder = self.broker_transport_options().get(key)
            if folder:
                Path(folder).mkdir(parents=True, exist_ok=True)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests call ``get_settings.cache_clear()`` after changing env."""
    return Settings()
