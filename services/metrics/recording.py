"""Recording from the pages: a form for each kind of record a partnership keeps (services/metrics/
forms.py), sent to the events service's own API as the person who signed in (their key, kept sealed
in the session), so who may record what is decided where it is for every client: in the events
use cases. Their refusals (403, 422 naming the field) are shown on the form, next to the field,
with what was typed kept. Viewers and keys of other partnerships are shown no form at all.

The event id is drawn when the form is shown, so sending the same form twice records it once."""

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import parse_qs

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.metrics import forms
from shared.auth import Principal
from shared.errors import NotAllowed, NotFound, Unavailable

STRUCTURED = "application/cloudevents+json"
DONE = {"accepted": "Recorded.", "pending": "Received: it waits for the member or activity it names, and "
        "counts once that is recorded.", "duplicate": "Already recorded: this form was sent before."}


class EventsGateway:
    """The events service's public API, called with the signed-in person's key."""

    def __init__(self, url: str | None, timeout: float = 10.0):
        self.url = url
        self.timeout = timeout

    async def submit(self, key: str, event: dict) -> tuple[int, dict]:
        if self.url is None:
            raise Unavailable("recording is not set up here (METRICS_EVENTS_URL is not set)")
        try:
            async with httpx.AsyncClient(base_url=self.url, timeout=self.timeout) as http:
                answer = await http.post("/events", json=event, headers={
                    "authorization": f"Bearer {key}", "content-type": STRUCTURED})
        except httpx.HTTPError as exc:
            raise Unavailable("the events service could not be reached: nothing was recorded, try again") from exc
        if answer.status_code >= 500:
            raise Unavailable("the events service could not record it now: nothing was recorded, try again")
        return answer.status_code, answer.json()


def may_record(who: Principal, partnership_id: str) -> None:
    """Forms only for those who may change the partnership's data (the events service decides again)."""
    if not who.may_write(partnership_id):
        raise NotAllowed(f"role {who.role.value.replace('_', ' ')} may not record for this partnership")


def kind_named(slug: str) -> forms.RecordKind:
    if (kind := forms.RECORDS.get(slug)) is None:
        raise NotFound(f"there is no form {slug!r}")
    return kind


def recording_routes(router: APIRouter, signed_in: Callable[..., Awaitable[Principal]], key_of,
                     gateway: EventsGateway, render: Callable[..., HTMLResponse]) -> None:
    """Adds the recording pages to the /ui router (its page errors, headers and same-origin rule)."""

    def form_page(who: Principal, partnership_id: str, kind: forms.RecordKind, *, status: int = 200,
                  typed: dict | None = None, errors: dict | None = None, problems: list | None = None,
                  done: str | None = None, event_id: str | None = None) -> HTMLResponse:
        return render("record.html", status=status, who=who, partnership_id=partnership_id, kind=kind,
                      typed=typed or {}, errors=errors or {}, problems=problems or [], done=DONE.get(done or ""),
                      event_id=event_id or str(uuid.uuid4()), kinds=forms.RECORDS.values())

    @router.get("/partnerships/{partnership_id}/record", response_class=HTMLResponse)
    async def record_index(partnership_id: str, who: Principal = Depends(signed_in)) -> Response:
        may_record(who, partnership_id)
        return render("record.html", who=who, partnership_id=partnership_id, kind=None,
                      kinds=forms.RECORDS.values())

    @router.get("/partnerships/{partnership_id}/record/{slug}", response_class=HTMLResponse)
    async def record_form(partnership_id: str, slug: str, done: str | None = None,
                          who: Principal = Depends(signed_in)) -> Response:
        may_record(who, partnership_id)
        return form_page(who, partnership_id, kind_named(slug), done=done)

    @router.post("/partnerships/{partnership_id}/record/{slug}", response_class=HTMLResponse)
    async def record(request: Request, partnership_id: str, slug: str,
                     who: Principal = Depends(signed_in)) -> Response:
        may_record(who, partnership_id)
        kind = kind_named(slug)
        typed = parse_qs((await request.body()).decode(errors="replace"), keep_blank_values=True)
        event_id = (typed.get("event_id") or [""])[0][:100] or str(uuid.uuid4())
        key = await key_of(request)
        if key is None:  # a session opened before sessions kept keys: sign in again
            raise NotAllowed("sign out and in again to record")
        event = {"specversion": "1.0", "id": event_id, "source": f"/keys/{who.key_id}",
                 "type": kind.event_type.type, "time": datetime.now(UTC).isoformat(),
                 "datacontenttype": "application/json", "data": forms.data_of(kind, typed, partnership_id)}
        status, answer = await gateway.submit(key, event)
        if status == 403:
            raise NotAllowed(answer.get("detail") or "this key may not record this")
        if status in (200, 202):
            return RedirectResponse(f"/ui/partnerships/{partnership_id}/record/{slug}?done={answer['status']}",
                                    status_code=303)
        by_field, other = forms.field_errors(kind, answer.get("errors") or [{"message": str(answer.get("detail"))}])
        return form_page(who, partnership_id, kind, status=422, typed=typed, errors=by_field, problems=other,
                         event_id=event_id)
