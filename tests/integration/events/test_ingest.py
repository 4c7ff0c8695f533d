"""Partner ingestion on the real stack: CloudEvents batches with good and bad events, duplicate
ids, keys limited to their partnerships and sources, and a partner's own inbound topic written by a
plain Kafka client."""

import asyncio

import httpx
import orjson
import pytest

from shared.auth import hash_key, new_key
from shared.catalog import DEAD_LETTER, DEMAND, OUTCOMES, inbound_of
from shared.contracts import demand as dem
from shared.contracts import membership as mem
from shared.contracts import outcomes as out
from shared.contracts.base import AccessRole
from shared.envelope import new_event
from shared.kafka import publish
from tests.examples import P
from tests.integration.events.conftest import OTHER, example, issue_partner_key, send_to
from tests.integration.topics import header, read_topic

pytestmark = pytest.mark.integration

BATCH = {"content-type": "application/cloudevents-batch+json"}
STRUCTURED = {"content-type": "application/cloudevents+json"}


def cloudevent(model, id: str, **changes) -> dict:
    return orjson.loads(new_event(example(model, **changes), source="/ats/sw", id=id).to_json())


async def test_batch_with_good_bad_and_duplicate_events(operator, roster, kafka_settings):
    malformed = cloudevent(out.HireRecorded, "e-malformed", hire_id="h-9")
    malformed["data"]["soc_code"] = "welder"
    batch = [
        cloudevent(out.HireRecorded, "e-hire"),  # accepted
        cloudevent(out.HireRecorded, "e-hire-unknown-employer", hire_id="h-2", employer_id="acme"),
        malformed,
        cloudevent(out.RetentionChecked, "e-retained"),  # sees the hire accepted earlier in this batch
        cloudevent(out.RetentionChecked, "e-retained-wrong-employer", employer_id="qvcc"),
        cloudevent(out.SeparationRecorded, "e-separated-too-early", separated_on="2026-03-01"),
        cloudevent(out.PlacementRecorded, "e-placed", provider_id="qvcc"),
        cloudevent(out.TrainingEnrolled, "e-enrolled"),
        cloudevent(out.HireRecorded, "e-hire"),  # the same id again in one batch
        cloudevent(out.HireRecorded, "e-hire-again", person_id="p-90"),  # a new id for a known hire_id
        cloudevent(dem.DemandSurveyResponded, "e-survey"),
        cloudevent(dem.DemandSurveyResponded, "e-survey-unknown", employer_id="acme"),
        cloudevent(mem.MemberJoined, "e-not-ours"),
        "not an object",
    ]
    response = await operator.post("/events", content=orjson.dumps(batch), headers=BATCH)
    assert response.status_code == 200, response.text
    answer = response.json()
    results = [(r["id"], r["status"], [e["field"] for e in r["errors"]]) for r in answer["results"]]
    assert results == [
        ("e-hire", "accepted", []),
        ("e-hire-unknown-employer", "rejected", ["data.employer_id"]),
        ("e-malformed", "rejected", ["data.soc_code"]),
        ("e-retained", "accepted", []),
        ("e-retained-wrong-employer", "rejected", ["data.employer_id"]),
        ("e-separated-too-early", "rejected", ["data.separated_on"]),
        ("e-placed", "accepted", []),
        ("e-enrolled", "accepted", []),
        ("e-hire", "duplicate", []),
        ("e-hire-again", "rejected", ["data.hire_id"]),
        ("e-survey", "accepted", []),
        ("e-survey-unknown", "rejected", ["data.employer_id"]),
        ("e-not-ours", "rejected", ["type"]),
        (None, "rejected", ["(event)"]),
    ]
    assert (answer["accepted"], answer["duplicate"], answer["rejected"]) == (5, 1, 8)

    # The partner retries the whole batch: what was accepted is now a duplicate, nothing new.
    retry = (await operator.post("/events", content=orjson.dumps(batch), headers=BATCH)).json()
    assert [r["status"] for r in retry["results"]][:4] == ["duplicate", "rejected", "rejected", "duplicate"]
    assert (retry["accepted"], retry["duplicate"]) == (0, 6)

    # Structured mode: one event, answered like the typed endpoints.
    single = cloudevent(out.CredentialEarned, "e-credential")
    first = await operator.post("/events", content=orjson.dumps(single), headers=STRUCTURED)
    second = await operator.post("/events", content=orjson.dumps(single), headers=STRUCTURED)
    bad = await operator.post("/events", content=b"{", headers=STRUCTURED)
    assert (first.status_code, second.status_code, second.json()["status"]) == (202, 200, "duplicate")
    assert (bad.status_code, bad.json()["errors"][0]["field"]) == (422, "(event)")
    # Plain JSON is binary mode by the HTTP binding: without its ce- headers, the attributes are missing.
    no_attributes = await operator.post("/events", json=[single])
    assert no_attributes.status_code == 422 and "specversion" in [e["field"] for e in no_attributes.json()["errors"]]
    assert (await operator.post("/events", content=b"x", headers={"content-type": "text/plain"})).status_code == 415
    not_a_batch = await operator.post("/events", content=orjson.dumps(single), headers=BATCH)
    assert not_a_batch.status_code == 422

    # Kafka holds every accepted event exactly once, on its own topic.
    outcomes = [header(r, "ce_id") for r in await read_topic(kafka_settings, OUTCOMES)]
    demand = [header(r, "ce_id") for r in await read_topic(kafka_settings, DEMAND)]
    assert sorted(outcomes) == ["e-credential", "e-enrolled", "e-hire", "e-placed", "e-retained"]
    assert demand == ["e-survey"]


async def test_partner_keys_write_only_to_their_partnerships_and_sources(events_service, roster, membership_broker,
                                                                      kafka_settings):
    _, secret = await issue_partner_key(membership_broker, kafka_settings, [P], sources=["/ats/sw"])
    viewer_id, viewer = new_key()
    await publish(membership_broker, kafka_settings, new_event(
        mem.AccessKeyIssued(key_id=viewer_id, key_hash=hash_key(viewer), role=AccessRole.VIEWER,
                            partnership_ids=[P], label="board"), source="/backbone/membership"))
    async with httpx.AsyncClient(base_url=events_service.url, headers={"Authorization": f"Bearer {secret}"}) as ats:
        async with asyncio.timeout(20):
            while (await ats.get("/whoami", headers={"Authorization": f"Bearer {viewer}"})).status_code != 200:
                await asyncio.sleep(0.1)
        hire = example(out.HireRecorded).model_dump(mode="json")
        assert (await ats.post("/outcomes/hires", json=hire | {"partnership_id": OTHER})).status_code == 403
        assert (await ats.get(f"/partnerships/{OTHER}/activities/tour-1")).status_code == 403
        # One foreign event refuses the whole batch: nothing of it is accepted.
        mixed = [cloudevent(out.HireRecorded, "k-own"), cloudevent(out.HireRecorded, "k-foreign", partnership_id=OTHER)]
        refused = await ats.post("/events", content=orjson.dumps(mixed), headers=BATCH)
        assert refused.status_code == 403 and OTHER in refused.text
        # So does an event from a source the key was not issued for.
        posing = cloudevent(out.HireRecorded, "k-posing") | {"source": "/ats/another-system"}
        refused = await ats.post("/events", content=orjson.dumps([mixed[0], posing]), headers=BATCH)
        assert refused.status_code == 403 and "/ats/another-system" in refused.text
        own = await ats.post("/events", content=orjson.dumps(mixed[:1]), headers=BATCH)
        assert [r["status"] for r in own.json()["results"]] == ["accepted"]
        assert (await ats.post("/outcomes/hires", json=hire | {"hire_id": "h-2"})).status_code == 202
        assert (
            await ats.post("/outcomes/hires", json=hire, headers={"Authorization": "Bearer bbk_forged"})
        ).status_code == 401
        # A viewer reads its partnership's activities but submits nothing, whatever the endpoint.
        as_viewer = {"Authorization": f"Bearer {viewer}"}
        assert (await ats.get(f"/partnerships/{P}/activities/tour-1", headers=as_viewer)).status_code == 404
        assert (await ats.post("/outcomes/hires", json=hire | {"hire_id": "h-3"}, headers=as_viewer)).status_code == 403
        viewer_batch = await ats.post(
            "/events",
            content=orjson.dumps(
                [cloudevent(out.HireRecorded, "v-1", hire_id="h-4") | {"source": f"/keys/{viewer_id}"}]
            ),
            headers=BATCH | as_viewer,
        )
        assert viewer_batch.status_code == 403
    async with httpx.AsyncClient(base_url=events_service.url) as anonymous:
        assert (await anonymous.post("/events", content=orjson.dumps(mixed[:1]), headers=BATCH)).status_code == 401


async def test_a_partner_topic_is_validated_republished_and_dead_lettered(events_service, roster, membership_broker,
                                                                        kafka_settings):
    key_id, _ = await issue_partner_key(membership_broker, kafka_settings, [P], sources=["/ats/sw"])
    good = cloudevent(out.HireRecorded, "in-hire")
    unknown_employer = cloudevent(out.HireRecorded, "in-acme", hire_id="h-3", employer_id="acme")
    invalid = cloudevent(out.HireRecorded, "in-invalid", hire_id="h-4")
    invalid["data"]["resident"] = "perhaps"
    not_ours = cloudevent(mem.MemberJoined, "in-not-ours")
    await send_to(
        kafka_settings,
        inbound_of(key_id),
        *[orjson.dumps(m) for m in (good, good, unknown_employer, invalid, not_ours)],
        b"\xffnot json",
    )

    letters = await read_topic(kafka_settings, DEAD_LETTER, until=lambda records: len(records) >= 4)
    reasons = [(header(r, "dl_reason"), header(r, "dl_detail").split(":")[0]) for r in letters]
    assert reasons == [("rule_violation", "data.employer_id"), ("invalid_event", "data.resident"),
                       ("rule_violation", "type"),
                       ("invalid_json", "(event)")]
    assert {(header(r, "dl_topic"), header(r, "dl_service")) for r in letters} == \
        {(kafka_settings.topic(inbound_of(key_id).name), "events")}
    assert orjson.loads(letters[0].value)["id"] == "in-acme"  # the original message is kept for replay

    # The good event was republished under its own id, once, although it came twice.
    republished = await read_topic(kafka_settings, OUTCOMES)
    assert [header(r, "ce_id") for r in republished] == ["in-hire"]
    assert orjson.loads(republished[0].value)["data"] == good["data"]
