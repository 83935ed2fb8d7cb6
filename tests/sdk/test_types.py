"""ganforge.types mirror api.schemas without importing it: the same fields, so neither can
drift, and unknown fields from a newer server are kept, not refused."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from api import schemas
from ganforge import types

PAIRS = [
    (types.Job, schemas.JobOut),
    (types.Model, schemas.ModelOut),
    (types.Dataset, schemas.DatasetOut),
    (types.BuiltinDataset, schemas.BuiltinDatasetOut),
    (types.Event, schemas.EventOut),
    (types.Progress, schemas.Progress),
    (types.MetricPoint, schemas.MetricPoint),
    (types.JobError, schemas.JobErrorOut),
    (types.Sample, schemas.SampleOut),
    (types.Checkpoint, schemas.CheckpointOut),
    (types.MetricSeries, schemas.MetricSeries),
    (types.Webhook, schemas.WebhookOut),
    (types.WebhookAttempt, schemas.WebhookAttemptOut),
    (types.WebhookDelivery, schemas.WebhookDeliveryOut),
    (types.StorageBytes, schemas.StorageBytes),
    (types.Usage, schemas.UsageOut),
    (types.Scores, schemas.ScoresOut),
    (types.ScoreSearch, schemas.SearchOut),
]


def response_fields(model: type[BaseModel]) -> set[str]:
    """What the API sends: serialized fields (excluded ones left out, computed ones in)."""
    return set(model.model_json_schema(mode="serialization")["properties"])


@pytest.mark.parametrize(("client_type", "api_schema"), PAIRS, ids=lambda t: t.__name__)
def test_client_types_have_the_api_response_fields(
    client_type: type[BaseModel], api_schema: type[BaseModel]
) -> None:
    assert set(client_type.model_fields) == response_fields(api_schema)


def test_fields_the_client_does_not_know_are_kept() -> None:
    event = types.Event.model_validate(
        {
            "seq": 1,
            "step": 3,
            "level": "notice",
            "code": "new",
            "message": "m",
            "created_at": "2026-12-01T00:00:00Z",
            "added_later": {"x": 1},
        }
    )
    assert event.level == "notice" and event.model_extra == {"added_later": {"x": 1}}
