"""HTTP API: subscriptions (who hears what, how), the delivery log, and the unsubscribe link.

A partnership-scoped key manages only subscriptions all of whose partnerships it covers;
operators manage all. A webhook's signing secret is shown once, in the answer to its creation."""

import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationInfo, field_validator

from services.notify.domain import (
    SUBSCRIBABLE,
    Channel,
    DeliveryStatus,
    Mode,
    Status,
    delivery_id,
    new_webhook_secret,
    read_unsubscribe_token,
    recipient_hash,
    safe_id,
    unmatched_patterns,
    valid_email,
)
from services.notify.store import NotifyStore
from shared.auth import Principal, authenticated
from shared.contracts.base import Id, Name


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    partnership_ids: list[Id] = Field(min_length=1, max_length=100)
    event_types: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default=["*"], min_length=1, max_length=100,
        description="CloudEvent types, * and ? as wildcards, e.g. org.backbone.member.* or "
                    "org.backbone.notify.reminder.v1. Digest subscriptions get the whole partnership's week.")
    channel: Channel
    webhook_url: HttpUrl | None = Field(default=None, validate_default=True, description="for the webhook channel")
    email: str | None = Field(default=None, max_length=254, validate_default=True,
                              description="for the e-mail channel; kept here only, never logged or published")
    organisation_id: Id | None = Field(default=None, description="the subscriber's organisation: meeting "
                                                                 "follow-ups go to the attendees' organisations")
    mode: Mode = Mode.IMMEDIATE
    label: Name | None = None

    @field_validator("event_types")
    @classmethod
    def _known_types(cls, patterns: list[str]) -> list[str]:
        if unmatched := unmatched_patterns(patterns):
            raise ValueError(f"no event type matches {', '.join(unmatched)}")
        return patterns

    @field_validator("webhook_url", "email")
    @classmethod
    def _target(cls, value, info: ValidationInfo):
        channel = Channel.WEBHOOK if info.field_name == "webhook_url" else Channel.EMAIL
        if (info.data.get("channel") == channel) != (value is not None):
            raise ValueError(f"required for the {channel} channel, and only for it")
        if channel == Channel.EMAIL and value is not None and not valid_email(value):
            raise ValueError("not an e-mail address")
        return value


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


def _out(doc: dict, with_secret: bool = False) -> SubscriptionOut:
    return SubscriptionOut(id=doc["_id"], **{k: v for k, v in doc.items() if k != "webhook_secret"},
                           webhook_secret=doc.get("webhook_secret") if with_secret else None)


def _unprocessable(field: str, message: str) -> HTTPException:
    return HTTPException(422, [{"loc": ["body", field], "msg": message, "type": "value_error"}])


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><html><head><title>{title}</title></head><body><h1>{title}</h1>{body}"
                        "</body></html>")


def routes(store: NotifyStore, clock: Callable[[], datetime], unsubscribe_key: Callable[[], bytes],
           email_enabled: bool, require_https: bool) -> APIRouter:
    router = APIRouter(tags=["subscriptions"])

    async def manageable(subscription_id: str, principal: Principal) -> dict:
        doc = await store.subscription(subscription_id)
        if doc is None:
            raise HTTPException(404, f"no subscription {subscription_id!r}")
        for pid in doc["partnership_ids"]:
            principal.require_partnership(pid)
        return doc

    @router.get("/subscriptions/event-types", summary="The event types a subscription can select")
    async def event_types(principal: Principal = Depends(authenticated)) -> list[str]:
        return list(SUBSCRIBABLE)

    @router.post("/subscriptions", status_code=201, summary="Subscribe a webhook or an e-mail address")
    async def create(body: SubscriptionIn, principal: Principal = Depends(authenticated)) -> SubscriptionOut:
        for pid in body.partnership_ids:
            principal.require_partnership(pid)
        if body.channel == Channel.EMAIL and not email_enabled:
            raise _unprocessable("channel", "e-mail is not configured on this installation")
        if body.webhook_url is not None and require_https and body.webhook_url.scheme != "https":
            raise _unprocessable("webhook_url", "must be an https URL")
        now = clock()
        recipient = str(body.webhook_url) if body.webhook_url else body.email
        doc: dict[str, Any] = {
            "_id": "sub-" + secrets.token_hex(8), **body.model_dump(mode="json", exclude_none=True),
            "recipient_hash": recipient_hash(recipient), "status": Status.ACTIVE.value, "consecutive_failures": 0,
            "created_at": now, "updated_at": now, "created_by": principal.key_id}
        if body.channel == Channel.WEBHOOK:
            doc["webhook_secret"] = new_webhook_secret(secrets.token_bytes(32))
        await store.add_subscription(doc)
        return _out(doc, with_secret=True)

    @router.get("/subscriptions", summary="The subscriptions this key may manage")
    async def list_(partnership_id: Annotated[Id | None, Query()] = None,
                    principal: Principal = Depends(authenticated)) -> list[SubscriptionOut]:
        if partnership_id is not None:
            principal.require_partnership(partnership_id)
            scope = [partnership_id]
        else:
            scope = None if principal.is_operator else sorted(principal.partnership_ids)
        docs = await store.list_subscriptions(scope)
        return [_out(d) for d in docs if all(principal.may_access(p) for p in d["partnership_ids"])]

    @router.get("/subscriptions/{subscription_id}", summary="One subscription, with its status")
    async def get(subscription_id: str, principal: Principal = Depends(authenticated)) -> SubscriptionOut:
        return _out(await manageable(subscription_id, principal))

    @router.delete("/subscriptions/{subscription_id}", status_code=204, summary="Delete; pending deliveries are cancelled")
    async def delete(subscription_id: str, principal: Principal = Depends(authenticated)) -> Response:
        await manageable(subscription_id, principal)
        await store.delete_subscription(subscription_id, clock())
        return Response(status_code=204)

    @router.post("/subscriptions/{subscription_id}/resume", summary="Resume a paused subscription; held deliveries go out")
    async def resume(subscription_id: str, principal: Principal = Depends(authenticated)) -> SubscriptionOut:
        doc = await manageable(subscription_id, principal)
        if doc["status"] != Status.PAUSED:
            raise HTTPException(409, f"subscription is {doc['status']}, not paused")
        return _out(await store.resume(subscription_id, clock()) or doc)

    @router.get("/deliveries", tags=["deliveries"], summary="The delivery log: every attempt, by subscription and/or event")
    async def deliveries(
        subscription_id: str | None = None,
        event_id: Annotated[str | None, Query(max_length=200, description="the event (notification) id")] = None,
        status: DeliveryStatus | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        principal: Principal = Depends(authenticated),
    ) -> list[DeliveryOut]:
        if subscription_id is None and event_id is None:
            raise HTTPException(422, [{"loc": ["query", "subscription_id"], "type": "missing",
                                       "msg": "give subscription_id, event_id or both"}])
        query: dict[str, Any] = {}
        if subscription_id is not None:
            await manageable(subscription_id, principal)
            query["subscription_id"] = subscription_id
        if event_id is not None:
            query["notification_id"] = safe_id(event_id)
        if status is not None:
            query["status"] = status.value
        docs = await store.find_deliveries(query, limit)
        return [DeliveryOut(id=d["_id"], **d) for d in docs if principal.may_access(d["partnership_id"])]

    @router.post("/subscriptions/{subscription_id}/deliveries/{event_id}/retry", tags=["deliveries"],
                 summary="Send a dead delivery again, with a fresh round of attempts")
    async def retry(subscription_id: str, event_id: Annotated[str, Path(max_length=200)],
                    principal: Principal = Depends(authenticated)) -> DeliveryOut:
        await manageable(subscription_id, principal)
        key = delivery_id(subscription_id, safe_id(event_id))
        if await store.redrive(key, clock()) is None:
            [found] = await store.find_deliveries({"_id": key}, 1) or [None]
            if found is None:
                raise HTTPException(404, f"no delivery of {event_id!r} to this subscription")
            raise HTTPException(409, f"delivery is {found['status']}, not dead")
        [doc] = await store.find_deliveries({"_id": key}, 1)
        return DeliveryOut(id=doc["_id"], **doc)

    unsubscribe = APIRouter(tags=["unsubscribe"])

    @unsubscribe.get("/unsubscribe", response_class=HTMLResponse, summary="The page an e-mail's unsubscribe link opens")
    async def confirm(token: Annotated[str, Query(max_length=200)]) -> HTMLResponse:
        if read_unsubscribe_token(unsubscribe_key(), token) is None:
            return _page("Link not valid", "<p>This unsubscribe link is not valid.</p>")
        # A GET only asks: mail scanners open links, and must not unsubscribe anyone.
        return _page("Unsubscribe", f'<form method="post" action="/unsubscribe?token={token}">'
                                    '<button type="submit">Stop these e-mails</button></form>')

    @unsubscribe.post("/unsubscribe", response_class=HTMLResponse,
                      summary="Unsubscribe (the form, or RFC 8058 one-click from the mail client)")
    async def unsubscribe_now(token: Annotated[str, Query(max_length=200)]) -> HTMLResponse:
        subscription_id = read_unsubscribe_token(unsubscribe_key(), token)
        if subscription_id is None:
            raise HTTPException(404, "this unsubscribe link is not valid")
        await store.unsubscribe(subscription_id, clock())
        return _page("Unsubscribed", "<p>You will receive no more e-mails from this subscription.</p>")

    router.include_router(unsubscribe)
    return router
