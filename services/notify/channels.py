"""The two ways out: signed webhooks (HTTP POST of the CloudEvent) and e-mail over SMTP.
A failure raises SendFailed with a short reason that names no person (it goes to the delivery log
and onto the bus)."""

import asyncio
import hashlib
import ipaddress
import logging
import socket
import time
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from urllib.parse import urlsplit

import aiosmtplib
import httpx

from services.notify.domain import address_refusal, literal_address, webhook_signature, webhook_url_refusal
from services.notify.messages import Mail

# httpx logs each request with its URL; partners' webhook URLs can carry their own tokens.
logging.getLogger("httpx").setLevel(logging.WARNING)

# Headers fold only past RFC 5322's hard limit: a URL has no place to fold, and at 78 characters
# the default policy RFC 2047-encoded List-Unsubscribe, which mail clients then ignore.
MAIL_POLICY = policy.SMTP.clone(max_line_length=998)
RESOLVE_SECONDS = 5.0  # a subscription's answer does not wait on a slow resolver for longer


@dataclass(frozen=True)
class WebhookTargets:
    """Where webhooks may go: checked when a URL is subscribed and again at every attempt, as
    a name can resolve elsewhere by then (DNS rebinding)."""

    require_https: bool = True
    allow_loopback: bool = False  # tests' local receivers only

    async def refusal(self, url: str) -> str | None:
        """Why notify may not POST to `url`, or None: its form, then every address its host has."""
        if reason := webhook_url_refusal(url, self.require_https):
            return reason
        parts = urlsplit(url)
        host = parts.hostname or ""
        literal = literal_address(host)
        if literal is not None:
            addresses = {literal}
        else:
            try:
                async with asyncio.timeout(RESOLVE_SECONDS):
                    infos = await asyncio.get_running_loop().getaddrinfo(
                        host, parts.port or 443, type=socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError, ValueError, TimeoutError):
                return "host not found"
            addresses = {ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos}
        for ip in sorted(addresses, key=str):
            if reason := address_refusal(ip, self.allow_loopback):
                return f"its host is {reason} ({ip})"
        return None


class SendFailed(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Webhooks:
    """POSTs a notification with the Standard Webhooks headers: `webhook-id` (the idempotency
    key: the event id), `webhook-timestamp` and `webhook-signature` (see services/notify/README.md)."""

    def __init__(self, timeout_seconds: float, targets: WebhookTargets):
        # No redirects: a signed delivery goes where it was subscribed to, nowhere else.
        self.client = httpx.AsyncClient(timeout=timeout_seconds, follow_redirects=False)
        self.targets = targets

    async def send(self, url: str, secret: str, notification_id: str, body: bytes) -> None:
        if reason := await self.targets.refusal(url):
            raise SendFailed(f"address not allowed: {reason}")
        timestamp = int(time.time())  # the wall clock, as the receiver checks it against its own
        headers = {
            "content-type": "application/cloudevents+json",
            "user-agent": "backbone-notify/1.0",
            "webhook-id": notification_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": webhook_signature(secret, notification_id, timestamp, body),
        }
        try:
            response = await self.client.post(url, content=body, headers=headers)
        except httpx.TimeoutException:
            raise SendFailed("timeout") from None
        except httpx.HTTPError as exc:
            raise SendFailed(f"connection failed: {type(exc).__name__}") from None
        if not response.is_success:
            raise SendFailed(f"http {response.status_code}")

    async def close(self) -> None:
        await self.client.aclose()


class Mailer:
    def __init__(self, host: str, port: int, security: str, username: str | None, password: str | None,
                 sender: str, timeout_seconds: float):
        self.host, self.port, self.security = host, port, security
        self.username, self.password = username, password
        self.sender = sender
        self.timeout_seconds = timeout_seconds

    async def send(self, to: str, mail: Mail, notification_id: str, unsubscribe_url: str) -> None:
        message = EmailMessage(policy=MAIL_POLICY)
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = mail.subject
        message["Date"] = formatdate(localtime=False)
        # The same id on every attempt, so a resent mail is recognisably the same message.
        digest = hashlib.sha256(f"{notification_id}/{to}".encode()).hexdigest()[:32]
        message["Message-ID"] = f"<{digest}@{self.sender.rpartition('@')[2].strip('>') or 'backbone'}>"
        message["X-Backbone-Notification-Id"] = notification_id
        # RFC 8058 one-click unsubscribe, which mail clients show as a button.
        message["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message.set_content(mail.text)
        message.add_alternative(mail.html, subtype="html")
        # Sent as bytes flattened here: aiosmtplib would flatten a message again with its own policy.
        utf8 = not (to.isascii() and self.sender.isascii())
        try:
            await aiosmtplib.send(
                message.as_bytes(policy=MAIL_POLICY.clone(utf8=utf8)), sender=parseaddr(self.sender)[1],
                recipients=[to], mail_options=["SMTPUTF8"] if utf8 else None,
                hostname=self.host, port=self.port, username=self.username, password=self.password,
                use_tls=self.security == "tls", start_tls=self.security == "starttls",
                timeout=self.timeout_seconds)
        except aiosmtplib.SMTPResponseException as exc:
            raise SendFailed(f"smtp {exc.code}") from None  # the server's text may quote the address
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise SendFailed(f"smtp: {type(exc).__name__}") from None
