"""Settings of the API process: the shared ``store`` settings plus what only the API reads."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr

from gan_engine.data.packs import MAX_CLASSES
from gan_engine.precision import Precision
from store.settings import MB, Settings


class ApiSettings(Settings):
    gpu_pools: list[int] | None = Field(
        None,
        description="the GPU counts N of the worker pools this service runs (queues train.gpu.N), "
        "e.g. [1, 8]: a job needing another count is refused (422). Unset: every count is "
        "accepted and waits queued until a worker seeing that many GPUs consumes its queue",
    )
    reaper_enabled: bool = Field(
        True, description="run the reaper loop (every REAP_INTERVAL_S) inside the API process"
    )
    model_cache_size: int = Field(8, ge=1, description="generators kept loaded (LRU)")
    max_generate_samples: int = Field(1024, ge=1, le=4096, description="samples per request")
    max_synthetic_images: int = Field(
        10_000,
        ge=1,
        description="images one POST /v1/models/{id}/datasets may materialise (and MAX_IMAGES)",
    )
    generation_precision: Precision = Field(
        "auto",
        description="sampling: auto = bf16 autocast for conv generators on CPUs with bf16 units "
        "(AMX, AVX-512 bf16), off = float32 (the same bytes on every machine)",
    )
    generate_coalesce: bool = Field(
        True,
        description="sampling requests for one model that arrive while a pass runs share the next",
    )
    generate_max_batch: int = Field(
        256, ge=1, le=8192, description="samples in one coalesced forward pass, at most"
    )
    max_uncompressed_bytes: int = Field(
        1024 * MB, gt=0, description="an upload's archive members, decompressed, at most"
    )
    max_classes: int = Field(
        1000, ge=1, le=MAX_CLASSES, description="classes of an upload: labels 0..N-1, N names"
    )
    max_decoding_bytes: int = Field(
        2048 * MB,
        gt=0,
        description="decoded upload arrays this process holds at once, all uploads together: "
        "an upload that does not fit now is a 503 busy, one larger than it all a 413",
    )
    max_score_images: int = Field(
        256, ge=1, le=4096, description="POST /v1/models/{id}/scores: images per request"
    )
    max_score_upload_bytes: int = Field(
        16 * MB, gt=0, description="POST /v1/models/{id}/scores: the uploaded file, at most"
    )
    max_translate_upload_bytes: int = Field(
        16 * MB, gt=0, description="POST /v1/models/{id}/translate: the uploaded file, at most"
    )
    stream_poll_s: float = Field(0.5, gt=0, description="SSE: database poll interval")
    stream_keepalive_s: float = Field(15.0, gt=0, description="SSE: comment after this silence")
    max_json_body_bytes: int = Field(
        1 * MB, gt=0, description="a JSON request body (a spec, a sampling request), at most"
    )
    api_key_cache_s: float = Field(
        10.0,
        ge=0,
        le=300,
        description="a verified API key is remembered this long: a revoked key stops working "
        "within it; 0 checks every request",
    )
    long_poll_interval_s: float = Field(
        0.25, gt=0, le=10, description="GET /v1/jobs/{id}?wait=: how often the job is re-read"
    )
    metrics_token: SecretStr | None = Field(
        None, description="when set, GET /metrics needs 'Authorization: Bearer <token>'"
    )


def api_settings(settings: Settings | None = None) -> ApiSettings:
    """``settings`` as ``ApiSettings`` (API-only fields from the environment or defaults)."""
    if settings is None:
        return get_api_settings()
    if isinstance(settings, ApiSettings):
        return settings
    return ApiSettings(**settings.model_dump())


@lru_cache(maxsize=1)
def get_api_settings() -> ApiSettings:
    return ApiSettings()
