"""Recording from the pages: a form for each kind of record a partnership keeps (services/metrics/
forms.py), sent to the events service's own API as the person who signed in (their key, kept sealed
in the session), so who may record what is decided where it is for every client: in the events
use cases. Their refusals (403, 422 naming the field) are shown on the form, next to the field,
with what was typed kept. Viewers and keys of other partnerships are shown no form at all.

The event id is drawn when the form is shown, so sending the same form twice records it once."""

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, tzinfo
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.metrics import forms
from services.metrics.gateway import ServiceGateway
from shared.auth import Principal
from shared.catalog import BY_MODEL
from shared.contracts.outcomes import OutcomeVoided
from shared.errors import NotAllowed, NotFound, Unavailable

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
PAGE_ROWS = 50  # the events service's page of records
VOID_TYPE = BY_MODEL[OutcomeVoided].type
DONE = {"voided": "Voided: it stays in the history, and the KPIs leave it out within seconds.",
        "corrected": "Corrected: the record is voided and the corrected one recorded.",
        "accepted": "Recorded.", "pending": "Received: it waits for the member or activity it names, and "
        "counts once that is recorded.", "duplicate": "Already recorded: this form was sent before."}


class EventsGateway(ServiceGateway):
    """The events service's public API, called with the signed-in person's key."""

    def __init__(self, url: str | None, timeout: float = 10.0):
        super().__init__(url, "the events service", "METRICS_EVENTS_URL", timeout)

    async def submit(self, key: str, event: dict | list[dict]) -> tuple[int, dict]:
        """One event, or a batch decided in order (a correction: the void, then the corrected record)."""
        batch = isinstance(event, list)
        answer = await self.call("POST", "/events", key, json=event,
                                  headers={"content-type": BATCH if batch else STRUCTURED})
        return answer.status_code, answer.json()

    async def records(self, key: str, partnership_id: str, *, ids: list[str] | None = None,
                      event_type: str | None = None, before: str | None = None) -> list[dict]:
        """The partnership's accepted events, newest first (the events service decides who may read them)."""
        params = {"id": ids} if ids is not None else {"type": event_type, "before": before}
        answer = await self.call("GET", f"/partnerships/{partnership_id}/records", key,
                                  params={k: v for k, v in params.items() if v})
        if answer.status_code == 403:
            raise NotAllowed(answer.json().get("detail") or "this key may not read these records")
        if answer.status_code != 200:
            raise Unavailable(f"the events service answered {answer.status_code}: try again")
        return answer.json()


def may_record(who: Principal, partnership_id: str) -> None:
    """Forms only for those who may change the partnership's data (the events service decides again)."""
    if not who.may_write(partnership_id):
        raise NotAllowed(f"role {who.role.value.replace('_', ' ')} may not record for this partnership")


def kind_named(slug: str) -> forms.RecordKind:
    if (kind := forms.RECORDS.get(slug)) is None:
        raise NotFound(f"there is no form {slug!r}")
    return kind


def cloud_event(who: Principal, event_id: str, event_type: str, data: dict, after: dict | None = None) -> dict:
    """A structured CloudEvent sent as the signed-in key's own source; newer than `after` by at least
    the millisecond the records keep (a corrected record is newer than its void)."""
    now = datetime.now(UTC)
    if after is not None:
        now = max(now, datetime.fromisoformat(after["time"]) + timedelta(milliseconds=1))
    return {"specversion": "1.0", "id": event_id, "source": f"/keys/{who.key_id}", "type": event_type,
            "time": now.isoformat(), "datacontenttype": "application/json", "data": data}


def recording_routes(router: APIRouter, signed_in: Callable[..., Awaitable[Principal]], key_of,
                     gateway: EventsGateway, render: Callable[..., HTMLResponse], zone: tzinfo = UTC) -> None:
    """Adds the recording pages to the /ui router (its page errors, headers and same-origin rule);
    times are typed and shown in `zone`."""

    async def session_key(request: Request) -> str:
        if (key := await key_of(request)) is None:  # a session opened before sessions kept keys: sign in again
            raise NotAllowed("sign out and in again to record")
        return key

    def form_page(who: Principal, partnership_id: str, kind: forms.RecordKind, *, status: int = 200,
                  typed: dict | None = None, errors: dict | None = None, problems: list | None = None,
                  done: str | None = None, event_id: str | None = None,
                  correcting: forms.RecordRow | None = None) -> HTMLResponse:
        typed = typed or {}
        return render("record.html", status=status, who=who, partnership_id=partnership_id, kind=kind,
                      typed=typed, errors=errors or {}, problems=problems or [], done=DONE.get(done or ""),
                      event_id=event_id or str(uuid.uuid4()), kinds=forms.RECORDS.values(), correcting=correcting,
                      void_id=_one(typed, "void_id") or str(uuid.uuid4()))

    async def records_page(request: Request, who: Principal, partnership_id: str, *, status: int = 200,
                           event_type: str | None = None, before: str | None = None, done: str | None = None,
                           problems: list | None = None) -> HTMLResponse:
        found = await gateway.records(await session_key(request), partnership_id, event_type=event_type, before=before)
        return render("records.html", status=status, who=who, partnership_id=partnership_id,
                      rows=[forms.row_of(r, zone) for r in found], event_type=event_type or "",
                      kinds=forms.RECORDS.values(), older=found[-1]["time"] if len(found) == PAGE_ROWS else None,
                      done=DONE.get(done or ""), problems=problems or [])

    @router.get("/partnerships/{partnership_id}/record", response_class=HTMLResponse)
    async def record_index(partnership_id: str, who: Principal = Depends(signed_in)) -> Response:
        may_record(who, partnership_id)
        return render("record.html", who=who, partnership_id=partnership_id, kind=None,
                      kinds=forms.RECORDS.values())

    @router.get("/partnerships/{partnership_id}/record/{slug}", response_class=HTMLResponse)
    async def record_form(request: Request, partnership_id: str, slug: str, done: str | None = None,
                          correct: str | None = None, source: str | None = None,
                          who: Principal = Depends(signed_in)) -> Response:
        """The form of a record kind; with `correct` (and `source`), filled with that record, to correct it."""
        may_record(who, partnership_id)
        kind = kind_named(slug)
        if correct is None:
            return form_page(who, partnership_id, kind, done=done)
        found = [r for r in await gateway.records(await session_key(request), partnership_id, ids=[correct])
                 if r["source"] == source and r["type"] == kind.event_type.type]
        if not found:
            raise NotFound("there is no such record of this kind in the partnership")
        row = forms.row_of(found[0], zone)
        if not row.voidable:
            raise NotFound("this record is voided already")
        return form_page(who, partnership_id, kind, typed=forms.typed_of(kind, found[0]["data"], zone), correcting=row)

    @router.post("/partnerships/{partnership_id}/record/{slug}", response_class=HTMLResponse)
    async def record(request: Request, partnership_id: str, slug: str,
                     who: Principal = Depends(signed_in)) -> Response:
        may_record(who, partnership_id)
        kind = kind_named(slug)
        typed = parse_qs((await request.body()).decode(errors="replace"), keep_blank_values=True)
        event_id = _one(typed, "event_id")[:100] or str(uuid.uuid4())
        correcting, void = None, None
        if corrected_id := _one(typed, "correct_id"):  # the void first, then the corrected record, in one batch
            correcting = forms.RecordRow(_one(typed, "correct_source"), corrected_id, kind.title, "", "", "",
                                         None, True, slug)
            void = cloud_event(who, _one(typed, "void_id")[:100] or str(uuid.uuid4()), VOID_TYPE,
                               {"partnership_id": partnership_id, "voided_source": correcting.source,
                                "voided_id": corrected_id, "reason": "corrected from the workspace"})
        event = cloud_event(who, event_id, kind.event_type.type, forms.data_of(kind, typed, partnership_id, zone),
                            after=void)
        if void is not None:
            status, answer = await gateway.submit(await session_key(request), [void, event])
            if status in (200, 202) and all(r["status"] != "rejected" for r in answer["results"]):
                return RedirectResponse(f"/ui/partnerships/{partnership_id}/records?done=corrected", status_code=303)
            if status in (200, 202):
                void_result, record_result = answer["results"]
                answer = {"errors": record_result["errors"] + [
                    {"message": f"the record corrected: {e['message']}"} for e in void_result["errors"]]}
        else:
            status, answer = await gateway.submit(await session_key(request), event)
        if status == 403:
            raise NotAllowed(answer.get("detail") or "this key may not record this")
        if status in (200, 202) and correcting is None:
            return RedirectResponse(f"/ui/partnerships/{partnership_id}/record/{slug}?done={answer['status']}",
                                    status_code=303)
        errors = answer.get("errors") or [{"message": str(answer.get("detail"))}]
        by_field, other = forms.field_errors(kind.fields, errors)
        return form_page(who, partnership_id, kind, status=422, typed=typed, errors=by_field, problems=other,
                         event_id=event_id, correcting=correcting)

    @router.get("/partnerships/{partnership_id}/records", response_class=HTMLResponse)
    async def records(request: Request, partnership_id: str, type: str | None = None, before: str | None = None,
                      done: str | None = None, who: Principal = Depends(signed_in)) -> Response:
        """What the partnership recorded, newest first, each with who recorded it; void or correct from here."""
        may_record(who, partnership_id)
        return await records_page(request, who, partnership_id, event_type=type, before=before, done=done)

    @router.post("/partnerships/{partnership_id}/records/void", response_class=HTMLResponse)
    async def void(request: Request, partnership_id: str, who: Principal = Depends(signed_in)) -> Response:
        may_record(who, partnership_id)
        typed = parse_qs((await request.body()).decode(errors="replace"), keep_blank_values=True)
        event = cloud_event(who, _one(typed, "event_id")[:100] or str(uuid.uuid4()), VOID_TYPE,
                            {"partnership_id": partnership_id, "voided_source": _one(typed, "voided_source"),
                             "voided_id": _one(typed, "voided_id"), "reason": _one(typed, "reason")})
        status, answer = await gateway.submit(await session_key(request), event)
        if status == 403:
            raise NotAllowed(answer.get("detail") or "this key may not void this")
        if status in (200, 202):
            return RedirectResponse(f"/ui/partnerships/{partnership_id}/records?done=voided", status_code=303)
        problems = [("Why: " if e.get("field") == "data.reason" else "") + e.get("message", "not valid")
                    for e in answer.get("errors") or [{"message": str(answer.get("detail"))}]]
        return await records_page(request, who, partnership_id, status=422, problems=problems)


def _one(typed: dict[str, list[str]], name: str) -> str:
    return (typed.get(name) or [""])[0].strip()
