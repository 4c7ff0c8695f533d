"""Notify's use cases, each deciding first who may do it, then doing it.

- Subscriptions are managed (created, resumed, deleted, their dead deliveries sent again) by
  operators and by partnership admins of *all* the subscription's partnerships.
- They and their deliveries are read by every role of all those partnerships (viewers and
  partner systems included); a list holds only what the caller may read, chosen by the store.
- The unsubscribe link is its own authority: a token signed with notify's key.
"""

import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol, cast

from services.notify.domain import (
    DeliveryStatus,
    Status,
    delivery_id,
    new_webhook_secret,
    read_unsubscribe_token,
    recipient_hash,
    safe_id,
    without_credentials,
)
from shared.auth import Principal
from shared.contracts.base import AccessRole
from shared.errors import Conflict, Invalid, NotFound
from shared.subscriptions import Channel

MANAGERS = (AccessRole.PARTNERSHIP_ADMIN,)  # besides operators


class SubscriptionStore(Protocol):
    async def add_subscription(self, doc: dict[str, Any]) -> None: ...
    async def subscription(self, subscription_id: str) -> dict | None: ...
    async def subscriptions_within(self, partnership_ids: list[str] | None,
                                   including: str | None = None) -> list[dict]: ...
    async def delete_subscription(self, subscription_id: str, now: datetime) -> bool: ...
    async def unsubscribe(self, subscription_id: str, now: datetime) -> bool: ...
    async def resume(self, subscription_id: str, now: datetime) -> dict | None: ...
    async def redrive(self, delivery_id: str, now: datetime) -> dict | None: ...
    async def delivery(self, delivery_id: str) -> dict | None: ...
    async def deliveries_of(self, subscription_id: str | None, notification_id: str | None,
                            status: DeliveryStatus | None, partnership_ids: list[str] | None,
                            limit: int) -> list[dict]: ...


def _readable_scope(caller: Principal) -> list[str] | None:
    """The partnerships whose subscriptions and deliveries the caller reads (None: all)."""
    return None if caller.is_operator else sorted(caller.partnership_ids)


def _require(caller: Principal, partnership_ids: list[str]) -> None:
    """NotAllowed unless the caller manages every one of the partnerships' notifications; a
    foreign partnership is named before a role. Subscriptions hold personal data (e-mail
    addresses, webhook URLs), so reading them is managing them too: viewers and partner
    systems see none."""
    for pid in partnership_ids:
        caller.require_partnership(pid)
    for pid in partnership_ids:
        caller.require_writer(pid, *MANAGERS)


def _shown(doc: dict) -> dict:
    """A subscription as answered: never its signing secret, never credentials in its URL."""
    shown = {k: v for k, v in doc.items() if k != "webhook_secret"}
    if "webhook_url" in shown:
        shown["webhook_url"] = without_credentials(shown["webhook_url"])
    return shown


class Subscriptions:
    def __init__(self, store: SubscriptionStore, clock: Callable[[], datetime], unsubscribe_key: Callable[[], bytes],
                 email_enabled: bool, target_refusal: Callable[[str], Awaitable[str | None]]):
        self.store, self.clock, self.unsubscribe_key = store, clock, unsubscribe_key
        self.email_enabled = email_enabled
        self.target_refusal = target_refusal  # why a webhook URL may not be used, or None

    async def subscribe(self, caller: Principal, fields: dict[str, Any]) -> dict:
        """A new subscription from validated `fields`; the answer holds the webhook's secret, once."""
        _require(caller, fields["partnership_ids"])
        if fields["channel"] == Channel.EMAIL and not self.email_enabled:
            raise Invalid("channel", "e-mail is not configured on this installation")
        url = fields.get("webhook_url")
        if url is not None and (reason := await self.target_refusal(url)):
            raise Invalid("webhook_url", reason)
        now = self.clock()
        doc = {"_id": "sub-" + secrets.token_hex(8), **fields,
               "recipient_hash": recipient_hash(url or fields["email"]), "status": Status.ACTIVE.value,
               "consecutive_failures": 0, "created_at": now, "updated_at": now, "created_by": caller.key_id}
        if fields["channel"] == Channel.WEBHOOK:
            doc["webhook_secret"] = new_webhook_secret(secrets.token_bytes(32))
        await self.store.add_subscription(doc)
        return doc

    async def visible(self, caller: Principal, partnership_id: str | None = None) -> list[dict]:
        """The subscriptions the caller may read (of one partnership when given)."""
        if partnership_id is not None:
            caller.require_partnership(partnership_id)
        caller.require_role(*MANAGERS)
        return [_shown(d) for d in await self.store.subscriptions_within(_readable_scope(caller), partnership_id)]

    async def get(self, caller: Principal, subscription_id: str) -> dict:
        return _shown(await self._subscription(caller, subscription_id))

    async def delete(self, caller: Principal, subscription_id: str) -> None:
        await self._subscription(caller, subscription_id)
        await self.store.delete_subscription(subscription_id, self.clock())

    async def resume(self, caller: Principal, subscription_id: str) -> dict:
        doc = await self._subscription(caller, subscription_id)
        if doc["status"] != Status.PAUSED:
            raise Conflict(f"subscription is {doc['status']}, not paused")
        return _shown(await self.store.resume(subscription_id, self.clock()) or doc)

    async def deliveries(self, caller: Principal, subscription_id: str | None, event_id: str | None,
                         status: DeliveryStatus | None, limit: int) -> list[dict]:
        if subscription_id is not None:
            await self._subscription(caller, subscription_id)
        caller.require_role(*MANAGERS)
        return await self.store.deliveries_of(subscription_id, None if event_id is None else safe_id(event_id),
                                              status, _readable_scope(caller), limit)

    async def retry(self, caller: Principal, subscription_id: str, event_id: str) -> dict:
        """A dead delivery gets a fresh round of attempts."""
        await self._subscription(caller, subscription_id)
        key = delivery_id(subscription_id, safe_id(event_id))
        if await self.store.redrive(key, self.clock()) is None:
            found = await self.store.delivery(key)
            if found is None:
                raise NotFound(f"no delivery of {event_id!r} to this subscription")
            raise Conflict(f"delivery is {found['status']}, not dead")
        return cast(dict, await self.store.delivery(key))  # just redriven: it exists

    def unsubscribe_link_valid(self, token: str) -> bool:
        return read_unsubscribe_token(self.unsubscribe_key(), token) is not None

    async def unsubscribe(self, token: str) -> None:
        subscription_id = read_unsubscribe_token(self.unsubscribe_key(), token)
        if subscription_id is None:
            raise NotFound("this unsubscribe link is not valid")
        await self.store.unsubscribe(subscription_id, self.clock())

    async def _subscription(self, caller: Principal, subscription_id: str) -> dict:
        caller.require_role(*MANAGERS)  # before the look-up: whether it exists is not theirs to learn
        doc = await self.store.subscription(subscription_id)
        if doc is None:
            raise NotFound(f"no subscription {subscription_id!r}")
        _require(caller, doc["partnership_ids"])
        return doc
