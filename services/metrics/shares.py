"""Share links: a revocable, read-only link to one partnership's print infographic, for people
without an account (a funder, a board). The partnership's admins and operators create, list and
revoke them. The token is in the creating answer only; the database keeps its SHA-256, so a dump
holds no usable link. Every visit looks the link up again, so a revocation takes effect at once.

A visitor is a viewer of that one partnership (SharedViewer), so the page's own use case decides
what is shown and nothing else of the partnership or of others is reachable through the link."""

import hashlib
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, tzinfo
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import AwareDatetime, BaseModel, Field
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from shared.auth import Principal, authenticated
from shared.contracts.base import AccessRole
from shared.errors import Conflict, Invalid, NotFound

SHARE_PATH = "/ui/shared/"  # + the token: the public page


class ShareIn(BaseModel):
    label: str = Field(min_length=1, max_length=200, description="who it is for, e.g. 'State funder'")
    expires_at: AwareDatetime | None = Field(default=None, description="none: until revoked")


def _hashed(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _out(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], **{k: v for k, v in doc.items() if k not in ("_id", "token_hash")}}


class ShareStore:
    def __init__(self, db: AsyncDatabase):
        self.shares = db["share_links"]

    async def setup(self) -> None:
        await self.shares.create_index([("token_hash", ASCENDING)], unique=True)
        await self.shares.create_index([("partnership_id", ASCENDING)])

    async def add(self, doc: dict) -> None:
        await self.shares.insert_one(doc)

    async def live(self, token_hash: str, now: datetime) -> dict | None:
        """The link with this token if it is neither revoked nor expired."""
        return await self.shares.find_one({"token_hash": token_hash, "revoked_at": None,
                                           "$or": [{"expires_at": None}, {"expires_at": {"$gt": now}}]})

    async def of_partnership(self, partnership_id: str) -> list[dict]:
        return await self.shares.find({"partnership_id": partnership_id}).sort("created_at", ASCENDING).to_list()

    async def revoke(self, partnership_id: str, share_id: str, now: datetime) -> dict | None:
        """The link as revoked, or None if it is not this partnership's or was revoked before."""
        return await self.shares.find_one_and_update(
            {"_id": share_id, "partnership_id": partnership_id, "revoked_at": None},
            {"$set": {"revoked_at": now}}, return_document=True)


class ShareLinks:
    """The use cases: who may manage a partnership's links is decided here."""

    def __init__(self, store: ShareStore):
        self.store = store

    async def create(self, principal: Principal, partnership_id: str, body: ShareIn) -> dict:
        principal.require_writer(partnership_id, AccessRole.PARTNERSHIP_ADMIN)
        now = datetime.now(UTC)
        if body.expires_at and body.expires_at <= now:
            raise Invalid("expires_at", "is in the past: give a later time, or none for no expiry")
        token = secrets.token_urlsafe(32)
        doc = {"_id": secrets.token_hex(8), "partnership_id": partnership_id, "label": body.label,
               "token_hash": _hashed(token), "created_at": now, "created_by": principal.key_id,
               "expires_at": body.expires_at, "revoked_at": None}
        await self.store.add(doc)
        return {**_out(doc), "token": token, "path": SHARE_PATH + token}

    async def list(self, principal: Principal, partnership_id: str) -> dict:
        principal.require_writer(partnership_id, AccessRole.PARTNERSHIP_ADMIN)
        return {"items": [_out(doc) for doc in await self.store.of_partnership(partnership_id)]}

    async def revoke(self, principal: Principal, partnership_id: str, share_id: str) -> dict:
        principal.require_writer(partnership_id, AccessRole.PARTNERSHIP_ADMIN)
        revoked = await self.store.revoke(partnership_id, share_id, datetime.now(UTC))
        if revoked is None:
            if not any(doc["_id"] == share_id for doc in await self.store.of_partnership(partnership_id)):
                raise NotFound(f"no share link {share_id!r} of partnership {partnership_id!r}")
            raise Conflict(f"share link {share_id!r} is already revoked")
        return _out(revoked)

    async def visitor(self, token: str) -> Principal | None:
        """A viewer of the link's one partnership, or None if the link is unknown, revoked or expired."""
        found = await self.store.live(_hashed(token), datetime.now(UTC))
        if found is None:
            return None
        return Principal(key_id=f"share:{found['_id']}", role=AccessRole.VIEWER,
                         partnership_ids=frozenset({found["partnership_id"]}))


def share_routes(links: ShareLinks) -> APIRouter:
    router = APIRouter(prefix="/partnerships/{partnership_id}/shares", tags=["share links"])

    @router.post("", status_code=201, summary="Create a read-only link to the partnership's infographic; "
                                             "its token is in this answer only")
    async def create(partnership_id: str, body: ShareIn, principal: Principal = Depends(authenticated)) -> dict:
        return await links.create(principal, partnership_id, body)

    @router.get("", summary="The partnership's share links (never their tokens)")
    async def list_(partnership_id: str, principal: Principal = Depends(authenticated)) -> dict:
        return await links.list(principal, partnership_id)

    @router.delete("/{share_id}", summary="Revoke a share link: it stops working at once")
    async def revoke(partnership_id: str, share_id: str, principal: Principal = Depends(authenticated)) -> dict:
        return await links.revoke(principal, partnership_id, share_id)

    return router


def share_pages(router: APIRouter, signed_in: Callable[..., Awaitable[Principal]], links: ShareLinks,
                render: Callable[..., HTMLResponse], zone: tzinfo = UTC) -> None:
    """The share links' page on the /ui router: list, create (the link is shown once) and revoke,
    through the same use cases as the API. A link expires at the end of its day in `zone`."""

    async def page(request: Request, who: Principal, partnership_id: str, *, status: int = 200,
                   created: dict | None = None, error: str | None = None, typed: dict | None = None) -> HTMLResponse:
        found = await links.list(who, partnership_id)
        now = datetime.now(UTC)
        for link in found["items"]:
            ends = link["expires_at"] and link["expires_at"].replace(tzinfo=UTC)
            link["state"] = ("revoked" if link["revoked_at"] else "expired" if ends and ends <= now else "live")
        return render("shares.html", status=status, who=who, partnership_id=partnership_id, links=found["items"],
                      created=created, error=error, typed=typed or {},
                      base=str(request.base_url).rstrip("/"))

    @router.get("/partnerships/{partnership_id}/shares", response_class=HTMLResponse)
    async def shares(request: Request, partnership_id: str, who: Principal = Depends(signed_in)) -> Response:
        return await page(request, who, partnership_id)

    @router.post("/partnerships/{partnership_id}/shares", response_class=HTMLResponse)
    async def create(request: Request, partnership_id: str, who: Principal = Depends(signed_in)) -> Response:
        typed = {k: v[0].strip() for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}
        try:
            expires = typed.get("expires_on")  # the end of that day, here
            ends = datetime.combine(date.fromisoformat(expires), time.max, zone) if expires else None
            body = ShareIn(label=typed.get("label", ""), expires_at=ends)
        except ValueError:  # pydantic's ValidationError included
            return await page(request, who, partnership_id, status=422, typed=typed,
                              error="Give who the link is for (up to 200 characters) and, if it should expire, "
                                    "a date like 2027-06-30.")
        created = await links.create(who, partnership_id, body)
        return await page(request, who, partnership_id, status=201, created=created)  # the token, this once

    @router.post("/partnerships/{partnership_id}/shares/{share_id}/revoke", response_class=HTMLResponse)
    async def revoke(partnership_id: str, share_id: str, who: Principal = Depends(signed_in)) -> Response:
        await links.revoke(who, partnership_id, share_id)
        return RedirectResponse(f"/ui/partnerships/{partnership_id}/shares", status_code=303)
