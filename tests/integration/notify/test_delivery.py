"""The notify service as a real process on the real stack, delivering to a real HTTP receiver
(which checks signatures and fails on purpose) and a real SMTP server."""

import os
import re
import signal
from email import policy
from email.parser import BytesParser

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from shared.auth import hash_key, new_key
from shared.catalog import SIGNALS
from shared.contracts import membership as mem
from shared.contracts.base import AccessRole
from shared.contracts.signals import MilestoneReached
from shared.envelope import parse_event
from tests.examples import EXAMPLES, P
from tests.integration.notify.conftest import api, until

pytestmark = pytest.mark.integration

NAME = EXAMPLES[mem.PartnershipCreated].name


def joined(organisation_id: str) -> mem.MemberJoined:
    return EXAMPLES[mem.MemberJoined].model_copy(update={"membership_id": f"m-{organisation_id}",
                                                         "organisation_id": organisation_id})


async def signals(kafka_settings, until_found, timeout: float = 20.0) -> list:
    """Notify's result events on backbone.signals, read until `until_found(results)` holds."""
    consumer = AIOKafkaConsumer(kafka_settings.topic(SIGNALS.name), bootstrap_servers=kafka_settings.bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    results = []
    try:
        async def found():
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                results.extend(parse_event(r.value) for r in batch)
            return until_found(results)

        await until(found, timeout)
    finally:
        await consumer.stop()
    return results


async def test_webhooks_and_mails_are_signed_retried_logged_once_and_unsubscribable(
        start_service, notify_env, receiver, smtp, bus, kafka_settings, notify_db, roster):
    mailbox, _ = smtp
    service = start_service("notify", notify_env)
    await roster()
    key_id, secret = new_key()
    await bus(mem.AccessKeyIssued(key_id=key_id, key_hash=hash_key(secret), role=AccessRole.PARTNERSHIP_ADMIN,
                                  partnership_ids=[P], label="SW admin"))
    async with api(service, secret) as admin, api(service) as operator:
        await until(lambda: _ok(admin.get("/whoami")))  # the key has reached notify's key ring

        # A partnership's key manages its own partnership's subscriptions only; bad input names the field.
        other = await admin.post("/subscriptions", json={"partnership_ids": ["scmip"], "channel": "webhook",
                                                         "webhook_url": receiver.url + "/x"})
        assert other.status_code == 403
        typo = await admin.post("/subscriptions", json={"partnership_ids": [P], "channel": "webhook",
                                                        "webhook_url": receiver.url + "/x",
                                                        "event_types": ["org.backbone.membr.*"]})
        assert typo.status_code == 422 and typo.json()["detail"][0]["loc"] == ["body", "event_types"]
        no_address = await admin.post("/subscriptions", json={"partnership_ids": [P], "channel": "email"})
        assert no_address.status_code == 422 and no_address.json()["detail"][0]["loc"] == ["body", "email"]

        hook = (await admin.post("/subscriptions", json={
            "partnership_ids": [P], "channel": "webhook", "webhook_url": receiver.url + "/ats",
            "event_types": ["org.backbone.member.*"]})).json()
        receiver.secrets["/ats"] = hook["webhook_secret"]
        mail = (await admin.post("/subscriptions", json={
            "partnership_ids": [P], "channel": "email", "email": "chair@example.org",
            "event_types": ["org.backbone.member.joined.v1", "org.backbone.kpi.*"]})).json()
        assert (await admin.get(f"/subscriptions/{hook['id']}")).json()["webhook_secret"] is None  # shown once

        receiver.script = ["slow", 500]  # a timeout, an error, then the receiver is back
        first, milestone = await bus(joined("microboard"), EXAMPLES[MilestoneReached])
        await until(lambda: receiver.accepted("/ats"))
        assert receiver.accepted("/ats") == [first.id]
        assert [(r["status"], r["valid"]) for r in receiver.received] == [(503, True), (500, True), (204, True)]
        assert receiver.processed[first.id]["data"]["organisation_id"] == "microboard"

        [member_mail, milestone_mail] = await until(lambda: len(mailbox.to("chair@example.org")) == 2
                                                    and sorted(mailbox.to("chair@example.org"),
                                                               key=lambda m: "Milestone" in m["Subject"]))
        assert member_mail["Subject"] == f"[{NAME}] Member joined"
        text = member_mail.get_body(("plain",)).get_content()
        assert "organisation: Microboard (microboard)" in text
        assert NAME in member_mail.get_body(("html",)).get_content()
        assert member_mail["X-Backbone-Notification-Id"] == first.id
        assert milestone_mail["Subject"].strip().startswith(f"[{NAME}] Milestone reached: hires")

        # The delivery log: every attempt with its outcome and reason, by event and by subscription.
        # The receivers have what was sent before the service has recorded how its send went: wait
        # for both results (an attempt is recorded with its delivery's state, store.record_attempt).
        async def finished() -> dict | None:
            log = {d["channel"]: d for d in (await admin.get("/deliveries", params={"event_id": first.id})).json()}
            return log if len(log) == 2 and all(d["status"] != "pending" for d in log.values()) else None

        log = await until(finished)
        assert [(a["outcome"], a["reason"]) for a in log["webhook"]["attempt_log"]] == [
            ("failed", "timeout"), ("failed", "http 500"), ("delivered", None)]
        assert log["webhook"]["status"] == "delivered" and log["email"]["status"] == "delivered"
        assert log["webhook"]["next_attempt_at"] is None and log["email"]["next_attempt_at"] is None  # nothing due
        by_subscription = (await admin.get("/deliveries", params={"subscription_id": mail["id"]})).json()
        assert {d["notification_id"] for d in by_subscription} == {first.id, milestone.id}

        results = await signals(kafka_settings, lambda rs: len(rs) >= 3)
        delivered = {(r.data.subscription_id, r.data.event_id): r.data for r in results
                     if r.type == "org.backbone.notification.delivered.v1"}
        assert delivered[(hook["id"], first.id)].attempts == 3
        assert delivered[(mail["id"], first.id)].attempts == 1

        # A redelivered event is not notified again: the marker after it (same partition) arrives
        # only after the repeat was processed, and each (subscription, event) has one delivery.
        marker = (await bus(first, joined("qvcc")))[1]
        await until(lambda: marker.id in receiver.accepted("/ats"))
        assert receiver.accepted("/ats").count(first.id) == 1
        assert await notify_db.deliveries.count_documents({"notification_id": first.id}) == 2
        await until(lambda: len(mailbox.to("chair@example.org")) == 3)

        # Unsubscribe from the mail's own link: the page asks, the POST (one-click) does it.
        link = re.search(r"http\S+/unsubscribe\?token=\S+", text).group(0)
        assert member_mail["List-Unsubscribe"] == f"<{link}>"
        async with httpx.AsyncClient() as browser:
            assert "Stop these e-mails" in (await browser.get(link)).text
            assert (await browser.post(link)).status_code == 200
            assert (await browser.post(link.replace("token=", "token=x"))).status_code == 404
        gone = (await operator.get(f"/subscriptions/{mail['id']}")).json()
        assert gone["status"] == "unsubscribed" and gone["email"] is None
        after = (await bus(joined("sikorsky")))[0]
        await until(lambda: after.id in receiver.accepted("/ats"))
        assert await notify_db.deliveries.count_documents({"notification_id": after.id}) == 1  # the webhook only
        assert len(mailbox.to("chair@example.org")) == 3  # member, milestone, the qvcc marker; none after


async def test_a_failing_receiver_is_retried_dead_lettered_paused_and_resumed(
        start_service, notify_env, receiver, bus, kafka_settings, notify_db):
    service = start_service("notify", notify_env | {
        "NOTIFY_MAX_ATTEMPTS": "3", "NOTIFY_PAUSE_AFTER_FAILURES": "4", "NOTIFY_PAUSE_AFTER_FAILING_FOR": "PT0S"})
    async with api(service) as operator:
        hook = (await operator.post("/subscriptions", json={
            "partnership_ids": [P], "channel": "webhook", "webhook_url": receiver.url + "/down",
            "event_types": ["org.backbone.member.joined.v1"]})).json()
        receiver.secrets["/down"] = hook["webhook_secret"]
        receiver.failing = 500

        [lost] = await bus(joined("microboard"))
        failed = await signals(kafka_settings, lambda rs: any(r.type.endswith("notification.failed.v1") for r in rs))
        [dead] = [r.data for r in failed if r.type.endswith("notification.failed.v1")]
        assert (dead.event_id, dead.subscription_id, dead.attempts, dead.reason) == (lost.id, hook["id"], 3, "http 500")
        [record] = (await operator.get("/deliveries", params={"event_id": lost.id})).json()
        assert record["status"] == "dead" and [a["outcome"] for a in record["attempt_log"]] == ["failed"] * 3
        assert record["next_attempt_at"] is None

        # The fourth failure in a row pauses the subscription, which says why; its deliveries wait.
        [held] = await bus(joined("qvcc"))
        paused = await until(lambda: _paused(operator, hook["id"]))
        assert "4 failed deliveries in a row" in paused["paused_reason"] and "http 500" in paused["paused_reason"]
        await until(lambda: notify_db.deliveries.find_one({"notification_id": held.id, "status": "held"}))

        receiver.failing = None
        resumed = await operator.post(f"/subscriptions/{hook['id']}/resume")
        assert resumed.json()["status"] == "active"
        await until(lambda: held.id in receiver.accepted("/down"))
        assert (await operator.post(f"/subscriptions/{hook['id']}/resume")).status_code == 409
        assert lost.id not in receiver.accepted("/down")  # dead stays dead; the failure is on the bus

        # An operator sends the dead one again once the receiver is fixed; the log keeps every attempt.
        assert (await operator.post(f"/subscriptions/{hook['id']}/deliveries/{lost.id}/retry")).status_code == 200
        await until(lambda: lost.id in receiver.accepted("/down"))

        async def stored_as_delivered() -> dict | None:  # the receiver answers before notify stores its answer
            [record] = (await operator.get("/deliveries", params={"event_id": lost.id})).json()
            return record if record["status"] != "pending" else None

        again = await until(stored_as_delivered)
        assert again["status"] == "delivered" and [a["outcome"] for a in again["attempt_log"]] == ["failed"] * 3 + [
            "delivered"
        ]
        assert (await operator.post(f"/subscriptions/{hook['id']}/deliveries/{lost.id}/retry")).status_code == 409
        assert (await operator.post(f"/subscriptions/{hook['id']}/deliveries/nope/retry")).status_code == 404


async def test_mails_carry_one_click_unsubscribe_as_the_rfcs_write_it_and_counters_start_at_zero(
        start_service, notify_env, smtp, bus):
    mailbox, _ = smtp
    public = "https://notify.regional-sector-partnerships.example.org"  # long enough to have been folded
    service = start_service("notify", notify_env | {"NOTIFY_PUBLIC_URL": public})
    async with api(service) as operator:
        metrics = (await operator.get("/metrics")).text
        for series in ('backbone_notify_delivery_attempts_total{channel="email",outcome="failed"} 0.0',
                       'backbone_notify_deliveries_finished_total{channel="webhook",status="dead"} 0.0',
                       'backbone_notify_notifications_queued_total{kind="reminder"} 0.0'):
            assert series in metrics  # an alert's increase() sees the first one
        await operator.post("/subscriptions", json={"partnership_ids": [P], "channel": "email",
                                                    "email": "board@example.org"})
    await bus(joined("microboard"))
    [raw] = await until(lambda: mailbox.raw)

    mail = BytesParser(policy=policy.default).parsebytes(raw)
    assert re.fullmatch(rf"<{re.escape(public)}/unsubscribe\?token=[\w.\-=]+>", mail["List-Unsubscribe"])
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # On the wire too: one unfolded line, no RFC 2047 encoded word a mail client would not act on.
    assert f"List-Unsubscribe: {mail['List-Unsubscribe']}\r\n".encode() in raw
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in raw


async def test_pending_deliveries_survive_a_crash(start_service, notify_env, receiver, bus, notify_db):
    # After a first failure nothing is due for a while (the cap too: the shared test env caps
    # retries at 0.4 s, which made "one attempt each" a passing moment a loaded run could miss).
    env = notify_env | {"NOTIFY_RETRY_BASE_SECONDS": "30", "NOTIFY_RETRY_MAX_DELAY_SECONDS": "60"}
    service = start_service("notify", env)
    async with api(service) as operator:
        hook = (await operator.post("/subscriptions", json={
            "partnership_ids": [P], "channel": "webhook", "webhook_url": receiver.url + "/crm"})).json()
    receiver.secrets["/crm"] = hook["webhook_secret"]
    receiver.failing = 503
    events = await bus(*(joined(f"org-{n}") for n in range(5)))
    await until(lambda: _counted(notify_db.deliveries, {"status": "pending", "attempts": 1}, 5))
    os.kill(service.process.pid, signal.SIGKILL)
    service.process.wait(timeout=10)

    receiver.failing = None
    start_service("notify", env | {"NOTIFY_CLOCK_SHIFT": "PT2M"})  # the retries are due now
    await until(lambda: len(receiver.processed) == 5)
    assert set(receiver.processed) == {e.id for e in events}


async def _counted(collection, query: dict, expected: int) -> bool:
    return await collection.count_documents(query) == expected


async def _ok(response) -> bool:
    return (await response).status_code == 200


async def _paused(client, subscription_id: str) -> dict | None:
    doc = (await client.get(f"/subscriptions/{subscription_id}")).json()
    return doc if doc["status"] == "paused" else None
