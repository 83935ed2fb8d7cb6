"""ganforge: GAN training as a service. ``from ganforge import Client`` is the Python SDK; the
``ganforge`` command (``ganforge.cli``) holds the client and the server commands."""

from ganforge._http import RetryPolicy
from ganforge.async_client import AsyncClient
from ganforge.client import Client
from ganforge.errors import APIConnectionError, APIError, JobStreamLost
from ganforge.types import (
    BuiltinDataset,
    Checkpoint,
    Dataset,
    Event,
    Job,
    Model,
    Progress,
    Sample,
    StreamMessage,
)

__all__ = [
    "APIConnectionError",
    "APIError",
    "AsyncClient",
    "BuiltinDataset",
    "Checkpoint",
    "Client",
    "Dataset",
    "Event",
    "Job",
    "JobStreamLost",
    "Model",
    "Progress",
    "RetryPolicy",
    "Sample",
    "StreamMessage",
]
