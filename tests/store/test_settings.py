from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from store.settings import Settings, get_settings

ENV_VARS = (
    "DATA_DIR",
    "DATABASE_URL",
    "BROKER_URL",
    "STORAGE_URL",
    "S3_ENDPOINT_URL",
    "S3_ACCESS_KEY_ID",
    "S3_SECRET_ACCESS_KEY",
    "S3_REGION",
    "GANFORGE_DATA_DIR",
    "LEASE_S",
    "HEARTBEAT_S",
    "MAX_UPLOAD_BYTES",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_embedded_defaults_live_under_the_data_dir(tmp_path: Path) -> None:
    settings = Settings()
    data_dir = (tmp_path / "ganforge-data").resolve()
    assert settings.data_dir == data_dir
    assert settings.database_url == f"sqlite:///{data_dir}/ganforge.db"
    assert settings.storage_url == (data_dir / "objects").as_uri()
    assert settings.broker_url == "filesystem://"
    options = settings.broker_transport_options()
    assert options["data_folder_in"] == options["data_folder_out"] == str(data_dir / "broker/queue")
    assert settings.max_upload_bytes == 200 * 1024 * 1024
    assert (settings.max_images, settings.max_image_side, settings.max_zip_ratio) == (
        200_000,
        256,
        100.0,
    )
    assert (settings.lease_s, settings.heartbeat_s) == (60.0, 10.0)
    settings.ensure_dirs()
    assert (data_dir / "broker/queue").is_dir()


def test_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("BROKER_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("STORAGE_URL", "s3://bucket/prefix")
    monkeypatch.setenv("S3_SECRET_ACCESS_KEY", "hunter2")
    monkeypatch.setenv("GANFORGE_DATA_DIR", "/data/sets")
    monkeypatch.setenv("MAX_UPLOAD_BYTES", "1000")
    settings = Settings()
    assert settings.database_url.endswith("/elsewhere/ganforge.db")
    assert settings.broker_url == "redis://127.0.0.1:6379/0"
    assert settings.broker_transport_options() == {}
    assert settings.storage_url == "s3://bucket/prefix"
    assert settings.s3_secret_access_key is not None
    assert settings.s3_secret_access_key.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(settings)
    assert settings.ganforge_data_dir == Path("/data/sets")
    assert settings.max_upload_bytes == 1000


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DATABASE_URL=postgresql://u@db/ganforge\nLEASE_S=30\n")
    settings = Settings()
    assert settings.database_url == "postgresql://u@db/ganforge"
    assert settings.lease_s == 30


def test_heartbeat_must_be_shorter_than_the_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEASE_S", "5")
    monkeypatch.setenv("HEARTBEAT_S", "10")
    with pytest.raises(ValidationError, match="HEARTBEAT_S"):
        Settings()


def test_get_settings_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    try:
        assert get_settings() is get_settings()
        monkeypatch.setenv("BROKER_URL", "memory://")
        get_settings.cache_clear()
        assert get_settings().broker_url == "memory://"
    finally:
        get_settings.cache_clear()
