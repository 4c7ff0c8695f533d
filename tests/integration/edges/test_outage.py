"""The database server stopped for a while under load: the services say they are not ready and
refuse (503) rather than accept what they cannot store, then catch up without loss or double
counting when it returns. The database here is its own SecantusDB on disk, so a real stop and
restart keeps its data."""

import asyncio
import subprocess
from datetime import UTC, datetime

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from cli.stack import free_port, secantus_binary, stop_process
from shared.catalog import MEMBERSHIP, OUTCOMES
from shared.contracts import membership as mem
from shared.contracts import outcomes as out
from shared.envelope import new_event
from shared.periods import program_year
from tests.examples import EXAMPLES, P

pytestmark = pytest.mark.integration

OPERATOR = "outage-tests-operator-key"


class Database:
    def __init__(self, folder):
        self.folder, self.port, self.process = folder, free_port(), None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def start(self) -> None:
        self.process = subprocess.Popen([secantus_binary(), "--host", "127.0.0.1", "--port", str(self.port),
                                         "--storage-path", str(self.folder)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def stop(self) -> None:
        stop_process(self.process.pid, timeout=10)


def hires(start: int, n: int) -> list[bytes]:
    today = datetime.now(UTC).date()
    return [new_event(EXAMPLES[out.HireRecorded].model_copy(update={"hire_id": f"h-{i}", "person_id": f"p-{i}",
                                                                     "start_date": today}), source="/ats").to_json()
            for i in range(start, start + n)]


async def until(check, timeout: float = 60.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := await check()):
        assert asyncio.get_running_loop().time() < deadline, "not in time"
        await asyncio.sleep(0.3)
    return result


async def test_services_refuse_while_the_database_is_down_and_catch_up_after(start_service, kafka_settings, tmp_path):
    database = Database(tmp_path / "db")
    database.start()
    env = {"BACKBONE_AUTH_OPERATOR_KEY": OPERATOR, "BACKBONE_MONGO_URI": database.uri,
           "BACKBONE_MONGO_SERVER_SELECTION_TIMEOUT_MS": "1000"}
    try:
        metrics = start_service("metrics", env)
        events = start_service("events", env)
        producer = AIOKafkaProducer(bootstrap_servers=kafka_settings.bootstrap_servers, acks="all")
        await producer.start()
        roster = [EXAMPLES[mem.PartnershipCreated], EXAMPLES[mem.OrganisationRegistered],
                  EXAMPLES[mem.MemberJoined].model_copy(update={"joined_on": datetime(2020, 1, 1).date()})]
        for event in roster:
            await producer.send_and_wait(kafka_settings.topic(MEMBERSHIP.name), new_event(event, source="/m").to_json(),
                                         key=P.encode())
        auth = {"authorization": f"Bearer {OPERATOR}"}
        period = program_year(datetime.now(UTC).date())
        async with httpx.AsyncClient(timeout=10, headers=auth) as http:
            async def stored_hires(expected: int) -> bool:
                try:
                    answer = await http.get(metrics.url + "/kpis/values", params={"scope_id": P, "period": period})
                except httpx.HTTPError:
                    return False
                return answer.status_code == 200 and answer.json()["values"]["hires"] == expected

            for body in hires(0, 200):
                await producer.send(kafka_settings.topic(OUTCOMES.name), body, key=P.encode())
            await producer.flush()
            await until(lambda: stored_hires(200))

            database.stop()
            for service in (metrics, events):
                await until(lambda url=service.url: _status(http, url + "/readyz", 503))
            for body in hires(200, 300):  # the load goes on while the database is away
                await producer.send(kafka_settings.topic(OUTCOMES.name), body, key=P.encode())
            await producer.flush()
            hire = EXAMPLES[out.HireRecorded].model_copy(update={"hire_id": "h-http", "person_id": "p-http",
                                                                 "start_date": datetime.now(UTC).date()})
            refused = await http.post(events.url + "/outcomes/hires", json=hire.model_dump(mode="json"),
                                      headers={"idempotency-key": "hire-over-http"})
            assert refused.status_code == 503 and refused.headers["retry-after"]
            await asyncio.sleep(3)  # down for a while

            database.start()
            for service in (metrics, events):
                await until(lambda url=service.url: _status(http, url + "/readyz", 200))
            accepted = await until(lambda: _accepted(http, events.url + "/outcomes/hires", hire))
            assert accepted.status_code == 202
            await until(lambda: stored_hires(501))  # 200 + 300 + the one over HTTP, each once
            await asyncio.sleep(2)
            assert await stored_hires(501)
        await producer.stop()
    finally:
        if database.process.poll() is None:
            database.stop()


async def _status(http: httpx.AsyncClient, url: str, code: int) -> bool:
    try:
        return (await http.get(url)).status_code == code
    except httpx.HTTPError:
        return False


async def _accepted(http: httpx.AsyncClient, url: str, hire) -> httpx.Response | None:
    """A partner system's retry loop: the same idempotency key until it is accepted."""
    answer = await http.post(url, json=hire.model_dump(mode="json"), headers={"idempotency-key": "hire-over-http"})
    return answer if answer.status_code in (200, 202) else None
