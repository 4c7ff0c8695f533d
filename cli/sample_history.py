"""Sample history: two program years of plant tours, career days, hires with their retention
checks, training (enrolments, completions, credentials), placements and apprenticeships for the
sample partnerships, sent through the real APIs (a partner-system key per partnership from the membership
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
from shared.service import LAG_SECONDS

SEED = 2026
BATCH = 200
SOC_CODES = ("51-4041", "51-2041", "51-9061", "17-3026", "49-9041")
TOURS_A_MONTH, HIRES_A_MONTH, TRAINEES_A_MONTH = 2, 6, 4
# This program year's targets of every sample partnership, a little above what its history reaches.
TARGETS = {"hires": 90, "tours_held": 12, "students_reached": 650, "placements": 20, "retention_90_days": 0.85}
PROVIDERS = frozenset({"education", "training_provider"})  # organisation kinds that train


def first_month(today: date) -> date:
    """The first day of the previous program year (July): two program years up to today."""
    start_year = int(program_year(today)[2:]) - 1
    return date(start_year, 7, 1)


def months(today: date) -> Iterator[date]:
    month = first_month(today)
    while month <= today.replace(day=1):
        yield month
        month = date(month.year + (month.month == 12), month.month % 12 + 1, 1)


def history(partnership_id: str, employers: list[str], providers: list[str], today: date,
            rng: random.Random) -> list[EventData]:
    """One partnership's events, month by month, growing a little each month (a visible trend)."""
    events: list[EventData] = []
    hires: list[out.HireRecorded] = []
    separated: set[str] = set()
    enrolled: dict[date, list[out.TrainingEnrolled]] = {}
    for n, month in enumerate(months(today)):
        events += _tours(partnership_id, employers, month, n, rng)
        for h in range(HIRES_A_MONTH + n // 4):
            hire = out.HireRecorded(
                partnership_id=partnership_id, hire_id=f"{partnership_id}-hire-{month:%Y%m}-{h}",
                person_id=f"p-{rng.getrandbits(40):010x}", employer_id=rng.choice(employers),
                soc_code=rng.choice(SOC_CODES), start_date=month.replace(day=1 + h % 27),
                hourly_wage=round(rng.uniform(19, 34), 2), resident=rng.random() < 0.8,
                career_changer=rng.random() < 0.2)
            hires.append(hire)
            events.append(hire)
        events += _retention(hires, separated, today, rng)
        if providers:
            events += _training(partnership_id, employers, providers, month, n, today, enrolled, rng)
        if n % 2 == 0:
            events.append(out.ApprenticeshipStarted(
                partnership_id=partnership_id, person_id=f"p-{rng.getrandbits(40):010x}",
                employer_id=rng.choice(employers), soc_code=rng.choice(SOC_CODES), started_on=month.replace(day=15)))
    host = rng.choice(employers)  # and what is coming up: a plant tour in two and a half weeks
    day = today + timedelta(days=17)
    starts = datetime(day.year, day.month, day.day, 14, tzinfo=UTC)
    events.append(act.ActivityScheduled(partnership_id=partnership_id, activity_id=f"{partnership_id}-tour-next",
                                        kind=ActivityKind.PLANT_TOUR, title=f"Plant Tour at {host}", starts_at=starts,
                                        ends_at=starts + timedelta(hours=2), host_ids=[host],
                                        audiences=[Audience.STUDENTS, Audience.PARENTS], capacity=30))
    return events


def _tours(partnership_id: str, employers: list[str], month: date, n: int, rng: random.Random) -> list[EventData]:
    events: list[EventData] = []
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
    return events


def _retention(hires: list[out.HireRecorded], separated: set[str], today: date,
               rng: random.Random) -> list[EventData]:
    """The checks that fell due this month: each hire 90 and 180 days on, most still employed;
    one in ten has left before, recorded as a separation."""
    events: list[EventData] = []
    month = max(h.start_date for h in hires).replace(day=1)
    for hire in hires:
        for days in (90, 180):
            due = hire.start_date + timedelta(days=days + 3)
            if due.replace(day=1) != month or due > today or hire.hire_id in separated:
                continue
            still = rng.random() < 0.9
            if not still:
                separated.add(hire.hire_id)
                events.append(out.SeparationRecorded(
                    partnership_id=hire.partnership_id, hire_id=hire.hire_id, person_id=hire.person_id,
                    employer_id=hire.employer_id, separated_on=due - timedelta(days=rng.randint(5, 60))))
            events.append(out.RetentionChecked(
                partnership_id=hire.partnership_id, hire_id=hire.hire_id, person_id=hire.person_id,
                employer_id=hire.employer_id, checked_on=due, still_employed=still))
    return events


def _training(partnership_id: str, employers: list[str], providers: list[str], month: date, n: int, today: date,
              enrolled: dict[date, list[out.TrainingEnrolled]], rng: random.Random) -> list[EventData]:
    """Enrolments each month; three months on, most complete, and of those some earn a credential
    and some are placed with an employer."""
    programme = f"{partnership_id}-cnc-{month.year}"
    enrolled[month] = [out.TrainingEnrolled(partnership_id=partnership_id, person_id=f"p-{rng.getrandbits(40):010x}",
                                            programme_id=programme, provider_id=rng.choice(providers),
                                            enrolled_on=month.replace(day=3))
                       for _ in range(TRAINEES_A_MONTH + n // 6)]
    events: list[EventData] = list(enrolled[month])
    started = date(month.year - (month.month <= 3), (month.month - 4) % 12 + 1, 1)
    for enrolment in enrolled.get(started, []):
        done_on = month.replace(day=20)
        if rng.random() > 0.8 or done_on > today:
            continue
        events.append(out.TrainingCompleted(partnership_id=partnership_id, person_id=enrolment.person_id,
                                            programme_id=enrolment.programme_id, provider_id=enrolment.provider_id,
                                            completed_on=done_on))
        if rng.random() < 0.6:
            events.append(out.CredentialEarned(partnership_id=partnership_id, person_id=enrolment.person_id,
                                               credential="NIMS Machining Level I",
                                               provider_id=enrolment.provider_id, earned_on=done_on))
        if rng.random() < 0.5:
            events.append(out.PlacementRecorded(
                partnership_id=partnership_id, placement_id=f"pl-{enrolment.person_id}",
                person_id=enrolment.person_id, programme_id=enrolment.programme_id,
                provider_id=enrolment.provider_id, employer_id=rng.choice(employers),
                soc_code=rng.choice(SOC_CODES), start_date=done_on, hourly_wage=round(rng.uniform(18, 28), 2)))
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


def wait_until_caught_up(service_url: str, wait_seconds: float = 300) -> bool:
    """Wait until the service's consumers have read everything published so far (every group's lag
    is 0 in a measurement taken after this started); False if `wait_seconds` pass first. Events
    naming a partnership the events service has not read yet are held and decided again later,
    which is correct, but on a slow disk thousands of them crowd out the roster they wait for: the
    sample history waits for this (and is sent all the same when it times out)."""
    started = time.monotonic()
    while time.monotonic() - started < wait_seconds:
        lag = httpx.get(f"{service_url}/readyz", timeout=10).json().get("consumer_lag") or {}
        if time.monotonic() - started > LAG_SECONDS + 1 and lag and not any(lag.values()):
            return True
        time.sleep(0.5)
    return False


def load_history(membership: httpx.Client, events_url: str, today: date | None = None,
                 path: Path = SAMPLE) -> int:
    """Send the sample partnerships' history; the number of events sent."""
    sample = json.loads(path.read_text())
    today, sent = today or date.today(), 0
    wait_until_caught_up(events_url)
    for partnership in sample["partnerships"]:
        pid = partnership["id"]
        kinds = {o["id"]: o["kind"] for o in sample["organisations"]}
        members = sorted({m["organisation_id"] for m in sample["memberships"] if m["partnership_id"] == pid})
        employers = [o for o in members if kinds[o] == "employer"]
        if not employers:
            continue
        providers = [o for o in members if kinds[o] in PROVIDERS]
        events = history(pid, employers, providers, today, random.Random(f"{SEED}:{pid}"))
        _send(events_url, *_partner_key(membership, pid), events)
        for kpi, value in TARGETS.items():  # the roadmap the dashboard measures against
            _check(membership.put(f"/partnerships/{pid}/targets",
                                  json={"kpi": kpi, "period": program_year(today), "value": value}))
        sent += len(events)
    return sent
