"""Sample history: two program years of plant tours, career days and hires for the sample
partnerships, sent through the real APIs (a partner-system key per partnership from the membership
service, CloudEvents batches to the events service), so the first dashboard shows trends against
targets and lineage. Seeded, so every installation gets the same history; loaded into an empty
installation only (the caller checks), as the events service keeps every event it accepts."""

import json
import random
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx

from cli.membership_client import SAMPLE, ClientError, _check
from shared.contracts import activities as act
from shared.contracts import outcomes as out
from shared.contracts.base import ActivityKind, Audience, EventData
from shared.envelope import new_event
from shared.periods import program_year

SEED = 2026
BATCH = 200
SOC_CODES = ("51-4041", "51-2041", "51-9061", "17-3026", "49-9041")
TOURS_A_MONTH, HIRES_A_MONTH = 2, 6


def first_month(today: date) -> date:
    """The first day of the previous program year (July): two program years up to today."""
    start_year = int(program_year(today)[2:]) - 1
    return date(start_year, 7, 1)


def months(today: date) -> Iterator[date]:
    month = first_month(today)
    while month <= today.replace(day=1):
        yield month
        month = date(month.year + (month.month == 12), month.month % 12 + 1, 1)


def history(partnership_id: str, employers: list[str], today: date, rng: random.Random) -> list[EventData]:
    """One partnership's events, month by month, growing a little each month (a visible trend)."""
    events: list[EventData] = []
    for n, month in enumerate(months(today)):
        for t in range(TOURS_A_MONTH):
            activity_id = f"{partnership_id}-tour-{month:%Y%m}-{t}"
            kind = ActivityKind.PLANT_TOUR if t == 0 else ActivityKind.CAREER_DAY
            starts = datetime(month.year, month.month, 5 + 10 * t, 9, tzinfo=UTC)
            host = rng.choice(employers)
            events += [
                act.ActivityScheduled(partnership_id=partnership_id, activity_id=activity_id, kind=kind,
                                      title=f"{kind.value.replace('_', ' ').title()} at {host}", starts_at=starts,
                                      ends_at=starts + timedelta(hours=3), host_ids=[host],
                                      audiences=[Audience.STUDENTS, Audience.EDUCATORS]),
                act.ActivityCompleted(partnership_id=partnership_id, activity_id=activity_id, kind=kind,
                                      completed_at=starts + timedelta(hours=3), participant_ids=[host]),
                act.AttendanceRecorded(partnership_id=partnership_id, activity_id=activity_id, kind=kind,
                                       counts={Audience.STUDENTS: rng.randint(12, 30) + n,
                                               Audience.EDUCATORS: rng.randint(1, 4)}, organisation_ids=[host]),
            ]
        for h in range(HIRES_A_MONTH + n // 4):
            events.append(out.HireRecorded(
                partnership_id=partnership_id, hire_id=f"{partnership_id}-hire-{month:%Y%m}-{h}",
                person_id=f"p-{rng.getrandbits(40):010x}", employer_id=rng.choice(employers),
                soc_code=rng.choice(SOC_CODES), start_date=month.replace(day=1 + h % 27),
                hourly_wage=round(rng.uniform(19, 34), 2), resident=rng.random() < 0.8,
                career_changer=rng.random() < 0.2))
    return events


def _partner_key(membership: httpx.Client, partnership_id: str) -> tuple[str, str]:
    issued = _check(membership.post("/keys", json={"label": f"Sample history of {partnership_id}",
                                                   "role": "partner_system", "partnership_ids": [partnership_id]}))
    key = issued.json()
    return key["id"], key["secret"]


def _send(events_url: str, key_id: str, secret: str, events: list[EventData], wait_seconds: float = 30) -> None:
    source = f"/keys/{key_id}"
    with httpx.Client(base_url=events_url, headers={"authorization": f"Bearer {secret}"}, timeout=60) as http:
        deadline = time.monotonic() + wait_seconds  # the events service learns of a new key from Kafka
        while http.get("/whoami").status_code == 401:
            if time.monotonic() > deadline:
                raise ClientError("the events service did not learn of the sample history's key in time")
            time.sleep(0.3)
        for start in range(0, len(events), BATCH):
            batch = [json.loads(new_event(e, source=source).to_json()) for e in events[start:start + BATCH]]
            _check(http.post("/events", content=json.dumps(batch),
                             headers={"content-type": "application/cloudevents-batch+json"}))


def load_history(membership: httpx.Client, events_url: str, today: date | None = None,
                 path: Path = SAMPLE) -> int:
    """Send the sample partnerships' history; the number of events sent."""
    sample = json.loads(path.read_text())
    today, sent = today or date.today(), 0
    for partnership in sample["partnerships"]:
        pid = partnership["id"]
        employers = sorted({m["organisation_id"] for m in sample["memberships"] if m["partnership_id"] == pid})
        if not employers:
            continue
        events = history(pid, employers, today, random.Random(f"{SEED}:{pid}"))
        _send(events_url, *_partner_key(membership, pid), events)
        sent += len(events)
    return sent
