"""Missing, wrong, revoked and cross-partnership keys on every endpoint of every service, taken
from each service's OpenAPI document, so a new endpoint without authentication fails here."""

import asyncio
import re

import httpx
import pytest

from shared.auth import hash_key
from shared.contracts import membership as mem
from shared.envelope import new_event
from shared.kafka import ensure_topics, make_broker, publish

pytestmark = pytest.mark.integration

OPERATOR = "matrix-operator-key"
ADMIN = "matrix-admin-of-sw-mp"
REVOKED = "matrix-revoked-key"
SERVICES = ("membership", "events", "metrics", "notify")
# Open by design: operations endpoints, the API's own description, and unsubscribe links
# (authenticated by the signed token they carry).
PUBLIC = {"/healthz", "/readyz", "/metrics", "/asyncapi.json", "/unsubscribe"}


def operations(spec: dict) -> list[tuple[str, str]]:
    return [(method.upper(), path) for path, methods in spec["paths"].items() for method in methods
            if path not in PUBLIC]


def concrete(path: str, partnership: str = "sw-mp") -> str:
    return re.sub(r"\{(\w+)\}", lambda m: partnership if m.group(1) == "partnership_id" else "x", path)


async def until(check, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "key ring did not learn the keys in time"
        await asyncio.sleep(0.3)


async def test_every_endpoint_refuses_missing_wrong_revoked_and_foreign_keys(start_service, kafka_settings):
    running = {name: start_service(name, {"BACKBONE_AUTH_OPERATOR_KEY": OPERATOR}) for name in SERVICES}
    await ensure_topics(kafka_settings)
    broker = make_broker(kafka_settings, "matrix-test")
    await broker.start()
    for key_id, secret, partnerships in (("admin", ADMIN, ["sw-mp"]), ("gone", REVOKED, ["sw-mp"])):
        await publish(broker, kafka_settings, new_event(mem.AccessKeyIssued(
            key_id=key_id, key_hash=hash_key(secret), role="partnership_admin", partnership_ids=partnerships,
            label=key_id), source="/test"))
    await publish(broker, kafka_settings, new_event(mem.AccessKeyRevoked(key_id="gone"), source="/test"))
    await broker.stop()

    checked = 0
    async with httpx.AsyncClient(timeout=10) as http:
        for name, service in running.items():
            async def learned(url=service.url) -> bool:
                admin = await http.get(url + "/whoami", headers={"authorization": f"Bearer {ADMIN}"})
                revoked = await http.get(url + "/whoami", headers={"authorization": f"Bearer {REVOKED}"})
                return admin.status_code == 200 and revoked.status_code == 401

            await until(learned)
            spec = (await http.get(service.url + "/openapi.json")).json()
            for method, path in operations(spec):
                for headers in ({}, {"authorization": "Bearer wrong"}, {"x-api-key": "wrong"},
                                {"authorization": f"Bearer {REVOKED}"}):
                    answer = await http.request(method, service.url + concrete(path), headers=headers, json={})
                    assert answer.status_code == 401, f"{name} {method} {path} {headers}: {answer.status_code}"
                    assert answer.headers["www-authenticate"] == "Bearer" and answer.json()["detail"]
                    checked += 1
                if method == "GET" and "{partnership_id}" in path:
                    foreign = await http.get(service.url + concrete(path, "nw-mp"),
                                             headers={"authorization": f"Bearer {ADMIN}"})
                    assert foreign.status_code == 403, f"{name} GET {path} for another partnership: {foreign.status_code}"
                    assert "nw-mp" in foreign.json()["detail"]
    assert checked > 4 * 60  # every operation of the four services, four ways each
