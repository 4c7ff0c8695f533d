"""Each service as its own process: health, readiness, Prometheus metrics, graceful SIGTERM."""

import signal
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cli.main import SERVICES

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", SERVICES)
def test_service_process_is_operable(name, start_service):
    service = start_service(name)
    assert httpx.get(service.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(service.url + "/readyz").json()
    assert ready == {"status": "ready", "checks": {"kafka": True, "mongodb": True}}

    metrics = httpx.get(service.url + "/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(metrics.text)}
    assert "backbone_http_requests" in families  # counter "_total" is stripped by the parser
    routes = {s.labels["route"] for s in families["backbone_http_requests"].samples}
    assert {"/healthz", "/readyz"} <= routes
    assert families["backbone_ready"].samples[0].value == 1

    service.process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert service.process.wait(timeout=10) == 0
    assert time.monotonic() - started < 10
    log = service.log.read_text()
    assert '"message":"service stopped"' in log
