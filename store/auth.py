"""Tenants and API keys. Only a SHA-256 hash of a key is stored; the plaintext is shown once."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from store.db import rowcount
from store.errors import NotFound
from store.models import ApiKey, Tenant, utcnow
from store.reads import AsyncReads

KEY_PREFIX = "gf_"
MAX_KEY_CHARS = 200
DISPLAY_CHARS = 10  # "gf_" + 7 characters: enough to tell keys apart in a list


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_bearer(authorization: str | None) -> str | None:
    """The key from an ``Authorization: Bearer <key>`` header, or None."""
    if not authorization:
        return None
    scheme, _, key = authorization.strip().partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key else None


def create_tenant(session: Session, *, name: str) -> Tenant:
    tenant = Tenant(name=name)
    session.add(tenant)
    session.flush()
    return tenant


def create_api_key(
    session: Session, *, tenant_id: str, name: str | None = None
) -> tuple[ApiKey, str]:
    """A new key for the tenant: the row and the plaintext, which is never stored."""
    if session.get(Tenant, tenant_id) is None:
        raise NotFound(f"tenant {tenant_id} does not exist")
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey(
        tenant_id=tenant_id,
        name=name,
        prefix=plaintext[:DISPLAY_CHARS],
        key_hash=hash_key(plaintext),
    )
    session.add(api_key)
    session.flush()
    return api_key, plaintext


def create_tenant_with_key(
    session: Session, *, name: str, key_name: str | None = None
) -> tuple[Tenant, ApiKey, str]:
    tenant = create_tenant(session, name=name)
    api_key, plaintext = create_api_key(session, tenant_id=tenant.id, name=key_name)
    return tenant, api_key, plaintext


def well_formed(key: str | None) -> bool:
    return bool(key) and key.startswith(KEY_PREFIX) and len(key) <= MAX_KEY_CHARS  # type: ignore[union-attr]


def verify_api_key(session: Session, *, key: str | None) -> ApiKey | None:
    """The active key row for a plaintext key, or None (unknown, malformed or revoked).

    The lookup is by hash, so response time says nothing about how much of a guess was right;
    the final comparison is constant-time all the same.
    """
    if not well_formed(key):
        return None
    digest = hash_key(str(key))
    api_key = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    if api_key is None or not hmac.compare_digest(api_key.key_hash, digest):
        return None
    if api_key.revoked_at is not None:
        return None
    return api_key


@dataclass(frozen=True)
class VerifiedKey:
    key_id: str
    tenant_id: str


ACTIVE_KEY_BY_HASH = select(ApiKey.id, ApiKey.tenant_id, ApiKey.key_hash).where(
    ApiKey.key_hash == bindparam("digest"), ApiKey.revoked_at.is_(None)
)


async def verify_api_key_async(reads: AsyncReads, *, key: str) -> VerifiedKey | None:
    """``verify_api_key`` on the asyncio reads, reading only the columns it needs."""
    if not well_formed(key):
        return None
    digest = hash_key(key)
    row = await reads.one(ACTIVE_KEY_BY_HASH, digest=digest)
    if row is None or not hmac.compare_digest(row["key_hash"], digest):
        return None
    return VerifiedKey(key_id=row["id"], tenant_id=row["tenant_id"])


def revoke_api_key(session: Session, *, key_id: str, tenant_id: str | None = None) -> bool:
    """Revoke a key (idempotent). False if no such key (for this tenant, when given)."""
    query = update(ApiKey).where(ApiKey.id == key_id)
    if tenant_id is not None:
        query = query.where(ApiKey.tenant_id == tenant_id)
    found = rowcount(
        session.execute(query.values(revoked_at=utcnow()).where(ApiKey.revoked_at.is_(None)))
    )
    if found:
        return True
    known = select(ApiKey.id).where(ApiKey.id == key_id)
    if tenant_id is not None:
        known = known.where(ApiKey.tenant_id == tenant_id)
    return session.scalar(known) is not None
