"""HTTP API: subscriptions (who hears what, how), the delivery log, and the unsubscribe link.
Thin: it parses and bounds the input; services/notify/service.py decides who may do what.
A webhook's signing secret is shown once, in the answer to its creation."""

import html
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from services.notify.domain import DeliveryStatus, Status
from services.notify.service import Subscriptions
from shared.auth import Principal, authenticated
from shared.contracts.base import Id
from shared.subscriptions import SUBSCRIBABLE, Channel, Mode, SubscriptionIn


class SubscriptionOut(BaseModel):
    id: str
    partnership_ids: list[str]
    event_types: list[str]
    channel: Channel
    mode: Mode
    webhook_url: str | None = None
    email: str | None = None
    organisation_id: str | None = None
    label: str | None = None
    status: Status
    paused_reason: str | None = None
    consecutive_failures: int = 0
    created_at: datetime
    webhook_secret: str | None = Field(default=None, description="only in the answer that created it")


class Attempt(BaseModel):
    number: int
    at: datetime
    outcome: str
    reason: str | None = None
    seconds: float


class DeliveryOut(BaseModel):
    id: str
    subscription_id: str
    notification_id: str
    type: str
    channel: Channel
    partnership_id: str
    status: DeliveryStatus
    attempts: int
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    attempt_log: list[Attempt]


def _out(doc: dict) -> SubscriptionOut:
    return SubscriptionOut(id=doc["_id"], **doc)


def _delivery(doc: dict) -> DeliveryOut:
    return DeliveryOut(id=doc["_id"], **doc)


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><html><head><title>{title}</title></head><body><h1>{title}</h1>{body}"
                        "</body></html>")


def routes(subscriptions: Subscriptions) -> APIRouter:
    router = APIRouter(tags=["subscriptions"])

    @router.get("/subscriptions/event-types", summary="The event types a subscription can select")
    async def event_types(principal: Principal = Depends(authenticated)) -> list[str]:
        return list(SUBSCRIBABLE)

    @router.post("/subscriptions", status_code=201, summary="Subscribe a webhook or an e-mail address")
    async def create(body: SubscriptionIn, principal: Principal = Depends(authenticated)) -> SubscriptionOut:
        return _out(await subscriptions.subscribe(principal, body.model_dump(mode="json", exclude_none=True)))

    @router.get("/subscriptions", summary="The subscriptions this key may read")
    async def list_(partnership_id: Annotated[Id | None, Query()] = None,
                    principal: Principal = Depends(authenticated)) -> list[SubscriptionOut]:
        return [_out(d) for d in await subscriptions.visible(principal, partnership_id)]

    @router.get("/subscriptions/{subscription_id}", summary="One subscription, with its status")
    async def get(subscription_id: str, principal: Principal = Depends(authenticated)) -> SubscriptionOut:
        return _out(await subscriptions.get(principal, subscription_id))

    @router.delete(
        "/subscriptions/{subscription_id}", status_code=204, summary="Delete; pending deliveries are cancelled"
    )
    async def delete(subscription_id: str, principal: Principal = Depends(authenticated)) -> Response:
        await subscriptions.delete(principal, subscription_id)
        return Response(status_code=204)

    @router.post(
        "/subscriptions/{subscription_id}/resume", summary="Resume a paused subscription; held deliveries go out"
    )
    async def resume(subscription_id: str, principal: Principal = Depends(authenticated)) -> SubscriptionOut:
        return _out(await subscriptions.resume(principal, subscription_id))

    @router.get(
        "/deliveries", tags=["deliveries"], summary="The delivery log: every attempt, by subscription and/or event"
    )
    async def deliveries(
        subscription_id: str | None = None,
        event_id: Annotated[str | None, Query(max_length=200, description="the event (notification) id")] = None,
        status: DeliveryStatus | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        principal: Principal = Depends(authenticated),
    ) -> list[DeliveryOut]:
        if subscription_id is None and event_id is None:
            raise RequestValidationError([{"loc": ("query", "subscription_id"), "type": "missing",
                                           "msg": "give subscription_id, event_id or both"}])
        return [
            _delivery(d) for d in await subscriptions.deliveries(principal, subscription_id, event_id, status, limit)
        ]

    @router.post("/subscriptions/{subscription_id}/deliveries/{event_id}/retry", tags=["deliveries"],
                 summary="Send a dead delivery again, with a fresh round of attempts")
    async def retry(subscription_id: str, event_id: Annotated[str, Path(max_length=200)],
                    principal: Principal = Depends(authenticated)) -> DeliveryOut:
        return _delivery(await subscriptions.retry(principal, subscription_id, event_id))

    unsubscribe = APIRouter(tags=["unsubscribe"])

    @unsubscribe.get("/unsubscribe", response_class=HTMLResponse, summary="The page an e-mail's unsubscribe link opens")
    async def confirm(token: Annotated[str, Query(max_length=200)]) -> HTMLResponse:
        if not subscriptions.unsubscribe_link_valid(token):
            return _page("Link not valid", "<p>This unsubscribe link is not valid.</p>")
        # A GET only asks: mail scanners open links, and must not unsubscribe anyone.
        return _page("Unsubscribe", f'<form method="post" action="/unsubscribe?token={html.escape(token)}">'
                                    '<button type="submit">Stop these e-mails</button></form>')

    @unsubscribe.post("/unsubscribe", response_class=HTMLResponse,
                      summary="Unsubscribe (the form, or RFC 8058 one-click from the mail client)")
    async def unsubscribe_now(token: Annotated[str, Query(max_length=200)]) -> HTMLResponse:
        await subscriptions.unsubscribe(token)
        return _page("Unsubscribed", "<p>You will receive no more e-mails from this subscription.</p>")

    router.include_router(unsubscribe)
    return router
