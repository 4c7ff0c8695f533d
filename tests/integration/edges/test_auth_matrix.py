"""The auth matrix: every operation of every service, taken from its OpenAPI document, tried with
missing, wrong and revoked keys and with an operator, partnership admin, partner system and
viewer key, on the key's own partnership and on a foreign one. MATRIX says what each role may do;
an operation without its row fails the test, so a new endpoint cannot forget its rule."""

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import orjson
import pytest

from shared.auth import hash_key
from shared.contracts import membership as mem
from shared.contracts import outcomes as out
from shared.contracts.base import AccessRole
from shared.envelope import new_event
from shared.kafka import ensure_topics, make_broker, publish
from tests.examples import EXAMPLES

pytestmark = pytest.mark.integration

OWN, FOREIGN = "sw-mp", "nw-mp"
OPERATOR = "matrix-operator-key"
REVOKED = "matrix-revoked-key"
KEYS = {  # role -> (key id, secret); every non-operator key is of OWN only
    AccessRole.PARTNERSHIP_ADMIN: ("admin", "matrix-admin-of-sw-mp"),
    AccessRole.PARTNER_SYSTEM: ("partner", "matrix-partner-of-sw-mp"),
    AccessRole.VIEWER: ("viewer", "matrix-viewer-of-sw-mp"),
}
SERVICES = ("membership", "events", "metrics", "notify")
# Open by design: operations endpoints, the API's own description, and unsubscribe links
# (authenticated by the signed token they carry).
PUBLIC = {"/healthz", "/readyz", "/metrics", "/asyncapi.json", "/unsubscribe"}

ADMIN, PARTNER, VIEWER = AccessRole.PARTNERSHIP_ADMIN, AccessRole.PARTNER_SYSTEM, AccessRole.VIEWER
EVERYONE = frozenset({ADMIN, PARTNER, VIEWER})
WRITERS = frozenset({ADMIN, PARTNER})
ADMINS = frozenset({ADMIN})
OPERATORS = frozenset()


Send = Callable[[str, str], dict]  # (partnership, key id) -> the request's body or query


@dataclass(frozen=True)
class Rule:
    """Who besides operators may do an operation on their own partnership (any other role: 403).
    `send` builds a valid request (refusals are tried with valid input, so a 403 is never a 422
    in disguise). `scoped`: the partnership is in the request (body or query), not in the path,
    so a foreign one is tried too (403 for every role but operators)."""

    may: frozenset[AccessRole]
    send: Send | None = None
    scoped: bool = False


def body(value: dict | str) -> Send:
    if isinstance(value, str):
        return lambda pid, key_id: {"content": value, "headers": {"content-type": "text/csv"}}
    return lambda pid, key_id: {"json": value}


def event_body(model) -> Send:
    return lambda pid, key_id: {"json": EXAMPLES[model].model_dump(mode="json") | {"partnership_id": pid}}


def event_batch(pid: str, key_id: str) -> dict:
    """A CloudEvents batch of one hire, sent as the key's own source."""
    hire = EXAMPLES[out.HireRecorded].model_copy(update={"partnership_id": pid})
    return {"content": orjson.dumps([new_event(hire, source=f"/keys/{key_id}").model_dump(mode="json")]),
            "headers": {"content-type": "application/cloudevents-batch+json"}}


def kpi_query(pid: str, key_id: str) -> dict:
    return {"params": {"scope": "partnership", "scope_id": pid, "period": "PY2025", "kpi": "hires",
                       "first": "2025-07", "last": "2026-06"}}


def in_query(pid: str, key_id: str) -> dict:
    return {"params": {"partnership_id": pid}}


def event_status(pid: str, key_id: str) -> dict:
    return {"params": {"partnership_id": pid, "source": f"/keys/{key_id}", "id": "e-1"}}


def _events() -> dict[tuple[str, str], Rule]:
    from services.events.api import ENDPOINTS

    return {("POST", path): Rule(WRITERS, event_body(model), scoped=True) for model, (path, _) in ENDPOINTS.items()} | {
        ("POST", "/events"): Rule(WRITERS, event_batch, scoped=True),
        ("GET", "/partnerships/{partnership_id}/activities/{activity_id}"): Rule(EVERYONE),
        ("GET", "/partnerships/{partnership_id}/records"): Rule(WRITERS),  # record-level data: not for viewers
        ("GET", "/events/status"): Rule(EVERYONE, event_status, scoped=True),
        ("GET", "/whoami"): Rule(EVERYONE),
    }


MATRIX: dict[str, dict[tuple[str, str], Rule]] = {
    "membership": {
        ("GET", "/whoami"): Rule(EVERYONE),
        ("POST", "/regions"): Rule(OPERATORS, body({"id": "r2", "name": "R2", "state": "CT"})),
        ("GET", "/regions"): Rule(EVERYONE),
        ("GET", "/regions/{id}"): Rule(EVERYONE),
        ("PUT", "/regions/{id}"): Rule(OPERATORS, body({"id": "x", "name": "X", "state": "CT"})),
        ("POST", "/sectors"): Rule(OPERATORS, body({"id": "s2", "name": "S2"})),
        ("GET", "/sectors"): Rule(EVERYONE),
        ("GET", "/sectors/{id}"): Rule(EVERYONE),
        ("PUT", "/sectors/{id}"): Rule(OPERATORS, body({"id": "x", "name": "X"})),
        ("POST", "/partnerships"): Rule(
            OPERATORS, body({"id": "p2", "name": "P2", "region_id": "ct", "sector_id": "mfg"})
        ),
        ("GET", "/partnerships"): Rule(EVERYONE),
        ("GET", "/partnerships/{partnership_id}"): Rule(EVERYONE),
        ("PATCH", "/partnerships/{partnership_id}"): Rule(ADMINS, body({"name": "Renamed"})),
        ("PUT", "/partnerships/{partnership_id}/targets"): Rule(
            ADMINS, body({"kpi": "hires", "period": "PY2025", "value": 1})
        ),
        ("DELETE", "/partnerships/{partnership_id}/targets/{kpi}/{period}"): Rule(ADMINS),
        ("GET", "/partnerships/{partnership_id}/targets"): Rule(EVERYONE),
        ("POST", "/organisations"): Rule(ADMINS, body({"id": "o2", "name": "O2", "kind": "employer"})),
        ("GET", "/organisations"): Rule(EVERYONE),
        # Partner systems and viewers see their partnerships' organisations only, and x is none of them.
        ("GET", "/organisations/{organisation_id}"): Rule(ADMINS),
        ("PATCH", "/organisations/{organisation_id}"): Rule(ADMINS, body({"name": "Renamed"})),
        ("POST", "/organisations/{organisation_id}/contacts"): Rule(
            ADMINS, lambda pid, key_id: {"json": {"id": "c2", "name": "No One", "partnership_id": pid}}, scoped=True
        ),
        ("GET", "/organisations/{organisation_id}/contacts"): Rule(ADMINS),
        ("GET", "/contacts/{contact_id}"): Rule(ADMINS),
        ("PATCH", "/contacts/{contact_id}"): Rule(ADMINS, body({"name": "Renamed"})),
        ("POST", "/partnerships/{partnership_id}/members"): Rule(
            ADMINS, body({"organisation_id": "acme", "joined_on": "2024-01-01"})
        ),
        ("GET", "/partnerships/{partnership_id}/members"): Rule(EVERYONE),
        ("GET", "/partnerships/{partnership_id}/members/{membership_id}"): Rule(EVERYONE),
        ("POST", "/partnerships/{partnership_id}/members/{membership_id}/leave"): Rule(
            ADMINS, body({"left_on": "2025-01-01"})
        ),
        ("POST", "/partnerships/{partnership_id}/action-teams"): Rule(ADMINS, body({"id": "t2", "name": "T2"})),
        ("GET", "/partnerships/{partnership_id}/action-teams"): Rule(EVERYONE),
        ("GET", "/partnerships/{partnership_id}/action-teams/{team_id}"): Rule(EVERYONE),
        ("PATCH", "/partnerships/{partnership_id}/action-teams/{team_id}"): Rule(ADMINS, body({"name": "Renamed"})),
        ("GET", "/partnerships/{partnership_id}/roster.csv"): Rule(EVERYONE),
        ("POST", "/partnerships/{partnership_id}/roster"): Rule(ADMINS, body("organisation_id,name,kind,joined_on\n")),
        ("POST", "/keys"): Rule(
            ADMINS,
            lambda pid, key_id: {"json": {"label": "k", "role": "viewer", "partnership_ids": [pid]}},
            scoped=True,
        ),
        ("GET", "/keys"): Rule(ADMINS),
        ("DELETE", "/keys/{key_id}"): Rule(ADMINS),
    },
    "metrics": {
        ("GET", "/whoami"): Rule(EVERYONE),
        ("GET", "/kpis/definitions"): Rule(EVERYONE),
        ("GET", "/kpis/values"): Rule(EVERYONE, kpi_query, scoped=True),
        ("GET", "/kpis/series"): Rule(EVERYONE, kpi_query, scoped=True),
        ("GET", "/kpis/compare"): Rule(EVERYONE),  # non-operators: their own rows only
        ("GET", "/kpis/lineage"): Rule(EVERYONE, kpi_query, scoped=True),
        ("POST", "/partnerships/{partnership_id}/shares"): Rule(ADMINS, body({"label": "Funder"})),
        ("GET", "/partnerships/{partnership_id}/shares"): Rule(ADMINS),
        ("DELETE", "/partnerships/{partnership_id}/shares/{share_id}"): Rule(ADMINS),
    },
    "notify": {
        ("GET", "/whoami"): Rule(EVERYONE),
        ("GET", "/subscriptions/event-types"): Rule(EVERYONE),
        ("POST", "/subscriptions"): Rule(
            ADMINS,
            lambda pid, key_id: {
                "json": {
                    "partnership_ids": [pid],
                    "event_types": ["org.backbone.hire.recorded.v1"],
                    "channel": "email",
                    "email": "coordinator@example.org",
                }
            },
            scoped=True,
        ),
        ("GET", "/subscriptions"): Rule(ADMINS, in_query, scoped=True),
        ("GET", "/subscriptions/{subscription_id}"): Rule(ADMINS),
        ("DELETE", "/subscriptions/{subscription_id}"): Rule(ADMINS),
        ("POST", "/subscriptions/{subscription_id}/resume"): Rule(ADMINS),
        ("GET", "/deliveries"): Rule(ADMINS, lambda pid, key_id: {"params": {"event_id": "x"}}),
        ("POST", "/subscriptions/{subscription_id}/deliveries/{event_id}/retry"): Rule(ADMINS),
    },
}


def operations(spec: dict) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, methods in spec["paths"].items() for method in methods
            if path not in PUBLIC}


def concrete(path: str, partnership: str = OWN) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: partnership if m.group(1) == "partnership_id" else "x", path)


async def until(check, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "key ring did not learn the keys in time"
        await asyncio.sleep(0.3)


async def issue_keys(kafka_settings) -> None:
    await ensure_topics(kafka_settings)
    broker = make_broker(kafka_settings, "matrix-test")
    await broker.start()
    try:
        for role, (key_id, secret) in KEYS.items() | {(ADMIN, ("gone", REVOKED))}:
            await publish(broker, kafka_settings, new_event(mem.AccessKeyIssued(
                key_id=key_id, key_hash=hash_key(secret), role=role, partnership_ids=[OWN], label=key_id),
                source="/test"))
        await publish(broker, kafka_settings, new_event(mem.AccessKeyRevoked(key_id="gone"), source="/test"))
    finally:
        await broker.stop()


def request_of(rule: Rule, path: str, partnership: str, key_id: str) -> dict:
    """The request of an operation for a partnership: in the path, or where the rule puts it."""
    return {"url": concrete(path, partnership), **(rule.send(partnership, key_id) if rule.send else {})}


async def test_every_operation_of_every_service_for_every_role(start_service, kafka_settings):
    running = {name: start_service(name, {"BACKBONE_AUTH_OPERATOR_KEY": OPERATOR}) for name in SERVICES}
    await issue_keys(kafka_settings)
    secrets = {AccessRole.OPERATOR: ("operator", OPERATOR)} | KEYS
    tried = 0
    async with httpx.AsyncClient(timeout=15) as http:
        for name, service in running.items():
            async def learned(url=service.url) -> bool:
                answers = [await http.get(url + "/whoami", headers={"authorization": f"Bearer {s}"})
                           for _, s in KEYS.values()]
                revoked = await http.get(url + "/whoami", headers={"authorization": f"Bearer {REVOKED}"})
                return all(a.status_code == 200 for a in answers) and revoked.status_code == 401

            await until(learned)
            spec = (await http.get(service.url + "/openapi.json")).json()
            rules = _events() if name == "events" else MATRIX[name]
            assert operations(spec) == set(rules), (
                f"{name}: operations without a row in the matrix (or rows without one)"
            )
            for (method, path), rule in sorted(rules.items()):
                for headers in ({}, {"authorization": "Bearer wrong"}, {"x-api-key": "wrong"},
                                {"authorization": f"Bearer {REVOKED}"}):
                    answer = await http.request(method, service.url + concrete(path), headers=headers, json={})
                    assert answer.status_code == 401, f"{name} {method} {path} {headers}: {answer.status_code}"
                    assert answer.headers["www-authenticate"] == "Bearer" and answer.json()["detail"]
                    tried += 1
                foreign_request = rule.scoped or "{partnership_id}" in path
                for role, (key_id, secret) in secrets.items():
                    auth = {"authorization": f"Bearer {secret}"}
                    for partnership in (OWN, FOREIGN) if foreign_request else (OWN,):
                        request = request_of(rule, path, partnership, key_id)
                        url = service.url + request.pop("url")
                        request["headers"] = auth | request.get("headers", {})
                        answer = await http.request(method, url, **request)
                        tried += 1
                        where = (f"{name} {method} {path} as {role.value} on {partnership}: "
                                 f"{answer.status_code} {answer.text[:200]}")
                        assert answer.status_code < 500, where
                        allowed = role is AccessRole.OPERATOR or (partnership == OWN and role in rule.may)
                        if allowed:
                            assert answer.status_code not in (401, 403), where
                        else:
                            assert answer.status_code == 403, where
                            if partnership == FOREIGN and role in rule.may:  # refused for the partnership, and says so
                                assert FOREIGN in str(answer.json()["detail"]), where
    assert tried > 4 * 60 + 4 * 60  # four refusals and at least four roles per operation
