"""Each service as its own process: health, readiness (with its workers and every consumer group's
lag), Prometheus metrics, graceful SIGTERM."""

import signal
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cli.main import SERVICES

pytestmark = pytest.mark.integration

GROUPS = {  # every consumer group each service runs, as /readyz and backbone_consumer_lag name them
    "membership": {"backbone-membership-access"},
    "events": {"backbone-events-access", "backbone-events", "backbone-events-inbound"},
    "metrics": {"backbone-metrics-access", "backbone-metrics"},
    "notify": {"backbone-notify-access", "backbone-notify"},
}


@pytest.mark.parametrize("name", SERVICES)
def test_service_process_is_operable(name, start_service):
    service = start_service(name)
    assert httpx.get(service.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(service.url + "/readyz").json()
    assert ready["status"] == "ready" and ready["checks"] == {"kafka": True, "mongodb": True}
    assert set(ready["consumer_lag"]) == GROUPS[name]
    assert "consumer_lag" in ready["workers"]
    deadline = time.monotonic() + 30
    while None in ready["consumer_lag"].values() or not all(ready["workers"].values()):  # measured every 5 s
        assert time.monotonic() < deadline, ready
        time.sleep(0.2)
        ready = httpx.get(service.url + "/readyz").json()
    assert all(records >= 0 for records in ready["consumer_lag"].values())

    metrics = httpx.get(service.url + "/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(metrics.text)}
    assert "backbone_http_requests" in families  # counter "_total" is stripped by the parser
    routes = {s.labels["route"] for s in families["backbone_http_requests"].samples}
    assert {"/healthz", "/readyz"} <= routes
    assert families["backbone_ready"].samples[0].value == 1
    assert {s.labels["group"] for s in families["backbone_consumer_lag"].samples} == GROUPS[name]

    service.process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert service.process.wait(timeout=10) == 0
    assert time.monotonic() - started < 10
    log = service.log.read_text()
    assert '"message":"service stopped"' in log
