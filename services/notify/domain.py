"""Pure rules of notify: which subscription hears what, when to retry, when reminders and digests
are due, which addresses a webhook may reach, and how webhook signatures and unsubscribe tokens
are made. No I/O here."""

import base64
import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from fnmatch import fnmatchcase
from ipaddress import IPv4Address, IPv6Address
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from shared.catalog import type_name
from shared.contracts.base import ID_PATTERN
from shared.contracts.notifications import ActivityReminder, MeetingFollowUp, WeeklyDigest
from shared.subscriptions import SUBSCRIBABLE, Mode

# What notify itself sends besides the topics' events (the catalogue's WEBHOOK_TYPES); webhooks
# receive them as CloudEvents too.
REMINDER = type_name(ActivityReminder)
DIGEST = type_name(WeeklyDigest)
FOLLOW_UP = type_name(MeetingFollowUp)

_ID = re.compile(ID_PATTERN)


class Status(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"  # too many failed deliveries in a row: waits for someone to resume it
    UNSUBSCRIBED = "unsubscribed"  # the recipient said stop; the address is erased


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    HELD = "held"  # its subscription is paused; sent once resumed
    DELIVERED = "delivered"
    DEAD = "dead"  # retries exhausted
    CANCELLED = "cancelled"  # unsubscribed, deleted, or the activity was moved or cancelled


# --- subscriptions ----------------------------------------------------------------------------

def matches(patterns: list[str], event_type: str) -> bool:
    return event_type in SUBSCRIBABLE and any(fnmatchcase(event_type, p) for p in patterns)


def recipient_hash(recipient: str) -> str:
    """Identifies a recipient in keys and digests without keeping the address a second time."""
    return hashlib.sha256(recipient.strip().lower().encode()).hexdigest()


def audience(subscriptions: list[dict], event_type: str, partnership_id: str,
             organisation_ids: list[str] | None = None) -> list[dict]:
    """The immediate subscriptions that hear of an event; `organisation_ids` narrows it to
    subscribers of those organisations (a meeting's follow-up goes to its attendees only).
    Paused subscriptions are included: their deliveries wait until they are resumed."""
    return [
        s for s in subscriptions
        if s["status"] != Status.UNSUBSCRIBED and s["mode"] == Mode.IMMEDIATE
        and partnership_id in s["partnership_ids"] and matches(s["event_types"], event_type)
        and (organisation_ids is None or s.get("organisation_id") in organisation_ids)
    ]


def safe_id(raw: str) -> str:
    """An id usable in contracts (`Id`): itself when it fits, else a stable digest of it."""
    return raw if _ID.match(raw) else "h-" + hashlib.sha256(raw.encode()).hexdigest()[:40]


def delivery_id(subscription_id: str, notification_id: str) -> str:
    return f"{subscription_id}/{notification_id}"


# --- webhook targets --------------------------------------------------------------------------

IPAddress = IPv4Address | IPv6Address
CARRIER_GRADE_NAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # a NAT64 gateway turns these into the IPv4 address inside
_IPV4_PART = re.compile(r"^(0[xX][0-9a-fA-F]*|[0-9]+)$")


def webhook_url_refusal(url: str, require_https: bool) -> str | None:
    """Why a webhook URL is refused by its form alone (scheme, credentials, host), or None."""
    parts = urlsplit(url)
    if parts.scheme != "https" and (require_https or parts.scheme != "http"):
        return "must be an https URL"
    if "@" in parts.netloc:
        return "must not carry credentials (user:password@): put a token in the path or use the signature"
    if not parts.hostname:
        return "has no host"
    return None


def without_credentials(url: str) -> str:
    """The URL without its user:password@ part (subscriptions stored before they were refused)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _ipv4_number(part: str) -> int | None:
    """One part of an IPv4 literal as inet_aton reads it: 0x hex, leading-zero octal, or decimal."""
    if part[:2].lower() == "0x":
        return int(part[2:] or "0", 16)
    if part.startswith("0") and len(part) > 1:
        return int(part, 8) if set(part) <= set("01234567") else None
    return int(part)


def literal_address(host: str) -> IPAddress | None:
    """The address a URL host spells out, in every notation resolvers accept (dotted, short
    `127.1`, decimal `2130706433`, hex `0x7f000001`, octal `0177.0.0.1`, `[::1]`); None for a name."""
    host = host.removeprefix("[").removesuffix("]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    parts = host.removesuffix(".").split(".")
    if len(parts) > 4 or not all(_IPV4_PART.match(p) for p in parts):
        return None
    numbers = [n for p in parts if (n := _ipv4_number(p)) is not None]
    if len(numbers) < len(parts) or any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(parts)):
        return None
    # The last part fills the bytes the others leave: 127.1 is 127.0.0.1.
    return IPv4Address(sum(n << (8 * (3 - i)) for i, n in enumerate(numbers[:-1])) + numbers[-1])


def address_refusal(ip: IPAddress, allow_loopback: bool = False) -> str | None:
    """Why a webhook may not be sent to this address, or None for a public one: partner keys
    choose webhook URLs, and must not reach the deployment's own network through them."""
    if isinstance(ip, IPv6Address):
        if ip.ipv4_mapped is not None:
            return "an IPv4-mapped IPv6 address"
        embedded = ip.sixtofour or (IPv4Address(int(ip) & 0xFFFFFFFF) if ip in NAT64 else None)
        if embedded is not None and address_refusal(embedded):
            return "an IPv6 address that carries a non-public IPv4 address"
    if ip.is_loopback:
        return None if allow_loopback else "a loopback address"
    for kind, refused in (("an unspecified", ip.is_unspecified), ("a link-local", ip.is_link_local),
                          ("a multicast", ip.is_multicast), ("a carrier-grade NAT", ip in CARRIER_GRADE_NAT),
                          ("a reserved", ip.is_reserved), ("a private", ip.is_private)):
        if refused:
            return f"{kind} address"
    return None if ip.is_global else "not a public address"


# --- retries ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float
    max_delay_seconds: float
    max_attempts: int

    def delay(self, attempt: int, random_fraction: float) -> timedelta:
        """Wait after failed attempt `attempt` (1-based): exponential, capped, with "equal jitter"
        (half fixed, half random) so receivers coming back up are not hit by every sender at once."""
        ceiling = min(self.max_delay_seconds, self.base_seconds * 2 ** (attempt - 1))
        return timedelta(seconds=ceiling / 2 + ceiling / 2 * random_fraction)

    def exhausted(self, attempts: int) -> bool:
        return attempts >= self.max_attempts


@dataclass(frozen=True)
class PausePolicy:
    """A subscription is paused when its deliveries have failed `failures` times in a row for at
    least `failing_for`: a receiver down for an hour catches up by retries; one gone for a day
    stops being called until someone resumes it."""

    failures: int
    failing_for: timedelta

    def reason(self, consecutive_failures: int, failing_since: datetime, now: datetime, last: str) -> str | None:
        if consecutive_failures < self.failures or now - failing_since < self.failing_for:
            return None
        hours = (now - failing_since).total_seconds() / 3600
        return f"paused after {consecutive_failures} failed deliveries in a row over {hours:.1f} h; last: {last}"


# --- reminders --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reminder:
    id: str
    lead: timedelta
    due_at: datetime


def plan_reminders(partnership_id: str, activity_id: str, starts_at: datetime, leads: list[timedelta],
                   now: datetime) -> list[Reminder]:
    """One reminder per lead time that is still ahead. The start time is part of the id, so a
    reminder for an old start time is never mistaken for one of the new."""
    stamp = int(starts_at.timestamp())
    return [
        Reminder(safe_id(f"reminder.{partnership_id}.{activity_id}.{stamp}.{int(lead.total_seconds())}s"),
                 lead, starts_at - lead)
        for lead in sorted(set(leads), reverse=True) if starts_at - lead > now
    ]


def choose_reminders(due: list[dict], now: datetime) -> tuple[list[dict], list[dict]]:
    """Of the due reminders, (to send, to skip): per activity only the shortest lead (after a
    downtime the 48 h and the 2 h reminder may both be due: one mail, the nearer one), and none
    once the activity has begun."""
    send, skip = [], []
    by_activity: dict[str, list[dict]] = {}
    for r in due:
        by_activity.setdefault(r["activity_key"], []).append(r)
    for reminders in by_activity.values():
        reminders.sort(key=lambda r: r["lead_seconds"])
        if reminders[0]["starts_at"] <= now:
            skip.extend(reminders)
        else:
            send.append(reminders[0])
            skip.extend(reminders[1:])
    return send, skip


# --- weekly digests ---------------------------------------------------------------------------

def week_start(now: datetime, zone: ZoneInfo) -> datetime:
    local = now.astimezone(zone)
    monday = local.date() - timedelta(days=local.weekday())
    return datetime(monday.year, monday.month, monday.day, tzinfo=zone)


def week_label(moment: datetime, zone: ZoneInfo) -> str:
    year, week, _ = moment.astimezone(zone).isocalendar()
    return f"{year}-W{week:02d}"


def digest_due(now: datetime, zone: ZoneInfo, send_after: timedelta) -> datetime | None:
    """The send time of this week's digest if it has come, else None."""
    send_at = week_start(now, zone) + send_after
    return send_at if now >= send_at else None


def digest_key(partnership_id: str, recipient_hash: str, week: str) -> str:
    """Once per partnership, recipient and ISO week, however many subscriptions or restarts."""
    return f"{partnership_id}|{recipient_hash}|{week}"


def kpi_movement(current: dict[str, float], previous: dict[str, float] | None) -> list[dict]:
    """Each numeric KPI with its change since the last digest (None when there was none)."""
    rows = []
    for kpi, value in sorted(current.items()):
        before = (previous or {}).get(kpi)
        rows.append({"kpi": kpi, "value": value, "change": None if before is None else round(value - before, 4)})
    return rows


# --- signatures -------------------------------------------------------------------------------

def new_webhook_secret(random_bytes: bytes) -> str:
    return "whsec_" + base64.b64encode(random_bytes).decode()


def webhook_signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks scheme: base64 HMAC-SHA256, keyed with the decoded secret, over
    "<id>.<timestamp>.<body>"; the header value is "v1,<signature>"."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def unsubscribe_token(key: bytes, subscription_id: str) -> str:
    mac = hmac.new(key, b"unsubscribe:" + subscription_id.encode(), hashlib.sha256).digest()
    return f"{subscription_id}.{base64.urlsafe_b64encode(mac[:18]).decode()}"


def read_unsubscribe_token(key: bytes, token: str) -> str | None:
    """The subscription a token was made for, or None when it was not made with this key."""
    subscription_id, _, _ = token.rpartition(".")
    if subscription_id and hmac.compare_digest(unsubscribe_token(key, subscription_id), token):
        return subscription_id
    return None
