"""Who may do what with notify's subscriptions and deliveries, over an in-memory store: the use
cases decide it, whatever entry point calls them."""

from datetime import UTC, datetime

import pytest

from services.notify.domain import DeliveryStatus, Status, delivery_id, unsubscribe_token
from services.notify.service import Subscriptions
from shared.auth import Principal
from shared.contracts.base import AccessRole
from shared.errors import Conflict, Invalid, NotAllowed, NotFound

NOW = datetime(2026, 3, 11, 9, 30, tzinfo=UTC)
KEY = b"k" * 32
OPERATOR = Principal("op", AccessRole.OPERATOR)
ADMIN_A = Principal("admin-a", AccessRole.PARTNERSHIP_ADMIN, frozenset({"a"}))
ADMIN_AB = Principal("admin-ab", AccessRole.PARTNERSHIP_ADMIN, frozenset({"a", "b"}))
SYSTEM_A = Principal("system-a", AccessRole.PARTNER_SYSTEM, frozenset({"a"}))
VIEWER_A = Principal("viewer-a", AccessRole.VIEWER, frozenset({"a"}))
MANAGERS_OF_A = (OPERATOR, ADMIN_A)


class FakeStore:
    """The store's Protocol in memory, scoping as the MongoDB store does."""

    def __init__(self):
        self.subs: dict[str, dict] = {}
        self.dels: dict[str, dict] = {}

    async def add_subscription(self, doc):
        self.subs[doc["_id"]] = dict(doc)

    async def subscription(self, subscription_id):
        return self.subs.get(subscription_id)

    async def subscriptions_within(self, partnership_ids, including=None):
        return [s for s in self.subs.values()
                if (partnership_ids is None or set(s["partnership_ids"]) <= set(partnership_ids))
                and (including is None or including in s["partnership_ids"])]

    async def delete_subscription(self, subscription_id, now):
        return self.subs.pop(subscription_id, None) is not None

    async def unsubscribe(self, subscription_id, now):
        doc = self.subs.get(subscription_id)
        if doc:
            doc["status"] = Status.UNSUBSCRIBED.value
            doc.pop("email", None)
        return doc is not None

    @staticmethod
    def _move(doc: dict | None, from_status: str, to_status: str) -> dict | None:
        if doc is None or doc["status"] != from_status:
            return None
        doc["status"] = to_status
        return doc

    async def resume(self, subscription_id, now):
        return self._move(self.subs.get(subscription_id), Status.PAUSED, Status.ACTIVE.value)

    async def redrive(self, key, now):
        return self._move(self.dels.get(key), DeliveryStatus.DEAD, DeliveryStatus.PENDING.value)

    async def delivery(self, key):
        return self.dels.get(key)

    async def deliveries_of(self, subscription_id, notification_id, status, partnership_ids, limit):
        return [
            d
            for d in self.dels.values()
            if subscription_id in (None, d["subscription_id"])
            and notification_id in (None, d["notification_id"])
            and status in (None, d["status"])
            and (partnership_ids is None or d["partnership_id"] in partnership_ids)
        ][:limit]


async def _no_refusal(url: str) -> str | None:
    return None


@pytest.fixture
def store() -> FakeStore:
    store = FakeStore()
    for sid, pids, status in (("sub-a", ["a"], "paused"), ("sub-b", ["b"], "active"), ("sub-ab", ["a", "b"], "active")):
        store.subs[sid] = {"_id": sid, "partnership_ids": pids, "status": status, "channel": "webhook",
                           "webhook_url": "https://user:pw@hooks.example.org/x", "webhook_secret": "whsec_x"}
        store.dels[delivery_id(sid, "ev-1")] = {"_id": delivery_id(sid, "ev-1"), "subscription_id": sid,
                                                "notification_id": "ev-1", "partnership_id": pids[-1], "status": "dead"}
    return store


def service(store: FakeStore, refusal=_no_refusal, email: bool = True) -> Subscriptions:
    return Subscriptions(store, lambda: NOW, lambda: KEY, email, refusal)


def webhook(*pids: str, url: str = "https://hooks.example.org/x") -> dict:
    return {"partnership_ids": list(pids), "channel": "webhook", "webhook_url": url, "event_types": ["*"],
            "mode": "immediate"}


@pytest.mark.parametrize("caller", [OPERATOR, ADMIN_A])
async def test_operators_and_the_partnerships_admins_subscribe_and_see_the_secret_once(store, caller):
    subs = service(store)
    created = await subs.subscribe(caller, webhook("a"))
    assert created["webhook_secret"].startswith("whsec_") and created["created_by"] == caller.key_id
    assert "webhook_secret" not in await subs.get(caller, created["_id"])


@pytest.mark.parametrize("caller", [SYSTEM_A, VIEWER_A])
async def test_partner_systems_and_viewers_change_nothing(store, caller):
    subs = service(store)
    with pytest.raises(NotAllowed, match=caller.role.value):
        await subs.subscribe(caller, webhook("a"))
    for change in (subs.delete(caller, "sub-a"), subs.resume(caller, "sub-a"), subs.retry(caller, "sub-a", "ev-1")):
        with pytest.raises(NotAllowed, match=caller.role.value):
            await change
    assert "sub-a" in store.subs and store.subs["sub-a"]["status"] == "paused"


@pytest.mark.parametrize("caller", [SYSTEM_A, VIEWER_A])
async def test_partner_systems_and_viewers_read_no_subscriber_addresses(store, caller):
    subs = service(store)
    for read in (
        subs.visible(caller, "a"),
        subs.get(caller, "sub-a"),
        subs.deliveries(caller, "sub-a", None, None, 100),
        subs.deliveries(caller, None, "ev-1", None, 100),
    ):
        with pytest.raises(NotAllowed):
            await read


@pytest.mark.parametrize("caller", MANAGERS_OF_A)
async def test_admins_read_their_partnerships_subscriptions_and_deliveries_only(store, caller):
    subs = service(store)
    assert [s["_id"] for s in await subs.visible(caller, "a")] == (["sub-a", "sub-ab"] if caller is OPERATOR
                                                                   else ["sub-a"])
    assert (await subs.get(caller, "sub-a"))["partnership_ids"] == ["a"]
    [log] = await subs.deliveries(caller, "sub-a", None, None, 100)
    assert log["subscription_id"] == "sub-a"
    by_event = await subs.deliveries(caller, None, "ev-1", None, 100)
    assert {d["partnership_id"] for d in by_event} == ({"a", "b"} if caller is OPERATOR else {"a"})


async def test_a_foreign_partnership_is_refused_by_name(store):
    subs, caller = service(store), ADMIN_A
    for attempt in (subs.visible(caller, "b"), subs.get(caller, "sub-b"), subs.get(caller, "sub-ab"),
                    subs.deliveries(caller, "sub-ab", None, None, 10), subs.delete(caller, "sub-ab"),
                    subs.subscribe(caller, webhook("a", "b"))):
        with pytest.raises(NotAllowed, match="'b'"):
            await attempt
    assert "sub-ab" in store.subs and len(store.subs) == 3


async def test_a_list_holds_only_what_the_caller_may_read_all_of(store):
    subs = service(store)
    assert [s["_id"] for s in await subs.visible(ADMIN_A)] == ["sub-a"]
    assert [s["_id"] for s in await subs.visible(ADMIN_AB)] == ["sub-a", "sub-b", "sub-ab"]
    assert len(await subs.visible(OPERATOR)) == 3


async def test_answers_never_show_secrets_or_url_credentials(store):
    for doc in await service(store).visible(OPERATOR):
        assert "webhook_secret" not in doc and doc["webhook_url"] == "https://hooks.example.org/x"


async def test_the_partnerships_admin_manages_it(store):
    subs = service(store)
    assert (await subs.resume(ADMIN_A, "sub-a"))["status"] == "active"
    with pytest.raises(Conflict, match="not paused"):
        await subs.resume(ADMIN_A, "sub-a")
    assert (await subs.retry(ADMIN_A, "sub-a", "ev-1"))["status"] == "pending"
    with pytest.raises(Conflict, match="not dead"):
        await subs.retry(ADMIN_A, "sub-a", "ev-1")
    with pytest.raises(NotFound):
        await subs.retry(ADMIN_A, "sub-a", "ev-2")
    await subs.delete(ADMIN_A, "sub-a")
    with pytest.raises(NotFound):
        await subs.get(ADMIN_A, "sub-a")


async def test_refused_webhook_urls_and_unconfigured_email_name_the_field(store):
    async def refuse(url: str) -> str | None:
        return "its host is a loopback address (127.0.0.1)"

    with pytest.raises(Invalid) as refused:
        await service(store, refuse).subscribe(ADMIN_A, webhook("a", url="https://2130706433/"))
    assert refused.value.field == "webhook_url" and "loopback" in refused.value.reason
    with pytest.raises(Invalid) as no_mail:
        await service(store, email=False).subscribe(ADMIN_A, {"partnership_ids": ["a"], "channel": "email",
                                                              "email": "chair@example.org"})
    assert no_mail.value.field == "channel"
    assert len(store.subs) == 3


async def test_access_is_decided_before_the_url_is_looked_at(store):
    looked_up = []

    async def lookup(url: str) -> str | None:
        looked_up.append(url)
        return None

    with pytest.raises(NotAllowed):
        await service(store, lookup).subscribe(ADMIN_A, webhook("b"))
    assert looked_up == []


async def test_the_unsubscribe_link_is_its_own_authority(store):
    subs = service(store)
    token = unsubscribe_token(KEY, "sub-b")
    assert subs.unsubscribe_link_valid(token) and not subs.unsubscribe_link_valid("x" + token)
    with pytest.raises(NotFound):
        await subs.unsubscribe("sub-b.forged")
    await subs.unsubscribe(token)
    assert store.subs["sub-b"]["status"] == "unsubscribed"
