"""HTTP API: one endpoint per event type (the activity lifecycle, attendance, outcomes, survey
responses) for operators' tools, and CloudEvents ingest (structured, batch and binary mode) for
partner systems. A 2xx means every accepted event is in Kafka with acks=all, and every pending one (held
until the roster change it waits for arrives) is stored and will be decided without the caller:
`GET /events/status` tells what became of it."""

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from pymongo.errors import PyMongoError

from services.events.domain import Activity
from services.events.intake import EventResult, Intake, Outcome
from services.events.service import EventsService
from shared.auth import Principal, authenticated
from shared.consumer import TRANSIENT
from shared.contracts import activities as act
from shared.contracts import demand as dem
from shared.contracts import outcomes as out
from shared.envelope import (
    DATA_MEDIA,
    CloudEvent,
    EventError,
    from_binary,
    http_attributes,
    loads,
    media_type,
    parse_event,
)
from shared.errors import Invalid, TooLarge

log = logging.getLogger(__name__)

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"

# Path and summary of each event type's own endpoint.
ENDPOINTS = {
    act.ActivityScheduled: ("/activities", "Schedule an activity"),
    act.ActivityRescheduled: ("/activities/reschedule", "Move a scheduled activity to new times"),
    act.ActivityCancelled: ("/activities/cancel", "Cancel a scheduled activity"),
    act.ActivityCompleted: ("/activities/complete", "Complete a scheduled activity (minutes, follow-ups)"),
    act.AttendanceRecorded: ("/activities/attendance", "Record attendance of an activity"),
    out.HireRecorded: ("/outcomes/hires", "Record a hire"),
    out.PlacementRecorded: ("/outcomes/placements", "Record a placement from a training programme"),
    out.TrainingEnrolled: ("/outcomes/training-enrolments", "Record a training enrolment"),
    out.TrainingCompleted: ("/outcomes/training-completions", "Record a completed training"),
    out.CredentialEarned: ("/outcomes/credentials", "Record an earned credential"),
    out.ApprenticeshipStarted: ("/outcomes/apprenticeships", "Record a started apprenticeship"),
    out.RetentionChecked: ("/outcomes/retention-checks", "Record a retention check of a hire"),
    out.SeparationRecorded: ("/outcomes/separations", "Record a separation after a hire"),
    out.OutcomeVoided: ("/outcomes/voids", "Void a recorded outcome (it stays in history; KPIs leave it out)"),
    dem.DemandSurveyResponded: ("/demand/survey-responses", "Record an employer's demand survey response"),
}

_STATUS = {Outcome.ACCEPTED: 202, Outcome.DUPLICATE: 200, Outcome.REJECTED: 422, Outcome.PENDING: 202}
_SINGLE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": EventResult, "description": "Duplicate: this source's event id was accepted before"},
    202: {"model": EventResult, "description": "Accepted, or pending (`status`): held, with `Retry-After`, until "
                                               "what it names arrives; `GET /events/status` gives the outcome"},
    403: {"description": "The key may not write the event's partnership or send as its source (viewers never submit)"},
    422: {"model": EventResult, "description": "Rejected: `errors` name each bad field"},
    503: {"description": "Kafka or MongoDB unavailable: nothing was accepted, retry"},
}


class BatchResult(BaseModel):
    accepted: int
    duplicate: int
    rejected: int
    pending: int = Field(description="held until what they name arrives, then decided by themselves")
    results: list[EventResult]  # in the order of the submitted events


class RecordRow(BaseModel):
    """An accepted event, as lineage rows and the records page show it."""

    source: str = Field(description="who sent it: `/keys/<key_id>` for keys, or a partner system's source")
    id: str
    type: str
    time: datetime = Field(description="when it happened, as its sender said")
    data: dict[str, Any]
    voided_by: str | None = Field(default=None, description="the id of the void that took it back, if any")


class EventStatus(BaseModel):
    source: str
    id: str
    status: str = Field(description="accepted, pending (held), or rejected (its hold ended unresolved)")
    reason: str | None = Field(default=None, description="what a held event waits for, or why it was refused")
    errors: list[dict[str, str]] = Field(default_factory=list)
    deadline: datetime | None = Field(default=None, description="a pending event is refused if still waiting then")
    next_attempt_at: datetime | None = None
    membership_lag: int | None = Field(description="records of backbone.membership the events service has not "
                                                   "read yet (0: caught up; null: not measured yet)")


@asynccontextmanager
async def _unavailable_is_503() -> AsyncIterator[None]:
    try:
        yield
    except (*TRANSIENT, PyMongoError) as exc:
        log.warning("submission failed, nothing accepted", extra={"error": type(exc).__name__})
        raise HTTPException(503, "Kafka or MongoDB unavailable: nothing was accepted, retry",
                            headers={"Retry-After": "1"}) from None


def _single(result: EventResult, retry_after: str) -> JSONResponse:
    headers = {"Retry-After": retry_after} if result.status is Outcome.PENDING else None
    return JSONResponse(result.model_dump(mode="json"), status_code=_STATUS[result.status], headers=headers)


def _typed_endpoint(model, service: EventsService, retry_after: str):
    async def submit(
        data: Annotated[model, Body()],
        principal: Annotated[Principal, Depends(authenticated)],
        idempotency_key: Annotated[str | None, Header(
            min_length=1, max_length=200,
            description="Used as the event id: a retry with the same key is accepted once")] = None,
    ) -> JSONResponse:
        async with _unavailable_is_503():
            return _single(await service.record(principal, data, idempotency_key), retry_after)

    return submit


def _binary(request: Request, content_type: str) -> bool:
    """Binary mode, by the HTTP binding: not a CloudEvents content type, attributes in `ce-` headers."""
    return content_type == DATA_MEDIA or any(name.startswith("ce-") for name in request.headers)


async def _raw_events(request: Request, content_type: str, max_batch_events: int) -> list:
    """The submitted events, not yet parsed: one (structured or binary mode) or a JSON array (batch mode)."""
    if content_type not in (STRUCTURED, BATCH) and not _binary(request, content_type):
        raise HTTPException(415, f"send {STRUCTURED} (one event), {BATCH} (an array of events) "
                                 "or binary mode (attributes in ce- headers, the data as the body)")
    body = await request.body()
    if content_type == STRUCTURED:
        return [body]
    if content_type != BATCH:
        attributes = http_attributes(request.headers.items())
        try:
            return [from_binary(attributes, request.headers.get("content-type"), body)]
        except EventError as exc:
            return [exc]
    try:
        raws = loads(body)  # leniently, so a NaN in one event is that event's field error
    except EventError:
        raise Invalid("batch", "not valid JSON") from None
    if not isinstance(raws, list):
        raise Invalid("batch", "a batch must be a JSON array of CloudEvents")
    if len(raws) > max_batch_events:
        raise TooLarge(f"more than {max_batch_events} events in one batch")
    return raws


def _parse(raw: object, intake: Intake) -> CloudEvent | EventResult:
    try:
        if isinstance(raw, EventError):  # a binary-mode event whose data could not be read
            raise raw
        return parse_event(raw)
    except EventError as exc:
        event_id = raw.get("id") if isinstance(raw, dict) else None
        return intake.refuse(event_id if isinstance(event_id, str) else None, exc, entry="http")


def routes(service: EventsService, intake: Intake, max_batch_events: int, max_batch_bytes: int,
           retry_after_seconds: int, membership_lag: Callable[[], int | None]) -> APIRouter:
    router = APIRouter()
    retry_after = str(retry_after_seconds)

    for model, (path, summary) in ENDPOINTS.items():
        router.add_api_route(
            path, _typed_endpoint(model, service, retry_after), methods=["POST"], summary=summary,
            tags=["activities" if path.startswith("/activities") else "outcomes and demand"],
            status_code=202, response_model=EventResult, responses=_SINGLE_RESPONSES,
        )

    @router.post(
        "/events",
        tags=["CloudEvents ingest"],
        summary="Submit CloudEvents: one (structured or binary mode) or a batch (application/cloudevents-batch+json)",
        description=(
            "Structured mode (application/cloudevents+json) and binary mode (attributes in percent-encoded "
            "`ce-` headers, Content-Type application/json, the data as the body) answer like the typed "
            "endpoints (202 accepted or pending, 200 duplicate, 422 rejected naming the field or missing attribute). "
            "Batch mode answers with one result per event, in order: 200, or 202 with `Retry-After` when some are "
            "pending (held until the roster change they wait for arrives, then decided by themselves; "
            "`GET /events/status` tells the outcome). An event whose source and id were "
            "accepted before is a duplicate. If any event names a partnership the key may not write, or a "
            "source it may not send as (its own `/keys/<key_id>` or those it was issued for), the whole "
            "request is refused (403)."
        ),
        response_model=BatchResult,
        max_body_size=max_batch_bytes,  # larger is refused (413) before it is read
        responses={**_SINGLE_RESPONSES, 413: {"description": "Too many events or too large"},
                   415: {"description": "Neither a CloudEvents content type nor binary mode"}},
        openapi_extra={"requestBody": {"required": True, "content": {
            STRUCTURED: {"schema": {"type": "object", "description": "one CloudEvent 1.0"}},
            DATA_MEDIA: {"schema": {"type": "object",
                                    "description": "binary mode: the event's data, its attributes in ce- headers"}},
            BATCH: {"schema": {"type": "array", "items": {"type": "object"}, "maxItems": max_batch_events}},
        }}},
    )
    async def ingest(request: Request, principal: Annotated[Principal, Depends(authenticated)]):
        content_type = media_type(request.headers.get("content-type"))
        raws = await _raw_events(request, content_type, max_batch_events)
        async with _unavailable_is_503():
            results = await service.submit(principal, [_parse(raw, intake) for raw in raws])
        if content_type != BATCH:
            return _single(results[0], retry_after)
        # plain str keys for the JSON log formatter
        counts = {outcome.value: sum(r.status is outcome for r in results) for outcome in Outcome}
        log.info("batch decided", extra={"key_id": principal.key_id, **counts})
        answer = BatchResult(accepted=counts[Outcome.ACCEPTED], duplicate=counts[Outcome.DUPLICATE],
                             rejected=counts[Outcome.REJECTED], pending=counts[Outcome.PENDING], results=results)
        if not answer.pending:
            return answer
        return JSONResponse(answer.model_dump(mode="json"), status_code=202, headers={"Retry-After": retry_after})

    @router.get("/events/status", tags=["CloudEvents ingest"], response_model=EventStatus,
                summary="What became of an event: accepted, pending (held) or rejected after its hold",
                responses={404: {
                    "description": "No event of this source and id was accepted or held in the partnership"}})
    async def event_status(partnership_id: Annotated[str, Query(max_length=200)],
                           source: Annotated[str, Query(min_length=1, max_length=500)],
                           id: Annotated[str, Query(min_length=1, max_length=200)],
                           principal: Annotated[Principal, Depends(authenticated)]) -> EventStatus:
        found = await service.status(principal, partnership_id, source, id)
        return EventStatus.model_validate(found | {"membership_lag": membership_lag()})

    @router.get("/partnerships/{partnership_id}/records", tags=["CloudEvents ingest"],
                summary="The partnership's accepted events, newest first: those named by `id`, or a page of them",
                description="With `id` (repeatable, up to 200): those events, whatever their source (lineage "
                            "lists ids only). Else the newest `limit`, of `type` if given, before `before` "
                            "(the `time` of the last row of the previous page).")
    async def records(partnership_id: str, principal: Annotated[Principal, Depends(authenticated)],
                      id: Annotated[list[str] | None, Query(max_length=200)] = None,
                      type: Annotated[str | None, Query(max_length=200)] = None,
                      before: datetime | None = None,
                      limit: Annotated[int, Query(ge=1, le=200)] = 50) -> list[RecordRow]:
        found = await service.records(principal, partnership_id, ids=id, event_type=type, before=before, limit=limit)
        return [RecordRow.model_validate(row) for row in found]

    @router.get("/partnerships/{partnership_id}/activities/{activity_id}", tags=["activities"],
                summary="An activity's lifecycle as accepted so far",
                responses={404: {"description": "No such activity"}})
    async def activity(partnership_id: str, activity_id: str,
                       principal: Annotated[Principal, Depends(authenticated)]) -> Activity:
        return await service.activity(principal, partnership_id, activity_id)

    return router
