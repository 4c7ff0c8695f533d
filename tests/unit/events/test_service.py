"""The events use cases over in-memory fakes: who may submit, record and read what, over HTTP
and on a partner's inbound topic, decided before anything reaches the intake."""

import pytest

from services.events.domain import Activity, identity
from services.events.intake import EventResult, Outcome
from services.events.service import EventsService
from shared.auth import Principal
from shared.contracts import outcomes as out
from shared.contracts.base import AccessRole
from shared.envelope import CloudEvent, new_event
from shared.errors import NotAllowed, NotAuthenticated, NotFound
from tests.examples import EXAMPLES, T0, T1, P

OTHER = "scmip"
HIRE = EXAMPLES[out.HireRecorded]
TOUR = Activity(partnership_id=P, activity_id="tour-1", kind="plant_tour", title="Tour", status="scheduled",
                starts_at=T0, ends_at=T1, host_ids=["microboard"])


class FakeIntake:
    """Accepts everything it is given and remembers it."""

    def __init__(self):
        self.submitted: list[tuple[list[CloudEvent], str]] = []

    async def submit(
        self, events: list[CloudEvent], entry: str, origins: list[dict] | None = None
    ) -> list[EventResult]:
        self.submitted.append((events, entry))
        return [EventResult(id=e.id, status=Outcome.ACCEPTED) for e in events]


class FakeActivities:
    async def activity(self, partnership_id: str, activity_id: str) -> Activity | None:
        return TOUR if (partnership_id, activity_id) == (TOUR.partnership_id, TOUR.activity_id) else None


def key(role: AccessRole, *partnerships: str, sources: tuple[str, ...] = ()) -> Principal:
    return Principal(f"k-{role.value}", role, frozenset(partnerships), frozenset(sources))


OPERATOR = key(AccessRole.OPERATOR)
ADMIN = key(AccessRole.PARTNERSHIP_ADMIN, P)
PARTNER = key(AccessRole.PARTNER_SYSTEM, P, sources=("/ats/sw",))
VIEWER = key(AccessRole.VIEWER, P)


def hire(partnership_id: str = P, source: str = PARTNER.source, id: str = "e-1") -> CloudEvent:
    return new_event(HIRE.model_copy(update={"partnership_id": partnership_id}), source=source, id=id)


@pytest.fixture
def intake() -> FakeIntake:
    return FakeIntake()


@pytest.fixture
def service(intake) -> EventsService:
    return EventsService(intake, FakeActivities())


async def test_partner_sends_as_itself_or_its_issued_sources_only(service, intake):
    own, issued = hire(), hire(source="/ats/sw", id="e-2")
    results = await service.submit(PARTNER, [own, issued])
    assert [r.status for r in results] == [Outcome.ACCEPTED] * 2
    with pytest.raises(NotAllowed, match="/keys/someone-else"):
        await service.submit(PARTNER, [own, hire(source="/keys/someone-else", id="e-3")])
    assert len(intake.submitted) == 1  # the refused submission reached nothing


async def test_operators_send_as_any_source_writers_only_to_their_partnerships(service, intake):
    await service.submit(OPERATOR, [hire(OTHER, source="/legacy/import")])
    with pytest.raises(NotAllowed, match=OTHER):
        await service.submit(ADMIN, [hire(source=ADMIN.source), hire(OTHER, source=ADMIN.source, id="e-2")])
    with pytest.raises(NotAllowed, match=OTHER):
        await service.record(PARTNER, HIRE.model_copy(update={"partnership_id": OTHER}), None)
    assert len(intake.submitted) == 1


async def test_viewers_read_activities_but_never_submit(service, intake):
    assert await service.activity(VIEWER, P, "tour-1") == TOUR
    with pytest.raises(NotAllowed):
        await service.submit(VIEWER, [hire(source=VIEWER.source)])
    with pytest.raises(NotAllowed):
        await service.record(VIEWER, HIRE, "retry-1")
    assert intake.submitted == []


async def test_reading_a_foreign_or_missing_activity(service):
    with pytest.raises(NotAllowed, match=OTHER):
        await service.activity(PARTNER, OTHER, "tour-1")
    with pytest.raises(NotFound):
        await service.activity(OPERATOR, P, "tour-404")


async def test_typed_endpoints_send_as_the_caller_with_the_idempotency_key_as_id(service, intake):
    await service.record(PARTNER, HIRE, "retry-1")
    await service.record(ADMIN, HIRE, None)
    [([keyed], _), ([fresh], _)] = intake.submitted
    assert (keyed.source, keyed.id) == (PARTNER.source, "retry-1")
    assert fresh.source == ADMIN.source and fresh.id  # a new uuid


async def test_inbound_records_are_decided_as_the_topics_key(service, intake):
    own, foreign, posing = hire(), hire(OTHER, id="e-2"), hire(source="/keys/another", id="e-3")
    results = await service.submit_inbound(PARTNER, PARTNER.key_id, [own, foreign, posing])
    assert isinstance(results[0], EventResult) and results[0].status is Outcome.ACCEPTED
    assert isinstance(results[1], NotAllowed) and OTHER in results[1].message
    assert isinstance(results[2], NotAllowed) and "/keys/another" in results[2].message
    assert intake.submitted == [([own], "kafka")]  # only what the key may send reaches the intake


async def test_inbound_records_of_a_revoked_or_unknown_key_are_all_refused(service, intake):
    results = await service.submit_inbound(None, "gone", [hire(), hire(id="e-2")])
    assert all(isinstance(r, NotAuthenticated) and "gone" in r.message for r in results)
    viewer_topic = await service.submit_inbound(VIEWER, VIEWER.key_id, [hire(source=VIEWER.source)])
    assert isinstance(viewer_topic[0], NotAllowed)
    assert intake.submitted == []


def test_identity_is_source_and_id_unambiguously():
    assert identity("/keys/a", "e-1") != identity("/keys/b", "e-1")
    assert identity("/a b", "c") != identity("/a", "b c")
    assert identity("/keys/a", "e-1") == identity("/keys/a", "e-1")
