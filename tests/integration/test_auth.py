"""API keys: every service authenticates from its own key ring, kept from access events."""

import asyncio

import httpx
import pytest

from shared.auth import Principal, hash_key, new_key
from shared.contracts.base import AccessRole
from shared.contracts.membership import AccessKeyIssued, AccessKeyRevoked
from shared.envelope import new_event
from shared.errors import NotAllowed
from shared.kafka import make_broker, publish


def test_principal_scopes():
    admin = Principal("k1", AccessRole.PARTNERSHIP_ADMIN, frozenset({"sw-mp"}))
    assert admin.may_access("sw-mp") and not admin.may_access("scmip")
    assert Principal("k0", AccessRole.OPERATOR).may_access("anything")
    with pytest.raises(NotAllowed) as denied:
        admin.require_partnership("scmip")
    assert denied.value.status == 403 and "scmip" in denied.value.message


def test_viewers_read_and_never_write():
    viewer = Principal("v1", AccessRole.VIEWER, frozenset({"sw-mp"}))
    assert viewer.may_access("sw-mp") and not viewer.may_write("sw-mp")
    with pytest.raises(NotAllowed):
        viewer.require_writer("sw-mp")
    partner = Principal("p1", AccessRole.PARTNER_SYSTEM, frozenset({"sw-mp"}), frozenset({"https://ats.example/acme"}))
    assert partner.may_write("sw-mp") and not partner.may_write("scmip")
    with pytest.raises(NotAllowed):
        partner.require_writer("sw-mp", AccessRole.PARTNERSHIP_ADMIN)


def test_a_key_sends_only_as_its_own_sources():
    partner = Principal("p1", AccessRole.PARTNER_SYSTEM, frozenset({"sw-mp"}), frozenset({"https://ats.example/acme"}))
    assert partner.may_send_as("/keys/p1") and partner.may_send_as("https://ats.example/acme")
    assert not partner.may_send_as("/keys/p2") and not partner.may_send_as("https://ats.example/other")
    assert Principal("op", AccessRole.OPERATOR).may_send_as("https://legacy.example/export")


def test_new_keys_are_unique_and_only_hashes_are_kept():
    (id1, secret1), (id2, secret2) = new_key(), new_key()
    assert id1 != id2 and secret1 != secret2 and id1 in secret1
    assert len(secret1) > 40 and hash_key(secret1) != hash_key(secret2) and len(hash_key(secret1)) == 64


@pytest.mark.integration
async def test_service_accepts_issued_keys_until_revoked(start_service, kafka_settings):
    service = start_service("metrics", {"BACKBONE_AUTH_OPERATOR_KEY": "bootstrap-secret-for-tests"})
    key_id, secret = new_key()
    broker = make_broker(kafka_settings, "membership")
    await broker.start()
    try:
        await publish(broker, kafka_settings, new_event(
            AccessKeyIssued(key_id=key_id, key_hash=hash_key(secret), role=AccessRole.PARTNER_SYSTEM,
                            partnership_ids=["sw-mp"], label="ATS of SW"), source="/test"))

        async with httpx.AsyncClient(base_url=service.url) as http:
            assert (await http.get("/whoami")).status_code == 401
            assert (await http.get("/whoami", headers={"Authorization": "Bearer nope"})).status_code == 401
            boot = await http.get("/whoami", headers={"X-API-Key": "bootstrap-secret-for-tests"})
            assert boot.json()["role"] == "operator"

            async def whoami() -> httpx.Response:
                return await http.get("/whoami", headers={"Authorization": f"Bearer {secret}"})

            async with asyncio.timeout(20):
                while (response := await whoami()).status_code != 200:
                    await asyncio.sleep(0.1)
            assert response.json() == {"key_id": key_id, "role": "partner_system", "partnership_ids": ["sw-mp"]}

            await publish(broker, kafka_settings, new_event(AccessKeyRevoked(key_id=key_id), source="/test"))
            async with asyncio.timeout(20):
                while (await whoami()).status_code != 401:
                    await asyncio.sleep(0.1)
    finally:
        await broker.stop()
