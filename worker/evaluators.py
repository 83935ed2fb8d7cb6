"""Trained evaluator classifiers cached in object storage, shared by every worker."""

from __future__ import annotations

from store.storage import ObjectStorage, StorageKeyNotFound

EVALUATOR_PREFIX = "evaluators/"


class StorageEvaluatorCache:
    """gan_engine's ``EvaluatorCache`` protocol on object storage: ``evaluators/{key}``.

    An evaluator is trained once per dataset content (the key is its fingerprint), so every
    later job on that dataset, on any worker, skips the training.
    """

    def __init__(self, storage: ObjectStorage) -> None:
        self.storage = storage

    @staticmethod
    def storage_key(key: str) -> str:
        return EVALUATOR_PREFIX + key

    def get(self, key: str) -> bytes | None:
        try:
            return self.storage.get_bytes(self.storage_key(key))
        except StorageKeyNotFound:
            return None

    def put(self, key: str, data: bytes) -> None:
        self.storage.put_bytes(self.storage_key(key), data)
