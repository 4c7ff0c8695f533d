"""Real servers for the notify tests: an SMTP server (aiosmtpd) that keeps the mails it receives,
and an HTTP receiver that verifies webhook signatures the way services/notify/README.md tells
partners to, fails on purpose when told, and can stand in for the metrics service's KPI API."""

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from aiosmtpd.controller import Controller

from cli.stack import free_port
from shared.contracts import membership as mem
from shared.contracts.base import EventData
from shared.envelope import CloudEvent, new_event
from shared.kafka import ensure_topics, make_broker, publish
from shared.mongo import make_client
from tests.examples import EXAMPLES

OPERATOR_KEY = "notify-tests-operator-key"
METRICS_KEY = "metrics-key-for-notify-tests"


class Mailbox:
    """aiosmtpd handler: every mail received, parsed."""

    def __init__(self):
        self.mails: list[EmailMessage] = []
        self.raw: list[bytes] = []  # as they came over SMTP, for checks of the wire form

    async def handle_DATA(self, server, session, envelope) -> str:
        mail = message_from_bytes(envelope.content, policy=policy.default)
        mail["X-Test-Rcpt"] = ",".join(envelope.rcpt_tos)
        self.mails.append(mail)
        self.raw.append(envelope.content)
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.mails if m["X-Test-Rcpt"] == address]


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield mailbox, controller.port
    controller.stop()


def verify(secret: str, headers, body: bytes, tolerance_seconds: int = 300) -> bool:
    """How a receiver checks a notify webhook (the recipe of services/notify/README.md)."""
    msg_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance_seconds:
        return False  # an old message replayed
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest())
    return any(hmac.compare_digest(expected.decode(), sig.partition(",")[2])
               for sig in headers["webhook-signature"].split(" ") if sig.startswith("v1,"))


@dataclass
class Receiver:
    """A partner system. `script` holds what the next requests get: an HTTP status to fail with,
    or "slow" (answer after the sender's timeout); when it is empty, `failing` decides."""

    url: str
    secrets: dict[str, str] = field(default_factory=dict)  # path -> webhook secret
    script: list = field(default_factory=list)
    failing: int | None = None
    received: list[dict] = field(default_factory=list)  # every request, with its verdict
    processed: dict[str, dict] = field(default_factory=dict)  # webhook-id -> CloudEvent, processed once
    kpis: dict[str, float] | None = None  # the stand-in metrics API answers 503 when None

    def accepted(self, path: str) -> list[str]:
        return [r["id"] for r in self.received if r["path"] == path and r["status"] == 204]


def _handler(receiver: Receiver):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _answer(self, status: int, body: bytes = b"") -> None:
            self.send_response(status)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except BrokenPipeError:
                pass  # the sender timed out, as it should

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            valid = verify(receiver.secrets[self.path], self.headers, body)
            step = receiver.script.pop(0) if receiver.script else receiver.failing
            status = 401 if not valid else 204 if step is None else 503 if step == "slow" else step
            receiver.received.append({"path": self.path, "id": self.headers["webhook-id"], "status": status,
                                      "valid": valid})
            if step == "slow":
                time.sleep(1.0)  # the sender has given up by now
            if status == 204:
                # Idempotent processing: a repeat of a webhook-id already processed is acknowledged only.
                receiver.processed.setdefault(self.headers["webhook-id"], json.loads(body))
            self._answer(status)

        def do_GET(self) -> None:  # the metrics service's /kpis/values, as far as notify uses it
            if self.headers.get("authorization") != f"Bearer {METRICS_KEY}":
                self._answer(401)
            elif receiver.kpis is None:
                self._answer(503)
            else:
                self._answer(200, json.dumps({"values": receiver.kpis | {"hire_wages": {"median": 21.5}}}).encode())

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    port = free_port()
    receiver = Receiver(f"http://127.0.0.1:{port}")
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(receiver))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()


@pytest.fixture
def notify_env(smtp) -> dict[str, str]:
    """Fast retries and ticks; real SMTP without TLS on the test server."""
    _, port = smtp
    return {
        "BACKBONE_AUTH_OPERATOR_KEY": OPERATOR_KEY,
        "NOTIFY_SMTP_HOST": "127.0.0.1", "NOTIFY_SMTP_PORT": str(port), "NOTIFY_SMTP_SECURITY": "none",
        "NOTIFY_MAIL_FROM": "Backbone <notify@backbone.test>",
        "NOTIFY_WEBHOOK_REQUIRE_HTTPS": "false", "NOTIFY_WEBHOOK_ALLOW_LOOPBACK": "true",
        "NOTIFY_WEBHOOK_TIMEOUT_SECONDS": "0.4",
        "NOTIFY_RETRY_BASE_SECONDS": "0.1", "NOTIFY_RETRY_MAX_DELAY_SECONDS": "0.4",
        "NOTIFY_TICK_SECONDS": "0.3", "NOTIFY_DELIVERY_POLL_SECONDS": "0.5",
    }


@pytest.fixture
async def bus(kafka_settings) -> AsyncIterator[Callable]:
    """send(payload or CloudEvent, ...) publishes like the other services do; returns the events."""
    await ensure_topics(kafka_settings)
    broker = make_broker(kafka_settings, "test-sources")
    await broker.start()

    async def send(*items: EventData | CloudEvent) -> list[CloudEvent]:
        events = [i if isinstance(i, CloudEvent) else new_event(i, source="/test") for i in items]
        for event in events:
            await publish(broker, kafka_settings, event)
        return events

    yield send
    await broker.stop()


@pytest.fixture
async def notify_db(mongo_settings):
    client = make_client(mongo_settings)
    yield client[mongo_settings.database_prefix + "notify"]
    await client.close()


@pytest.fixture
def roster(bus, notify_db) -> Callable:
    """The partnership and an organisation, published and known to the (running) service: names
    come from the membership topic, which is not ordered with the other topics."""

    async def publish_roster() -> None:
        await bus(EXAMPLES[mem.PartnershipCreated], EXAMPLES[mem.OrganisationRegistered])
        await until(lambda: notify_db.organisations.find_one())
        await until(lambda: notify_db.partnerships.find_one())

    return publish_roster


async def until(condition: Callable, timeout: float = 20.0, interval: float = 0.1):
    """Poll `condition` (sync or async) until it returns something truthy; return that."""
    async with asyncio.timeout(timeout):
        while True:
            result = condition()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
            await asyncio.sleep(interval)


def api(service, key: str = OPERATOR_KEY) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=service.url, headers={"Authorization": f"Bearer {key}"})
