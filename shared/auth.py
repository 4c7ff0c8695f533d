"""API keys, shared by every service's HTTP API.

The membership service issues and revokes keys; it stores the secret nowhere and publishes only
a SHA-256 verifier on the access topic. Every service keeps its own key ring from those events
(in its own database), so authentication needs no call to another service. One operator key can
come from the environment to bootstrap a new installation.

Callers send `Authorization: Bearer <key>` (or `X-API-Key: <key>`).
"""

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import cast

from fastapi import APIRouter, Depends, Request
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from pymongo.asynchronous.database import AsyncDatabase

from shared.contracts.base import AccessRole
from shared.contracts.membership import AccessKeyIssued, AccessKeyRevoked
from shared.envelope import CloudEvent
from shared.errors import NotAllowed, NotAuthenticated

KEY_PREFIX = "bbk_"
BOOTSTRAP_KEY_ID = "bootstrap-operator"


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BACKBONE_AUTH_")

    # The statewide operator key of a new installation; rotate it by issuing a real operator key
    # and removing this setting.
    operator_key: SecretStr | None = None


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh (key_id, secret). The secret is shown to its owner once and never stored."""
    key_id = secrets.token_hex(8)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


# Roles that record and change a partnership's data (operators do everything besides).
WRITERS = frozenset({AccessRole.PARTNERSHIP_ADMIN, AccessRole.PARTNER_SYSTEM})


@dataclass(frozen=True)
class Principal:
    """Who is calling: one API key's role, partnerships and event sources. Use cases ask it, and
    it answers with NotAllowed, so every service decides access with the same few rules."""

    key_id: str
    role: AccessRole
    partnership_ids: frozenset[str] = field(default_factory=frozenset)
    sources: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_operator(self) -> bool:
        return self.role is AccessRole.OPERATOR

    @property
    def source(self) -> str:
        """The CloudEvents `source` every key may send as: its own, so no two keys share one."""
        return f"/keys/{self.key_id}"

    def may_access(self, partnership_id: str) -> bool:
        """May read the partnership's data (every role of the partnership, viewers included)."""
        return self.is_operator or partnership_id in self.partnership_ids

    def may_write(self, partnership_id: str) -> bool:
        return self.is_operator or (self.role in WRITERS and partnership_id in self.partnership_ids)

    def may_send_as(self, source: str) -> bool:
        """Operators migrate history from any source; everyone else sends as itself or as a
        source it was issued for."""
        return self.is_operator or source == self.source or source in self.sources

    def require_partnership(self, partnership_id: str) -> None:
        """NotAllowed unless this key may read the partnership (operators read all)."""
        if not self.may_access(partnership_id):
            raise NotAllowed(f"this key has no access to partnership {partnership_id!r}")

    def require_writer(self, partnership_id: str, *roles: AccessRole) -> None:
        """NotAllowed unless this key may change the partnership's data; `roles` narrows who
        besides operators (default: every writing role)."""
        self.require_partnership(partnership_id)
        if not self.may_write(partnership_id) or (roles and not self.is_operator and self.role not in roles):
            raise NotAllowed(f"role {self.role.value!r} may not change partnership {partnership_id!r}")

    def require_role(self, *roles: AccessRole) -> None:
        """NotAllowed unless an operator or one of `roles` (none: operators only)."""
        if not self.is_operator and self.role not in roles:
            raise NotAllowed(f"role {self.role.value!r} may not do this")

    def require_source(self, source: str) -> None:
        if not self.may_send_as(source):
            raise NotAllowed(f"this key may not send events as source {source!r}")


class KeyRing:
    """The keys this service accepts, kept from access events in its own database."""

    def __init__(self, db: AsyncDatabase, settings: AuthSettings | None = None):
        self.keys = db["access_keys"]
        bootstrap = (settings or AuthSettings()).operator_key
        self.bootstrap_hash = hash_key(bootstrap.get_secret_value()) if bootstrap else None
        # Told of every issued key once it is stored (the events service opens a partner's topic),
        # so a service reads the access topic through one consumer group and dead-letters its
        # poison once.
        self.on_issue: list[Callable[[AccessKeyIssued], Awaitable[None]]] = []

    async def create_indexes(self) -> None:
        await self.keys.create_index("key_hash")

    async def on_issued(self, event: CloudEvent) -> None:
        key = cast(AccessKeyIssued, event.data)  # subscribed to this type only
        # $setOnInsert: a redelivered "issued" must never bring a revoked key back.
        await self.keys.update_one(
            {"_id": key.key_id},
            {"$setOnInsert": {"key_hash": key.key_hash, "role": key.role.value,
                              "partnership_ids": key.partnership_ids, "sources": key.sources,
                              "revoked": False}},
            upsert=True,
        )
        for listener in self.on_issue:
            await listener(key)

    async def on_revoked(self, event: CloudEvent) -> None:
        revoked = cast(AccessKeyRevoked, event.data)
        await self.keys.update_one({"_id": revoked.key_id}, {"$set": {"revoked": True}}, upsert=True)

    def handlers(self) -> dict:
        return {AccessKeyIssued: self.on_issued, AccessKeyRevoked: self.on_revoked}

    async def authenticate(self, secret: str) -> Principal | None:
        digest = hash_key(secret)
        if self.bootstrap_hash and hmac.compare_digest(digest, self.bootstrap_hash):
            return Principal(BOOTSTRAP_KEY_ID, AccessRole.OPERATOR)
        return self._principal(await self.keys.find_one({"key_hash": digest, "revoked": False}))

    async def principal(self, key_id: str) -> Principal | None:
        """The principal of a key authenticated before (e.g. behind a session cookie); None once
        it is revoked, so a revocation ends sessions too."""
        if key_id == BOOTSTRAP_KEY_ID:
            return Principal(BOOTSTRAP_KEY_ID, AccessRole.OPERATOR) if self.bootstrap_hash else None
        return self._principal(await self.keys.find_one({"_id": key_id, "revoked": False}))

    @staticmethod
    def _principal(doc: dict | None) -> Principal | None:
        if doc is None:
            return None
        return Principal(doc["_id"], AccessRole(doc["role"]), frozenset(doc["partnership_ids"]),
                         frozenset(doc.get("sources", ())))


def _presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("x-api-key")


READING = frozenset({"GET", "HEAD", "OPTIONS"})


async def authenticated(request: Request) -> Principal:
    """FastAPI dependency: the caller's principal, or 401. Two coarse rules hold here for every
    endpoint, new ones included, before a body is looked at: a viewer key changes nothing, and
    no key reaches a partnership path it is not in. The use cases decide everything finer."""
    secret = _presented_key(request)
    principal = await request.app.state.runtime.keys.authenticate(secret) if secret else None
    if principal is None:
        raise NotAuthenticated("a valid API key is required")
    # A key never reaches a route of a partnership it is not in, whatever the body says.
    if (partnership_id := request.path_params.get("partnership_id")) is not None:
        principal.require_partnership(partnership_id)
    if principal.role is AccessRole.VIEWER and request.method not in READING:
        raise NotAllowed("a viewer key only reads")
    return principal


def whoami_router() -> APIRouter:
    router = APIRouter(tags=["access"])

    @router.get("/whoami", summary="The role and partnerships of the presented API key")
    async def whoami(principal: Principal = Depends(authenticated)) -> dict:
        return {"key_id": principal.key_id, "role": principal.role.value,
                "partnership_ids": sorted(principal.partnership_ids)}

    return router
