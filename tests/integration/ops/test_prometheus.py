"""Prometheus for real (Debian's prometheus package): promtool checks the shipped config, the
alert rules (with their unit tests) and every service's /metrics; a real Prometheus on loopback
scrapes the running services and answers PromQL for a KPI gauge and for consumer lag."""

import asyncio
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml

from cli.stack import free_port, stop_process
from shared.contracts import outcomes as out
from shared.envelope import new_event
from shared.kafka import ensure_topics, make_broker, publish
from tests.examples import EXAMPLES, P

pytestmark = pytest.mark.integration

PROMETHEUS = Path(__file__).resolve().parents[3] / "deploy" / "prometheus"
SERVICES = ("membership", "events", "metrics", "notify")


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], input=stdin, capture_output=True, text=True, cwd=PROMETHEUS)


def test_shipped_config_and_alert_rules_pass_promtool():
    for check in (("check", "config", "prometheus.yml"), ("check", "rules", "alerts.yml"),
                  ("test", "rules", "alerts_test.yml")):
        result = promtool(*check)
        assert result.returncode == 0, result.stdout + result.stderr
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"][0]["rules"]
    assert {"BackboneServiceDown", "BackboneConsumerLagGrowing", "BackboneDeadLetters",
            "BackboneWebhookFailures"} <= {r["alert"] for r in rules}


@pytest.fixture
async def running(start_service, kafka_settings):
    services = {n: start_service(n, {"BACKBONE_AUTH_OPERATOR_KEY": "ops-tests-key",
                                     "METRICS_MILESTONE_INTERVAL_SECONDS": "0.5"}) for n in SERVICES}
    # One hire this program year, so the metrics service exports a KPI gauge.
    await ensure_topics(kafka_settings)
    broker = make_broker(kafka_settings, "ops-test")
    await broker.start()
    hire = EXAMPLES[out.HireRecorded].model_copy(update={"start_date": datetime.now(UTC).date()})
    await publish(broker, kafka_settings, new_event(hire, source="/test"))
    await broker.stop()
    return services


async def until(check, timeout: float = 60.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := await check()):
        assert asyncio.get_running_loop().time() < deadline, "not in time"
        await asyncio.sleep(0.5)
    return result


async def test_a_real_prometheus_scrapes_the_services(running, tmp_path):
    async with httpx.AsyncClient() as http:
        async def kpi_exported():
            return (
                'backbone_metrics_kpi_value{kpi="hires"' in (await http.get(running["metrics"].url + "/metrics")).text
            )

        await until(kpi_exported)
        for name, service in running.items():
            exposition = (await http.get(service.url + "/metrics")).text
            result = promtool("check", "metrics", stdin=exposition)
            assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"

        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(PROMETHEUS / "alerts.yml")],
            "scrape_configs": [{"job_name": "backbone", "static_configs": [
                {"targets": [s.url.removeprefix("http://")], "labels": {"service": n}} for n, s in running.items()]}],
        }))
        server = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                                   f"--web.listen-address=127.0.0.1:{port}"],
                                  stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("wb"))
        try:
            async def query(promql: str) -> list[dict]:
                try:
                    answer = await http.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": promql})
                except httpx.HTTPError:
                    return []
                return answer.json()["data"]["result"] if answer.status_code == 200 else []

            up = await until(lambda: _all_up(query))
            assert sorted(r["metric"]["service"] for r in up) == sorted(SERVICES)
            [hires] = await until(lambda: query(f'backbone_metrics_kpi_value{{kpi="hires", partnership="{P}"}}'))
            assert float(hires["value"][1]) >= 1
            lag = await until(lambda: query('sum by (topic) (backbone_metrics_consumer_lag{service="metrics"})'))
            assert "backbone.outcomes" in {r["metric"]["topic"] for r in lag}
            assert all(float(r["value"][1]) == 0 for r in lag)  # caught up
        finally:
            stop_process(server.pid, timeout=10)


async def _all_up(query) -> list[dict]:
    result = await query('up{job="backbone"} == 1')
    return result if len(result) == len(SERVICES) else []
