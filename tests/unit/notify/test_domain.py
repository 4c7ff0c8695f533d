"""Notify's pure rules and rendering, directly."""

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson

from services.notify import domain
from services.notify.domain import PausePolicy, RetryPolicy, Status
from services.notify.messages import digest_data, render, webhook_body
from shared.contracts import membership as mem
from shared.envelope import new_event
from shared.subscriptions import Mode, unmatched_patterns
from tests.examples import EXAMPLES, P

UTC_ZONE = ZoneInfo("UTC")
NOW = datetime(2026, 3, 11, 9, 30, tzinfo=UTC)  # a Wednesday, ISO week 2026-W11


def sub(**fields) -> dict:
    return {"_id": "sub-1", "status": Status.ACTIVE, "mode": Mode.IMMEDIATE, "partnership_ids": [P],
            "event_types": ["*"], "channel": "email"} | fields


def test_patterns_select_partnership_events_but_never_notify_results():
    assert domain.matches(["org.backbone.member.*"], "org.backbone.member.joined.v1")
    assert not domain.matches(["org.backbone.member.*"], "org.backbone.hire.recorded.v1")
    assert not domain.matches(["*"], "org.backbone.notification.delivered.v1")  # no loop on its own results
    assert not domain.matches(["*"], "org.backbone.organisation.registered.v1")  # not a partnership's event
    assert domain.matches(["*"], domain.REMINDER)
    assert unmatched_patterns(["org.backbone.member.*", "org.backbone.membr.*"]) == ["org.backbone.membr.*"]


def test_audience_by_partnership_mode_status_and_organisation():
    subs = [sub(_id="a"), sub(_id="b", partnership_ids=["other"]), sub(_id="c", mode=Mode.DIGEST),
            sub(_id="d", status=Status.UNSUBSCRIBED), sub(_id="e", status=Status.PAUSED),
            sub(_id="f", event_types=["org.backbone.hire.*"]), sub(_id="g", organisation_id="microboard")]
    assert [s["_id"] for s in domain.audience(subs, "org.backbone.member.joined.v1", P)] == ["a", "e", "g"]
    assert [s["_id"] for s in domain.audience(subs, domain.FOLLOW_UP, P, ["microboard"])] == ["g"]


def test_safe_id_keeps_valid_ids_and_digests_the_rest():
    assert domain.safe_id("6f1c2d9e-1b2a-4c3d-8e9f-0a1b2c3d4e5f") == "6f1c2d9e-1b2a-4c3d-8e9f-0a1b2c3d4e5f"
    odd = domain.safe_id("urn:ats/42 with spaces")
    assert odd.startswith("h-") and odd == domain.safe_id("urn:ats/42 with spaces") and len(odd) <= 128


def test_retry_delays_grow_exponentially_with_bounded_jitter_and_stop():
    policy = RetryPolicy(base_seconds=30, max_delay_seconds=7200, max_attempts=12)
    assert policy.delay(1, 0.0) == timedelta(seconds=15) and policy.delay(1, 1.0) == timedelta(seconds=30)
    assert policy.delay(4, 0.0) == timedelta(seconds=120)
    assert policy.delay(20, 1.0) == timedelta(seconds=7200)  # capped
    longest = sum((policy.delay(n, 1.0) for n in range(1, 12)), timedelta())
    assert timedelta(hours=4) < longest < timedelta(hours=12)  # "over hours", then dead
    assert not policy.exhausted(11) and policy.exhausted(12)


def test_pause_needs_both_repeated_failures_and_time():
    pause = PausePolicy(failures=3, failing_for=timedelta(hours=1))
    assert pause.reason(5, NOW - timedelta(minutes=10), NOW, "http 503") is None
    assert pause.reason(2, NOW - timedelta(hours=5), NOW, "http 503") is None
    assert "3 failed deliveries in a row" in pause.reason(3, NOW - timedelta(hours=2), NOW, "http 503")


def test_reminders_planned_ahead_only_and_keyed_by_start_time():
    starts = NOW + timedelta(hours=10)
    plan = domain.plan_reminders(P, "tour-1", starts, [timedelta(hours=48), timedelta(hours=2)], NOW)
    assert [(r.lead, r.due_at) for r in plan] == [(timedelta(hours=2), starts - timedelta(hours=2))]
    moved = domain.plan_reminders(P, "tour-1", starts + timedelta(days=3), [timedelta(hours=2)], NOW)
    assert moved[0].id != plan[0].id


def test_after_a_downtime_only_the_nearest_due_reminder_is_sent():
    starts = NOW + timedelta(hours=1)
    due = [{"_id": "48h", "activity_key": "a", "lead_seconds": 172800, "starts_at": starts},
           {"_id": "2h", "activity_key": "a", "lead_seconds": 7200, "starts_at": starts},
           {"_id": "gone", "activity_key": "b", "lead_seconds": 7200, "starts_at": NOW - timedelta(minutes=5)}]
    send, skip = domain.choose_reminders(due, NOW)
    assert [r["_id"] for r in send] == ["2h"] and sorted(r["_id"] for r in skip) == ["48h", "gone"]


def test_digest_week_and_due_time():
    assert domain.week_label(NOW, UTC_ZONE) == "2026-W11"
    assert domain.week_start(NOW, UTC_ZONE) == datetime(2026, 3, 9, tzinfo=UTC)
    assert domain.digest_due(NOW, UTC_ZONE, timedelta(hours=8)) == datetime(2026, 3, 9, 8, tzinfo=UTC)
    monday_early = datetime(2026, 3, 9, 7, tzinfo=UTC)
    assert domain.digest_due(monday_early, UTC_ZONE, timedelta(hours=8)) is None
    # The week is the partnership's local week: late Sunday in Connecticut is Monday in UTC.
    sunday_night = datetime(2026, 3, 16, 2, tzinfo=UTC)
    assert domain.week_label(sunday_night, ZoneInfo("America/New_York")) == "2026-W11"
    assert domain.digest_key(P, "ab", "2026-W11") != domain.digest_key(P, "ab", "2026-W12")


def test_kpi_movement_against_last_snapshot():
    assert domain.kpi_movement({"hires": 12.0, "tours": 3.0}, {"hires": 9.0}) == [
        {"kpi": "hires", "value": 12.0, "change": 3.0}, {"kpi": "tours", "value": 3.0, "change": None}]


def test_webhook_signature_is_the_documented_hmac():
    secret = domain.new_webhook_secret(b"k" * 32)
    body = b'{"id":"e-1"}'
    expected = base64.b64encode(hmac.new(b"k" * 32, b"e-1.1700000000." + body, hashlib.sha256).digest()).decode()
    assert domain.webhook_signature(secret, "e-1", 1700000000, body) == "v1," + expected
    assert domain.webhook_signature(secret, "e-1", 1700000001, body) != "v1," + expected


def test_unsubscribe_tokens_cannot_be_forged():
    token = domain.unsubscribe_token(b"key", "sub-1234")
    assert domain.read_unsubscribe_token(b"key", token) == "sub-1234"
    assert domain.read_unsubscribe_token(b"other key", token) is None
    assert domain.read_unsubscribe_token(b"key", token.replace("sub-1234", "sub-9999")) is None
    assert domain.read_unsubscribe_token(b"key", "garbage") is None


def test_email_names_the_partnership_escapes_html_and_offers_unsubscribe():
    event = orjson.loads(new_event(EXAMPLES[mem.MemberJoined], source="/t").to_json())
    mail = render(event, "Tools & <Dies> Partnership", {"microboard": "Microboard"}, "https://x/unsubscribe?token=t",
                  UTC_ZONE)
    assert mail.subject == "[Tools & <Dies> Partnership] Member joined"
    assert "organisation: Microboard (microboard)" in mail.text and "https://x/unsubscribe?token=t" in mail.text
    assert "Tools &amp; &lt;Dies&gt;" in mail.html and "<Dies>" not in mail.html


def test_digest_without_kpis_says_why():
    journal = [
        {"type": "org.backbone.member.joined.v1", "data": {"organisation_id": "microboard"}},
        {"type": "org.backbone.hire.recorded.v1", "data": {}},
        {"type": "org.backbone.hire.recorded.v1", "data": {}},
    ]
    coming = [{"activity_id": "tour-2", "title": "Tour", "kind": "plant_tour", "starts_at": NOW + timedelta(days=2)}]
    note = "KPI movement is not part of this digest: no metrics service is configured."
    data = digest_data(P, "2026-W11", NOW - timedelta(days=9), NOW - timedelta(days=2), journal, coming,
                       {"available": False, "note": note})
    event = orjson.loads(webhook_body("digest.x", NOW, P, data))
    mail = render(event, "SW", {"microboard": "Microboard"}, "u", UTC_ZONE)
    assert "2 x Hire recorded" in mail.text and "Microboard (microboard)" in mail.text
    assert "Fri 13 Mar 2026, 09:30 UTC: Tour (plant tour)" in mail.text and note in mail.text
