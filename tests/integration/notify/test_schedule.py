"""Time-driven notifications across restarts of the real service process: reminders (moved by a
reschedule, dropped by a cancellation), weekly digests once per recipient and week, and meeting
follow-ups. The service's clock is moved with NOTIFY_CLOCK_SHIFT instead of waiting for hours."""

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.contracts import activities as act
from shared.contracts import membership as mem
from shared.contracts.activities import FollowUp
from tests.examples import EXAMPLES, P
from tests.integration.notify.conftest import METRICS_KEY, api, until

pytestmark = pytest.mark.integration

NAME = EXAMPLES[mem.PartnershipCreated].name


def scheduled(activity_id: str, title: str, starts_at: datetime, kind: str = "plant_tour") -> act.ActivityScheduled:
    return act.ActivityScheduled(partnership_id=P, activity_id=activity_id, kind=kind, title=title,
                                 starts_at=starts_at, ends_at=starts_at + timedelta(hours=2), host_ids=["microboard"])


def shown(moment: datetime) -> str:
    return moment.strftime("%a %d %b %Y, %H:%M UTC")


def body(mail) -> str:
    return mail.get_body(("plain",)).get_content().replace("\r\n", "\n")


async def subscribe(service, **fields) -> dict:
    async with api(service) as client:
        response = await client.post("/subscriptions", json={"partnership_ids": [P], "channel": "email"} | fields)
        assert response.status_code == 201, response.text
        return response.json()


async def test_reminders_survive_restarts_and_follow_reschedules_and_cancellations(
        start_service, notify_env, smtp, bus, notify_db, roster):
    mailbox, _ = smtp
    env = notify_env | {"NOTIFY_REMINDER_LEAD_TIMES": '["PT48H", "PT2H"]'}
    service = start_service("notify", env)
    await roster()
    await subscribe(service, email="team@example.org", event_types=["org.backbone.notify.reminder.v1"])
    now = datetime.now(UTC).replace(microsecond=0)
    moved_to = now + timedelta(hours=30)
    await bus(scheduled("tour-a", "Plant tour at Microboard", now + timedelta(hours=3)),
              scheduled("tour-b", "Plant tour at Sikorsky", now + timedelta(hours=3)),
              scheduled("day-c", "Career day", now + timedelta(hours=3), kind="career_day"),
              act.ActivityRescheduled(partnership_id=P, activity_id="tour-b", starts_at=moved_to,
                                      ends_at=moved_to + timedelta(hours=2)),
              act.ActivityCancelled(partnership_id=P, activity_id="day-c"))
    # Stored, not yet due: a's and b's (moved) 2 h reminders; b's old one and c's are cancelled.
    await until(lambda: _counts(notify_db, {"pending": 2, "cancelled": 2}))
    assert service.stop() == 0  # a graceful stop

    # 1 h 30 min later (by the service's clock), in a new process: tour-a's reminder is due.
    service = start_service("notify", env | {"NOTIFY_CLOCK_SHIFT": "PT1H30M"})
    [reminder_a] = await until(lambda: mailbox.to("team@example.org"))
    assert reminder_a["Subject"].strip() == f"[{NAME}] Reminder: Plant tour at Microboard"
    assert f"starts {shown(now + timedelta(hours=3))}, in about 2 hours" in body(reminder_a)
    service.stop()

    # A day later: tour-b's reminder, for its new time; the cancelled career day never.
    service = start_service("notify", env | {"NOTIFY_CLOCK_SHIFT": "PT28H30M"})
    await until(lambda: len(mailbox.to("team@example.org")) == 2)
    reminder_b = mailbox.to("team@example.org")[1]
    assert reminder_b["Subject"].strip() == f"[{NAME}] Reminder: Plant tour at Sikorsky"
    assert f"starts {shown(moved_to)}" in body(reminder_b)
    assert sorted(await notify_db.deliveries.distinct("activity_key")) == [f"{P}|tour-a", f"{P}|tour-b"]
    assert await notify_db.deliveries.count_documents({}) == 2


async def test_weekly_digest_once_per_recipient_and_week_and_meeting_follow_ups(
        start_service, notify_env, smtp, receiver, bus, notify_db, roster):
    mailbox, _ = smtp
    env = notify_env | {"NOTIFY_DIGEST_SEND_AFTER": "PT0S", "NOTIFY_METRICS_URL": receiver.url,
                        "NOTIFY_METRICS_API_KEY": METRICS_KEY}
    receiver.kpis = {"hires": 12, "plant_tours": 3}
    service = start_service("notify", env)
    await roster()
    # The same person twice (e.g. two admins added them): still one digest a week.
    for label in ("chair", "chair again"):
        await subscribe(service, email="board@example.org", mode="digest", label=label)
    await subscribe(service, email="attendee@example.org", organisation_id="microboard",
                    event_types=["org.backbone.notify.follow_up.v1"])
    await subscribe(service, email="absent@example.org", organisation_id="sikorsky",
                    event_types=["org.backbone.notify.follow_up.v1"])
    now = datetime.now(UTC).replace(microsecond=0)
    meeting = act.ActivityCompleted(
        partnership_id=P, activity_id="meeting-5", kind="partnership_meeting", completed_at=now,
        participant_ids=["microboard", "qvcc"], minutes="Agreed to host two plant tours for QVCC students.",
        follow_ups=[FollowUp(title="Book tour dates", owner_id="microboard")])
    await bus(EXAMPLES[mem.MemberJoined],
              scheduled("meeting-6", "Quarterly partnership meeting", now + timedelta(days=8),
                        kind="partnership_meeting"),
              meeting)

    [follow_up] = await until(lambda: mailbox.to("attendee@example.org"))
    assert follow_up["Subject"].strip() == f"[{NAME}] Follow-up: meeting-5"
    assert "Agreed to host two plant tours" in body(follow_up)
    assert "- Book tour dates (Microboard (microboard))" in body(follow_up)
    assert await notify_db.deliveries.count_documents({"type": "org.backbone.notify.follow_up.v1"}) == 1
    service.stop()

    # Next week (by the service's clock): the digest of this week's news, sent once.
    next_week = (now + timedelta(days=7)).isocalendar()
    service = start_service("notify", env | {"NOTIFY_CLOCK_SHIFT": "P7D"})
    [digest] = await until(lambda: mailbox.to("board@example.org"))
    text = body(digest)
    assert digest["Subject"].strip() == f"[{NAME}] Weekly digest, {next_week.year}-W{next_week.week:02d}"
    assert "1 x Member joined" in text and "1 x Activity completed" in text
    assert "New members\n-----------\n- Microboard (microboard)" in text
    assert f"{shown(now + timedelta(days=8))}: Quarterly partnership meeting (partnership meeting)" in text
    assert "- hires: 12" in text and "- plant tours" not in text and "hire_wages" not in text
    service.stop()

    # The same week after another restart: the scheduler runs, nothing is sent again.
    service = start_service("notify", env | {"NOTIFY_CLOCK_SHIFT": "P7D"})
    await _ticked(service)
    assert len(mailbox.to("board@example.org")) == 1
    service.stop()

    # The week after, with the metrics service down: a digest that says what it lacks.
    receiver.kpis = None
    service = start_service("notify", env | {"NOTIFY_CLOCK_SHIFT": "P14D"})
    await until(lambda: len(mailbox.to("board@example.org")) == 2)
    later = body(mailbox.to("board@example.org")[1])
    assert "KPI movement is missing from this digest: the metrics service could not be reached." in later
    assert "nothing was recorded" in later
    assert await notify_db.digests.count_documents({}) == 2


async def _counts(db, expected: dict[str, int]) -> bool:
    return all([await db.reminders.count_documents({"status": s}) == n for s, n in expected.items()])


async def _ticked(service) -> None:
    """Wait until the scheduler has finished a whole tick that began after this call."""
    started = time.time()

    async def last_tick() -> bool:
        async with httpx.AsyncClient() as client:
            text = (await client.get(service.url + "/metrics")).text
        [family] = [f for f in text_string_to_metric_families(text)
                    if f.name == "backbone_notify_scheduler_last_tick_timestamp_seconds"]
        return family.samples[0].value > started + 0.5

    await until(last_tick)
