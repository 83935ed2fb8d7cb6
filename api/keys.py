"""Verified API keys, remembered for a short while so a status poll need not read them again.

A key found valid is kept ``API_KEY_CACHE_S`` seconds (default 10), by its hash: a key revoked
meanwhile keeps working at most that long in each API process, and then fails. Unknown keys are
never remembered, so a new key works at once. The cache is only touched from the event loop.
"""

from __future__ import annotations

from cachetools import TTLCache

from store.auth import VerifiedKey, hash_key, verify_api_key_async, well_formed
from store.reads import AsyncReads

MAX_CACHED_KEYS = 10_000


class VerifiedKeys:
    def __init__(self, reads: AsyncReads, *, ttl_s: float) -> None:
        self.reads = reads
        self._cache: TTLCache[str, VerifiedKey] | None = (
            TTLCache(maxsize=MAX_CACHED_KEYS, ttl=ttl_s) if ttl_s > 0 else None
        )

    async def verify(self, key: str) -> VerifiedKey | None:
        if not well_formed(key):
            return None
        digest = hash_key(key)
        if self._cache is not None and (known := self._cache.get(digest)) is not None:
            return known
        verified = await verify_api_key_async(self.reads, key=key)
        if verified is not None and self._cache is not None:
            self._cache[digest] = verified
        return verified
