"""Signing in to the KPI pages: server-side sessions and login throttling.

A session is a random id kept (as its SHA-256) in the metrics database with the key id, the key
itself sealed (Fernet, with a key derived from the session secret: the pages record through the
events service's API as the person who signed in) and an expiry; the cookie carries the id and an
HMAC of it, never the key. A database dump alone opens nothing. Signing out deletes the
record, so a copied cookie stops working at once; revoking the key ends its sessions as well,
because every request looks the key up again (KeyRing.principal)."""

import base64
import hashlib
import hmac
import math
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from cryptography.fernet import Fernet, InvalidToken
from pymongo.asynchronous.database import AsyncDatabase


class Sessions:
    def __init__(self, db: AsyncDatabase, secret: bytes | None, hours: float):
        self.sessions = db["ui_sessions"]
        self.secret = secret or secrets.token_bytes(32)  # without one, sessions end with the process
        self.seconds = int(hours * 3600)
        self.seal = Fernet(base64.urlsafe_b64encode(hmac.new(self.secret, b"sealed keys", hashlib.sha256).digest()))

    async def setup(self) -> None:
        await self.sessions.create_index("expires", expireAfterSeconds=0)  # the database drops expired ones

    def _sign(self, session_id: str) -> str:
        digest = hmac.new(self.secret, session_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    @staticmethod
    def _stored_id(session_id: str) -> str:
        return hashlib.sha256(session_id.encode()).hexdigest()  # a database dump holds no usable cookie

    def _session_id(self, cookie: str | None) -> str | None:
        session_id, _, signature = (cookie or "").partition(".")
        return session_id if session_id and hmac.compare_digest(signature, self._sign(session_id)) else None

    async def open(self, key_id: str, key: str) -> str:
        """A new session of the key; returns the cookie value."""
        session_id = secrets.token_urlsafe(32)
        await self.sessions.insert_one({"_id": self._stored_id(session_id), "key_id": key_id,
                                        "sealed_key": self.seal.encrypt(key.encode()),
                                        "expires": datetime.now(UTC) + timedelta(seconds=self.seconds)})
        return f"{session_id}.{self._sign(session_id)}"

    async def _live(self, cookie: str | None) -> dict | None:
        if (session_id := self._session_id(cookie)) is None:
            return None
        return await self.sessions.find_one({"_id": self._stored_id(session_id), "expires": {"$gt": datetime.now(UTC)}})

    async def key_id(self, cookie: str | None) -> str | None:
        """The key behind a live session, or None."""
        found = await self._live(cookie)
        return found["key_id"] if found else None

    async def key(self, cookie: str | None) -> str | None:
        """The signed-in key itself, to act as its holder; None without a live session (or one
        sealed under another secret)."""
        found = await self._live(cookie)
        try:
            return self.seal.decrypt(found["sealed_key"]).decode() if found and "sealed_key" in found else None
        except InvalidToken:
            return None

    async def close(self, cookie: str | None) -> None:
        if (session_id := self._session_id(cookie)) is not None:
            await self.sessions.delete_one({"_id": self._stored_id(session_id)})


class LoginThrottle:
    """At most `failures` failed sign-ins per `window` seconds per client address. Memory is
    bounded: the least recently failing `capacity` addresses are remembered, older ones dropped."""

    def __init__(self, failures: int = 5, window: float = 60.0, capacity: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        self.failures, self.window, self.capacity, self.clock = failures, window, capacity, clock
        self.recent: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> int | None:
        """Seconds until the client may try again, or None if it may now."""
        times = self.recent.get(client)
        if times is None or len(times) < self.failures:
            return None
        wait = times[0] + self.window - self.clock()
        return math.ceil(wait) if wait > 0 else None

    def failed(self, client: str) -> None:
        times = self.recent.pop(client, None) or deque(maxlen=self.failures)
        times.append(self.clock())
        self.recent[client] = times
        if len(self.recent) > self.capacity:
            self.recent.popitem(last=False)
