"""The bounds of shared.contracts.bounds at every entry point of the events service: each value a
consumer could not process is refused over HTTP with 422 naming the field, and on a partner's
inbound topic with one dead letter naming it; the good event after them is accepted once."""

import orjson
import pytest

from shared.catalog import DEAD_LETTER, OUTCOMES, inbound_of
from shared.contracts import activities as act
from shared.contracts import membership as mem
from shared.contracts import outcomes as out
from shared.envelope import new_event
from tests.examples import P
from tests.integration.events.conftest import example, issue_partner_key, send_to
from tests.integration.topics import header, read_topic

pytestmark = pytest.mark.integration

STRUCTURED = {"content-type": "application/cloudevents+json"}
JSON = {"content-type": "application/json"}

# (model, path of its typed endpoint, field, the value as JSON text): what the probe of issue 17 sent.
OUT_OF_BOUNDS = [
    (act.ActivityScheduled, "/activities", "capacity", str(10**30)),
    (act.ActivityScheduled, "/activities", "starts_at", '"0001-01-01T00:00:00Z"'),
    (out.HireRecorded, "/outcomes/hires", "start_date", '"0001-01-01"'),
    (out.HireRecorded, "/outcomes/hires", "hourly_wage", "NaN"),
    (out.HireRecorded, "/outcomes/hires", "hourly_wage", "Infinity"),
    (out.HireRecorded, "/outcomes/hires", "hourly_wage", "1e999"),
]


def with_value(model, field: str, value: str, id: str) -> bytes:
    """A CloudEvent of `model`'s example with `field` written as the raw JSON `value` (NaN is no JSON)."""
    event = orjson.loads(new_event(example(model), source="/ats/sw", id=id).to_json())
    event["data"][field] = "__value__"
    return orjson.dumps(event).replace(b'"__value__"', value.encode())


@pytest.mark.parametrize(("model", "path", "field", "value"), OUT_OF_BOUNDS)
async def test_refused_over_http_naming_the_field(operator, roster, model, path, field, value):
    data = orjson.dumps(example(model).model_dump(mode="json") | {field: "__value__"})
    typed = await operator.post(path, content=data.replace(b'"__value__"', value.encode()), headers=JSON)
    assert typed.status_code == 422, typed.text
    assert [e["loc"][1:] for e in typed.json()["detail"]] == [[field]]

    structured = await operator.post("/events", content=with_value(model, field, value, "e-bad"), headers=STRUCTURED)
    assert structured.status_code == 422, structured.text
    assert [e["field"] for e in structured.json()["errors"]] == [f"data.{field}"]


async def test_refused_on_the_inbound_topic_with_one_dead_letter_each(events_service, roster, membership_broker,
                                                                      kafka_settings):
    key_id, _ = await issue_partner_key(membership_broker, kafka_settings, [P], sources=["/ats/sw"])
    bad = [with_value(model, field, value, f"in-bad-{n}") for n, (model, _, field, value) in enumerate(OUT_OF_BOUNDS)]
    infinite_target = with_value(mem.TargetSet, "value", "Infinity", "in-target")
    good = orjson.dumps(orjson.loads(new_event(example(out.HireRecorded), source="/ats/sw", id="in-good").to_json()))
    await send_to(kafka_settings, inbound_of(key_id), *bad, infinite_target, good)

    republished = await read_topic(kafka_settings, OUTCOMES, until=lambda records: len(records) >= 1)
    assert [header(r, "ce_id") for r in republished] == ["in-good"]
    letters = await read_topic(kafka_settings, DEAD_LETTER, until=lambda records: len(records) >= len(bad) + 1)
    assert [(header(r, "dl_reason"), header(r, "dl_detail").split(":")[0]) for r in letters] == \
        [("invalid_event", f"data.{field}") for _, _, field, _ in OUT_OF_BOUNDS] + [("invalid_event", "data.value")]
