"""Test fixtures: one real local stack (Tansu + SecantusDB) per test session, and per test its
own topic namespace, consumer groups and databases so tests never see each other's data.

Set BACKBONE_TEST_KAFKA_BOOTSTRAP and BACKBONE_TEST_MONGO_URI to use servers already running
(e.g. from `backbone stack up`, or genuine Kafka and MongoDB) instead of starting a stack."""

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cli.stack import Endpoints, LocalStack, free_port, stop_process
from shared.settings import KafkaSettings, MongoSettings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[Endpoints]:
    kafka, mongo = os.environ.get("BACKBONE_TEST_KAFKA_BOOTSTRAP"), os.environ.get("BACKBONE_TEST_MONGO_URI")
    if kafka and mongo:
        yield Endpoints(kafka, mongo)
        return
    local = LocalStack(tmp_path_factory.mktemp("stack"))
    state = local.up()
    try:
        yield state.endpoints
    finally:
        local.down()


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def service_env(stack: Endpoints, namespace: str) -> dict[str, str]:
    """Environment that points a service process at the test stack, isolated by namespace."""
    return stack.env() | {
        "BACKBONE_KAFKA_NAMESPACE": namespace,
        "BACKBONE_MONGO_DATABASE_PREFIX": namespace.replace(".", "_"),
        # A new consumer's first join waits session_timeout/2 on Tansu: keep tests quick.
        "BACKBONE_KAFKA_SESSION_TIMEOUT_MS": "2000",
        "BACKBONE_KAFKA_HEARTBEAT_INTERVAL_MS": "300",
    }


@pytest.fixture
def kafka_settings(service_env: dict[str, str]) -> KafkaSettings:
    return KafkaSettings(**{k.removeprefix("BACKBONE_KAFKA_").lower(): v for k, v in service_env.items()
                            if k.startswith("BACKBONE_KAFKA_")})


@pytest.fixture
def mongo_settings(service_env: dict[str, str]) -> MongoSettings:
    return MongoSettings(**{k.removeprefix("BACKBONE_MONGO_").lower(): v for k, v in service_env.items()
                            if k.startswith("BACKBONE_MONGO_")})


@dataclass
class RunningService:
    name: str
    url: str
    process: subprocess.Popen
    log: Path

    def stop(self, timeout: float = 15.0) -> int:
        stop_process(self.process.pid, timeout)
        return self.process.wait(timeout=1)


@pytest.fixture
def start_service(service_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., RunningService]]:
    """Start `services.<name>.app` as its own process on a free port; wait until /readyz says ready."""
    started: list[RunningService] = []

    def start(name: str, extra_env: dict[str, str] | None = None, timeout: float = 60.0) -> RunningService:
        port = free_port()
        log = tmp_path / f"{name}-{port}.log"
        env = os.environ | service_env | {f"{name.upper()}_PORT": str(port)} | (extra_env or {})
        process = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}.app"], cwd=ROOT, env=env,
            stdout=log.open("wb"), stderr=subprocess.STDOUT,
        )
        service = RunningService(name, f"http://127.0.0.1:{port}", process, log)
        started.append(service)
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(service.url + "/readyz", timeout=1).status_code == 200:
                    return service
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} not ready after {timeout}s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)

    yield start
    for service in started:
        if service.process.poll() is None:
            service.stop()
