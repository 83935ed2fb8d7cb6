from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from store.auth import (
    create_api_key,
    create_tenant_with_key,
    parse_bearer,
    revoke_api_key,
    verify_api_key,
)
from store.db import session_scope
from store.errors import NotFound
from store.models import ApiKey


def test_key_round_trip_stores_only_a_hash(db: sessionmaker[Session]) -> None:
    with session_scope(db) as session:
        tenant, api_key, plaintext = create_tenant_with_key(session, name="acme", key_name="ci")
    assert plaintext.startswith("gf_") and len(plaintext) > 40
    assert api_key.prefix == plaintext[:10]
    with session_scope(db) as session:
        stored = session.scalars(select(ApiKey)).one()
        assert stored.key_hash == hashlib.sha256(plaintext.encode()).hexdigest()
        assert plaintext not in (stored.key_hash, stored.prefix, stored.name)
        found = verify_api_key(session, key=plaintext)
        assert found is not None and found.tenant_id == tenant.id
        assert verify_api_key(session, key=plaintext + "x") is None
        assert verify_api_key(session, key="gf_" + "A" * 43) is None
        assert verify_api_key(session, key="not-a-key") is None
        assert verify_api_key(session, key=None) is None


def test_revoked_key_is_refused(db: sessionmaker[Session]) -> None:
    with session_scope(db) as session:
        tenant, first, first_plain = create_tenant_with_key(session, name="acme")
        _, second_plain = create_api_key(session, tenant_id=tenant.id)
        _, other, _ = create_tenant_with_key(session, name="other")
    with session_scope(db) as session:
        assert revoke_api_key(session, key_id=other.id, tenant_id=tenant.id) is False
        assert revoke_api_key(session, key_id=first.id, tenant_id=tenant.id) is True
        assert revoke_api_key(session, key_id=first.id) is True  # idempotent
        assert revoke_api_key(session, key_id="key_missing") is False
    with session_scope(db) as session:
        assert verify_api_key(session, key=first_plain) is None
        assert verify_api_key(session, key=second_plain) is not None


def test_key_for_a_missing_tenant(db: sessionmaker[Session]) -> None:
    with pytest.raises(NotFound), session_scope(db) as session:
        create_api_key(session, tenant_id="ten_missing")


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("Bearer gf_abc", "gf_abc"),
        ("bearer   gf_abc ", "gf_abc"),
        ("Basic dXNlcg==", None),
        ("Bearer", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_bearer(header: str | None, key: str | None) -> None:
    assert parse_bearer(header) == key
